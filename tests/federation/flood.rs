//! A hostile peer node: when the node dials it and subscribes, it floods deliveries,
//! either of tiny valid bulletins each inside a frame padded to a megabyte with a field
//! the node's decoder skips, or of valid bulletins of 700 KB, faster than the node can
//! store them. What the node holds of them (a whole frame, padding included) counts
//! against the peer's budget until each is stored, so its memory stays bounded while
//! every bulletin is taken in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use renkei::transport::{self, FrameReader, Timers, TlsIdentity};

use super::*;

/// Padded deliveries the hostile peer sends, and the padding of each frame; and how many
/// bulletins of 700 KB it sends (140 MB).
const FLOOD: usize = 300;
const PADDING: usize = 1_000_000;
const LARGE: usize = 200;

/// The node's peak memory it may reach: its budgets for the peer are 64 MiB (its
/// share) within 256 MiB (the node's), so this is the share plus a stated overhead for
/// the node itself, QUIC's windows and the segment cache.
const PEAK_MIB_AT_MOST: u64 = 64 + 96;

/// Delivery `n` of a bulletin of xx-node's whose body is `body` bytes, as sent: with a
/// skippable field of `padding` bytes, length-delimited.
fn delivery(key: &ed25519_dalek::SigningKey, n: usize, body: usize, padding: usize) -> Bytes {
    let mut b = sign_as(
        key,
        "xx-node",
        Tlp::Green,
        Kind::Advisory,
        &format!("flood {n}"),
        &[],
        &[],
    );
    if body > 0 {
        let mut plain = proto::Bulletin::decode(b.bulletin).unwrap();
        plain.body = vec![b'x'; body].into();
        b = renkei::bulletin::sign(&plain, key, &Limits::default()).unwrap();
    }
    let frame = proto::ServerFrame {
        frame: Some(proto::server_frame::Frame::Delivery(proto::Delivery {
            seq: n as u64 + 1,
            bulletin: Some(b),
            path: vec!["xx-node".into()],
        })),
    };
    let mut body = frame.encode_to_vec();
    if padding > 0 {
        let key = prost::encoding::WireType::LengthDelimited;
        prost::encoding::encode_key(2047, key, &mut body);
        prost::encoding::encode_varint(padding as u64, &mut body);
        body.resize(body.len() + padding, 0);
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out.into()
}

/// Answers each stream the node opens: a Hello with a Welcome, a Subscribe with the
/// flood (then reads the acks, counting them in `acked`).
async fn answer(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    flood: Arc<Vec<Bytes>>,
    acked: Arc<AtomicUsize>,
) {
    let counts = Arc::new(transport::FrameCounts::default());
    let mut recv = FrameReader::new(recv, 4 << 20, counts.clone());
    match recv.next::<proto::ClientFrame>().await {
        Ok(Some(proto::ClientFrame {
            frame: Some(proto::client_frame::Frame::Hello(_)),
        })) => {
            let welcome = proto::Welcome {
                protocol_version: 1,
                node_id: "xx-node".into(),
                partner_id: "jp-mod".into(),
                role: proto::Role::Relay as i32,
                max_frame_bytes: 4 << 20,
                ..Default::default()
            };
            let frame = proto::ServerFrame {
                frame: Some(proto::server_frame::Frame::Welcome(welcome)),
            };
            let _ = transport::write_frame(&mut send, &frame, &counts).await;
            let _ = send.finish();
        }
        Ok(Some(proto::ClientFrame {
            frame: Some(proto::client_frame::Frame::Subscribe(_)),
        })) => {
            let writing = async {
                for f in flood.iter() {
                    if send.write_all(f).await.is_err() {
                        return;
                    }
                }
            };
            let reading = async {
                while let Ok(Some(proto::ClientFrame {
                    frame: Some(proto::client_frame::Frame::Ack(a)),
                })) = recv.next::<proto::ClientFrame>().await
                {
                    acked.fetch_add(a.seq.len(), Ordering::Relaxed);
                }
            };
            tokio::join!(writing, reading);
        }
        _ => {}
    }
}

/// The hostile peer: listens with xx-node's certificate, answers every connection.
fn hostile_peer(certs: &std::path::Path, flood: Vec<Bytes>) -> (quinn::Endpoint, Arc<AtomicUsize>) {
    let tls = TlsIdentity::load(
        &certs.join("ca.crt"),
        &certs.join("xx-node/tls.crt"),
        &certs.join("xx-node/tls.key"),
    )
    .unwrap();
    let timers = Timers {
        keep_alive: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
    };
    let server = transport::server_config(&tls, timers).unwrap();
    let endpoint = transport::endpoint("127.0.0.1:0".parse().unwrap(), Some(server)).unwrap();
    let (flood, acked) = (Arc::new(flood), Arc::new(AtomicUsize::new(0)));
    let accepting = endpoint.clone();
    let counter = acked.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let (flood, acked) = (flood.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(answer(send, recv, flood.clone(), acked.clone()));
                }
            });
        }
    });
    (endpoint, acked)
}

/// The node's peak resident memory (VmHWM), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// Runs the node with xx-node as its peer flooding `flood`, until it acknowledged every
/// delivery; the node's peak memory in MiB.
async fn peak_through(dir: &std::path::Path, flood: Vec<Bytes>) -> u64 {
    let total = flood.len();
    let (endpoint, acked) = hostile_peer(&dir.join("certs"), flood);
    let port = endpoint.local_addr().unwrap().port();
    // The peer's deliveries are read at 64 MiB a second, as when this test was shown to
    // catch a fault: at the default 8 far fewer of them would be in flight at once.
    let config = common::configs::node_toml("jp-mod").with(&format!(
        "\n[limits]\npartner_mib_per_sec = 64\n[[partner]]\nid = \"xx-node\"\nrole = \"relay\"\nclearance = \"green\"\naddress = \"127.0.0.1:{port}\"\n\
         keys = [{{ public = \"{}\" }}]\n",
        common::public_key(dir, "xx-node")
    ));
    config.write(dir, "hub.toml");
    let (mut served, _) = common::served::serve(dir, "hub.toml");

    // Every delivery is taken in and acknowledged, so the flood went through.
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while acked.load(Ordering::Relaxed) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} deliveries acknowledged",
            acked.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_mib(served.pid());
    assert!(served.stop(PATIENCE).success());
    endpoint.close(0u32.into(), b"done");
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_padded_deliveries_is_held_to_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    common::pki(tmp.path(), "jp-mod,xx-node");
    let key = common::signing_key(tmp.path(), "xx-node");
    let flood = (0..FLOOD).map(|n| delivery(&key, n, 0, PADDING)).collect();
    let peak = peak_through(tmp.path(), flood).await;
    eprintln!("node peak RSS through {FLOOD} padded 1 MB frames: {peak} MiB");
    assert!(peak <= PEAK_MIB_AT_MOST, "the node held {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_large_bulletins_is_held_to_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    common::pki(tmp.path(), "jp-mod,xx-node");
    let key = common::signing_key(tmp.path(), "xx-node");
    let flood = (0..LARGE).map(|n| delivery(&key, n, 700_000, 0)).collect();
    let peak = peak_through(tmp.path(), flood).await;
    eprintln!("node peak RSS through {LARGE} bulletins of 700 KB: {peak} MiB");
    assert!(peak <= PEAK_MIB_AT_MOST, "the node held {peak} MiB");
}
