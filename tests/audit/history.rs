//! Against a checkpoint the auditor kept: a log rewritten (a fork) or rolled back is
//! caught; records no checkpoint covers, or a log that renamed its node, do not verify.

use super::verify::*;
use super::*;

/// `--trusted-checkpoint` with the checkpoint the audit office kept on Monday.
const TRUSTED: [&str; 2] = ["--trusted-checkpoint", "monday.note"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_or_rolled_back_log_is_caught_against_a_kept_checkpoint() {
    let mut fed = hub().start().await;
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
    let export = [
        "audit",
        "export",
        "--data-dir",
        "data",
        "--out",
        "tuesday.export",
    ];
    renkei_ok(&dir, &export);
    let verify = [
        &["audit", "verify", "--json", "tuesday.export"][..],
        &TRUSTED,
    ]
    .concat();
    let v = json(&renkei_ok(&dir, &verify).stdout);
    assert_eq!(v["verified"], true);
    assert_eq!(v["consistent_with_trusted_checkpoint"], kept.size);
    assert!(v["records"].as_u64().unwrap() > kept.size);
    let genuine = read_export(&dir.join("tuesday.export"));

    // Whoever holds the hub's key rewrites Monday: the exercise notice was never shared
    // with vn-mod. Re-signed, the rewritten log verifies on its own, whether it stops
    // where the kept checkpoint did or goes on past it; against that checkpoint, each
    // is a fork.
    let rewritten = monday_rewritten(&genuine, &monday[0].bulletin_id, &kept);
    for (name, size) in [
        ("same-size.export", kept.size as usize),
        ("longer.export", rewritten.len()),
    ] {
        let forged = resigned(&genuine, &rewritten[..size], &hub_key);
        fs::write(dir.join(name), encode(&forged)).unwrap();
        a_fork_verifies_alone_and_not_against_the_kept_checkpoint(&dir, name, &kept);
        let err = export::verify(&forged, &hub_key.verifying_key(), Some(&note)).unwrap_err();
        assert!(
            matches!(err, VerifyError::Fork { size, .. } if size == kept.size),
            "{err}"
        );
    }
    a_cut_back_log_is_a_rollback(&dir, &genuine, &hub_key, &kept);
    a_checkpoint_the_hub_never_signed_is_not_trusted(&dir, &kept);
    fed.stop().await;
}

/// The genuine records with Monday's exercise notice (bulletin `id`, inside the kept
/// checkpoint) no longer shared with vn-mod.
fn monday_rewritten(genuine: &Export, id: &str, kept: &Verified) -> Vec<Bytes> {
    let at = genuine
        .records
        .iter()
        .position(|r| {
            let r = proto::AuditRecord::decode(r.clone()).unwrap();
            r.event == AuditEvent::BulletinAccepted as i32 && r.bulletin_id == id
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
    rewritten
}

/// Alone, the re-signed log `name` is consistent: it is never called verified, and the
/// command fails unless told that self-signed is enough; against the kept checkpoint it
/// is a fork.
fn a_fork_verifies_alone_and_not_against_the_kept_checkpoint(
    dir: &Path,
    name: &str,
    kept: &Verified,
) {
    let alone = renkei(dir, &["audit", "verify", "--json", name]);
    assert!(!alone.ok, "{name}: {}", alone.stdout);
    let said = &alone.stderr;
    assert!(said.contains("internally consistent only"), "{said}");
    assert!(
        !alone.stdout.contains("\"verified\":true"),
        "{}",
        alone.stdout
    );
    let self_signed = ["audit", "verify", "--json", name, "--self-signed-ok"];
    let accepted = json(&renkei_ok(dir, &self_signed).stdout);
    assert_eq!(accepted["verified"], false, "{name}");
    assert_eq!(accepted["internally_consistent"], true, "{name}");
    let run = renkei(
        dir,
        &[&["audit", "verify", "--json", name][..], &TRUSTED].concat(),
    );
    assert!(!run.ok, "{name} passed as consistent: {}", run.stdout);
    let fork = format!("fork: the log's first {} records have root", kept.size);
    assert!(run.stderr.contains(&fork), "{name}: {}", run.stderr);
}

/// A log cut back to before Monday's checkpoint, re-signed: a rollback.
fn a_cut_back_log_is_a_rollback(dir: &Path, genuine: &Export, key: &SigningKey, kept: &Verified) {
    let short = kept.size as usize - 2;
    let rolled_back = resigned(genuine, &genuine.records[..short], key);
    fs::write(dir.join("rolled-back.export"), encode(&rolled_back)).unwrap();
    let verify = ["audit", "verify", "--json", "rolled-back.export"];
    renkei_ok(dir, &[&verify[..], &["--self-signed-ok"]].concat());
    let run = renkei(dir, &[&verify[..], &TRUSTED].concat());
    assert!(!run.ok, "{}", run.stdout);
    let rollback = format!(
        "rollback: the trusted checkpoint covers {} records but the log holds only {short}",
        kept.size
    );
    assert!(run.stderr.contains(&rollback), "{}", run.stderr);
}

/// A "kept" checkpoint that the hub never signed is refused, not trusted.
fn a_checkpoint_the_hub_never_signed_is_not_trusted(dir: &Path, kept: &Verified) {
    let stranger = CheckpointSigner::new(&origin(), SigningKey::from_bytes(&[9; 32])).unwrap();
    let note = stranger.sign(kept.size, kept.root).unwrap();
    fs::write(dir.join("stranger.note"), note).unwrap();
    let verify = [
        "audit",
        "verify",
        "tuesday.export",
        "--trusted-checkpoint",
        "stranger.note",
    ];
    let run = renkei(dir, &verify);
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("not signed by"), "{}", run.stderr);
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
