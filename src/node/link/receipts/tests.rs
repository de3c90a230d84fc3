//! Which receipts a peer passes back are taken.

use bytes::Bytes;

use super::*;
use crate::audit::record::Event;
use crate::bulletin::Digest;
use crate::identity::{PublicKey, Validity};
use crate::receipt::Receipt;
use crate::timestamp::Timestamp;

fn pid(s: &str) -> PartnerId {
    s.parse().expect("an id")
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
}

/// Why one receipt passed back is not taken.
fn judge(
    signed: &proto::SignedReceipt,
    stored: Option<&proto::StoredBulletin>,
    ids: (&PartnerId, &PartnerId),
    keys: &Keyring,
) -> Result<(), LeftOut> {
    let mut judged = judge_all(&[(signed, stored)], ids, keys);
    assert_eq!(judged.len(), 1);
    judged.pop().expect("one answer")
}

/// jp-mod's copy of a bulletin of jp-cdc, sent to nato-ccdcoe.
fn stored(id: BulletinId) -> proto::StoredBulletin {
    proto::StoredBulletin {
        seq: 4,
        digest: Bytes::copy_from_slice(&[7; 32]),
        origin: "jp-cdc".into(),
        id: id.to_string(),
        shared_with: vec!["nato-ccdcoe".into()],
        ..Default::default()
    }
}

/// ee-cert's receipt, at ee-mod, of the bulletin `id` with digest `digest`.
fn receipt(id: BulletinId, digest: u8, at: &str) -> proto::SignedReceipt {
    Receipt {
        receiver: pid("ee-cert"),
        node: pid(at),
        origin: pid("jp-cdc"),
        bulletin_id: id,
        digest: Digest([digest; 32]),
        received: Timestamp::from_unix_ms(1_790_000_000_000),
    }
    .sign(&key())
}

#[test]
fn a_receipt_of_what_was_sent_to_the_peer_is_taken_checked_where_the_key_is_known() {
    let id = BulletinId::new_v7(Timestamp::from_unix_ms(1_790_000_000_000));
    let ids = (&pid("nato-ccdcoe"), &pid("jp-mod"));
    let unknown = Keyring::new();
    let good = receipt(id, 7, "ee-mod");
    assert_eq!(
        judge(&good, Some(&stored(id)), ids, &unknown),
        Ok(()),
        "kept unchecked"
    );
    let mut keys = Keyring::new();
    keys.insert(pid("ee-cert"), PublicKey::of(&key()), Validity::default());
    assert_eq!(
        judge(&good, Some(&stored(id)), ids, &keys),
        Ok(()),
        "verified"
    );
    let mut forged = good.clone();
    forged.signature = Bytes::copy_from_slice(&[1; 64]);
    let why = judge(&forged, Some(&stored(id)), ids, &keys).expect_err("forged");
    assert!(why.to_string().contains("does not verify"), "{why}");
}

#[test]
fn a_receipt_of_anything_else_is_left_out() {
    let id = BulletinId::new_v7(Timestamp::from_unix_ms(1_790_000_000_000));
    let keys = Keyring::new();
    let ids = (&pid("nato-ccdcoe"), &pid("jp-mod"));
    // Another digest, a bulletin not stored, one not sent to this peer.
    let other_digest = receipt(id, 8, "ee-mod");
    assert!(judge(&other_digest, Some(&stored(id)), ids, &keys).is_err());
    assert!(judge(&receipt(id, 7, "ee-mod"), None, ids, &keys).is_err());
    let to_another = (&pid("us-node"), &pid("jp-mod"));
    let why = judge(
        &receipt(id, 7, "ee-mod"),
        Some(&stored(id)),
        to_another,
        &keys,
    );
    let why = why.expect_err("not sent").to_string();
    assert!(why.contains("did not send us-node"), "{why}");
    // Given at this node: it comes with its ack, not passed back.
    let here = receipt(id, 7, "jp-mod");
    assert_eq!(
        judge(&here, Some(&stored(id)), ids, &keys),
        Err(LeftOut::GivenHere)
    );
}

/// ee-mod's receipts of the bulletins `seqs` (the store does not read them).
fn acked(seqs: &[u64]) -> Event {
    let receipted = seqs
        .iter()
        .map(|&seq| proto::Receipted {
            seq,
            receipt: Some(receipt(
                BulletinId::new_v7(Timestamp::from_unix_ms(seq)),
                7,
                "jp-mod",
            )),
        })
        .collect();
    Event::acked(&pid("ee-mod"), seqs.iter().map(|&s| (s, 0))).with_receipts(receipted)
}

#[test]
fn what_is_owed_is_read_a_frame_at_a_time_each_receipt_once() {
    use crate::store::tests::new;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16 << 20).unwrap();
    let now = Timestamp::from_unix_ms(1_790_000_000_000);
    let mut bulletins: Vec<_> = (1..=6).map(|n| new(n, "jp-mod", &["ee-mod"])).collect();
    bulletins.push(new(7, "us-dod", &["ee-mod"]));
    let entries = bulletins
        .into_iter()
        .map(crate::store::Entry::Bulletin)
        .collect();
    store.commit(entries, now).unwrap();
    let passed_on = receipt(BulletinId::new_v7(now), 7, "fr-mod");
    let passed = Event::receipts_passed(
        &pid("fr-mod"),
        vec![proto::Receipted {
            seq: 6,
            receipt: Some(passed_on),
        }],
        "",
    );
    for event in [acked(&[1, 2]), acked(&[7]), acked(&[3, 4, 5]), passed] {
        let entry = crate::store::Entry::Event(Some(event), None);
        store.commit(vec![entry], now).unwrap();
    }
    let (jp, mut next, mut frames) = (pid("jp-mod"), 0, Vec::new());
    loop {
        let (receipts, through, more) = owed(&store, &jp, next, 3).unwrap();
        assert!(through > next || !more);
        frames.push(receipts.len());
        next = through;
        if !more {
            break;
        }
    }
    // jp-mod's six, never us-dod's, in frames of about three.
    assert_eq!(frames, [2, 3, 1]);
    assert_eq!(owed(&store, &jp, next, 3).unwrap().0.len(), 0);
}

#[test]
fn receipts_gather_after_a_pass_that_caught_up_and_a_backlog_passes_at_once() {
    use exchange::Again;
    assert_eq!(
        next_pass(true, true),
        Again::Now,
        "more in the log: a frame at a time, without waiting"
    );
    assert_eq!(next_pass(true, false), Again::Now);
    assert_eq!(
        next_pass(false, true),
        Again::After(GATHER),
        "caught up after passing some: what comes next gathers"
    );
    assert_eq!(next_pass(false, false), Again::Idle);
}
