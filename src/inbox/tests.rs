use super::*;
use crate::identity::{PartnerId, PublicKey, Validity};
use bytes::Bytes;
use ed25519_dalek::SigningKey;

const CREATED: u64 = 1_790_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(CREATED + 1_000)
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn signed(id: &str, title: &str, body: &'static [u8]) -> proto::SignedBulletin {
    let b = proto::Bulletin {
        id: id.into(),
        origin: "us-dod".into(),
        created_unix_ms: CREATED,
        tlp: proto::Tlp::Green as i32,
        kind: proto::Kind::Advisory as i32,
        title: title.into(),
        content_type: "application/stix+json;version=2.1".into(),
        body: Bytes::from_static(body),
        ..Default::default()
    };
    bulletin::sign(&b, &key(), &Limits::default()).unwrap()
}

fn ring() -> Keyring {
    let mut ring = Keyring::new();
    let origin: PartnerId = "us-dod".parse().unwrap();
    ring.insert(origin, PublicKey::of(&key()), Validity::default());
    ring
}

const ID: &str = "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b";

#[test]
fn a_saved_bulletin_is_byte_identical_and_handled_once_across_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let body: &'static [u8] = br#"{"type":"bundle","id":"bundle--1","objects":[]}"#;
    let s = signed(ID, "VPN exploitation", body);
    let mut inbox = Inbox::open(tmp.path()).unwrap();
    let Arrival::New(v) = inbox.classify(s.clone(), &ring(), now(), &Limits::default()) else {
        panic!("a first delivery is new");
    };
    let at = inbox.save(6, &v, now()).unwrap().unwrap();
    assert_eq!(at, tmp.path().join("us-dod").join(ID));
    assert_eq!(fs::read(at.join("body.json")).unwrap(), body);
    assert_eq!(
        fs::read(at.join("bulletin.bin")).unwrap(),
        s.encode_to_vec()
    );
    let side: Value = serde_json::from_slice(&fs::read(at.join("bulletin.json")).unwrap()).unwrap();
    assert_eq!(side["seq"], 6);
    assert_eq!(side["verified"], true);
    assert_eq!(side["title"], "VPN exploitation");
    assert_eq!(side["signed_by"], PublicKey::of(&key()).to_string());
    inbox.handled(6, &v).unwrap();

    // A new run reads the journal: the same bulletin, delivered again, is a duplicate.
    let inbox = Inbox::open(tmp.path()).unwrap();
    assert!(matches!(
        inbox.classify(s, &ring(), now(), &Limits::default()),
        Arrival::Duplicate(_)
    ));
    // Another bulletin under the same origin and id is not taken for the first.
    let other = signed(ID, "something else", b"");
    assert!(matches!(
        inbox.classify(other, &ring(), now(), &Limits::default()),
        Arrival::Conflict(..)
    ));
}

#[test]
fn a_bulletin_that_does_not_verify_is_quarantined_until_it_does() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new("desk.toml");
    let mut inbox = Inbox::open(tmp.path()).unwrap();
    let s = signed(ID, "from an origin the desk does not know", b"x");
    let Arrival::Unverified(e) =
        inbox.classify(s.clone(), &Keyring::new(), now(), &Limits::default())
    else {
        panic!("no key, no verification");
    };
    let reason = QuarantineReason::new(&e, config);
    assert!(reason.advice.contains("[[partner]]"), "{}", reason.advice);
    assert!(reason.advice.contains("desk.toml"), "{}", reason.advice);
    let held = inbox.quarantine(9, &s, &reason, now()).unwrap().unwrap();
    assert_eq!(inbox.quarantined().unwrap(), vec![held.clone()]);
    let why: Value = serde_json::from_slice(&fs::read(held.join("reason.json")).unwrap()).unwrap();
    assert_eq!(why["seq"], 9);
    assert_eq!(why["claims"]["origin"], "us-dod");
    assert!(why["error"].as_str().unwrap().contains("no signing key"));

    // The config is fixed; the same delivery verifies, and its quarantine entry goes.
    let Arrival::New(v) = inbox.classify(s, &ring(), now(), &Limits::default()) else {
        panic!("verifies with the key");
    };
    inbox.handled(9, &v).unwrap();
    assert!(inbox.quarantined().unwrap().is_empty());
}

#[test]
fn a_journal_line_cut_short_by_a_crash_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(JOURNAL), format!("us-dod {ID} ab")).unwrap();
    let inbox = Inbox::open(tmp.path()).unwrap();
    let s = signed(ID, "t", b"");
    assert!(matches!(
        inbox.classify(s, &ring(), now(), &Limits::default()),
        Arrival::New(_)
    ));
}

#[test]
fn without_a_directory_a_run_still_handles_each_bulletin_once() {
    let mut inbox = Inbox::in_memory();
    let s = signed(ID, "t", b"");
    let Arrival::New(v) = inbox.classify(s.clone(), &ring(), now(), &Limits::default()) else {
        panic!("new");
    };
    assert_eq!(inbox.save(1, &v, now()).unwrap(), None);
    inbox.handled(1, &v).unwrap();
    assert!(matches!(
        inbox.classify(s, &ring(), now(), &Limits::default()),
        Arrival::Duplicate(_)
    ));
}
