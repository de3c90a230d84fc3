//! Witnessing: peer nodes cosign each other's audit checkpoints. An auditor
//! who trusts a peer's key checks that the log it was given is the one the peer saw;
//! a node whose log was rolled back (an old copy restored) or forked (a second log
//! under the same key) is caught by its witness, which records the alarm and cosigns
//! nothing more of it.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::federation::eventually;
use common::peers::Mesh;
use common::{renkei, renkei_ok};
use renkei::proto::AuditEvent;

/// Tokyo's node and NATO's, linked, signing a checkpoint every second.
fn tokyo_and_nato(dir: &Path) -> Mesh {
    let desks = [("jp-cdc", "jp-mod"), ("nato-desk", "nato-ccdcoe")];
    let links = [("jp-mod", "nato-ccdcoe")];
    let extra = "[audit]\ncheckpoint_interval_secs = 1\n";
    Mesh::new(dir, &["jp-mod", "nato-ccdcoe"], &desks, &links, extra)
}

/// Tokyo's desk publishes `n` GREEN bulletins.
async fn publish(mesh: &Mesh, n: usize) {
    mesh.publish_advisories("jp-cdc", "advisory", n).await;
}

/// NATO's node as a witness, for `--witness`.
fn nato(mesh: &Mesh) -> String {
    format!("nato-ccdcoe={}", mesh.public("nato-ccdcoe"))
}

/// The size of Tokyo's newest checkpoint NATO's node cosigned, once it is at least
/// `at_least` (as the audit office reads it).
async fn cosigned_size(mesh: &Mesh, at_least: u64) -> u64 {
    let mut size = 0;
    eventually("a checkpoint cosigned by NATO's node", async || {
        size = newest_cosigned(mesh).unwrap_or(0);
        size >= at_least
    })
    .await;
    size
}

/// Tokyo's checkpoints carry NATO's cosignature; the audit office verifies
/// an export with NATO's key as its witness, and asking for a witness that never
/// cosigned fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cosigns_each_checkpoint_and_an_auditor_checks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = tokyo_and_nato(tmp.path());
    mesh.start_all();
    publish(&mesh, 2).await;
    let size = cosigned_size(&mesh, 1).await;
    assert!(size > 0);
    let config = mesh.office("jp-mod");
    renkei_ok(
        &mesh.dir,
        &["audit", "export", "--config", &config, "--out", "jp.export"],
    );
    let key = mesh.public("jp-mod");
    let verify = ["audit", "verify", "jp.export", "--key", &key, "--witness"];
    let ok = renkei_ok(&mesh.dir, &[&verify[..], &[&nato(&mesh)]].concat());
    assert!(
        ok.stdout.contains("cosigned by renkei/nato-ccdcoe/witness"),
        "{}",
        ok.stdout
    );
    // The metrics report names the newest checkpoint a witness cosigned.
    let args = ["metrics", "--config", &config, "--format", "json"];
    let report: serde_json::Value =
        serde_json::from_str(&renkei_ok(&mesh.dir, &args).stdout).unwrap();
    let witnessed = &report["computed_from"]["witnessed"];
    assert_eq!(
        witnessed["by"][0], "renkei/nato-ccdcoe/witness",
        "{witnessed}"
    );
    // Tokyo's own desk is no witness of its log.
    let desk = format!("jp-cdc={}", mesh.public("jp-cdc"));
    let two = ["--witness", &desk, "--min-witnesses", "2"];
    let bad = renkei(&mesh.dir, &[&verify[..], &[&nato(&mesh)], &two].concat());
    assert!(
        !bad.ok && bad.stderr.contains("valid cosignature"),
        "{}",
        bad.stderr
    );
    mesh.stop_all();
}

/// Copies node `n`'s data directory to `to` (the node stopped).
fn copy_data(mesh: &Mesh, n: &str, to: &str) {
    let from = mesh.dir.join(format!("{n}-data"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(mesh.dir.join(to))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Stops node `n` cleanly.
fn stop(mesh: &mut Mesh, n: &str) {
    let served = mesh.nodes.get_mut(n).unwrap().served.take().unwrap();
    assert!(served.stop(common::federation::PATIENCE).success());
}

/// Replaces node `n`'s data directory with the one at `with` (or an empty one).
fn replace_data(mesh: &Mesh, n: &str, with: Option<&str>) {
    let data = mesh.dir.join(format!("{n}-data"));
    std::fs::remove_dir_all(&data).unwrap();
    if let Some(with) = with {
        std::fs::rename(mesh.dir.join(with), &data).unwrap();
    }
}

/// What a witness says of a log that forked or rolled back, whichever sizes the two
/// histories reached.
const FORKS: [&str; 3] = ["rolled back", "two roots at size", "does not extend"];

/// NATO's node caught Tokyo's log (its WITNESS_ALARM record saying how, and the figure
/// on its metrics), and Tokyo's newest cosigned checkpoint is still one from before.
async fn caught(mesh: &Mesh, before: u64) {
    eventually("NATO's node records the alarm", async || {
        let records =
            crate::federation::records(mesh, "nato-ccdcoe", AuditEvent::WitnessAlarm).await;
        records
            .iter()
            .any(|r| r.partner == "jp-mod" && FORKS.iter().any(|how| r.reason.contains(how)))
    })
    .await;
    let config = mesh.office("nato-ccdcoe");
    let args = [
        "metrics", "--config", &config, "--by", "partner", "--format", "json",
    ];
    let metrics = renkei_ok(&mesh.dir, &args).stdout;
    assert!(metrics.contains("witness_alarms"), "{metrics}");
    // Tokyo goes on; nothing more is cosigned.
    publish(mesh, 3).await;
    let newest = newest_cosigned(mesh);
    assert!(
        newest.is_none_or(|n| n <= before),
        "cosigned {newest:?} after the alarm (before: {before})"
    );
}

/// The size of Tokyo's newest checkpoint NATO's node cosigned, if any, now.
fn newest_cosigned(mesh: &Mesh) -> Option<u64> {
    let config = mesh.office("jp-mod");
    let witness = nato(mesh);
    let args = [
        "audit",
        "checkpoint",
        "--config",
        &config,
        "--witness",
        &witness,
    ];
    let run = renkei(&mesh.dir, &args);
    run.ok
        .then(|| run.stdout.lines().nth(1)?.parse().ok())
        .flatten()
}

/// An operator restores an old copy of Tokyo's database (a rollback): NATO's
/// node, which cosigned a later checkpoint, catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_log_is_caught_by_its_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = tokyo_and_nato(tmp.path());
    mesh.start_all();
    publish(&mesh, 1).await;
    cosigned_size(&mesh, 1).await;
    stop(&mut mesh, "jp-mod");
    copy_data(&mesh, "jp-mod", "old-copy");
    // The copy ends with the checkpoint signed as the node stopped.
    let args = ["audit", "checkpoint", "--data-dir", "old-copy"];
    let copied = renkei_ok(&mesh.dir, &args).stdout;
    let first: u64 = copied.lines().nth(1).unwrap().parse().unwrap();
    mesh.start("jp-mod");
    publish(&mesh, 3).await;
    // NATO's node cosigns a checkpoint beyond the copy: the copy is now a rollback.
    cosigned_size(&mesh, first + 1).await;
    stop(&mut mesh, "jp-mod");
    replace_data(&mesh, "jp-mod", Some("old-copy"));
    mesh.start("jp-mod");
    publish(&mesh, 1).await;
    caught(&mesh, first).await;
    mesh.stop_all();
}

/// Tokyo's node is started on an empty database under the same key (a
/// second log): NATO's node catches the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_log_under_the_same_key_is_caught_by_its_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = tokyo_and_nato(tmp.path());
    mesh.start_all();
    publish(&mesh, 2).await;
    cosigned_size(&mesh, 1).await;
    stop(&mut mesh, "jp-mod");
    replace_data(&mesh, "jp-mod", None);
    mesh.start("jp-mod");
    publish(&mesh, 1).await;
    caught(&mesh, 0).await;
    mesh.stop_all();
}
