//! Receipts: signed by a receiver, verified against its key and the delivery they are
//! given for, and the worked example of proto/testdata/receipt-v1.json reproduced.

use super::*;
use crate::identity::Validity;

const NOW: u64 = 1_790_000_000_000;

fn pid(s: &str) -> PartnerId {
    s.parse().expect("an id")
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Keys of ee-cert (1) and au-dod (2).
fn keys() -> Keyring {
    let mut keys = Keyring::new();
    keys.insert(pid("ee-cert"), PublicKey::of(&key(1)), Validity::default());
    keys.insert(pid("au-dod"), PublicKey::of(&key(2)), Validity::default());
    keys
}

fn receipt(receiver: &str, id: u8) -> Receipt {
    Receipt {
        receiver: pid(receiver),
        node: pid("nato-ccdcoe"),
        origin: pid("jp-cdc"),
        bulletin_id: BulletinId::new_v7(Timestamp::from_unix_ms(NOW + u64::from(id))),
        digest: Digest([id; 32]),
        received: Timestamp::from_unix_ms(NOW),
    }
}

fn expected(r: &Receipt) -> (String, String) {
    (r.origin.to_string(), r.bulletin_id.to_string())
}

fn check(signed: &proto::SignedReceipt, of: &Receipt) -> Result<VerifiedReceipt, ReceiptError> {
    let (origin, id) = expected(of);
    let v = VerifiedReceipt::verify(signed, &keys())?;
    v.is_of(&Expected {
        receiver: &of.receiver,
        node: &of.node,
        origin: &origin,
        bulletin_id: &id,
        digest: &of.digest.0,
    })?;
    Ok(v)
}

#[test]
fn a_receipt_verifies_against_its_receivers_key_and_its_delivery() {
    let r = receipt("ee-cert", 7);
    let signed = r.sign(&key(1));
    let v = check(&signed, &r).expect("a good receipt");
    assert_eq!(v.receipt(), &r);
    assert_eq!(v.key(), &PublicKey::of(&key(1)));
}

#[test]
fn a_receipt_of_another_bulletin_or_receiver_is_not_this_deliverys() {
    let r = receipt("ee-cert", 7);
    let signed = r.sign(&key(1));
    let other_bulletin = receipt("ee-cert", 8);
    let e = check(&signed, &other_bulletin).expect_err("another bulletin");
    assert!(matches!(e, ReceiptError::Mismatch { .. }), "{e}");
    // ee-cert's receipt replayed by au-dod as its own.
    let mut other_receiver = r.clone();
    other_receiver.receiver = pid("au-dod");
    let e = check(&signed, &other_receiver).expect_err("another receiver");
    assert!(e.to_string().contains("ee-cert's receipt"), "{e}");
}

#[test]
fn a_forged_or_unknown_or_twice_readable_receipt_is_refused() {
    let r = receipt("ee-cert", 7);
    // Signed with au-dod's key but claiming ee-cert: no key of ee-cert has that id.
    let e = check(&r.sign(&key(2)), &r).expect_err("another's key");
    assert!(
        matches!(e, ReceiptError::Key(KeyLookupError::Unknown { .. })),
        "{e}"
    );
    let mut forged = r.sign(&key(1));
    let mut body = forged.body.to_vec();
    let last = body.len() - 1;
    body[last] ^= 1; // another time
    forged.body = body.into();
    let e = check(&forged, &r).expect_err("forged");
    assert!(matches!(e, ReceiptError::BadSignature { .. }), "{e}");
    // An unknown field appended reads the same but is not the signed encoding.
    let mut padded = r.sign(&key(1));
    padded.body = [&padded.body[..], &[0x3a, 0x00]].concat().into();
    assert_eq!(
        check(&padded, &r).expect_err("padded"),
        ReceiptError::NotCanonical
    );
    let mut short = r.sign(&key(1));
    short.signature = short.signature.slice(..10);
    assert!(matches!(check(&short, &r), Err(ReceiptError::Malformed(_))));
}

#[test]
fn the_worked_example_is_reproduced_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proto/testdata/receipt-v1.json"
    );
    let text = std::fs::read_to_string(path).expect("the vector");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let hex = |k: &str| hex::decode(v[k].as_str().expect(k)).expect("hex");
    let seed: [u8; 32] = hex("signing_key_seed_hex").try_into().expect("32 bytes");
    let f = &v["receipt_fields"];
    let text_of = |k: &str| f[k].as_str().expect(k).to_owned();
    let r = Receipt {
        receiver: pid(&text_of("receiver")),
        node: pid(&text_of("node")),
        origin: pid(&text_of("origin")),
        bulletin_id: BulletinId::parse_canonical(&text_of("bulletin_id")).expect("an id"),
        digest: Digest(
            hex::decode(text_of("digest_sha256_hex"))
                .expect("hex")
                .try_into()
                .expect("32 bytes"),
        ),
        received: Timestamp::from_unix_ms(f["received_unix_ms"].as_u64().expect("ms")),
    };
    let signed = r.sign(&SigningKey::from_bytes(&seed));
    assert_eq!(signed.body.to_vec(), hex("body_hex"));
    assert_eq!(signed.signature.to_vec(), hex("signature_hex"));
    assert_eq!(signed.key_id.to_vec(), hex("key_id_hex"));
    assert_eq!(signed.encode_to_vec(), hex("signed_receipt_hex"));
    assert_eq!(hex("receipt_domain_hex"), RECEIPT_DOMAIN);
    let mut keys = Keyring::new();
    let public: PublicKey = v["public_key"]
        .as_str()
        .expect("key")
        .parse()
        .expect("a key");
    keys.insert(r.receiver.clone(), public, Validity::default());
    let verified = VerifiedReceipt::verify(&signed, &keys).expect("verifies");
    assert_eq!(verified.receipt(), &r);
}

#[test]
fn a_batch_says_of_each_receipt_what_it_alone_would() {
    let good = receipt("ee-cert", 7).sign(&key(1));
    let other = receipt("au-dod", 8).sign(&key(2));
    let mut forged = receipt("ee-cert", 9).sign(&key(1));
    forged.signature = good.signature.clone();
    let unknown = receipt("ee-cert", 10).sign(&key(3));
    let batch = [good, forged, other, unknown];
    let all = VerifiedReceipt::verify_all(&batch, &keys());
    let alone: Vec<_> = batch
        .iter()
        .map(|s| VerifiedReceipt::verify(s, &keys()))
        .collect();
    assert_eq!(all, alone);
    assert!(all[0].is_ok() && all[2].is_ok());
    assert!(matches!(all[1], Err(ReceiptError::BadSignature { .. })));
    assert!(matches!(all[3], Err(ReceiptError::Key(_))));
}

/// ee-cert's receipts of the bulletins `ids`, received at one time.
fn batch_of(ids: std::ops::Range<u8>) -> Vec<Receipt> {
    ids.map(|id| receipt("ee-cert", id)).collect()
}

#[test]
fn a_batch_receipt_is_one_signature_and_each_bulletins_share_verifies_alone() {
    let receipts = batch_of(1..6);
    let signed = Receipt::sign_all(&receipts, &key(1));
    assert_eq!(signed.len(), 5);
    assert!(signed.iter().all(|s| s.proof.is_some()));
    assert!(signed.iter().all(|s| s.signature == signed[0].signature));
    for (s, r) in signed.iter().zip(&receipts) {
        let v = check(s, r).expect("its share verifies alone");
        assert_eq!(v.receipt(), r);
        let stated = stated(s).expect("it reads");
        assert_eq!(Receipt::from_proto(&stated).as_ref(), Ok(r));
    }
    let all = VerifiedReceipt::verify_all(&signed, &keys());
    assert!(all.iter().all(Result::is_ok));
    // One share is no receipt of another bulletin of the batch.
    let e = check(&signed[0], &receipts[1]).expect_err("another bulletin");
    assert!(matches!(e, ReceiptError::Mismatch { .. }), "{e}");
}

#[test]
fn a_batch_receipt_moved_to_another_leaf_or_root_does_not_verify() {
    let receipts = batch_of(1..6);
    let signed = Receipt::sign_all(&receipts, &key(1));
    let proof = |s: &proto::SignedReceipt| s.proof.clone().expect("a proof");
    // The second bulletin's item with the first one's proof.
    let mut moved = signed[0].clone();
    let mut p = proof(&moved);
    p.item = proof(&signed[1]).item;
    moved.proof = Some(p);
    let e = check(&moved, &receipts[1]).expect_err("moved");
    assert!(e.to_string().contains("not in the batch"), "{e}");
    // Another index for the same path.
    let mut shifted = signed[2].clone();
    let mut p = proof(&shifted);
    p.index = 3;
    shifted.proof = Some(p);
    assert!(check(&shifted, &receipts[2]).is_err());
    // A root of another tree, under the same signature.
    let other = Receipt::sign_all(&batch_of(7..12), &key(1));
    let mut grafted = other[0].clone();
    grafted.signature = signed[0].signature.clone();
    let e = check(&grafted, &receipt("ee-cert", 7)).expect_err("grafted");
    assert!(matches!(e, ReceiptError::BadSignature { .. }), "{e}");
    // A single receipt's body presented as a batch's: another domain.
    let mut relabelled = receipts[0].sign(&key(1));
    relabelled.proof = signed[0].proof.clone();
    assert!(check(&relabelled, &receipts[0]).is_err());
}

#[test]
fn receipts_that_are_not_one_statement_are_signed_each_alone() {
    let one = Receipt::sign_all(&batch_of(1..2), &key(1));
    assert_eq!(one.len(), 1);
    assert!(one[0].proof.is_none(), "a batch of one is a single receipt");
    let mut mixed = batch_of(1..4);
    mixed[1].received = Timestamp::from_unix_ms(NOW + 1);
    let signed = Receipt::sign_all(&mixed, &key(1));
    assert!(signed.iter().all(|s| s.proof.is_none()));
    for (s, r) in signed.iter().zip(&mixed) {
        check(s, r).expect("each alone verifies");
    }
}

#[test]
fn a_forged_share_of_a_batch_fails_alone_in_a_batch_check() {
    let receipts = batch_of(1..5);
    let mut signed = Receipt::sign_all(&receipts, &key(1));
    let mut forged = signed[3].signature.to_vec();
    forged[0] ^= 1;
    signed[3].signature = forged.into();
    let all = VerifiedReceipt::verify_all(&signed, &keys());
    let alone: Vec<_> = signed
        .iter()
        .map(|s| VerifiedReceipt::verify(s, &keys()))
        .collect();
    assert_eq!(all, alone);
    assert!(all[..3].iter().all(Result::is_ok));
    assert!(matches!(all[3], Err(ReceiptError::BadSignature { .. })));
}

#[test]
fn the_batch_example_is_reproduced_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proto/testdata/receipts-batch-v1.json"
    );
    let text = std::fs::read_to_string(path).expect("the vector");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let hex_of = |v: &serde_json::Value| hex::decode(v.as_str().expect("hex")).expect("hex");
    let seed: [u8; 32] = hex_of(&v["signing_key_seed_hex"])
        .try_into()
        .expect("32 bytes");
    let f = &v["batch_fields"];
    let text_of = |v: &serde_json::Value, k: &str| v[k].as_str().expect(k).to_owned();
    let shares = v["shares"].as_array().expect("shares");
    let receipts: Vec<Receipt> = shares
        .iter()
        .map(|s| &s["item"])
        .map(|item| Receipt {
            receiver: pid(&text_of(f, "receiver")),
            node: pid(&text_of(f, "node")),
            origin: pid(&text_of(item, "origin")),
            bulletin_id: BulletinId::parse_canonical(&text_of(item, "bulletin_id")).expect("an id"),
            digest: Digest(
                hex_of(&item["digest_sha256_hex"])
                    .try_into()
                    .expect("32 bytes"),
            ),
            received: Timestamp::from_unix_ms(f["received_unix_ms"].as_u64().expect("ms")),
        })
        .collect();
    let signed = Receipt::sign_all(&receipts, &SigningKey::from_bytes(&seed));
    assert_eq!(hex_of(&v["batch_domain_hex"]), BATCH_DOMAIN);
    assert_eq!(signed[0].body.to_vec(), hex_of(&v["body_hex"]));
    assert_eq!(signed[0].signature.to_vec(), hex_of(&v["signature_hex"]));
    let mut keys = Keyring::new();
    let public: PublicKey = text_of(&v, "public_key").parse().expect("a key");
    keys.insert(receipts[0].receiver.clone(), public, Validity::default());
    for ((s, share), r) in signed.iter().zip(shares).zip(&receipts) {
        assert_eq!(s.encode_to_vec(), hex_of(&share["signed_receipt_hex"]));
        let verified = VerifiedReceipt::verify(s, &keys).expect("verifies");
        assert_eq!(verified.receipt(), r);
    }
}
