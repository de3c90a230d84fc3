//! Hostile but authenticated partners against the node's budgets. One pipelines large
//! publishes on every stream of several connections and never reads a result: the
//! node holds no more than its budgets for it (QUIC flow control pushes back on that
//! partner alone), its memory stays within a stated bound, and an honest desk still
//! publishes and receives. Five hold streams open with frames they never finish: a
//! sixth still publishes, and the held streams are closed and recorded.

use crate::common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::configs::node_toml;
use common::federation::{eventually, Federation, Plan, PATIENCE};
use common::pki;
use common::served::serve_with_env;
use common::tables::{auditor, keyed_in, liaison, Partner};
use renkei::bulletin::{self, BulletinId, Kind, Limits, Tlp};
use renkei::client::{Client, Publisher};
use renkei::proto::{self, PublishStatus};
use renkei::timestamp::Timestamp;

/// The node's resident memory may grow by at most this much under the flood, sampled
/// throughout with the allocator giving back what is freed. What it holds for the
/// hostile partner is bounded by its budget (8 MiB of the node's 16 MiB) and QUIC's
/// receive windows (8 MiB per connection, 32 MiB for four); besides, any traffic of
/// 700 KiB bulletins costs the storage thread's batch (up to 4 MiB), the segment cache
/// (16 MiB), a page of deliveries (4 MiB) and buffers being written out. Measured: 96 MiB.
const RSS_GROWTH_BOUND_MIB: u64 = 144;

pub(crate) async fn connect(dir: &Path, id: &str, addr: std::net::SocketAddr) -> Client {
    common::federation::connected(dir, id, addr, "jp-mod").await
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

/// The honest US desk publishes its `i`th GREEN advisory, which must be accepted
/// within PATIENCE whatever the others do; its bulletin id.
async fn honest(fed: &Federation, us: &Client, i: usize) -> String {
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        &format!("honest {i}"),
        &[],
        &[],
    );
    let r = tokio::time::timeout(PATIENCE, us.publish(b))
        .await
        .expect("answered while the others flood or hold the node")
        .unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    r.bulletin_id
}

/// A node with small budgets (2 MiB a stream, 8 a partner, 16 in all) for the desks
/// us-dod, au-dod and the hostile xx-mod, as `renkei serve`; its address.
fn small_hub(dir: &Path) -> (common::served::Served, std::net::SocketAddr) {
    // Read at 64 MiB a second, as when these floods were shown to break the node: at
    // the default 8 far fewer of their frames are ever in flight at once.
    small_hub_with(dir, "partner_mib_per_sec = 64\n")
}

/// [`small_hub`] with more `[limits]` keys.
pub(crate) fn small_hub_with(
    dir: &Path,
    limits: &str,
) -> (common::served::Served, std::net::SocketAddr) {
    pki(dir, "jp-mod,us-dod,au-dod,xx-mod");
    let desks = ["us-dod", "au-dod", "xx-mod"].map(|id| liaison(id, "red"));
    let partners = keyed_in(dir, &desks);
    node_toml("jp-mod")
        .with(&format!(
            "\n[limits]\nstream_in_flight_mib = 2\npartner_in_flight_mib = 8\nnode_in_flight_mib = 16\n{limits}{partners}"
        ))
        .write(dir, "hub.toml");
    let (node, addr) = serve_with_env(dir, "hub.toml", &common::served::RSS_IS_HELD);
    (node, addr.parse().unwrap())
}

/// The honest US desk connects and publishes a small bulletin titled `title`, which
/// the node accepts within PATIENCE; its connection.
async fn us_publishes_in_time(dir: &Path, addr: std::net::SocketAddr, title: &str) -> Client {
    let us = connect(dir, "us-dod", addr).await;
    let honest = bulletin(&common::signing_key(dir, "us-dod"), "us-dod", title, 512);
    let r = tokio::time::timeout(PATIENCE, us.publish(honest))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    us
}

/// A length-prefixed Publish frame of a tiny bulletin signed by `key` as `origin`,
/// padded to a megabyte with a field the node's decoder skips.
pub(crate) fn padded_frame(key: &ed25519_dalek::SigningKey, origin: &str, n: u64) -> Vec<u8> {
    publish_frame(key, origin, n, 1_000_000)
}

/// A length-prefixed Publish frame of a tiny bulletin signed by `key` as `origin`,
/// with `padding` bytes in a field the node's decoder skips (none if 0).
pub(crate) fn publish_frame(
    key: &ed25519_dalek::SigningKey,
    origin: &str,
    n: u64,
    padding: usize,
) -> Vec<u8> {
    use prost::Message as _;
    let frame = proto::ClientFrame {
        frame: Some(proto::client_frame::Frame::Publish(proto::Publish {
            request_id: n,
            bulletin: Some(bulletin(key, origin, &format!("padded {n}"), 16)),
            ..Default::default()
        })),
    };
    let mut body = frame.encode_to_vec();
    if padding > 0 {
        prost::encoding::encode_key(2047, prost::encoding::WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(padding as u64, &mut body);
        body.resize(body.len() + padding, 0);
    }
    let mut out = Vec::with_capacity(body.len() + 10);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// One partner sends tiny valid bulletins, each in a frame padded to a
/// megabyte with a skipped field, on 8 connections, never reading a result. The node
/// charges what it holds (the frame, until the bulletin is copied out of it), so it
/// stays within the same memory bound as under any flood, and an honest desk still
/// publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_flood_on_eight_connections_stays_within_the_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut node, addr) = small_hub(dir);
    let baseline = node.rss_kib();
    let watch = node.watch_rss();
    let key = common::signing_key(dir, "xx-mod");
    let mut flood = tokio::task::JoinSet::new();
    for c in 0..8u64 {
        let (conn, key) = (connect(dir, "xx-mod", addr).await, key.clone());
        flood.spawn(async move {
            let (mut send, recv) = conn.open_raw().await.unwrap();
            let mut sent = 0;
            for i in 0..40 {
                let frame = padded_frame(&key, "xx-mod", c * 1000 + i);
                let write = send.write_all(&frame);
                // A write the node does not take within a while is flow control
                // holding this partner back, which is the point.
                match tokio::time::timeout(Duration::from_secs(3), write).await {
                    Ok(Ok(())) => sent += 1,
                    _ => break,
                }
            }
            (sent, (conn, send, recv)) // held open, results unread
        });
    }
    let (mut sent, mut held) = (0, Vec::new());
    while let Some(done) = flood.join_next().await {
        let (n, open) = done.unwrap();
        sent += n;
        held.push(open);
    }
    let us = us_publishes_in_time(dir, addr, "served through the padded flood").await;
    let peak = watch.peak_kib();
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "node RSS {} MiB at start, peak {} MiB; {sent} of 320 padded frames of 1 MB went in",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        growth_mib <= RSS_GROWTH_BOUND_MIB,
        "the node grew by {growth_mib} MiB under the padded flood (bound {RSS_GROWTH_BOUND_MIB} MiB)"
    );
    drop(held);
    us.close().await;
    assert!(node.stop(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_never_reads_its_results_holds_only_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut node, addr) = small_hub(dir);
    let baseline = node.rss_kib();
    let watch = node.watch_rss();

    let (mut flood, conns) = the_hostile_partner_floods_without_reading(dir, addr).await;
    let mut sent = 0;
    let mut held_open = Vec::new();
    while let Some(done) = flood.join_next().await {
        let (n, publisher) = done.unwrap();
        sent += n;
        held_open.push(publisher); // its results stay unread
    }

    // The other desk then catches up on all of the flood.
    let (us, au) = an_honest_desk_publishes_and_another_receives(dir, addr).await;
    let peak = watch.peak_kib();
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

/// Starts xx-mod's flood on the node at `addr`: each task yields how many bulletins it
/// got in and its publisher, results unread; also returns the four connections.
async fn the_hostile_partner_floods_without_reading(
    dir: &Path,
    addr: std::net::SocketAddr,
) -> (
    tokio::task::JoinSet<(u64, Publisher)>,
    Vec<std::sync::Arc<Client>>,
) {
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
    (flood, conns)
}

/// While the hostile partner's streams are stuck, the US desk publishes in time and the
/// Australian desk receives up to that bulletin; returns both desks' clients.
async fn an_honest_desk_publishes_and_another_receives(
    dir: &Path,
    addr: std::net::SocketAddr,
) -> (Client, Client) {
    // An honest desk still publishes, and another still receives, while the hostile
    // partner's streams are stuck.
    let us = us_publishes_in_time(dir, addr, "still served").await;
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
    (us, au)
}

/// The value of the sample that starts with `line` in a /metrics text.
fn sample(metrics: &str, line: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

const HOLDERS: [&str; 5] = ["aa-mod", "bb-mod", "cc-mod", "dd-mod", "ee-mod"];

/// `plan` with the five HOLDERS and us-dod as RED desks, each table as `desk` writes it,
/// and the auditor audit-office.
fn holders_and_us(plan: Plan, desk: impl Fn(Partner) -> Partner) -> Plan {
    let desks = HOLDERS.iter().chain(&["us-dod"]);
    desks
        .fold(plan, |plan, id| plan.partner(desk(liaison(id, "red"))))
        .partner(auditor("audit-office"))
}

/// Five partners open streams and announce a frame of the largest
/// size on each, then send nothing more, until the node's budget is all held. Before,
/// a sixth partner's publishes hung (each stream took a frame's room before reading).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_holding_streams_cannot_stop_another_from_publishing() {
    let limits = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\nstream_in_flight_mib = 2\n\
        partner_in_flight_mib = 8\nnode_in_flight_mib = 16\nframe_deadline_secs = 3\n";
    let fed = holders_and_us(Federation::around("jp-mod").config(limits), |p| p)
        .start()
        .await;

    // Each announces a frame of the largest size (1,049,600 bytes) on 8 streams and
    // sends 3 bytes of it.
    let mut announce = Vec::new();
    prost::encoding::encode_varint(1_049_600, &mut announce);
    announce.extend_from_slice(&[0x0a, 0x80, 0x80]);
    let (mut held, mut held_clients) = (Vec::new(), Vec::new());
    for id in HOLDERS {
        let c = fed.client(id).await;
        for _ in 0..8 {
            let (mut send, recv) = c.open_raw().await.unwrap();
            send.write_all(&announce).await.unwrap();
            held.push((send, recv));
        }
        held_clients.push(c);
    }
    let full = 16 * 1024 - 1025;
    eventually("the holders fill the node's budget", async || {
        sample(&fed.metrics(), "renkei_in_flight_node_kib ").is_some_and(|kib| kib > full)
    })
    .await;

    // The sixth partner publishes, one after another, through its own floor.
    let us = fed.client("us-dod").await;
    for i in 0..20 {
        honest(&fed, &us, i).await;
    }

    // Past the frame deadline every held stream is closed, the room given back, and
    // each holder's refusal recorded with its reason.
    eventually("the held room given back", async || {
        sample(&fed.metrics(), "renkei_in_flight_node_kib ") == Some(0)
    })
    .await;
    let auditor = fed.client("audit-office").await;
    for id in HOLDERS {
        let query = proto::AuditQuery {
            partner: id.into(),
            event: proto::AuditEvent::BulletinRejected as u32,
            limit: 100,
            ..Default::default()
        };
        let page = auditor.audit_query(query).await.unwrap();
        let slow: u64 = page
            .records
            .iter()
            .map(|b| <proto::AuditRecord as prost::Message>::decode(b.clone()).unwrap())
            .filter(|r| r.error == proto::ErrorCode::FrameTooSlow as i32)
            .map(|r| r.count.max(1))
            .sum();
        assert!(slow >= 1, "{id}: no FRAME_TOO_SLOW on the record");
    }
    drop(held);
    for c in held_clients {
        c.close().await;
    }
    us.close().await;
    auditor.close().await;
    fed.stop().await;
}

/// Five partners publish as fast as the node takes them while a
/// sixth publishes one bulletin at a time. Turns at verifying and places in each group
/// commit go round the partners, and while the sixth waits behind them the commits are
/// kept short (`writer::pace`), so while one of its bulletins is on its way the
/// flooders get a few short commits' worth stored ahead of it (counted in store seqs,
/// not time), not the default 512 a commit. Before the turns, it waited behind every
/// flooder batch verified and queued before it: thousands.
///
/// Counted from the node's head read just before each publish, not from the desk's
/// previous bulletin: what is stored while the desk reads its answer and signs the next
/// (which a loaded machine stretches, in a test process it shares with the flooders)
/// is not ahead of anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_flooding_partners_get_only_their_turns_ahead_of_a_sixth() {
    // The partners' rates lifted: at the default, five flooders are read at a pace the
    // node keeps up with, and no queue forms for turns to be fair in.
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\n\
        partner_publishes_per_sec = 1000000\npartner_mib_per_sec = 1024\n";
    let fed = holders_and_us(Federation::around("jp-mod").config(config), |p| {
        p.with("kinds = []")
    })
    .start()
    .await;

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut flood, flooders) = the_five_flood_until_done(&fed, &done).await;
    let auditor = fed.client("audit-office").await;
    eventually("the flood under way", async || {
        let q = proto::AuditQuery {
            event: proto::AuditEvent::BulletinAccepted as u32,
            limit: 1000,
            ..Default::default()
        };
        auditor.audit_query(q).await.unwrap().records.len() >= 1000
    })
    .await;

    let us = fed.client("us-dod").await;
    let (mut ids, mut heads) = (Vec::new(), Vec::new());
    for i in 0..20 {
        heads.push(sample(&fed.metrics(), "renkei_bulletins_stored ").unwrap());
        ids.push(honest(&fed, &us, i).await);
    }
    // A flood all stored before the desk was done would leave nothing ahead of its
    // last bulletins, whatever the node's order.
    let stored = sample(&fed.metrics(), "renkei_bulletins_stored ").unwrap();
    assert!(
        stored < FLOOD as u64,
        "the flood was all stored ({stored} bulletins) before the desk was done"
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    while flood.join_next().await.is_some() {}

    let seqs = store_seqs_of(&auditor, ids).await;
    few_flooder_bulletins_are_stored_ahead_of_each(&heads, &seqs);
    for c in flooders {
        if let Ok(c) = std::sync::Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    us.close().await;
    auditor.close().await;
    fed.stop().await;
}

/// Bulletins each flooder stream has signed to send.
const FLOOD_STREAM: usize = 1500;
/// The five flooders' bulletins, four streams each.
const FLOOD: usize = HOLDERS.len() * 4 * FLOOD_STREAM;

/// Starts the five HOLDERS' flood, which stops once `done` is set or its bulletins are
/// all sent; returns its tasks and the flooders' clients.
async fn the_five_flood_until_done(
    fed: &Federation,
    done: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (tokio::task::JoinSet<()>, Vec<std::sync::Arc<Client>>) {
    // Each flooder pipelines pre-signed bulletins on 4 streams and reads the results,
    // until the desk is done.
    let mut flood = tokio::task::JoinSet::new();
    let mut flooders = Vec::new();
    for id in HOLDERS {
        let c = std::sync::Arc::new(fed.client(id).await);
        flooders.push(c.clone());
        for s in 0..4 {
            let signed: Vec<_> = (0..FLOOD_STREAM)
                .map(|n| bulletin(fed.key(id), id, &format!("flood {s}/{n}"), 1024))
                .collect();
            let (c, done) = (c.clone(), done.clone());
            flood.spawn(async move {
                let (mut sink, mut results) = c.publisher().await.unwrap().split();
                let reader =
                    tokio::spawn(async move { while let Ok(Some(_)) = results.recv().await {} });
                for (n, b) in signed.into_iter().enumerate() {
                    if done.load(std::sync::atomic::Ordering::Relaxed)
                        || sink.send(n as u64, b).await.is_err()
                    {
                        break;
                    }
                }
                sink.finish();
                let _ = reader.await;
            });
        }
    }
    (flood, flooders)
}

/// The store seq of each bulletin in `ids`, from its acceptance record.
async fn store_seqs_of(auditor: &Client, ids: Vec<String>) -> Vec<u64> {
    // The desk's bulletins' store seqs: the gap between two is what was stored ahead of
    // the second while it was on its way.
    let mut seqs = Vec::new();
    for id in ids {
        let query = proto::AuditQuery {
            bulletin_id: id,
            event: proto::AuditEvent::BulletinAccepted as u32,
            ..Default::default()
        };
        let page = auditor.audit_query(query).await.unwrap();
        let record =
            <proto::AuditRecord as prost::Message>::decode(page.records[0].clone()).unwrap();
        seqs.push(record.bulletin_seqs[0]);
    }
    seqs
}

/// Between the node's head before each of the desk's publishes (`heads`) and the
/// desk's bulletin (store `seqs`), the median number of flooder bulletins stored is at
/// most half a full group commit (512 by default): two short commits, on any machine
/// where a full one takes over 4 ms (the test build's take 20).
fn few_flooder_bulletins_are_stored_ahead_of_each(heads: &[u64], seqs: &[u64]) {
    const MOST: u64 = 512 / 2;
    let mut ahead: Vec<u64> = heads
        .iter()
        .zip(seqs)
        .map(|(h, s)| s.saturating_sub(h + 1))
        .collect();
    eprintln!("flooders' bulletins stored ahead of each of the desk's: {ahead:?}");
    ahead.sort_unstable();
    let median = ahead[ahead.len() / 2];
    // The short commit being made when it arrives and its own: 31 seen (two commits of
    // 16). With full commits (a commit_target_ms no commit reaches) it was 1023.
    assert!(
        median <= MOST,
        "a median of {median} flooder bulletins were stored ahead of each of the desk's (at most {MOST} expected)"
    );
}
