//! An operator backs up a hub while a partner is publishing to it, restores the copy
//! into a new data directory, and starts a node on it: everything accepted before the
//! backup began is there, the audit log verifies, and the offline partner's queue
//! resumes from where it was.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::federation::{receive, Federation};
use common::tables::liaison;
use common::{renkei, renkei_ok};
use renkei::bulletin::{Kind, Tlp};
use renkei::config::NodeConfig;
use renkei::proto::PublishStatus as Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_with_every_accepted_bulletin_and_a_verified_log() {
    let mut fed = Federation::around("jp-mod")
        .partner(liaison("us-dod", "amber"))
        .partner(liaison("au-dod", "amber").unkeyed())
        .start()
        .await;
    let (before, all) = publish_while_backing_up(&fed).await;
    fed.halt().await;
    let dir = fed.dir.path();
    restore_into_a_new_data_directory(dir);
    let us_key = renkei::identity::PublicKey::of(fed.key("us-dod")).to_string();
    refused_as_another_nodes_backup(dir, &us_key);
    let hub_key = renkei::identity::PublicKey::of(fed.key("jp-mod")).to_string();
    refused_as_a_rollback(dir, &hub_key);
    refused_with_an_edited_or_unsigned_manifest(dir, &hub_key);

    // A node on the restored directory delivers au-dod's queue: everything accepted
    // before the backup began, and nothing that was never accepted.
    let cfg = NodeConfig::load(&dir.join("restored.toml")).unwrap();
    fed.node = Some(renkei::node::start(cfg).await.unwrap());
    let stored = renkei::store::backup::read_manifest(&dir.join("backups/first"))
        .unwrap()
        .bulletins as usize;
    assert!(
        stored >= before.len(),
        "{stored} stored, {} accepted before",
        before.len()
    );
    let au = fed.client("au-dod").await;
    let got: HashSet<String> = receive(&au, stored)
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert!(
        before.is_subset(&got),
        "every bulletin accepted before the backup is restored"
    );
    assert!(got.is_subset(&all));
    au.close().await;
    fed.stop().await;
}

/// us-dod publishes without pause while au-dod is offline, so everything queues for
/// it; once a few hundred are in, the operator takes a backup, and publishing goes on
/// during and after the copy. The titles accepted before the backup, and in all.
async fn publish_while_backing_up(fed: &Federation) -> (HashSet<String>, HashSet<String>) {
    let dir = fed.dir.path().to_owned();
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let us = fed.client("us-dod").await;
    let bulletins: Vec<_> = (0..5_000)
        .map(|i| {
            fed.bulletin(
                "us-dod",
                Tlp::Green,
                Kind::Incident,
                &format!("b{i}"),
                &[],
                &[],
            )
        })
        .collect();
    let publisher = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            for (i, b) in bulletins.into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = us.publish(b).await.expect("publish");
                assert_eq!(r.status, Status::Accepted as i32);
                accepted.lock().unwrap().push(format!("b{i}"));
            }
            us.close().await;
        })
    };
    let deadline = std::time::Instant::now() + common::federation::PATIENCE;
    let mut ready = tokio::time::interval(std::time::Duration::from_millis(5));
    let published = |n: usize| accepted.lock().unwrap().len() >= n;
    while !published(300) {
        assert!(std::time::Instant::now() < deadline, "publishing stalled");
        ready.tick().await;
    }
    let before: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let take = ["backup", "--config", "hub.toml", "--out", "backups/first"];
    let backup = tokio::task::spawn_blocking(move || renkei_ok(&dir, &take))
        .await
        .unwrap();
    assert!(backup.stdout.contains("backup taken"), "{}", backup.stdout);
    let after_backup = accepted.lock().unwrap().len();
    while !published((after_backup + 50).min(5_000)) {
        let now = std::time::Instant::now();
        assert!(now < deadline, "publishing stalled after the backup");
        ready.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let all: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    (before, all)
}

/// `renkei restore --from backups/FROM` with `to` (where, and what to check it by).
fn restore(dir: &Path, from: &str, to: &[&str]) -> common::Run {
    let from = format!("backups/{from}");
    renkei(
        dir,
        &[&["restore", "--from", from.as_str()][..], to].concat(),
    )
}

/// The backup restores into a new data directory, saying to people what was restored
/// and that its log verified against the key the operator holds (here the node's own,
/// from its configuration); restoring over it again is refused.
fn restore_into_a_new_data_directory(dir: &Path) {
    let restored_cfg = std::fs::read_to_string(dir.join("hub.toml"))
        .unwrap()
        .replace("data_dir = \"data\"", "data_dir = \"restored\"");
    std::fs::write(dir.join("restored.toml"), restored_cfg).unwrap();
    let restored = restore(dir, "first", &["--config", "restored.toml"]);
    assert!(restored.ok, "{}", restored.stderr);
    let said = &restored.stdout;
    assert!(
        said.starts_with("restored ")
            && said.contains("verified: the audit log of jp-mod")
            && said.contains("checked against       the key given"),
        "{said}"
    );
    let again = restore(dir, "first", &["--config", "restored.toml"]);
    assert!(
        !again.ok && again.stderr.contains("not empty"),
        "{}",
        again.stderr
    );
}

/// Restored as another node's (checked with that node's key, `key`), the backup is
/// refused and leaves nothing a node could start on. The key is given as a .pub file,
/// as `keygen` writes it (only the ed25519: text used to be taken).
fn refused_as_another_nodes_backup(dir: &Path, key: &str) {
    std::fs::write(dir.join("us-dod.pub"), format!("{key}\n")).unwrap();
    let foreign = restore(
        dir,
        "first",
        &["--data-dir", "elsewhere", "--key", "us-dod.pub"],
    );
    assert!(
        !foreign.ok && foreign.stderr.contains("another key"),
        "{}",
        foreign.stderr
    );
    assert!(!dir.join("elsewhere").exists());
    let leftovers = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("restoring")
        })
        .count();
    assert_eq!(leftovers, 0, "the refused copy is removed");
}

/// Given the checkpoint the node signed when it stopped (newer than the backup), the
/// old backup is refused as a rollback; without key or checkpoint, it is not tried.
fn refused_as_a_rollback(dir: &Path, hub_key: &str) {
    let kept = renkei_ok(dir, &["audit", "checkpoint", "--data-dir", "data"]);
    std::fs::write(dir.join("kept.checkpoint"), &kept.stdout).unwrap();
    let trusted = ["--trusted-checkpoint", "kept.checkpoint"];
    let to = [
        &["--data-dir", "rolled-back", "--key", hub_key][..],
        &trusted,
    ]
    .concat();
    let old = restore(dir, "first", &to);
    assert!(!old.ok, "{}", old.stdout);
    let rollback = "rollback: the trusted checkpoint covers";
    assert!(old.stderr.contains(rollback), "{}", old.stderr);
    assert!(!dir.join("rolled-back").exists());
    let blind = restore(dir, "first", &["--data-dir", "blind"]);
    let asks = blind.stderr.contains("--trusted-checkpoint");
    assert!(!blind.ok && asks, "{}", blind.stderr);
}

/// A backup whose manifest was edited (here, only the date it claims) is refused: the
/// node signed its manifest. The same edit with the signature stripped was once
/// restored, with a warning; it is refused too.
fn refused_with_an_edited_or_unsigned_manifest(dir: &Path, hub_key: &str) {
    let tampered = dir.join("backups/tampered");
    for entry in walk(&dir.join("backups/first")) {
        let rel = entry.strip_prefix(dir.join("backups/first")).unwrap();
        let to = tampered.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let manifest = tampered.join("renkei-backup.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edit = |text: &str, key: &str, line: &str| -> String {
        let lines = text
            .lines()
            .map(|l| if l.starts_with(key) { line } else { l });
        lines.collect::<Vec<_>>().join("\n")
    };
    let edited = edit(&text, "taken_at", "taken_at = \"2020-01-01T00:00:00Z\"");
    std::fs::write(&manifest, &edited).unwrap();
    let forged = restore(
        dir,
        "tampered",
        &["--data-dir", "tampered", "--key", hub_key],
    );
    assert!(!forged.ok, "{}", forged.stdout);
    let why = "manifest's signature does not verify";
    assert!(forged.stderr.contains(why), "{}", forged.stderr);
    assert!(!dir.join("tampered").exists());
    std::fs::write(&manifest, edit(&edited, "signature", "signature = \"\"")).unwrap();
    let unsigned = restore(
        dir,
        "tampered",
        &["--data-dir", "stripped", "--key", hub_key],
    );
    assert!(!unsigned.ok, "{}", unsigned.stdout);
    let why = "carries no signature";
    assert!(unsigned.stderr.contains(why), "{}", unsigned.stderr);
    assert!(!dir.join("stripped").exists());
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
