//! Peer nodes that pull what the node delivers over their links and never acknowledge
//! it: one reads its deliveries and never acks them, one never reads at all, so QUIC
//! grants the node no credit. Each holds at most one delivery window of the node's
//! attention; the node's memory stays within a stated bound while a desk's large
//! bulletins flow, and an honest desk receives every one.

use std::path::Path;

use renkei::bulletin;

use super::*;

/// Bulletins the US desk publishes, and the size of each body (84 MB in all).
const BULLETINS: usize = 120;
const BODY: usize = 700 * 1024;

/// The node's delivery window: what one subscriber may hold unacknowledged.
const WINDOW: usize = 16;

/// The node's resident memory may grow by at most this much while the two peers sit on
/// their subscriptions: the peer that never reads can leave at most QUIC's send buffer
/// of its connection unsent (a window of 700 KiB deliveries is about 11 MiB); besides,
/// storing 84 MB of bulletins costs the storage thread's batch, the segment cache (16
/// MiB) and buffers being written out.
const RSS_GROWTH_BOUND_MIB: u64 = 96;

/// A node with the desks us-dod and au-dod and the peers xx-node and yy-node (relays
/// with no address: they dial the node), with a delivery window of [`WINDOW`] and the
/// US desk read at 64 MiB a second (as when this test was shown to catch a fault; at
/// the default 8 its bulletins would trickle in); the running node and its address.
fn hub(dir: &Path) -> (common::served::Served, std::net::SocketAddr) {
    use common::tables::{keyed_in, liaison, relay};
    common::pki(dir, "jp-mod,us-dod,au-dod,xx-node,yy-node");
    let partners = keyed_in(
        dir,
        &[
            liaison("us-dod", "red"),
            liaison("au-dod", "red"),
            relay("xx-node", "red"),
            relay("yy-node", "red"),
        ],
    );
    common::configs::node_toml("jp-mod")
        .with(&format!(
            "\n[transport]\ndelivery_window = {WINDOW}\n[limits]\npartner_mib_per_sec = 64\n{partners}"
        ))
        .write(dir, "hub.toml");
    let (node, addr) =
        common::served::serve_with_env(dir, "hub.toml", &common::served::RSS_IS_HELD);
    (node, addr.parse().unwrap())
}

async fn connect(dir: &Path, id: &str, addr: std::net::SocketAddr) -> Client {
    common::federation::connected(dir, id, addr, "jp-mod").await
}

/// The US desk's `i`th GREEN advisory with a body of [`BODY`] bytes.
fn large(dir: &Path, i: usize) -> proto::SignedBulletin {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: renkei::bulletin::BulletinId::new_v7(now).to_string(),
        origin: "us-dod".into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: Kind::Advisory.to_proto() as i32,
        title: format!("large {i}"),
        content_type: "application/octet-stream".into(),
        body: vec![0x5a; BODY].into(),
        ..Default::default()
    };
    bulletin::sign(&b, &common::signing_key(dir, "us-dod"), &Limits::default()).unwrap()
}

/// The Australian desk's subscription until it has received (and acknowledged) every
/// one of the US desk's bulletins.
async fn au_receives_everything(au: &Client) {
    let mut sub = au.subscribe(0).await.unwrap();
    for _ in 0..BULLETINS {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .expect("a delivery in time while the peers sit on theirs")
            .unwrap()
            .expect("the subscription stays open");
        sub.ack(vec![d.seq]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_acknowledge_hold_one_window_and_harm_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut node, addr) = hub(dir);
    let baseline = node.rss_kib();

    // xx-node reads what it is sent and never acks; yy-node subscribes and never reads.
    let (xx, yy) = (
        connect(dir, "xx-node", addr).await,
        connect(dir, "yy-node", addr).await,
    );
    let _sitting = yy.subscribe(0).await.unwrap();
    let (tx, mut read) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut reading = xx.subscribe(0).await.unwrap();
        while let Ok(Some(d)) = reading.next().await {
            let _ = tx.send(d.seq);
        }
    });

    let us = connect(dir, "us-dod", addr).await;
    let au = connect(dir, "au-dod", addr).await;
    let mut peak = baseline;
    let publishing = async {
        for i in 0..BULLETINS {
            let r = us.publish(large(dir, i)).await.unwrap();
            assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
            peak = peak.max(node.rss_kib());
        }
    };
    tokio::join!(publishing, au_receives_everything(&au));
    peak = peak.max(node.rss_kib());

    // The peer that reads has been sent one whole window (a reader that failed closes
    // the channel and fails this), and by now, with the desk served everything, no more.
    for n in 0..WINDOW {
        let got = tokio::time::timeout(PATIENCE, read.recv()).await;
        assert!(
            matches!(got, Ok(Some(_))),
            "the reading peer got {n} deliveries, not a window of {WINDOW}"
        );
    }
    let mut pulled = WINDOW;
    while read.try_recv().is_ok() {
        pulled += 1;
    }
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "node RSS {} MiB at start, {} MiB at the end; the reading peer was sent {pulled} of {BULLETINS}",
        baseline / 1024,
        peak / 1024
    );
    assert_eq!(
        pulled, WINDOW,
        "a peer that never acks was sent {pulled} deliveries (window {WINDOW})"
    );
    assert!(
        growth_mib <= RSS_GROWTH_BOUND_MIB,
        "the node grew by {growth_mib} MiB (bound {RSS_GROWTH_BOUND_MIB} MiB)"
    );
    reader.abort();
    for c in [us, au, yy] {
        c.close().await;
    }
    assert!(node.stop(PATIENCE).success());
}
