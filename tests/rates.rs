//! A partner's rates: its frames are read no faster than its bytes a second, nor its
//! publishes faster than its publishes a second, all its connections together. The
//! node does not read, so QUIC does not let the partner send: padding or flooding buys
//! a partner none of the CPU and flushes the others need.

use crate::common;

use std::time::Instant;

use common::federation::{Federation, PATIENCE};
use common::tables::liaison;
use renkei::client::Client;
use renkei::proto::{self, PublishStatus};

use crate::budget::{connect, padded_frame, publish_frame, small_hub_with};

/// Frames of megabytes at `partner_mib_per_sec = 4`, counted from the node's answers
/// on three connections: after the first half megabyte (the burst) each takes a quarter
/// of a second. Without the rate, all twelve are answered within a fraction of a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_is_read_no_faster_than_its_rate() {
    const CONNECTIONS: u64 = 3;
    const EACH: u64 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (node, addr) = small_hub_with(dir, "partner_mib_per_sec = 4\n");
    let key = common::signing_key(dir, "xx-mod");
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(connect(dir, "xx-mod", addr).await);
    }
    let (took, open) = all_answered(conns, |c| {
        (0..EACH)
            .map(|n| padded_frame(&key, "xx-mod", c * 100 + n))
            .collect()
    })
    .await;
    // The last frame is read once the eleven before it (10.5 MiB), less the burst, have
    // been paid for at 4 MiB a second: 2.5 s; one frame of slack.
    let frames = (CONNECTIONS * EACH) as f64;
    let least = ((frames - 1.0) * 1_000_000.0 / (1 << 20) as f64 - 0.5 - 1.0) / 4.0;
    eprintln!("{frames} padded frames of 1 MB answered in {took:.2} s (at least {least:.2} s)");
    assert!(
        took >= least,
        "the node read {frames} MB from one partner in {took:.2} s, faster than 4 MiB a second"
    );
    for conn in open {
        conn.close().await;
    }
    assert!(node.stop(PATIENCE).success());
}

/// Small publishes at `partner_publishes_per_sec = 20`, counted from the node's answers
/// to 60 on three connections: after the burst (an eighth of a second's worth) each
/// waits a twentieth of a second, and the node's metrics say how long the partner was
/// held back. Without the rate, all sixty are answered within a fraction of a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_publishes_no_faster_than_its_publish_rate() {
    const CONNECTIONS: u64 = 3;
    const EACH: u64 = 20;
    let limits = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\npartner_publishes_per_sec = 20\n";
    let fed = Federation::around("jp-mod")
        .config(limits)
        .partner(liaison("xx-mod", "red"))
        .start()
        .await;
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(fed.client("xx-mod").await);
    }
    let key = fed.key("xx-mod");
    let (took, open) = all_answered(conns, |c| {
        (0..EACH)
            .map(|n| publish_frame(key, "xx-mod", c * 100 + n, 0))
            .collect()
    })
    .await;
    // The last publish is read once the 59 before it, less the burst (2.5), have been
    // paid for at 20 a second: 2.8 s; one publish of slack.
    let publishes = (CONNECTIONS * EACH) as f64;
    let least = (publishes - 1.0 - 2.5 - 1.0) / 20.0;
    eprintln!("{publishes} publishes answered in {took:.2} s (at least {least:.2} s)");
    assert!(
        took >= least,
        "the node read {publishes} publishes of one partner in {took:.2} s, faster than 20 a second"
    );
    // Its streams waited at once, so the waits add up to more than the time taken.
    let metrics = fed.metrics();
    let held = r#"renkei_held_back_seconds_total{partner="xx-mod",rate="publishes"} "#;
    let secs: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(held))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {held} in:\n{metrics}"));
    assert!(
        secs >= least,
        "held back {secs} s in all, less than {least:.2} s"
    );
    for conn in open {
        conn.close().await;
    }
    fed.stop().await;
}

/// Sends each of `conns` the frames `frames` makes for its index, on a stream of its
/// own, all at once, and reads an ACCEPTED answer for each: seconds until the last
/// answer, and the connections.
async fn all_answered(
    conns: Vec<Client>,
    frames: impl Fn(u64) -> Vec<Vec<u8>>,
) -> (f64, Vec<Client>) {
    let started = Instant::now();
    let mut flows = tokio::task::JoinSet::new();
    for (c, conn) in (0u64..).zip(conns) {
        let frames = frames(c);
        flows.spawn(async move {
            send_and_read_answers(&conn, frames).await;
            conn
        });
    }
    let mut open = Vec::new();
    while let Some(conn) = flows.join_next().await {
        open.push(conn.unwrap());
    }
    (started.elapsed().as_secs_f64(), open)
}

/// Sends `frames` on a new stream of `conn` and reads an ACCEPTED answer for each.
async fn send_and_read_answers(conn: &Client, frames: Vec<Vec<u8>>) {
    let (mut send, recv) = conn.open_raw().await.unwrap();
    let count = frames.len();
    let writer = tokio::spawn(async move {
        for frame in frames {
            send.write_all(&frame).await.unwrap();
        }
        send
    });
    let mut results = renkei::transport::FrameReader::new(recv, 1 << 20, Default::default());
    for _ in 0..count {
        let frame = tokio::time::timeout(PATIENCE, results.next::<proto::ServerFrame>())
            .await
            .expect("answered in time")
            .unwrap()
            .expect("a result");
        let Some(proto::server_frame::Frame::PublishResult(r)) = frame.frame else {
            panic!("not a result: {frame:?}");
        };
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    }
    drop(writer.await.unwrap());
}
