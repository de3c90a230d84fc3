//! A node whose data directory's filesystem fills up: it refuses new bulletins with
//! STORAGE_FULL, keeps delivering what it holds and answering its auditors, records
//! that the disk filled, takes bulletins again by itself once space is freed, and its
//! log verifies afterwards.
//!
//! The filesystem is a real one made for the test: a 32 MiB tmpfs, filled by a
//! ballast file. Mounting needs root (CAP_SYS_ADMIN), which `.ci/run` has; elsewhere
//! the test says so and does nothing.

use crate::common;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::configs::node_toml;
use common::federation::{connect_as, receive_titles, sign_as, PATIENCE};
use common::pki;
use common::served::serve;
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::proto::{self, ErrorCode, PublishStatus};

const MIB: u64 = 1 << 20;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts one of `mib` MiB at `at`; `None` if this process may not mount.
    fn mount(at: &Path, mib: u64) -> Option<SmallDisk> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        fs::create_dir_all(at).unwrap();
        let size = format!("size={mib}m");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "renkei-full-disk"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(status.success(), "root, yet mounting a tmpfs failed");
        Some(SmallDisk(at.to_owned()))
    }

    fn free(&self) -> u64 {
        fs2::available_space(&self.0).unwrap()
    }

    /// Writes a ballast file until less than `left` bytes are free.
    fn fill(&self, left: u64) -> PathBuf {
        let path = self.0.join("ballast");
        let mut f = fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 256 << 10];
        while self.free() >= left {
            f.write_all(&chunk).unwrap();
            f.sync_data().unwrap();
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn hub_config(dir: &Path) -> String {
    node_toml("jp-mod")
        .data_dir("disk/data")
        .with(&format!(
            "[storage]\ncache_mib = 8\nreserve_mib = 8\n\n\
             [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\nkinds = []\nkeys = [{{ public = \"{}\" }}]\n\n\
             [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\n\n\
             [[partner]]\nid = \"audit-office\"\nrole = \"auditor\"\n",
            common::public_key(dir, "us-dod"),
        ))
        .to_string()
}

/// Publishes one GREEN indicator titled `title` as us-dod; returns the node's answer.
async fn publish(us: &Client, dir: &Path, title: &str) -> proto::PublishResult {
    let key = common::signing_key(dir, "us-dod");
    let b = sign_as(&key, "us-dod", Tlp::Green, Kind::Indicator, title, &[], &[]);
    tokio::time::timeout(PATIENCE, us.publish(b))
        .await
        .expect("an answer in time")
        .unwrap()
}

/// The reasons of the node's operator records, as the auditor reads them.
async fn operator_records(auditor: &Client) -> Vec<String> {
    let query = proto::AuditQuery {
        event: proto::AuditEvent::Operator as u32,
        limit: 1000,
        ..Default::default()
    };
    let page = auditor.audit_query(query).await.unwrap();
    page.records
        .iter()
        .map(|r| proto::AuditRecord::decode(r.as_ref()).unwrap().reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_keeps_serving_and_resumes_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(disk) = SmallDisk::mount(&dir.join("disk"), 32) else {
        common::skipped("full disk", "mounting a tmpfs needs root");
        return;
    };
    pki(dir, "jp-mod,us-dod,au-dod,audit-office");
    fs::write(dir.join("hub.toml"), hub_config(dir)).unwrap();
    let (served, addr) = serve(dir, "hub.toml");
    let addr = addr.parse().unwrap();
    let hub = "jp-mod".parse().unwrap();
    let certs = dir.join("certs");
    let us = connect_as(&certs, "us-dod", addr, &hub).await.unwrap();
    let au = connect_as(&certs, "au-dod", addr, &hub).await.unwrap();
    let auditor = connect_as(&certs, "audit-office", addr, &hub)
        .await
        .unwrap();

    // With room to spare, the US desk's indicators are taken.
    for i in 0..5 {
        let r = publish(&us, dir, &format!("before {i}")).await;
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    }

    let ballast = a_full_disk_refuses_publishes(&disk, &us, dir).await;
    the_node_still_delivers_and_says_why_it_refuses(&au, &auditor).await;
    freed_space_is_taken_again_without_a_restart(&us, &au, &auditor, dir, ballast).await;

    // A clean stop, and the whole log verifies offline.
    us.close().await;
    au.close().await;
    auditor.close().await;
    assert!(served.stop(PATIENCE).success());
    common::log_verifies_offline(dir, "disk/data", "jp-mod");
    drop(disk);
}

/// A ballast fills `disk` below the node's reserve; the US desk's next three publishes
/// are refused as STORAGE_FULL. Returns the ballast file.
async fn a_full_disk_refuses_publishes(disk: &SmallDisk, us: &Client, dir: &Path) -> PathBuf {
    // Something else fills the filesystem to below the node's reserve of 8 MiB (but
    // above the quarter kept for the database).
    let ballast = disk.fill(5 * MIB);
    assert!(disk.free() > 2 * MIB);
    for i in 0..3 {
        let r = publish(us, dir, &format!("while full {i}")).await;
        assert_eq!(r.status, PublishStatus::Rejected as i32, "{r:?}");
        assert_eq!(r.error, ErrorCode::StorageFull as i32, "{r:?}");
        assert!(r.message.contains("disk is full"), "{}", r.message);
    }
    ballast
}

/// While full, `au` still receives the five bulletins taken before, and `auditor` reads
/// the node's STORAGE FULL record.
async fn the_node_still_delivers_and_says_why_it_refuses(au: &Client, auditor: &Client) {
    // What the node holds is still delivered (and the acks recorded), and the auditor
    // still reads the log, where the node said why it refuses.
    let mut got = receive_titles(au, 5).await;
    got.sort();
    assert_eq!(
        got,
        (0..5).map(|i| format!("before {i}")).collect::<Vec<_>>()
    );
    let said = operator_records(auditor).await;
    assert!(
        said.iter()
            .any(|r| r.starts_with("STORAGE FULL") && r.contains("reserve of 8.0 MiB")),
        "{said:?}"
    );
}

/// Once `ballast` is removed, the US desk's next bulletin is taken and delivered, and
/// the node records that it resumed and how many it refused.
async fn freed_space_is_taken_again_without_a_restart(
    us: &Client,
    au: &Client,
    auditor: &Client,
    dir: &Path,
    ballast: PathBuf,
) {
    // Space comes back: the next publish is taken, without a restart.
    fs::remove_file(ballast).unwrap();
    let r = publish(us, dir, "after").await;
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    assert_eq!(receive_titles(au, 1).await, ["after"]);
    let said = operator_records(auditor).await;
    assert!(
        said.iter()
            .any(|r| r.starts_with("STORAGE RESUMED") && r.contains("3 bulletin(s) were refused")),
        "{said:?}"
    );
}
