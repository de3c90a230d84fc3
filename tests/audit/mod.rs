//! Japan's audit office checks what the jp-mod hub shared, with whom and when.
//!
//! Over QUIC, as the partner configured `role = "auditor"`, it queries the log, takes
//! signed checkpoints and proves records and the log's growth against them; liaisons
//! may not read the log, the auditor may not trade bulletins, and every question asked
//! is itself on the record. Offline, with the `renkei` binary, it exports a stopped
//! hub's log and verifies it, and every tampering is caught and located: a flipped byte
//! anywhere in any record, a deleted, swapped or truncated record, an edited or foreign
//! checkpoint, and, against a checkpoint it kept, a rewritten history (a fork) or a
//! rolled-back one.

use crate::common;

mod access;
mod history;
mod rotation;
mod verify;

use std::fs;
use std::path::Path;

use bytes::Bytes;
use common::federation::{receive, Federation, Plan, PATIENCE};
use common::tables::{auditor, liaison};
use common::{renkei, renkei_ok};
use ed25519_dalek::{SigningKey, VerifyingKey};
use prost::Message as _;
use renkei::audit::checkpoint::{self, CheckpointSigner, Verified};
use renkei::audit::export::{self, Export, VerifyError};
use renkei::audit::merkle::{self, MemoryTree, MerkleError, TreeHash};
use renkei::bulletin::{Kind, Tlp};
use renkei::client::{Client, ClientError};
use renkei::identity::PublicKey;
use renkei::proto::{
    self, export_item::Item, AuditEvent, ErrorCode, PublishStatus, WithholdReason,
};
use serde_json::Value;

const HUB: &str = "jp-mod";

/// The hub with two RED desks, a GREEN one and an auditor.
fn hub() -> Plan {
    Federation::around(HUB)
        .partner(liaison("us-dod", "red"))
        .partner(liaison("uk-mod", "red"))
        .partner(liaison("vn-mod", "green"))
        .partner(auditor("audit-office"))
}

fn origin() -> String {
    renkei::node::audit_origin(&HUB.parse().unwrap())
}

/// A working day at the hub: the US desk publishes a GREEN exercise notice, an AMBER
/// advisory and a RED note for the UK; uk-mod takes delivery of all three and vn-mod
/// (cleared for GREEN) of the exercise notice, each acknowledging what it got.
async fn working_day(fed: &Federation, day: &str) -> Vec<proto::PublishResult> {
    let us = fed.client("us-dod").await;
    let plan = [
        (Tlp::Green, Kind::Exercise, "exercise dates", &[][..]),
        (Tlp::Amber, Kind::Advisory, "phishing advisory", &[][..]),
        (Tlp::Red, Kind::Consultation, "staff talks", &["uk-mod"][..]),
    ];
    let mut results = Vec::new();
    for (tlp, kind, title, audience) in plan {
        let b = fed.bulletin(
            "us-dod",
            tlp,
            kind,
            &format!("{day}: {title}"),
            audience,
            &[],
        );
        let r = us.publish(b).await.unwrap();
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
        results.push(r);
    }
    assert!(results
        .iter()
        .all(|r| r.shared_with.contains(&"uk-mod".into())));
    assert_eq!(
        results[0].shared_with.len(),
        2,
        "exercise: uk-mod and vn-mod"
    );
    us.close().await;
    for (partner, count) in [("uk-mod", 3), ("vn-mod", 1)] {
        let c = fed.client(partner).await;
        receive(&c, count).await;
        c.close().await;
    }
    results
}

/// The records of a page, decoded.
fn records(page: &proto::AuditPage) -> Vec<proto::AuditRecord> {
    page.records
        .iter()
        .map(|b| proto::AuditRecord::decode(b.clone()).expect("a record decodes"))
        .collect()
}

fn query(partner: &str, event: Option<AuditEvent>) -> proto::AuditQuery {
    proto::AuditQuery {
        partner: partner.into(),
        event: event.map_or(0, |e| e as u32),
        limit: 1000,
        ..Default::default()
    }
}

fn bulletin_ids(records: &[proto::AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.bulletin_id.as_str()).collect()
}

fn decision<'a>(r: &'a proto::AuditRecord, partner: &str) -> &'a proto::Decision {
    r.decisions
        .iter()
        .find(|d| d.partner == partner)
        .unwrap_or_else(|| panic!("record {} has no decision for {partner}", r.seq))
}

fn hashes(wire: &[Bytes]) -> Vec<TreeHash> {
    wire.iter()
        .map(|h| TreeHash(h.as_ref().try_into().expect("32-byte hashes")))
        .collect()
}

fn key_of(bytes: &[u8]) -> VerifyingKey {
    VerifyingKey::from_bytes(bytes.try_into().expect("a 32-byte key")).unwrap()
}

/// Asks the hub for a fresh checkpoint and verifies it with the hub's key.
async fn signed_checkpoint(auditor: &Client, key: &VerifyingKey) -> Verified {
    let signed = auditor.checkpoint().await.unwrap();
    assert_eq!(
        &key_of(&signed.public_key),
        key,
        "signed with the hub's key"
    );
    checkpoint::verify(&signed.note, &origin(), key).expect("the checkpoint verifies")
}

fn assert_refused(err: &ClientError, code: &str, says: &str) {
    match err {
        ClientError::Refused { code: c, message } => {
            assert_eq!(c, code, "{message}");
            assert!(message.contains(says), "{message:?} should say {says:?}");
        }
        other => panic!("expected a {code} refusal, got: {other}"),
    }
}
