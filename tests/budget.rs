//! A hostile but authenticated partner pipelines large publishes on every stream of
//! several connections and never reads a result. The node holds no more than its
//! budgets for it (QUIC flow control pushes back on that partner alone), its memory
//! stays within a stated bound, and an honest desk still publishes and receives.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::federation::{connect_as, PATIENCE};
use common::pki;
use common::served::serve_with_env;
use renkei::bulletin::{self, BulletinId, Kind, Limits, Tlp};
use renkei::client::Client;
use renkei::identity::PartnerId;
use renkei::proto::{self, PublishStatus};
use renkei::timestamp::Timestamp;

/// The node's resident memory may grow by at most this much under the flood. What it
/// holds for the hostile partner is bounded by its budget (8 MiB of the node's 16 MiB)
/// and QUIC's receive windows (8 MiB per connection, 32 MiB for four); besides, any
/// traffic of 700 KiB bulletins costs the storage thread's batch (up to 4 MiB), the
/// segment cache (16 MiB) and buffers being written out.
const RSS_GROWTH_BOUND_MIB: u64 = 144;

async fn connect(dir: &Path, id: &str, addr: std::net::SocketAddr) -> Client {
    let hub: PartnerId = "jp-mod".parse().unwrap();
    connect_as(&dir.join("certs"), id, addr, &hub)
        .await
        .unwrap()
}

fn bulletin(
    key: &ed25519_dalek::SigningKey,
    origin: &str,
    title: &str,
    body: usize,
) -> proto::SignedBulletin {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: Kind::Advisory.to_proto() as i32,
        title: title.into(),
        content_type: "application/octet-stream".into(),
        body: Bytes::from(vec![0x5a; body]),
        ..Default::default()
    };
    bulletin::sign(&b, key, &Limits::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_never_reads_its_results_holds_only_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,au-dod,xx-mod");
    let hub = format!(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/jp-mod/tls.crt\"\ntls_key = \"certs/jp-mod/tls.key\"\nsigning_key = \"certs/jp-mod/signing.key\"\n\n\
         [limits]\nstream_in_flight_mib = 2\npartner_in_flight_mib = 8\nnode_in_flight_mib = 16\n\n\
         [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"xx-mod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n",
        common::public_key(dir, "us-dod"),
        common::public_key(dir, "au-dod"),
        common::public_key(dir, "xx-mod"),
    );
    std::fs::write(dir.join("hub.toml"), hub).unwrap();
    // As deploy/README.md advises for nodes that move large bulletins: buffers above
    // 128 KiB go back to the system when freed, so RSS shows what the node holds.
    let tunables = [("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")];
    let (mut node, addr) = serve_with_env(dir, "hub.toml", &tunables);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let baseline = node.rss_kib();

    // The hostile partner: 4 connections × 8 streams, each pipelining 700 KiB
    // bulletins as fast as the node lets it, never reading a result.
    let xx_key = common::signing_key(dir, "xx-mod");
    let mut flood = tokio::task::JoinSet::new();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let c = std::sync::Arc::new(connect(dir, "xx-mod", addr).await);
        conns.push(c.clone());
        for s in 0..8 {
            let (c, key) = (c.clone(), xx_key.clone());
            flood.spawn(async move {
                let mut p = c.publisher().await.unwrap();
                let mut sent = 0u64;
                for i in 0..12u64 {
                    let b = bulletin(&key, "xx-mod", &format!("flood {s}/{i}"), 700 * 1024);
                    // Flow control: a write the node does not take within a while is
                    // the node holding this publisher back, which is the point.
                    match tokio::time::timeout(Duration::from_secs(3), p.send(i, b)).await {
                        Ok(Ok(())) => sent += 1,
                        _ => break,
                    }
                }
                (sent, p)
            });
        }
    }
    // Memory while the flood is on, sampled whenever a flooding stream ends.
    let mut peak = node.rss_kib();
    let mut sent = 0;
    let mut held_open = Vec::new();
    while let Some(done) = flood.join_next().await {
        let (n, publisher) = done.unwrap();
        sent += n;
        held_open.push(publisher); // its results stay unread
        peak = peak.max(node.rss_kib());
    }

    // An honest desk still publishes, and another still receives, while the hostile
    // partner's streams are stuck.
    let us = connect(dir, "us-dod", addr).await;
    let honest = bulletin(
        &common::signing_key(dir, "us-dod"),
        "us-dod",
        "still served",
        512,
    );
    let r = tokio::time::timeout(PATIENCE, us.publish(honest))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    let au = connect(dir, "au-dod", addr).await;
    let mut sub = au.subscribe(0).await.unwrap();
    let mut titles = Vec::new();
    loop {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .expect("a delivery in time")
            .unwrap()
            .expect("stream open");
        sub.ack(vec![d.seq]).await.unwrap();
        let b = <proto::Bulletin as prost::Message>::decode(d.bulletin.unwrap().bulletin).unwrap();
        titles.push(b.title.clone());
        if b.title == "still served" {
            break;
        }
    }
    peak = peak.max(node.rss_kib());
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "node RSS {} MiB at start, peak {} MiB; the hostile partner got {sent} of 384 publishes of 700 KiB into the node",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        growth_mib <= RSS_GROWTH_BOUND_MIB,
        "the node grew by {growth_mib} MiB under the flood (bound {RSS_GROWTH_BOUND_MIB} MiB)"
    );
    drop(held_open);
    for c in conns {
        if let Ok(c) = std::sync::Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    us.close().await;
    au.close().await;
    let exit = node.stop(PATIENCE);
    assert!(exit.success(), "{exit:?}");
}
