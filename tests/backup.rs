//! An operator backs up a hub while a partner is publishing to it, restores the copy
//! into a new data directory, and starts a node on it: everything accepted before the
//! backup began is there, the audit log verifies, and the offline partner's queue
//! resumes from where it was.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::federation::{receive, Federation};
use common::{renkei, renkei_ok};
use renkei::bulletin::{Kind, Tlp};
use renkei::config::NodeConfig;
use renkei::proto::PublishStatus as Status;

const PARTNERS: &str = r#"
[[partner]]
id = "us-dod"
role = "liaison"
clearance = "amber"
keys = [{ public = "KEY(us-dod)" }]

[[partner]]
id = "au-dod"
role = "liaison"
clearance = "amber"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_with_every_accepted_bulletin_and_a_verified_log() {
    let mut fed = Federation::start("jp-mod", &["us-dod", "au-dod"], PARTNERS).await;
    let dir = fed.dir.path().to_owned();

    // us-dod publishes without pause; au-dod is offline, so everything queues for it.
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

    // Once a few hundred are in, the operator takes a backup while publishing goes on.
    let deadline = std::time::Instant::now() + common::federation::PATIENCE;
    let mut ready = tokio::time::interval(std::time::Duration::from_millis(5));
    while accepted.lock().unwrap().len() < 300 {
        assert!(std::time::Instant::now() < deadline, "publishing stalled");
        ready.tick().await;
    }
    let before: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let backup = tokio::task::spawn_blocking(move || {
        renkei_ok(
            &dir,
            &["backup", "--config", "hub.toml", "--out", "backups/first"],
        )
    })
    .await
    .unwrap();
    assert!(backup.stdout.contains("backup taken"), "{}", backup.stdout);
    let after_backup = accepted.lock().unwrap().len();
    // Publishing went on during and after the copy.
    while accepted.lock().unwrap().len() < (after_backup + 50).min(5_000) {
        assert!(
            std::time::Instant::now() < deadline,
            "publishing stalled after the backup"
        );
        ready.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let all: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    fed.halt().await;

    // Restore into a new data directory; restoring over it again is refused.
    let dir = fed.dir.path();
    let restored_cfg = std::fs::read_to_string(dir.join("hub.toml"))
        .unwrap()
        .replace("data_dir = \"data\"", "data_dir = \"restored\"");
    std::fs::write(dir.join("restored.toml"), restored_cfg).unwrap();
    let restore = renkei_ok(
        dir,
        &[
            "restore",
            "--from",
            "backups/first",
            "--config",
            "restored.toml",
        ],
    );
    // Said to people: what was restored, and that its log verified against the key
    // the operator holds (here the node's own, from its configuration).
    assert!(
        restore.stdout.starts_with("restored ")
            && restore.stdout.contains("verified: the audit log of jp-mod")
            && restore
                .stdout
                .contains("checked against       the key given"),
        "{}",
        restore.stdout
    );
    let again = renkei(
        dir,
        &[
            "restore",
            "--from",
            "backups/first",
            "--config",
            "restored.toml",
        ],
    );
    assert!(
        !again.ok && again.stderr.contains("not empty"),
        "{}",
        again.stderr
    );
    // Restored as another node's (checked with another key), it is refused and leaves
    // nothing a node could start on. The key is given as a .pub file, as `keygen`
    // writes it (issue 32: only the ed25519: text was taken).
    let us_key = renkei::identity::PublicKey::of(fed.key("us-dod")).to_string();
    std::fs::write(dir.join("us-dod.pub"), format!("{us_key}\n")).unwrap();
    let foreign = renkei(
        dir,
        &[
            "restore",
            "--from",
            "backups/first",
            "--data-dir",
            "elsewhere",
            "--key",
            "us-dod.pub",
        ],
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

    // Given the checkpoint the node signed when it stopped (newer than the backup), the
    // old backup is refused as a rollback; without key or checkpoint, it is not tried.
    let kept = renkei_ok(dir, &["audit", "checkpoint", "--data-dir", "data"]);
    std::fs::write(dir.join("kept.checkpoint"), &kept.stdout).unwrap();
    let hub_key = renkei::identity::PublicKey::of(fed.key("jp-mod")).to_string();
    let old = renkei(
        dir,
        &[
            "restore",
            "--from",
            "backups/first",
            "--data-dir",
            "rolled-back",
            "--key",
            &hub_key,
            "--trusted-checkpoint",
            "kept.checkpoint",
        ],
    );
    assert!(!old.ok, "{}", old.stdout);
    assert!(
        old.stderr
            .contains("rollback: the trusted checkpoint covers"),
        "{}",
        old.stderr
    );
    assert!(!dir.join("rolled-back").exists());
    // A backup whose manifest was edited (here, only the date it claims) is refused:
    // the node signed its manifest.
    let tampered = dir.join("backups/tampered");
    for entry in walk(&dir.join("backups/first")) {
        let rel = entry.strip_prefix(dir.join("backups/first")).unwrap();
        let to = tampered.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let manifest = tampered.join("renkei-backup.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited: Vec<&str> = text
        .lines()
        .map(|l| {
            if l.starts_with("taken_at") {
                "taken_at = \"2020-01-01T00:00:00Z\""
            } else {
                l
            }
        })
        .collect();
    std::fs::write(&manifest, edited.join("\n")).unwrap();
    let forged = renkei(
        dir,
        &[
            "restore",
            "--from",
            "backups/tampered",
            "--data-dir",
            "tampered",
            "--key",
            &hub_key,
        ],
    );
    assert!(!forged.ok, "{}", forged.stdout);
    assert!(
        forged
            .stderr
            .contains("manifest's signature does not verify"),
        "{}",
        forged.stderr
    );
    assert!(!dir.join("tampered").exists());
    // Issue 25: the same edit with the signature stripped was restored, with a warning.
    let stripped: Vec<&str> = edited
        .iter()
        .map(|l| {
            if l.starts_with("signature") {
                "signature = \"\""
            } else {
                l
            }
        })
        .collect();
    std::fs::write(&manifest, stripped.join("\n")).unwrap();
    let args = [
        "restore",
        "--from",
        "backups/tampered",
        "--data-dir",
        "stripped",
        "--key",
        &hub_key,
    ];
    let unsigned = renkei(dir, &args);
    assert!(!unsigned.ok, "{}", unsigned.stdout);
    assert!(
        unsigned.stderr.contains("carries no signature"),
        "{}",
        unsigned.stderr
    );
    assert!(!dir.join("stripped").exists());
    let blind = renkei(
        dir,
        &["restore", "--from", "backups/first", "--data-dir", "blind"],
    );
    assert!(
        !blind.ok && blind.stderr.contains("--trusted-checkpoint"),
        "{}",
        blind.stderr
    );

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
