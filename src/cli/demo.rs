//! `renkei demo`: a local federation on embedded defaults, in a temporary directory.
//!
//! Today it walks the offline half of the story with the real library: a federation
//! PKI, a signed STIX bulletin, verification by a partner, and what happens to a
//! tampered copy or the wrong key. The broker issue adds live nodes.

use std::path::Path;

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use prost::Message as _;

use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::files;
use crate::identity::{self, Keyring, PartnerId, PublicKey, Validity};
use crate::pki;
use crate::proto;
use crate::timestamp::Timestamp;

const NODES: [&str; 4] = ["mod-jp", "mod-fr", "nato-ccdcoe", "regional-cert"];

const STIX: &str = r#"{"type":"bundle","id":"bundle--6f1d2c3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f","objects":[{"type":"indicator","spec_version":"2.1","id":"indicator--0b6f8a2c-1d3e-4f5a-9b7c-8d9e0f1a2b3c","created":"2026-04-01T09:00:00.000Z","modified":"2026-04-01T09:00:00.000Z","pattern":"[domain-name:value = 'exercise-schedule.example']","pattern_type":"stix","valid_from":"2026-04-01T09:00:00Z","object_marking_refs":["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"]}]}"#;

pub(super) fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path()
        }
    };
    let now = Timestamp::now();
    let nodes: Vec<PartnerId> = NODES.iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
    let certs = dir.join("certs");
    let report = pki::init(&certs, &nodes, true, now)?;
    println!(
        "1. federation PKI in {}: CA {}",
        certs.display(),
        &report.ca_fingerprint[..23]
    );
    for (id, _, public) in &report.nodes {
        println!("   {id:<14} signing key {public}");
    }

    let jp_key =
        identity::signing_key_from_pem(&files::read_text(&certs.join("mod-jp/signing.key"))?)?;
    let draft = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: "mod-jp".into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Amber.to_proto() as i32,
        kind: Kind::Indicator.to_proto() as i32,
        title: "Phishing domain imitating exercise scheduling".into(),
        summary: "Lure domain seen against logistics units.".into(),
        tags: vec!["phishing".into()],
        audience: vec!["group:nato".into()],
        content_type: bulletin::STIX_CONTENT_TYPE.into(),
        body: Bytes::from_static(STIX.as_bytes()),
        references: vec![],
    };
    let limits = Limits::default();
    let signed = bulletin::sign(&draft, &jp_key, &limits)?;
    let encoded = Bytes::from(signed.encode_to_vec());
    println!(
        "2. mod-jp signs TLP:AMBER indicator {} ({} bytes, digest {})",
        draft.id,
        encoded.len(),
        bulletin::Digest::of(&signed.bulletin)
    );

    // NATO's node knows mod-jp's public key from the out-of-band exchange.
    let mut nato_keyring = Keyring::new();
    nato_keyring.insert(
        nodes[0].clone(),
        PublicKey::of(&jp_key),
        Validity::default(),
    );
    let verified = UnverifiedBulletin::decode(encoded.clone(), &limits)?.verify(
        &nato_keyring,
        Timestamp::now(),
        &limits,
    )?;
    println!(
        "3. nato-ccdcoe verifies it: origin {} signed with {}",
        verified.header().origin,
        verified.key()
    );

    let mut tampered = encoded.to_vec();
    let i = tampered.len() / 2;
    tampered[i] ^= 0x20;
    let err = UnverifiedBulletin::decode(Bytes::from(tampered), &limits)
        .and_then(|u| u.verify(&nato_keyring, Timestamp::now(), &limits));
    ensure!(err.is_err(), "a tampered bulletin verified");
    println!(
        "4. a copy with byte {i} changed is refused: {}",
        err.err().map(|e| e.to_string()).unwrap_or_default()
    );

    let fr_key =
        identity::signing_key_from_pem(&files::read_text(&certs.join("mod-fr/signing.key"))?)?;
    let forged = bulletin::sign(&draft, &fr_key, &limits)?;
    let err = UnverifiedBulletin::from_signed(forged, &limits)
        .and_then(|u| u.verify(&nato_keyring, Timestamp::now(), &limits));
    ensure!(err.is_err(), "a forged bulletin verified");
    println!(
        "5. mod-fr signing in mod-jp's name is refused: {}",
        err.err().map(|e| e.to_string()).unwrap_or_default()
    );

    nato_keyring.revoke(PublicKey::of(&jp_key));
    let err = UnverifiedBulletin::decode(encoded, &limits)
        .and_then(|u| u.verify(&nato_keyring, Timestamp::now(), &limits));
    ensure!(err.is_err(), "a bulletin signed by a revoked key verified");
    println!(
        "6. after mod-jp's key is revoked, even the original is refused: {}",
        err.err().map(|e| e.to_string()).unwrap_or_default()
    );
    Ok(())
}
