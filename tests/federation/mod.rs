//! Federation scenarios: several real `renkei serve` processes on 127.0.0.1, each with
//! its desks, linked as peer nodes over QUIC with mutual TLS. Bulletins cross hops with
//! their origin's signature checked at every node, under each node's own policy.

use crate::common;

mod flood;
mod hops;
mod links;
mod unacked;

use common::federation::{eventually, sign_as, PATIENCE};
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

/// The records of `event` on `node`'s audit log, read by its auditor page by page.
pub(crate) async fn records(mesh: &Mesh, node: &str, event: AuditEvent) -> Vec<proto::AuditRecord> {
    let auditor = mesh.client(&format!("{node}-audit")).await;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = auditor
            .audit_query(proto::AuditQuery {
                event: event as u32,
                limit: 1000,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        all.extend(
            page.records
                .into_iter()
                .map(|r| proto::AuditRecord::decode(r).unwrap()),
        );
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    auditor.close().await;
    all
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

/// `renkei status --json` of node `n`.
fn status(mesh: &Mesh, n: &str) -> serde_json::Value {
    let run = common::renkei_ok(
        &mesh.dir,
        &["status", "--config", &mesh.nodes[n].config, "--json"],
    );
    serde_json::from_str(&run.stdout).unwrap()
}

/// `n`'s link with `peer`, from its status.
fn link(mesh: &Mesh, n: &str, peer: &str) -> serde_json::Value {
    status(mesh, n)["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["peer"] == peer)
        .cloned()
        .unwrap_or_else(|| panic!("{n} has no link with {peer}"))
}
