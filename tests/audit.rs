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

mod common;

use std::fs;
use std::path::Path;

use bytes::Bytes;
use common::federation::{receive, Federation, PATIENCE};
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

const PARTNERS: &str = r#"
[[partner]]
id = "us-dod"
role = "liaison"
clearance = "red"
keys = [{ public = "KEY(us-dod)" }]

[[partner]]
id = "uk-mod"
role = "liaison"
clearance = "red"
keys = [{ public = "KEY(uk-mod)" }]

[[partner]]
id = "vn-mod"
role = "liaison"
clearance = "green"
keys = [{ public = "KEY(vn-mod)" }]

[[partner]]
id = "audit-office"
role = "auditor"
"#;

const MEMBERS: &[&str] = &["us-dod", "uk-mod", "vn-mod", "audit-office"];
const HUB: &str = "jp-mod";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_reads_the_log_and_proves_it_against_signed_checkpoints() {
    let mut fed = Federation::start(HUB, MEMBERS, PARTNERS).await;
    let monday = working_day(&fed, "Monday").await;
    let (exercise, advisory) = (&monday[0], &monday[1]);
    let auditor = fed.client("audit-office").await;
    let hub_key = fed.key(HUB).verifying_key();

    // What was vn-mod given? Only the GREEN exercise notice, and the record says so:
    // who published it, its digest, and vn-mod's decision.
    let vn_page = auditor
        .audit_query(query("vn-mod", Some(AuditEvent::BulletinAccepted)))
        .await
        .unwrap();
    let vn = records(&vn_page);
    assert_eq!(bulletin_ids(&vn), [exercise.bulletin_id.as_str()]);
    assert_eq!(vn[0].partner, "us-dod");
    assert_eq!(vn[0].digest, exercise.digest);
    assert!(decision(&vn[0], "vn-mod").shared);

    // uk-mod was given all three; the advisory's record says vn-mod was not, and why.
    let uk = records(
        &auditor
            .audit_query(query("uk-mod", Some(AuditEvent::BulletinAccepted)))
            .await
            .unwrap(),
    );
    let all: Vec<&str> = monday.iter().map(|r| r.bulletin_id.as_str()).collect();
    assert_eq!(bulletin_ids(&uk), all);
    assert!(uk.iter().all(|r| decision(r, "uk-mod").shared));
    let withheld = decision(&uk[1], "vn-mod");
    assert_eq!(uk[1].bulletin_id, advisory.bulletin_id);
    assert!(!withheld.shared);
    assert_eq!(withheld.reason, WithholdReason::AboveClearance as i32);
    assert!(withheld.detail.contains("amber"), "{}", withheld.detail);

    // Without the event filter, vn-mod's own connection, delivery and ack are there too,
    // and nothing that does not concern vn-mod.
    let everything_vn = records(&auditor.audit_query(query("vn-mod", None)).await.unwrap());
    for event in [
        AuditEvent::ConnectionAccepted,
        AuditEvent::BulletinAccepted,
        AuditEvent::Delivered,
        AuditEvent::Acked,
    ] {
        assert!(
            everything_vn.iter().any(|r| r.event == event as i32),
            "no {event:?} for vn-mod"
        );
    }
    for r in &everything_vn {
        let concerns = r.partner == "vn-mod"
            || r.decisions
                .iter()
                .any(|d| d.partner == "vn-mod" && d.shared);
        assert!(concerns, "record {} does not concern vn-mod: {r:?}", r.seq);
    }

    // The hub signs a checkpoint of its log with its own key.
    let first = signed_checkpoint(&auditor, &hub_key).await;
    assert!(first.size > vn[0].seq);

    // The exercise notice's record is in the tree: proved against the latest checkpoint
    // (signed afresh, as the request itself was recorded) ...
    let seq = vn[0].seq;
    let proof = auditor.inclusion_proof(seq, 0).await.unwrap();
    assert_eq!(proof.record, vn_page.records[0], "the record as queried");
    let latest = checkpoint::verify(&proof.checkpoint, &origin(), &hub_key).unwrap();
    assert_eq!(latest.size, proof.tree_size);
    assert!(latest.size > first.size, "the request grew the log");
    let path = hashes(&proof.hashes);
    let leaf = merkle::leaf_hash(&proof.record);
    merkle::check_inclusion(&path, latest.size, latest.root, seq, leaf).unwrap();
    // ... and against the first checkpoint, when asked for its size.
    let old = auditor.inclusion_proof(seq, first.size).await.unwrap();
    assert!(
        old.checkpoint.is_empty(),
        "the auditor holds that checkpoint"
    );
    let old_path = hashes(&old.hashes);
    merkle::check_inclusion(&old_path, first.size, first.root, seq, leaf).unwrap();
    // A record changed by one bit, or claimed at another place, does not verify.
    let mut altered = proof.record.to_vec();
    altered[0] ^= 0x01;
    let altered = merkle::leaf_hash(&altered);
    assert_eq!(
        merkle::check_inclusion(&path, latest.size, latest.root, seq, altered),
        Err(MerkleError::ProofFailed)
    );
    assert!(merkle::check_inclusion(&path, latest.size, latest.root, seq + 1, leaf).is_err());

    // Tuesday's work grows the log; the second checkpoint extends the first.
    working_day(&fed, "Tuesday").await;
    let second = signed_checkpoint(&auditor, &hub_key).await;
    assert!(second.size > latest.size);
    let p = auditor
        .consistency_proof(first.size, second.size)
        .await
        .unwrap();
    let path = hashes(&p.hashes);
    merkle::check_consistency(&path, second.size, second.root, first.size, first.root).unwrap();
    // A history that differs from what the first checkpoint signed does not fit.
    let other = TreeHash([0x5a; 32]);
    assert_eq!(
        merkle::check_consistency(&path, second.size, second.root, first.size, other),
        Err(MerkleError::ProofFailed)
    );
    // Up to the latest (0): the hub signs again and proves from the first checkpoint.
    let p = auditor.consistency_proof(first.size, 0).await.unwrap();
    assert_eq!(p.old_size, first.size);
    assert_eq!(
        p.old_root.as_ref(),
        first.root.0,
        "the root the auditor holds"
    );
    assert!(p.new_size > second.size);
    let new_root = TreeHash(p.new_root.as_ref().try_into().unwrap());
    merkle::check_consistency(
        &hashes(&p.hashes),
        p.new_size,
        new_root,
        first.size,
        first.root,
    )
    .unwrap();

    // The metrics report counts what each partner was given.
    let report = auditor.metrics(Default::default()).await.unwrap();
    assert_eq!(report.node_id, HUB);
    let figure = |partner: &str, name: &str| {
        report
            .partners
            .iter()
            .find(|p| p.partner == partner)
            .and_then(|p| p.figures.iter().find(|f| f.name == name))
            .map_or(0, |f| f.value)
    };
    assert_eq!(figure("us-dod", "received.exercise"), 2);
    assert_eq!(figure("uk-mod", "shared.consultation"), 2);
    assert_eq!(figure("vn-mod", "shared.exercise"), 2);
    assert_eq!(figure("vn-mod", "shared.advisory"), 0);
    assert!(figure("vn-mod", "withheld.above_clearance") >= 2);
    auditor.close().await;

    // Stopped, the hub's database holds a checkpoint of exactly the size and root the
    // last consistency proof ended at: the root it gave was one it signed.
    fed.halt().await;
    let store = renkei::store::Store::open(&fed.data_dir(), 16 << 20).unwrap();
    let signed: Vec<(u64, String)> = store
        .audit()
        .checkpoints()
        .collect::<Result<_, _>>()
        .unwrap();
    let (_, note) = signed
        .iter()
        .find(|(size, _)| *size == p.new_size)
        .expect("a checkpoint of the proof's new size");
    assert_eq!(
        checkpoint::verify(note, &origin(), &hub_key).unwrap().root,
        new_root
    );
    drop(store);
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_auditor_reads_the_log_and_every_question_is_on_the_record() {
    let fed = Federation::start(HUB, MEMBERS, PARTNERS).await;
    working_day(&fed, "Monday").await;
    let hub_key = fed.key(HUB).verifying_key();

    // The US liaison asks for the log three ways and is refused each time.
    let us = fed.client("us-dod").await;
    let only = "only auditors may read the audit log";
    let err = us.audit_query(query("", None)).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", only);
    let err = us.checkpoint().await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", only);
    let err = us.inclusion_proof(0, 0).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", only);
    us.close().await;

    // The auditor may neither publish nor receive bulletins.
    let auditor = fed.client("audit-office").await;
    let neither = "auditors may neither publish nor receive";
    let b = fed.bulletin("us-dod", Tlp::Green, Kind::Report, "relayed", &[], &[]);
    let err = auditor.publish(b).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", neither);
    let mut sub = auditor.subscribe(0).await.unwrap();
    let err = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("an answer in time")
        .unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", neither);

    // The auditor asks one question of each kind, and one that cannot be answered.
    let mut asked = Vec::new();
    auditor.audit_query(query("vn-mod", None)).await.unwrap();
    asked.push("audit query partner=vn-mod".to_string());
    auditor.metrics(Default::default()).await.unwrap();
    asked.push("metrics".into());
    let size = signed_checkpoint(&auditor, &hub_key).await.size;
    asked.push("latest checkpoint".into());
    auditor.inclusion_proof(1, size).await.unwrap();
    asked.push(format!("inclusion proof of record 1 in tree size {size}"));
    auditor.consistency_proof(1, size).await.unwrap();
    asked.push(format!("consistency proof from tree size 1 to {size}"));
    let beyond = size + 1000;
    let err = auditor.inclusion_proof(beyond, 0).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_INVALID_REQUEST", "is not in a tree");
    asked.push(format!("inclusion proof of record {beyond} in tree size 0"));
    // A checkpoint covers every event the hub had heard of when asked, this request's
    // own record included: everything above is on the record below `barrier`.
    let barrier = signed_checkpoint(&auditor, &hub_key).await.size;
    asked.push("latest checkpoint".into());

    let questions: Vec<proto::AuditRecord> = records(
        &auditor
            .audit_query(query("", Some(AuditEvent::AuditorQuery)))
            .await
            .unwrap(),
    )
    .into_iter()
    .filter(|r| r.seq < barrier)
    .collect();
    let logged: Vec<&str> = questions.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(questions.len(), asked.len(), "{logged:#?}");
    for (r, what) in questions.iter().zip(&asked) {
        assert_eq!(r.partner, "audit-office");
        assert!(
            r.reason.starts_with(what.as_str()),
            "{:?} for {what:?}",
            r.reason
        );
    }

    // The refused attempts are on the record too, with who tried and why it was refused.
    let refusals = |partner: &'static str| {
        let auditor = &auditor;
        async move {
            let page = auditor
                .audit_query(query(partner, Some(AuditEvent::BulletinRejected)))
                .await
                .unwrap();
            records(&page)
                .into_iter()
                .filter(|r| r.seq < barrier)
                .collect::<Vec<_>>()
        }
    };
    let us_tried = refusals("us-dod").await;
    assert_eq!(us_tried.len(), 3, "{us_tried:#?}");
    for r in &us_tried {
        assert_eq!(r.partner, "us-dod");
        assert_eq!(r.error, ErrorCode::NotPermitted as i32);
        assert!(r.reason.contains(only), "{}", r.reason);
    }
    let auditor_tried = refusals("audit-office").await;
    assert_eq!(auditor_tried.len(), 2, "{auditor_tried:#?}");
    for r in &auditor_tried {
        assert_eq!(r.error, ErrorCode::NotPermitted as i32);
        assert!(r.reason.contains(neither), "{}", r.reason);
    }
    auditor.close().await;
    fed.stop().await;
}

// ---- offline: export, verify, and tampering ----

/// A hub that worked one day and stopped cleanly (signing a last checkpoint), with its
/// log exported by `renkei audit export` to `log.export` in the federation's directory.
async fn exported_day() -> (Federation, Vec<proto::PublishResult>) {
    let mut fed = Federation::start(HUB, MEMBERS, PARTNERS).await;
    let monday = working_day(&fed, "Monday").await;
    fed.halt().await;
    let dir = fed.dir.path();
    let out = renkei_ok(
        dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "log.export",
        ],
    );
    let summary = json(&out.stdout);
    assert_eq!(summary["file"], "log.export");
    assert!(summary["checkpoints"].as_u64().unwrap() >= 1);
    (fed, monday)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn read_export(path: &Path) -> Export {
    export::parse(Bytes::from(fs::read(path).unwrap())).expect("the export parses")
}

/// An export with these records and checkpoints; the header announces `announced`.
fn rebuilt(base: &Export, records: &[Bytes], checkpoints: &[String], announced: usize) -> Export {
    let mut header = base.header.clone();
    header.records = announced as u64;
    Export {
        header,
        records: records.to_vec(),
        checkpoints: checkpoints.to_vec(),
    }
}

/// The same change, with the header telling the truth about the number of records.
fn edited(base: &Export, records: &[Bytes], checkpoints: &[String]) -> Export {
    rebuilt(base, records, checkpoints, records.len())
}

/// The file form of an export.
fn encode(e: &Export) -> Vec<u8> {
    let mut out = Vec::new();
    export::write_item(&mut out, Item::Header(e.header.clone()));
    for r in &e.records {
        export::write_item(&mut out, Item::Record(r.clone()));
    }
    for c in &e.checkpoints {
        export::write_item(&mut out, Item::Checkpoint(c.clone()));
    }
    out
}

/// What the hub's key holder could make: these records, one checkpoint over all of them
/// signed with the hub's real key.
fn resigned(base: &Export, records: &[Bytes], key: &SigningKey) -> Export {
    let mut tree = MemoryTree::new();
    for r in records {
        tree.push(r).unwrap();
    }
    let size = tree.size();
    let signer = CheckpointSigner::new(&base.header.origin, key.clone()).unwrap();
    let note = signer.sign(size, tree.root(size).unwrap()).unwrap();
    edited(base, records, &[note])
}

fn failure(e: &Export, key: &VerifyingKey) -> VerifyError {
    match export::verify(e, key, None) {
        Ok(s) => panic!("a tampered export verified: {s:?}"),
        Err(err) => err,
    }
}

/// The sizes of an export's checkpoints, in order.
fn checkpoint_sizes(e: &Export, key: &VerifyingKey) -> Vec<u64> {
    e.checkpoints
        .iter()
        .map(|c| checkpoint::verify(c, &e.header.origin, key).unwrap().size)
        .collect()
}

/// Does the error name record `i` (its position or seq) or a checkpoint covering it?
fn locates(err: &VerifyError, i: u64) -> bool {
    let text = err.to_string();
    match *err {
        VerifyError::Undecodable { position, .. } => {
            position == i && text.starts_with(&format!("record at position {i} "))
        }
        VerifyError::OutOfSequence { position, .. } => {
            position == i && text.starts_with(&format!("record at position {i} says"))
        }
        // A changed time shows as this record older than the one before, or the next
        // one older than this.
        VerifyError::TimeReversed { seq } => {
            (seq == i || seq == i + 1) && text.starts_with(&format!("record {seq} is older"))
        }
        VerifyError::RootMismatch {
            index, size, from, ..
        } => {
            (from..size).contains(&i)
                && text.starts_with(&format!("checkpoint {index} (size {size}) does not match"))
                && text.contains(&format!("one of records {from}..{size}"))
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_hubs_log_is_exported_queried_proved_and_verified_with_the_cli() {
    let (fed, monday) = exported_day().await;
    let dir = fed.dir.path();

    // The export verifies on its own, every record under the checkpoint signed at stop.
    let v = json(&renkei_ok(dir, &["audit", "verify", "log.export"]).stdout);
    assert_eq!(v["verified"], true);
    assert_eq!(v["node_id"], HUB);
    assert_eq!(v["origin"], origin());
    let n = v["records"].as_u64().unwrap();
    assert!(n >= 10, "a day's worth of records: {v}");
    assert_eq!(v["covered_by_checkpoints"], n);
    assert_eq!(v["covered_by_checkpoints"], v["records"]);
    assert_eq!(read_export(&dir.join("log.export")).records.len() as u64, n);

    // Every record, as the database lists it: seqs 0..n, in order.
    let all = renkei_ok(
        dir,
        &[
            "audit",
            "query",
            "--data-dir",
            "data",
            "--limit",
            "1000",
            "--format",
            "json",
        ],
    );
    let seqs: Vec<u64> = all
        .stdout
        .lines()
        .map(|l| json(l)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());

    // Pinned to the hub's key it verifies; pinned to the US key it is refused.
    let hub_pub = PublicKey::of(fed.key(HUB)).to_string();
    let pinned = renkei_ok(dir, &["audit", "verify", "log.export", "--key", &hub_pub]);
    assert_eq!(json(&pinned.stdout)["verified"], true);
    let us_pub = PublicKey::of(fed.key("us-dod")).to_string();
    let refused = renkei(dir, &["audit", "verify", "log.export", "--key", &us_pub]);
    assert!(!refused.ok, "verified with another key: {}", refused.stdout);
    assert!(
        refused.stderr.contains("signed by another key than --key"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty());

    // vn-mod's records: its connection, delivery and ack, and the exercise notice shared
    // with it; not the advisory it was not cleared for.
    let vn = renkei_ok(
        dir,
        &[
            "audit",
            "query",
            "--data-dir",
            "data",
            "--partner",
            "vn-mod",
            "--format",
            "json",
        ],
    );
    let lines: Vec<Value> = vn.stdout.lines().map(json).collect();
    for l in &lines {
        let shared_with_vn = l["decisions"].as_array().is_some_and(|ds| {
            ds.iter()
                .any(|d| d["partner"] == "vn-mod" && d["shared"] == true)
        });
        assert!(l["partner"] == "vn-mod" || shared_with_vn, "{l}");
        assert_ne!(l["bulletin_id"], monday[1].bulletin_id.as_str(), "{l}");
    }
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for e in [
        "connection_accepted",
        "bulletin_accepted",
        "delivered",
        "acked",
    ] {
        assert!(events.contains(&e), "no {e} in {events:?}");
    }
    let accepted: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "bulletin_accepted")
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["bulletin_id"], monday[0].bulletin_id.as_str());
    assert_eq!(accepted[0]["tlp"], "green");

    // Record 1 is proved against the latest checkpoint, and the proof is checked.
    let proof =
        json(&renkei_ok(dir, &["audit", "prove", "--data-dir", "data", "--seq", "1"]).stdout);
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["seq"], 1);
    assert_eq!(proof["tree_size"], n);
    assert_eq!(proof["record"]["seq"], 1);
    let beyond = renkei(
        dir,
        &[
            "audit",
            "prove",
            "--data-dir",
            "data",
            "--seq",
            &n.to_string(),
        ],
    );
    assert!(!beyond.ok);
    assert!(beyond.stderr.contains("not covered"), "{}", beyond.stderr);

    // The metrics report: who received and was given what.
    let m = json(&renkei_ok(dir, &["metrics", "--data-dir", "data", "--format", "json"]).stdout);
    assert_eq!(m["node_id"], HUB);
    let partners = m["partners"].as_array().expect("a partners array");
    let figure = |partner: &str, name: &str| {
        partners
            .iter()
            .find(|p| p["partner"] == partner)
            .and_then(|p| p["figures"].as_array())
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .map_or(0, |f| f["value"].as_u64().unwrap())
    };
    assert_eq!(figure("us-dod", "received.advisory"), 1);
    assert_eq!(figure("uk-mod", "shared.consultation"), 1);
    assert_eq!(figure("vn-mod", "shared.exercise"), 1);
    assert_eq!(figure("vn-mod", "acked"), 1);
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_and_every_edit_of_an_export_is_caught_and_located() {
    let (fed, _) = exported_day().await;
    let genuine = read_export(&fed.dir.path().join("log.export"));
    let key = export::header_key(&genuine.header).unwrap();
    assert_eq!(key, fed.key(HUB).verifying_key());
    let summary = export::verify(&genuine, &key, None).expect("the genuine export verifies");
    let n = genuine.records.len();
    assert_eq!(summary.covered, n as u64, "the stop checkpoint covers all");
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let last = checkpoints.len() - 1;

    // Every bit 0 of every byte of every record, flipped one at a time.
    let mut flips = 0;
    for (i, record) in records.iter().enumerate() {
        for j in 0..record.len() {
            let mut bytes = record.to_vec();
            bytes[j] ^= 0x01;
            let mut altered = records.clone();
            altered[i] = Bytes::from(bytes);
            let err = failure(&edited(&genuine, &altered, checkpoints), &key);
            assert!(
                locates(&err, i as u64),
                "byte {j} of record {i} flipped: {err}"
            );
            flips += 1;
        }
    }
    assert!(flips >= 500, "only {flips} bytes in {n} records");

    // A record deleted.
    let mut fewer = records.clone();
    fewer.remove(3);
    let err = failure(&edited(&genuine, &fewer, checkpoints), &key);
    assert_eq!(
        err.to_string(),
        "record at position 3 says it is record 4: a record is missing, added or out of order there"
    );
    // The last record deleted, the header adjusted: the checkpoint covers it.
    let err = failure(&edited(&genuine, &records[..n - 1], checkpoints), &key);
    assert!(matches!(err, VerifyError::Truncated { .. }), "{err}");

    // Two records swapped.
    let mut swapped = records.clone();
    swapped.swap(2, 5);
    let err = failure(&edited(&genuine, &swapped, checkpoints), &key);
    assert!(
        err.to_string()
            .starts_with("record at position 2 says it is record 5"),
        "{err}"
    );

    // The last records cut off, the checkpoints kept: if the header still announces them,
    // the count says so; if it was adjusted, the first checkpoint that covers them does.
    let kept = n - 3;
    let err = failure(&rebuilt(&genuine, &records[..kept], checkpoints, n), &key);
    assert_eq!(
        err.to_string(),
        format!("the header announces {n} records but the file holds {kept}: the log was truncated or extended")
    );
    let err = failure(&edited(&genuine, &records[..kept], checkpoints), &key);
    let index = checkpoint_sizes(&genuine, &key)
        .iter()
        .position(|&s| s > kept as u64)
        .unwrap();
    let covers = checkpoint_sizes(&genuine, &key)[index];
    assert_eq!(
        err.to_string(),
        format!("checkpoint {index} covers {covers} records but the log holds only {kept}: records after {kept} were removed")
    );

    // A checkpoint's text edited: it claims one record fewer.
    let mut notes = checkpoints.clone();
    let size = checkpoint_sizes(&genuine, &key)[last];
    notes[last] = notes[last].replacen(&format!("\n{size}\n"), &format!("\n{}\n", size - 1), 1);
    assert_ne!(notes[last], checkpoints[last]);
    let err = failure(&edited(&genuine, records, &notes), &key);
    assert!(
        err.to_string().starts_with(&format!(
            "checkpoint {last} is not valid: the checkpoint is not signed by {}'s key",
            origin()
        )),
        "{err}"
    );

    // A checkpoint of the right size and root, signed by another key.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let mut tree = MemoryTree::new();
    for r in records {
        tree.push(r).unwrap();
    }
    let foreign = CheckpointSigner::new(&origin(), stranger.clone())
        .unwrap()
        .sign(n as u64, tree.root(n as u64).unwrap())
        .unwrap();
    let mut notes = checkpoints.clone();
    notes[last] = foreign.clone();
    let err = failure(&edited(&genuine, records, &notes), &key);
    assert!(
        err.to_string().starts_with(&format!(
            "checkpoint {last} is not valid: the checkpoint is not signed by"
        )),
        "{err}"
    );
    // Added after the genuine ones, it is named by its own index.
    let mut notes = checkpoints.clone();
    notes.push(foreign);
    let err = failure(&edited(&genuine, records, &notes), &key);
    assert!(
        err.to_string()
            .starts_with(&format!("checkpoint {} is not valid", last + 1)),
        "{err}"
    );
    // And the genuine export does not verify with the stranger's key.
    let err = export::verify(&genuine, &stranger.verifying_key(), None).unwrap_err();
    assert!(
        err.to_string().starts_with("checkpoint 0 is not valid"),
        "{err}"
    );
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_tampered_export_and_says_where() {
    let (fed, monday) = exported_day().await;
    let dir = fed.dir.path();
    let genuine = read_export(&dir.join("log.export"));
    let key = export::header_key(&genuine.header).unwrap();
    let records = &genuine.records;
    let n = records.len();

    // Each file fails `renkei audit verify` with the library's verdict on one line.
    let refuses = |name: &str, e: &Export, says: &str| {
        fs::write(dir.join(name), encode(e)).unwrap();
        let run = renkei(dir, &["audit", "verify", name]);
        assert!(!run.ok, "{name} verified: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        let verdict = failure(e, &key).to_string();
        assert!(run.stderr.contains(&verdict), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
    };

    // Someone alters one byte of the digest of Monday's exercise notice in its record.
    let at = records
        .iter()
        .position(|r| {
            let r = proto::AuditRecord::decode(r.clone()).unwrap();
            r.event == AuditEvent::BulletinAccepted as i32 && r.bulletin_id == monday[0].bulletin_id
        })
        .unwrap();
    let digest = &monday[0].digest;
    let offset = records[at]
        .windows(digest.len())
        .position(|w| w == digest.as_ref())
        .expect("the record holds the digest");
    let mut bytes = records[at].to_vec();
    bytes[offset] ^= 0x01;
    let mut flipped = records.clone();
    flipped[at] = Bytes::from(bytes);
    refuses(
        "flipped.export",
        &edited(&genuine, &flipped, &genuine.checkpoints),
        "does not match the records",
    );

    // A record deleted.
    let mut fewer = records.clone();
    fewer.remove(4);
    refuses(
        "deleted.export",
        &edited(&genuine, &fewer, &genuine.checkpoints),
        "record at position 4 says it is record 5",
    );

    // The last two records cut off, the header adjusted.
    refuses(
        "truncated.export",
        &edited(&genuine, &records[..n - 2], &genuine.checkpoints),
        &format!("records but the log holds only {}", n - 2),
    );

    // The file itself cut short, in the middle of its last item.
    let whole = fs::read(dir.join("log.export")).unwrap();
    fs::write(dir.join("cut.export"), &whole[..whole.len() - 10]).unwrap();
    let run = renkei(dir, &["audit", "verify", "cut.export"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("not a renkei audit export") && run.stderr.contains("cut short"),
        "{}",
        run.stderr
    );
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_or_rolled_back_log_is_caught_against_a_kept_checkpoint() {
    let mut fed = Federation::start(HUB, MEMBERS, PARTNERS).await;
    let monday = working_day(&fed, "Monday").await;
    fed.halt().await;
    let dir = fed.dir.path().to_path_buf();
    let hub_key = fed.key(HUB).clone();

    // The audit office keeps Monday evening's checkpoint.
    let note = renkei_ok(&dir, &["audit", "checkpoint", "--data-dir", "data"]).stdout;
    fs::write(dir.join("monday.note"), &note).unwrap();
    let kept = checkpoint::verify(&note, &origin(), &hub_key.verifying_key()).unwrap();

    // On Tuesday the hub works on; its export extends what the office kept.
    fed.resume().await;
    working_day(&fed, "Tuesday").await;
    fed.halt().await;
    renkei_ok(
        &dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "tuesday.export",
        ],
    );
    let trusted = ["--trusted-checkpoint", "monday.note"];
    let v = json(
        &renkei_ok(
            &dir,
            &[&["audit", "verify", "tuesday.export"][..], &trusted].concat(),
        )
        .stdout,
    );
    assert_eq!(v["verified"], true);
    assert_eq!(v["consistent_with_trusted_checkpoint"], kept.size);
    assert!(v["records"].as_u64().unwrap() > kept.size);
    let genuine = read_export(&dir.join("tuesday.export"));

    // Whoever holds the hub's key rewrites Monday: the exercise notice was never shared
    // with vn-mod. Re-signed, the rewritten log verifies on its own ...
    let at = genuine
        .records
        .iter()
        .position(|r| {
            let r = proto::AuditRecord::decode(r.clone()).unwrap();
            r.event == AuditEvent::BulletinAccepted as i32 && r.bulletin_id == monday[0].bulletin_id
        })
        .unwrap();
    assert!((at as u64) < kept.size);
    let mut record = proto::AuditRecord::decode(genuine.records[at].clone()).unwrap();
    let vn = record
        .decisions
        .iter_mut()
        .find(|d| d.partner == "vn-mod")
        .unwrap();
    assert!(vn.shared);
    vn.shared = false;
    vn.reason = WithholdReason::AboveClearance as i32;
    vn.detail = "green is above the partner's clearance".into();
    let mut rewritten = genuine.records.clone();
    rewritten[at] = Bytes::from(record.encode_to_vec());

    // ... whether it stops where the kept checkpoint did or goes on past it; against
    // that checkpoint, each is a fork.
    for (name, size) in [
        ("same-size.export", kept.size as usize),
        ("longer.export", rewritten.len()),
    ] {
        let forged = resigned(&genuine, &rewritten[..size], &hub_key);
        fs::write(dir.join(name), encode(&forged)).unwrap();
        let alone = json(&renkei_ok(&dir, &["audit", "verify", name]).stdout);
        assert_eq!(alone["verified"], true, "{name}");
        let run = renkei(&dir, &[&["audit", "verify", name][..], &trusted].concat());
        assert!(!run.ok, "{name} passed as consistent: {}", run.stdout);
        assert!(
            run.stderr.contains(&format!(
                "fork: the log's first {} records have root",
                kept.size
            )),
            "{name}: {}",
            run.stderr
        );
        let err = export::verify(&forged, &hub_key.verifying_key(), Some(&note)).unwrap_err();
        assert!(
            matches!(err, VerifyError::Fork { size, .. } if size == kept.size),
            "{err}"
        );
    }

    // A log cut back to before Monday's checkpoint, re-signed: a rollback.
    let short = kept.size as usize - 2;
    let rolled_back = resigned(&genuine, &genuine.records[..short], &hub_key);
    fs::write(dir.join("rolled-back.export"), encode(&rolled_back)).unwrap();
    renkei_ok(&dir, &["audit", "verify", "rolled-back.export"]);
    let run = renkei(
        &dir,
        &[&["audit", "verify", "rolled-back.export"][..], &trusted].concat(),
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            "rollback: the trusted checkpoint covers {} records but the log holds only {short}",
            kept.size
        )),
        "{}",
        run.stderr
    );

    // A "kept" checkpoint that the hub never signed is refused, not trusted.
    let stranger = CheckpointSigner::new(&origin(), SigningKey::from_bytes(&[9; 32])).unwrap();
    fs::write(
        dir.join("stranger.note"),
        stranger.sign(kept.size, kept.root).unwrap(),
    )
    .unwrap();
    let run = renkei(
        &dir,
        &[
            "audit",
            "verify",
            "tuesday.export",
            "--trusted-checkpoint",
            "stranger.note",
        ],
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("not signed by"), "{}", run.stderr);
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_no_checkpoint_covers_or_a_renamed_node_do_not_verify() {
    let (fed, _) = exported_day().await;
    let parsed = read_export(&fed.dir.path().join("log.export"));
    let key = export::header_key(&parsed.header).unwrap();
    // Without its checkpoints, nothing vouches for the records.
    let stripped = edited(&parsed, &parsed.records, &[]);
    let err = failure(&stripped, &key).to_string();
    assert!(
        err.contains("not covered by any signed checkpoint"),
        "{err}"
    );
    // The header cannot claim the log of another node.
    let mut renamed = edited(&parsed, &parsed.records, &parsed.checkpoints);
    renamed.header.node_id = "us-dod".into();
    let err = failure(&renamed, &key).to_string();
    assert!(err.contains("the header says node"), "{err}");
}
