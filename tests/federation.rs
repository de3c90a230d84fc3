//! Federation scenarios: several real `renkei serve` processes on 127.0.0.1, each with
//! its desks, linked as peer nodes over QUIC with mutual TLS. Bulletins cross hops with
//! their origin's signature checked at every node, under each node's own policy.

mod common;

use common::federation::{sign_as, PATIENCE};
use common::peers::Mesh;
use prost::Message as _;
use renkei::bulletin::{Kind, Limits, Tlp, UnverifiedBulletin};
use renkei::client::Client;
use renkei::identity::{Keyring, PartnerId, PublicKey, Validity};
use renkei::proto::{self, AuditEvent, ErrorCode, PublishStatus};
use renkei::timestamp::Timestamp;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

/// Publishes as the desk `client`, expecting ACCEPTED; returns who it was shared with.
async fn publish(client: &Client, b: proto::SignedBulletin) -> Vec<String> {
    let r = client.publish(b).await.expect("an answer");
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{r:?}");
    r.shared_with
}

/// The next `count` deliveries of a desk's subscription, each acknowledged.
async fn take(client: &Client, count: usize) -> Vec<proto::Delivery> {
    let mut sub = client.subscribe(0).await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {} of {count} in time", got.len() + 1))
            .unwrap()
            .expect("stream open");
        sub.ack(vec![d.seq]).await.unwrap();
        got.push(d);
    }
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .expect("clean close in time")
        .unwrap();
    got
}

fn title(d: &proto::Delivery) -> String {
    let signed = d.bulletin.as_ref().expect("a bulletin");
    proto::Bulletin::decode(signed.bulletin.clone())
        .unwrap()
        .title
}

/// Checks a delivery's signature against `origin`'s key, as the desk would.
fn verify(mesh: &Mesh, d: &proto::Delivery, origin: &str) {
    let mut ring = Keyring::new();
    let key: PublicKey = mesh.public(origin).parse().unwrap();
    ring.insert(pid(origin), key, Validity::default());
    let limits = Limits::default();
    let signed = d.bulletin.clone().expect("a bulletin");
    let u = UnverifiedBulletin::from_signed(signed, &limits).unwrap();
    u.verify(&ring, Timestamp::now(), &limits)
        .unwrap_or_else(|e| panic!("{origin}'s signature: {e}"));
}

/// The records of `event` on `node`'s audit log, read by its auditor.
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
    auditor.close().await;
    page.records
        .into_iter()
        .map(|r| proto::AuditRecord::decode(r).unwrap())
        .collect()
}

fn green(mesh: &Mesh, desk: &str, title: &str) -> proto::SignedBulletin {
    sign_as(
        mesh.key(desk),
        desk,
        Tlp::Green,
        Kind::Advisory,
        title,
        &[],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_three_nodes_carries_each_bulletin_as_far_as_its_tlp_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "nato-ccdcoe", "ee-mod"],
        &[
            ("jp-cdc", "jp-mod"),
            ("jp-nisc", "jp-mod"),
            ("nato-desk", "nato-ccdcoe"),
            ("ee-cert", "ee-mod"),
        ],
        &[("jp-mod", "nato-ccdcoe"), ("nato-ccdcoe", "ee-mod")],
        "",
    );
    // The NATO node was never told about Japan's NISC: it cannot verify its bulletins.
    mesh.forget("nato-ccdcoe", "jp-nisc");
    mesh.start_all();
    let jp = mesh.client("jp-cdc").await;

    // Tokyo's GREEN advisory reaches Tallinn's desk through the NATO node.
    let shared = publish(&jp, green(&mesh, "jp-cdc", "green advisory")).await;
    assert_eq!(shared, ["jp-nisc", "nato-ccdcoe"], "its desks and its peer");
    let ee = mesh.client("ee-cert").await;
    let got = take(&ee, 1).await;
    assert_eq!(title(&got[0]), "green advisory");
    assert_eq!(got[0].path, ["jp-mod", "nato-ccdcoe", "ee-mod"]);
    verify(&mesh, &got[0], "jp-cdc");

    // AMBER+STRICT for the NATO desk reaches it and goes no further.
    let strict = sign_as(
        mesh.key("jp-cdc"),
        "jp-cdc",
        Tlp::AmberStrict,
        Kind::Incident,
        "strict for nato",
        &["nato-desk"],
        &[],
    );
    assert_eq!(publish(&jp, strict).await, ["nato-ccdcoe"]);
    // A bulletin the NATO node cannot verify is refused there and not forwarded.
    let nisc = mesh.client("jp-nisc").await;
    publish(&nisc, green(&mesh, "jp-nisc", "unverifiable at nato")).await;
    // A fence: deliveries keep their order, so once it arrives everything before it has.
    publish(&jp, green(&mesh, "jp-cdc", "fence")).await;
    let nato = mesh.client("nato-desk").await;
    let titles: Vec<String> = take(&nato, 3).await.iter().map(title).collect();
    assert_eq!(titles, ["green advisory", "strict for nato", "fence"]);
    let titles: Vec<String> = take(&ee, 1).await.iter().map(title).collect();
    assert_eq!(titles, ["fence"], "nothing else reached Tallinn");

    // The NATO node verified Tokyo's signature itself and recorded the refusal.
    let accepted = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinAccepted).await;
    assert_eq!(
        accepted.len(),
        3,
        "green, strict and fence were stored once each"
    );
    assert!(accepted
        .iter()
        .all(|r| r.origin == "jp-cdc" && r.partner == "jp-mod"));
    let rejected = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinRejected).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].error, ErrorCode::UnknownOrigin as i32);
    assert_eq!(rejected[0].origin, "jp-nisc");
    let ee_accepted = records(&mesh, "ee-mod", AuditEvent::BulletinAccepted).await;
    assert_eq!(ee_accepted.len(), 2, "green and fence only");
    let up = records(&mesh, "ee-mod", AuditEvent::LinkUp).await;
    assert!(!up.is_empty() && up.iter().all(|r| r.partner == "nato-ccdcoe"));

    for c in [jp, nisc, nato, ee] {
        c.close().await;
    }
    mesh.stop_all();
}
