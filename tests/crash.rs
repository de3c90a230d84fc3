//! A node killed with SIGKILL in the middle of a publish burst: after a restart its
//! audit log still verifies, has no gap, and records every bulletin the publisher was
//! told was accepted. Then the same promises over a short crash loop, as
//! `renkei bench --phases crash` runs it.

use crate::common;

use std::collections::HashSet;
use std::path::Path;

use common::configs::{client_toml, node_toml};
use common::federation::{sign_as, PATIENCE};
use common::served::{serve, Served};
use common::{pki, renkei_ok};
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::config::ClientConfig;
use renkei::proto::{self, AuditEvent, PublishStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_keeps_a_whole_verifiable_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,au-dod");
    let served = serve_the_hub_and_configure_the_us_desk(dir);
    let accepted = a_burst_is_cut_short_by_a_kill(dir, served).await;

    // The node comes back on the same database (it refuses to start on a log that
    // disagrees with what it signed), then stops cleanly.
    let (served, _addr) = serve(dir, "hub.toml");
    let exit = served.stop(PATIENCE);
    assert!(exit.success(), "{exit:?}");

    let records = the_whole_log_verifies_offline(dir);
    every_accepted_bulletin_is_on_the_log(dir, records, &accepted);
}

/// Writes the hub's configuration in `dir`, starts it, and writes the US desk's client
/// configuration pointing at it.
fn serve_the_hub_and_configure_the_us_desk(dir: &Path) -> Served {
    let hub = node_toml("jp-mod").with(&format!(
        "[audit]\ncheckpoint_every = 100\n\n\
         [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\nkeys = [{{ public = \"{}\" }}]\n",
        common::public_key(dir, "us-dod"),
        common::public_key(dir, "au-dod")
    ));
    hub.write(dir, "hub.toml");
    let (served, addr) = serve(dir, "hub.toml");
    client_toml("us-dod", &addr, "jp-mod")
        .signing()
        .write(dir, "us-dod.toml");
    served
}

/// The US desk pipelines a burst and the node is killed after 500 acceptances; returns
/// the ids of every bulletin the publisher was told was accepted.
async fn a_burst_is_cut_short_by_a_kill(dir: &Path, mut served: Served) -> HashSet<String> {
    // The US desk pipelines a burst of GREEN indicators.
    let key = common::signing_key(dir, "us-dod");
    let burst: Vec<_> = (0..5_000)
        .map(|i| {
            let title = format!("indicator {i}");
            sign_as(
                &key,
                "us-dod",
                Tlp::Green,
                Kind::Indicator,
                &title,
                &[],
                &[],
            )
        })
        .collect();
    let cfg = ClientConfig::load(&dir.join("us-dod.toml")).unwrap();
    let client = Client::connect(&cfg).await.unwrap();
    let (mut sink, mut results) = client.publisher().await.unwrap().split();
    let sender = tokio::spawn(async move {
        for (i, b) in burst.into_iter().enumerate() {
            if sink.send(i as u64, b).await.is_err() {
                break;
            }
        }
    });

    // Once 500 are accepted, the node is killed without warning; the publisher keeps
    // whatever results reached it.
    let mut accepted = HashSet::new();
    let mut killed = false;
    loop {
        // After the kill, only results already on their way can still arrive.
        let patience = if killed {
            std::time::Duration::from_millis(500)
        } else {
            PATIENCE
        };
        let next = tokio::time::timeout(patience, results.recv()).await;
        let Ok(Ok(Some(r))) = next else { break };
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{r:?}");
        accepted.insert(r.bulletin_id);
        if accepted.len() == 500 && !killed {
            served.kill();
            killed = true;
        }
    }
    assert!(killed, "the burst ended before the kill");
    sender.abort();
    drop(client);
    accepted
}

/// `renkei audit verify` passes on the data in `dir`, every record covered by a
/// checkpoint; returns how many records the log holds.
fn the_whole_log_verifies_offline(dir: &Path) -> u64 {
    // The whole log verifies offline: every record in sequence, every checkpoint.
    let summary = common::log_verifies_offline(dir, "data", "jp-mod");
    assert_eq!(
        summary["covered_by_checkpoints"], summary["records"],
        "the clean stop signs"
    );
    summary["records"].as_u64().unwrap()
}

/// The log in `dir` holds `records` records without a gap, and records the acceptance of
/// every bulletin in `accepted`.
fn every_accepted_bulletin_is_on_the_log(dir: &Path, records: u64, accepted: &HashSet<String>) {
    // Every bulletin the publisher saw accepted is in it.
    let store = renkei::store::Store::open(&dir.join("data"), 16 << 20).unwrap();
    let log = store.audit();
    assert_eq!(log.size().unwrap(), records);
    let mut recorded = HashSet::new();
    for (i, bytes) in log.records_from(0).enumerate() {
        let r = proto::AuditRecord::decode(bytes.unwrap()).unwrap();
        assert_eq!(r.seq, i as u64, "no gap");
        if r.event == AuditEvent::BulletinAccepted as i32 {
            recorded.insert(r.bulletin_id);
        }
    }
    let missing: Vec<_> = accepted.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "accepted but not in the log: {missing:?}"
    );
    assert!(recorded.len() >= accepted.len());
}

/// The crash loop of `renkei bench`, a few cycles: the node is killed under load at
/// random moments and restarted; the bench checks every promise and fails if one is
/// broken (stored, recorded, delivered, no gap, every checkpoint handed out verified).
#[test]
fn a_short_crash_loop_keeps_every_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let out = renkei_ok(
        tmp.path(),
        &[
            "bench",
            "--phases",
            "crash",
            "--cycles",
            "4",
            "--publishers",
            "2",
            "--subscribers",
            "2",
            "--rate",
            "1000",
            "--body-bytes",
            "256",
        ],
    );
    let last = out.stdout.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("crash: PASSED 4 cycles, 4 kills"),
        "{}",
        out.stdout
    );
}
