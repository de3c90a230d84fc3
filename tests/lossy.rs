//! A lossy, reordering network: desks and peer nodes reach real
//! `renkei serve` processes through a UDP proxy that loses, duplicates, delays and
//! reorders datagrams and cuts the path for seconds at a time. Nothing accepted is
//! lost, nothing reaches a desk twice, a short cut is ridden out on the same connection,
//! and a peer link that a long cut ends comes back by itself.

use crate::common;

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::configs::node_toml;
use common::federation::{connect_as, PATIENCE};
use common::lossy::{Counts, Lossy};
use common::peers::Mesh;
use common::served::serve;
use ed25519_dalek::SigningKey;
use prost::Message as _;
use renkei::bulletin::{self, BulletinId, Kind, Limits, Tlp};
use renkei::client::{Client, Subscription};
use renkei::identity::PartnerId;
use renkei::proto::{self, AuditEvent, PublishStatus};
use renkei::timestamp::Timestamp;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// The weather of every scenario: 5% loss, up to 50 ms of jitter, 2% duplicates.
const LOSS: f64 = 0.05;
const JITTER: Duration = Duration::from_millis(50);
const DUPLICATE: f64 = 0.02;
/// The UDP payload a 1,500-byte Ethernet path carries.
const PATH_MTU: usize = 1_472;

/// A GREEN bulletin for everyone, with a 1 KiB body as a small STIX bundle has: about
/// one full-size packet each on a 1,500-byte path.
fn green(key: &SigningKey, origin: &str, kind: Kind, title: &str) -> proto::SignedBulletin {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title: title.into(),
        content_type: "text/plain".into(),
        body: vec![b'x'; 1024].into(),
        ..Default::default()
    };
    bulletin::sign(&b, key, &Limits::default()).unwrap()
}

/// The id a delivery's bulletin carries.
fn bulletin_id(d: &proto::Delivery) -> String {
    let signed = d.bulletin.as_ref().expect("a bulletin");
    proto::Bulletin::decode(signed.bulletin.clone()).unwrap().id
}

/// The proxy really did what the weather says: datagrams lost, duplicated, held back
/// and overtaken, and dropped while the path was cut.
fn assert_weather(counts: Counts) {
    eprintln!("proxy: {counts:?}");
    assert!(counts.lost > 0, "nothing was lost: {counts:?}");
    assert!(counts.duplicated > 0, "nothing was duplicated: {counts:?}");
    assert!(counts.delayed > 0, "nothing was delayed: {counts:?}");
    assert!(counts.reordered > 0, "nothing was reordered: {counts:?}");
    assert!(counts.cut > 0, "the cut dropped nothing: {counts:?}");
    // Of what the open path was given, about LOSS was lost.
    let offered = counts.received - counts.cut - counts.too_big;
    let loss = counts.lost as f64 / offered as f64;
    assert!((0.02..0.10).contains(&loss), "loss rate {loss}: {counts:?}");
}

/// A node `jp-mod` with two desks, US (publishes) and Australia (subscribes), whose
/// connections idle out after 10 s of silence and ping every 2 s.
fn desk_node(dir: &Path) -> String {
    common::pki(dir, "jp-mod,us-dod,au-dod");
    let config = node_toml("jp-mod").with(&format!(
        "[transport]\nkeep_alive_secs = 2\nidle_timeout_secs = 10\n\n\
         [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\nkeys = [{{ public = \"{}\" }}]\n",
        common::public_key(dir, "us-dod"),
        common::public_key(dir, "au-dod")
    ));
    config.write(dir, "jp-mod.toml");
    "jp-mod.toml".into()
}

/// Publishes `signed` on one pipelined stream; every answer must be ACCEPTED. Returns
/// the accepted ids and when each answer came. `tell`: (k, n) notifies n after k answers.
async fn publish_all(
    client: &Client,
    signed: Vec<proto::SignedBulletin>,
    tell: Option<(usize, &Notify)>,
) -> (HashSet<String>, Vec<Instant>) {
    let n = signed.len();
    let (mut sink, mut results) = client.publisher().await.unwrap().split();
    let sender = tokio::spawn(async move {
        for (i, b) in signed.into_iter().enumerate() {
            sink.send(i as u64, b).await.unwrap();
        }
        sink.finish();
    });
    let (mut accepted, mut times) = (HashSet::new(), Vec::new());
    while accepted.len() < n {
        let r = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .unwrap_or_else(|_| panic!("answer {} of {n} in time", accepted.len() + 1))
            .unwrap()
            .expect("an answer");
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{r:?}");
        assert!(accepted.insert(r.bulletin_id), "one answer per bulletin");
        times.push(Instant::now());
        if let Some((_, told)) = tell.filter(|(k, _)| *k == accepted.len()) {
            told.notify_one();
        }
    }
    sender.await.unwrap();
    (accepted, times)
}

/// Reads and acknowledges deliveries until `want` distinct bulletins have come; returns
/// every delivered id in order (repeats included) and when each came.
async fn receive_all(sub: &mut Subscription<'_>, want: usize) -> (Vec<String>, Vec<Instant>) {
    let (mut ids, mut times, mut distinct) = (Vec::new(), Vec::new(), HashSet::new());
    while distinct.len() < want {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {} of {want} in time", distinct.len() + 1))
            .unwrap()
            .expect("the subscription stays open");
        sub.ack(vec![d.seq]).await.unwrap();
        let id = bulletin_id(&d);
        distinct.insert(id.clone());
        ids.push(id);
        times.push(Instant::now());
    }
    (ids, times)
}

/// Cuts the path for `length` once told; returns when the cut ended.
async fn cut_when_told(proxy: &Lossy, told: &Notify, length: Duration) -> Instant {
    told.notified().await;
    proxy.cut(true);
    // The cut's length is the fault under test, not a wait for something to happen.
    tokio::time::sleep(length).await;
    proxy.cut(false);
    Instant::now()
}

/// How long after `healed` the first of `times` came.
fn recovery(times: &[Instant], healed: Instant) -> Duration {
    let first = times
        .iter()
        .find(|t| **t >= healed)
        .expect("something after the cut");
    *first - healed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desks_on_a_lossy_path_lose_nothing_and_ride_out_a_short_cut() {
    const BULLETINS: usize = 300;
    const CUT: Duration = Duration::from_secs(2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = desk_node(dir);
    let (node, addr) = serve(dir, &config);
    let node_addr: SocketAddr = addr.parse().unwrap();

    // Both desks reach Tokyo through a path that loses, jitters and duplicates.
    let proxy = Lossy::start(node_addr, 0x5eed_0001).await;
    proxy.mtu(PATH_MTU);
    proxy.weather(LOSS, JITTER, DUPLICATE);
    let hub: PartnerId = "jp-mod".parse().unwrap();
    let certs = dir.join("certs");
    let us = connect_as(&certs, "us-dod", proxy.addr(), &hub)
        .await
        .unwrap();
    let au = connect_as(&certs, "au-dod", proxy.addr(), &hub)
        .await
        .unwrap();
    let mut sub = au.subscribe(0).await.unwrap();

    // The US desk publishes a few hundred GREEN indicators; a third of the way in, the
    // path is cut for two seconds, well inside the 10 s idle timeout.
    let key = &common::signing_key(dir, "us-dod");
    let signed: Vec<_> = (0..BULLETINS)
        .map(|i| green(key, "us-dod", Kind::Indicator, &format!("indicator {i}")))
        .collect();
    let told = Notify::new();
    let started = Instant::now();
    let ((accepted, answered), (delivered, arrived), healed) = tokio::join!(
        publish_all(&us, signed, Some((BULLETINS / 3, &told))),
        receive_all(&mut sub, BULLETINS),
        cut_when_told(&proxy, &told, CUT),
    );
    eprintln!(
        "{BULLETINS} answered in {:?} and received in {:?}; after the {CUT:?} cut the first answer came in {:?}, the first delivery in {:?}",
        answered[BULLETINS - 1] - started,
        arrived[BULLETINS - 1] - started,
        recovery(&answered, healed),
        recovery(&arrived, healed),
    );

    // Every accepted bulletin reached Australia, and on the one subscription nothing
    // came twice: the duplicated datagrams stayed below QUIC.
    let distinct: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!(
        distinct, accepted,
        "what Australia got is what was accepted"
    );
    assert_eq!(delivered.len(), distinct.len(), "a delivery came twice");
    // The same connections carried it all, through the cut.
    assert!(us.close_reason().is_none(), "{:?}", us.close_reason());
    assert!(au.close_reason().is_none(), "{:?}", au.close_reason());
    assert_weather(proxy.counts());

    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    us.close().await;
    au.close().await;
    assert!(node.stop(PATIENCE).success());
}

/// A UDP echo server on 127.0.0.1, for the proxy's own test.
async fn echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// The next datagram at `socket`, if one comes within `wait`.
async fn next_datagram(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await;
    got.ok().map(|r| buf[..r.unwrap().0].to_vec())
}

#[tokio::test]
async fn the_proxy_forwards_duplicates_cuts_and_stops_when_dropped() {
    let proxy = Lossy::start(echo().await, 7).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.addr()).await.unwrap();
    client.send(b"hello").await.unwrap();
    assert_eq!(next_datagram(&client, PATIENCE).await.unwrap(), b"hello");

    // Duplicated on the way there (once) and back (both copies): four come home.
    proxy.weather(0.0, Duration::from_millis(5), 1.0);
    client.send(b"twice").await.unwrap();
    for _ in 0..4 {
        assert_eq!(next_datagram(&client, PATIENCE).await.unwrap(), b"twice");
    }

    // Cut: nothing comes back (within a generous round trip), and it is counted.
    proxy.weather(0.0, Duration::ZERO, 0.0);
    proxy.cut(true);
    client.send(b"lost").await.unwrap();
    assert_eq!(
        next_datagram(&client, Duration::from_millis(300)).await,
        None
    );
    let counts = proxy.counts();
    assert_eq!((counts.cut, counts.duplicated), (1, 3), "{counts:?}");
    proxy.cut(false);
    client.send(b"again").await.unwrap();
    assert_eq!(next_datagram(&client, PATIENCE).await.unwrap(), b"again");

    // Dropped, its task ends and lets its port go.
    let addr = proxy.addr();
    drop(proxy);
    let deadline = Instant::now() + PATIENCE;
    while UdpSocket::bind(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the proxy still holds {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `renkei status --json` of node `n`: is its link with `peer` up?
fn link_up(mesh: &Mesh, n: &str, peer: &str) -> bool {
    let run = common::renkei_ok(
        &mesh.dir,
        &["status", "--config", &mesh.nodes[n].config, "--json"],
    );
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let links = status["links"].as_array().expect("links");
    let link = links
        .iter()
        .find(|l| l["peer"] == peer)
        .expect("a link with the peer");
    link["up"] == true
}

/// Polls both nodes' status until their link is `up` (or not); returns when it was.
async fn both_links(mesh: &Mesh, up: bool) -> Instant {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if link_up(mesh, "jp-mod", "nato-ccdcoe") == up
            && link_up(mesh, "nato-ccdcoe", "jp-mod") == up
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the link not {} within {PATIENCE:?}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The records of `event` on `node`'s audit log, as its auditor reads them.
async fn records(mesh: &Mesh, node: &str, event: AuditEvent) -> Vec<proto::AuditRecord> {
    let auditor = mesh.client(&format!("{node}-audit")).await;
    let page = auditor
        .audit_query(proto::AuditQuery {
            event: event as u32,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.next_after.is_none(), "one page holds them all");
    auditor.close().await;
    page.records
        .into_iter()
        .map(|r| proto::AuditRecord::decode(r).unwrap())
        .collect()
}

/// Tokyo's desk publishes `n` GREEN advisories titled `{prefix} {i}`; all ACCEPTED.
/// Returns their ids.
async fn burst(mesh: &Mesh, prefix: &str, n: usize) -> HashSet<String> {
    let desk = mesh.client("jp-cdc").await;
    let signed: Vec<_> = (0..n)
        .map(|i| {
            green(
                mesh.key("jp-cdc"),
                "jp-cdc",
                Kind::Advisory,
                &format!("{prefix} {i}"),
            )
        })
        .collect();
    let (accepted, _) = publish_all(&desk, signed, None).await;
    assert_eq!(accepted.len(), n);
    desk.close().await;
    accepted
}

/// Tokyo and NATO peered, each dialling the other through a proxy in front of it (the
/// two paths share the weather); quick keep-alive (1 s), idle timeout (3 s) and redials
/// (50 ms doubling to 1 s) keep the story short.
async fn peered_through_proxies(dir: &Path) -> (Mesh, Lossy, Lossy) {
    let mesh = Mesh::new(
        dir,
        &["jp-mod", "nato-ccdcoe"],
        &[("jp-cdc", "jp-mod"), ("ee-cert", "nato-ccdcoe")],
        &[("jp-mod", "nato-ccdcoe")],
        "",
    );
    let (jp, nato) = (mesh.nodes["jp-mod"].addr, mesh.nodes["nato-ccdcoe"].addr);
    let to_nato = Lossy::start(nato, 0x5eed_0002).await;
    to_nato.mtu(PATH_MTU);
    let to_jp = to_nato.beside(jp).await;
    for (n, peer, proxy) in [("jp-mod", nato, &to_nato), ("nato-ccdcoe", jp, &to_jp)] {
        let path = dir.join(&mesh.nodes[n].config);
        let text = fs::read_to_string(&path).unwrap();
        let dialled = format!("address = \"{peer}\"");
        assert!(text.contains(&dialled), "{n} dials {peer}");
        let text = text
            .replace(&dialled, &format!("address = \"{}\"", proxy.addr()))
            .replace(
                "idle_timeout_secs = 5\n",
                "idle_timeout_secs = 3\nhandshake_timeout_secs = 2\n",
            );
        fs::write(path, text).unwrap();
    }
    (mesh, to_nato, to_jp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_link_cut_longer_than_its_idle_timeout_comes_back_and_loses_nothing() {
    const EACH: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let (mut mesh, to_nato, _to_jp) = peered_through_proxies(tmp.path()).await;
    mesh.start_all();
    both_links(&mesh, true).await;

    // The weather turns; Tokyo's desk publishes, and while the link carries that to
    // Tallinn the path goes dead, for longer than the link's idle timeout. The desk,
    // on its own path to Tokyo, keeps publishing meanwhile.
    to_nato.weather(LOSS, JITTER, DUPLICATE);
    let mut published = burst(&mesh, "before", EACH).await;
    to_nato.cut(true);
    let cut = Instant::now();
    published.extend(burst(&mesh, "during", EACH).await);
    let down = both_links(&mesh, false).await;
    to_nato.cut(false);
    let healed = Instant::now();
    let up = both_links(&mesh, true).await;
    eprintln!(
        "the link went down {:?} after the cut, came back {:?} after the path did",
        down - cut,
        up - healed
    );
    published.extend(burst(&mesh, "after", EACH).await);

    // Estonia's desk behind NATO gets every one of them, once, and NATO stored each once.
    let desk = mesh.client("ee-cert").await;
    let mut sub = desk.subscribe(0).await.unwrap();
    let (ids, _) = receive_all(&mut sub, published.len()).await;
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    desk.close().await;
    let got: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(got, published, "Estonia got what Tokyo accepted");
    assert_eq!(got.len(), ids.len(), "something came twice");
    let stored = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinAccepted).await;
    let stored_ids: HashSet<String> = stored.iter().map(|r| r.bulletin_id.clone()).collect();
    assert_eq!(stored_ids, published);
    assert_eq!(stored.len(), published.len(), "each stored once at NATO");
    let again = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinDuplicate).await;
    assert!(again.is_empty(), "{again:?}");

    // NATO's log says the link went down and came up again.
    let downs = records(&mesh, "nato-ccdcoe", AuditEvent::LinkDown).await;
    let ups = records(&mesh, "nato-ccdcoe", AuditEvent::LinkUp).await;
    assert!(!downs.is_empty(), "the cut is on NATO's record");
    for r in &downs {
        eprintln!("nato-ccdcoe LINK_DOWN: {}", r.reason);
    }
    assert!(ups.len() >= 2, "up, and up again: {ups:?}");
    assert_weather(to_nato.counts());
    mesh.stop_all();
}
