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

/// The records of `event` on `node`'s audit log, read by its auditor page by page.
async fn records(mesh: &Mesh, node: &str, event: AuditEvent) -> Vec<proto::AuditRecord> {
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

/// Checks that every node of `mesh` stored each of `titles` (made by [`flood`]) once
/// and delivered each to its desk once, but a desk's own, and that no audit log shows
/// any of them twice (a copy a peer forwards again is acknowledged, not recorded).
async fn stored_and_delivered_once(mesh: &Mesh, titles: &[String]) {
    for (desk, node) in &mesh.desks {
        let mut want: Vec<String> = titles
            .iter()
            .filter(|t| !t.starts_with(&format!("{desk} ")))
            .cloned()
            .collect();
        want.sort();
        let desk_client = mesh.client(desk).await;
        let got = take(&desk_client, want.len()).await;
        desk_client.close().await;
        let mut seen: Vec<String> = got.iter().map(title).collect();
        seen.sort();
        assert_eq!(seen, want, "{desk} at {node}");
        let accepted = records(mesh, node, AuditEvent::BulletinAccepted).await;
        assert_eq!(accepted.len(), titles.len(), "{node} stored each once");
        let mut ids: Vec<&str> = accepted.iter().map(|r| r.bulletin_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), titles.len(), "{node}: one record per bulletin");
        let delivered: usize = records(mesh, node, AuditEvent::Delivered)
            .await
            .iter()
            .filter(|r| r.partner == *desk)
            .map(|r| r.bulletin_seqs.len())
            .sum();
        assert_eq!(
            delivered,
            want.len(),
            "{node} delivered each to {desk} once"
        );
        let again = records(mesh, node, AuditEvent::BulletinDuplicate).await;
        assert!(again.is_empty(), "{node} shows a bulletin twice: {again:?}");
    }
}

/// Publishes `n` GREEN bulletins from `desk` and then its fence, and returns their
/// titles.
async fn flood(mesh: &Mesh, desk: &str, n: usize) -> Vec<String> {
    let client = mesh.client(desk).await;
    let mut titles = Vec::new();
    for i in 0..=n {
        let t = if i == n {
            format!("{desk} fence")
        } else {
            format!("{desk} {i}")
        };
        publish(&client, green(mesh, desk, &t)).await;
        titles.push(t);
    }
    client.close().await;
    titles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_triangle_each_node_stores_and_delivers_each_bulletin_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "us-dod", "au-dod"],
        &[
            ("jp-cdc", "jp-mod"),
            ("us-cybercom", "us-dod"),
            ("au-asd", "au-dod"),
        ],
        &[
            ("jp-mod", "us-dod"),
            ("us-dod", "au-dod"),
            ("au-dod", "jp-mod"),
        ],
        "",
    );
    mesh.start_all();
    let mut titles = flood(&mesh, "jp-cdc", 5).await;
    titles.extend(flood(&mesh, "au-asd", 2).await);
    // A bulletin may reach each node but its home twice (directly and round the
    // triangle): the second copy is acknowledged, never stored, delivered or recorded.
    stored_and_delivered_once(&mesh, &titles).await;
    mesh.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_ring_of_five_each_node_stores_and_delivers_each_bulletin_once() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = ["jp-mod", "us-dod", "au-dod", "uk-mod", "ee-mod"];
    let desks: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (format!("{n}-desk"), n.to_string()))
        .collect();
    let desk_refs: Vec<(&str, &str)> = desks
        .iter()
        .map(|(d, n)| (d.as_str(), n.as_str()))
        .collect();
    let links: Vec<(&str, &str)> = (0..5).map(|i| (nodes[i], nodes[(i + 1) % 5])).collect();
    let mut mesh = Mesh::new(tmp.path(), &nodes, &desk_refs, &links, "");
    mesh.start_all();
    let mut titles = flood(&mesh, "jp-mod-desk", 4).await;
    titles.extend(flood(&mesh, "uk-mod-desk", 2).await);
    stored_and_delivered_once(&mesh, &titles).await;
    mesh.stop_all();
}

/// Publishes `n` GREEN bulletins from `desk` on one pipelined stream, titled
/// `{prefix} {i}`, and waits until each is ACCEPTED; after `then_at` results, runs
/// `then`.
async fn burst(
    mesh: &mut Mesh,
    (desk, prefix, n): (&str, &str, usize),
    then_at: usize,
    then: impl FnOnce(&mut Mesh),
) {
    let client = mesh.client(desk).await;
    let signed: Vec<_> = (0..n)
        .map(|i| green(mesh, desk, &format!("{prefix} {i}")))
        .collect();
    let (mut sink, mut results) = client.publisher().await.unwrap().split();
    let sender = tokio::spawn(async move {
        for (i, b) in signed.into_iter().enumerate() {
            sink.send(i as u64, b).await.unwrap();
        }
        sink.finish();
    });
    let mut then = Some(then);
    for i in 0..n {
        let r = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .expect("a result in time")
            .unwrap()
            .expect("a result");
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{r:?}");
        if i + 1 == then_at {
            if let Some(f) = then.take() {
                f(mesh);
            }
        }
    }
    sender.await.unwrap();
    client.close().await;
}

/// The titles of `n` deliveries at `desk`, each acknowledged.
async fn titles_at(mesh: &Mesh, desk: &str, n: usize) -> Vec<String> {
    let client = mesh.client(desk).await;
    let titles = take(&client, n).await.iter().map(title).collect();
    client.close().await;
    titles
}

/// Asserts `titles` are `{prefix} 0` to `{prefix} n-1`, each once.
fn each_once(mut titles: Vec<String>, prefix: &str, n: usize) {
    titles.sort();
    let before = titles.len();
    titles.dedup();
    assert_eq!(before, titles.len(), "something came twice");
    let mut want: Vec<String> = (0..n).map(|i| format!("{prefix} {i}")).collect();
    want.sort();
    assert_eq!(titles, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_or_cut_off_gets_everything_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "nato-ccdcoe", "ee-mod"],
        &[("jp-cdc", "jp-mod"), ("ee-cert", "ee-mod")],
        &[("jp-mod", "nato-ccdcoe"), ("nato-ccdcoe", "ee-mod")],
        "",
    );
    // Tallinn's node is down while Tokyo publishes.
    mesh.start("jp-mod");
    mesh.start("nato-ccdcoe");
    burst(&mut mesh, ("jp-cdc", "while down", 1_000), 0, |_| {}).await;
    mesh.start("ee-mod");
    let got = titles_at(&mesh, "ee-cert", 1_000).await;
    each_once(got, "while down", 1_000);

    // The NATO node dies in the middle of the next burst, and comes back.
    burst(&mut mesh, ("jp-cdc", "cut off", 1_000), 300, |mesh| {
        mesh.kill("nato-ccdcoe");
        mesh.start("nato-ccdcoe");
    })
    .await;
    let got = titles_at(&mesh, "ee-cert", 1_000).await;
    each_once(got, "cut off", 1_000);
    let accepted = records(&mesh, "ee-mod", AuditEvent::BulletinAccepted).await;
    let mut ids: Vec<&str> = accepted.iter().map(|r| r.bulletin_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_000, "each stored once at ee-mod");
    assert!(records(&mesh, "ee-mod", AuditEvent::BulletinDuplicate)
        .await
        .is_empty());
    let down = records(&mesh, "ee-mod", AuditEvent::LinkDown).await;
    assert!(!down.is_empty(), "the cut is on ee-mod's record");
    mesh.stop_all();
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

/// Asks `check` again (a node's status, its log) until it says yes or PATIENCE runs out.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Removes the `[[partner]]` whose id is `id` from a node's config text.
fn drop_partner(text: &str, id: &str) -> String {
    text.split("\n[[partner]]")
        .filter(|block| !block.trim_start().starts_with(&format!("id = \"{id}\"")))
        .collect::<Vec<_>>()
        .join("\n[[partner]]")
}

/// jp-mod pins uk-mod to another certificate and does not know cn-pla at all; and
/// `fake.toml` is a node that calls itself us-dod, with a certificate from another CA.
fn write_impostors(mesh: &Mesh) {
    let dir = &mesh.dir;
    let path = dir.join("jp-mod.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let pinned = text.replace(
        "id = \"uk-mod\"\nrole = \"relay\"\n",
        &format!(
            "id = \"uk-mod\"\nrole = \"relay\"\ntls_fingerprint = \"sha256:{}\"\n",
            "0".repeat(64)
        ),
    );
    std::fs::write(&path, drop_partner(&pinned, "cn-pla")).unwrap();
    common::renkei_ok(
        dir,
        &["certs", "init", "--dir", "other", "--nodes", "us-dod"],
    );
    let fake = std::fs::read_to_string(dir.join("us-dod.toml"))
        .unwrap()
        .replace("certs/", "other/")
        .replace("us-dod-data", "fake-data")
        .replace(&mesh.nodes["us-dod"].addr.to_string(), "127.0.0.1:0");
    std::fs::write(dir.join("fake.toml"), fake).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_dial_each_other_keep_one_link_and_impostors_get_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut mesh = Mesh::new(
        dir,
        &["jp-mod", "us-dod", "uk-mod", "cn-pla"],
        &[],
        &[
            ("jp-mod", "us-dod"),
            ("jp-mod", "uk-mod"),
            ("cn-pla", "jp-mod"),
        ],
        "",
    );
    write_impostors(&mesh);
    mesh.start_all();
    let (fake_node, _) = common::served::serve(dir, "fake.toml");

    // jp-mod and us-dod both dial at start; both keep the same one connection.
    eventually("jp-mod and us-dod linked", async || {
        link(&mesh, "jp-mod", "us-dod")["up"] == true
            && link(&mesh, "us-dod", "jp-mod")["up"] == true
    })
    .await;
    let (a, b) = (
        link(&mesh, "jp-mod", "us-dod"),
        link(&mesh, "us-dod", "jp-mod"),
    );
    assert_eq!(
        a["dialled_by"], b["dialled_by"],
        "the same connection on both sides"
    );
    let mut got = None;
    eventually("jp-mod hears us-dod's queue", async || {
        got = link(&mesh, "jp-mod", "us-dod")["from_peer"]
            .as_object()
            .cloned();
        got.is_some()
    })
    .await;

    // The pinned, the unknown and the foreign never get a link, and each is recorded.
    let refused = async || {
        let r = records(&mesh, "jp-mod", AuditEvent::ConnectionRefused).await;
        let said = |who: &str, what: &str| {
            r.iter()
                .any(|r| r.partner == who && r.reason.contains(what))
        };
        said("uk-mod", "pinned")
            && said("cn-pla", "not a partner")
            && r.iter()
                .any(|r| r.partner.is_empty() && r.reason.contains("TLS handshake"))
    };
    eventually("every refusal on jp-mod's record", refused).await;
    let uk = link(&mesh, "jp-mod", "uk-mod");
    assert_eq!(uk["up"], false, "{uk}");
    assert!(
        uk["last_error"].as_str().unwrap().contains("pinned"),
        "{uk}"
    );
    let cn = link(&mesh, "cn-pla", "jp-mod");
    assert_eq!(cn["up"], false, "{cn}");
    assert!(status(&mesh, "jp-mod")["links"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["peer"] != "cn-pla"));
    drop(fake_node);
    mesh.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_origin_publishing_after_a_relays_copy_still_shares_it_as_the_policy_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut mesh = Mesh::new(
        dir,
        &["jp-mod", "nato-ccdcoe", "ee-mod"],
        &[("jp-cdc", "jp-mod"), ("ee-cert", "ee-mod")],
        &[("jp-mod", "nato-ccdcoe"), ("nato-ccdcoe", "ee-mod")],
        "",
    );
    // Tokyo's desk is also a partner of the NATO node, and publishes there too.
    mesh.forget("nato-ccdcoe", "jp-cdc");
    let path = dir.join("nato-ccdcoe.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text += &format!(
        "\n[[partner]]\nid = \"jp-cdc\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n",
        mesh.public("jp-cdc")
    );
    std::fs::write(&path, text).unwrap();
    mesh.start_all();

    // A RED note for Tallinn's CERT, published at home: it goes towards its audience.
    let red = sign_as(
        mesh.key("jp-cdc"),
        "jp-cdc",
        Tlp::Red,
        Kind::Incident,
        "red for tallinn",
        &["ee-cert"],
        &[],
    );
    let jp = mesh.client("jp-cdc").await;
    assert_eq!(publish(&jp, red.clone()).await, ["nato-ccdcoe"]);
    // The NATO node stores jp-mod's copy first; as a first relay it may not pass it on.
    let mut first = Vec::new();
    eventually("the relay's copy at the NATO node", async || {
        first = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinAccepted).await;
        !first.is_empty()
    })
    .await;
    let beyond = first[0]
        .decisions
        .iter()
        .find(|d| d.partner == "ee-mod")
        .unwrap();
    assert_eq!(
        beyond.reason,
        proto::WithholdReason::AudienceBeyondRelay as i32
    );

    // Then its origin publishes it at the NATO node itself: now it goes towards Tallinn.
    let nato = mesh.nodes["nato-ccdcoe"].addr;
    let direct =
        common::federation::connect_as(&dir.join("certs"), "jp-cdc", nato, &pid("nato-ccdcoe"))
            .await
            .unwrap();
    let r = direct.publish(red).await.unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{r:?}");
    assert_eq!(r.shared_with, ["ee-mod"], "the answer says who it reaches");
    let ee = mesh.client("ee-cert").await;
    let got = take(&ee, 1).await;
    assert_eq!(title(&got[0]), "red for tallinn");
    assert_eq!(got[0].path, ["nato-ccdcoe", "ee-mod"]);
    verify(&mesh, &got[0], "jp-cdc");
    let reshared = records(&mesh, "nato-ccdcoe", AuditEvent::BulletinReshared).await;
    assert_eq!(reshared.len(), 1);
    assert!(
        reshared[0].reason.contains("after jp-mod's copy"),
        "{}",
        reshared[0].reason
    );
    for c in [jp, direct, ee] {
        c.close().await;
    }
    mesh.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_is_refused_through_a_peer_it_is_not_listed_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "us-dod", "au-dod"],
        &[("jp-cdc", "jp-mod"), ("us-cybercom", "us-dod")],
        &[
            ("jp-mod", "us-dod"),
            ("us-dod", "au-dod"),
            ("au-dod", "jp-mod"),
        ],
        "",
    );
    // us-dod takes Tokyo's bulletins from jp-mod only, not round the triangle.
    mesh.only_via("us-dod", "jp-cdc", "jp-mod");
    mesh.start_all();
    let jp = mesh.client("jp-cdc").await;
    publish(&jp, green(&mesh, "jp-cdc", "for everyone")).await;
    let us = mesh.client("us-cybercom").await;
    assert_eq!(
        take(&us, 1).await.iter().map(title).collect::<Vec<_>>(),
        ["for everyone"]
    );
    // au-dod forwards its copy to us-dod too: refused there, and on us-dod's record.
    let mut refused = Vec::new();
    eventually("us-dod refuses au-dod's copy", async || {
        refused = records(&mesh, "us-dod", AuditEvent::BulletinRejected).await;
        !refused.is_empty()
    })
    .await;
    assert_eq!(refused[0].error, ErrorCode::NotViaPeer as i32);
    assert_eq!(refused[0].partner, "au-dod");
    assert!(
        refused[0]
            .reason
            .contains("through jp-mod, not through au-dod"),
        "{}",
        refused[0].reason
    );
    let stored = records(&mesh, "us-dod", AuditEvent::BulletinAccepted).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].partner, "jp-mod");
    for c in [jp, us] {
        c.close().await;
    }
    mesh.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_peer_ends_its_link_and_one_that_adds_it_back_relinks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "us-dod"],
        &[],
        &[("jp-mod", "us-dod")],
        "",
    );
    mesh.start_all();
    let up = async |mesh: &Mesh| {
        let s = status(mesh, "jp-mod");
        s["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["peer"] == "us-dod" && l["up"] == true)
    };
    eventually("jp-mod linked with us-dod", async || up(&mesh).await).await;
    let path = mesh.dir.join("jp-mod.toml");
    let with_peer = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, drop_partner(&with_peer, "us-dod")).unwrap();
    common::renkei_ok(&mesh.dir, &["reload", "--config", "jp-mod.toml"]);
    eventually("the link gone from jp-mod's status", async || {
        status(&mesh, "jp-mod")["links"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let down = records(&mesh, "jp-mod", AuditEvent::LinkDown).await;
    assert!(
        down.iter()
            .any(|r| r.partner == "us-dod" && r.reason.contains("reload")),
        "{down:?}"
    );
    std::fs::write(&path, &with_peer).unwrap();
    common::renkei_ok(&mesh.dir, &["reload", "--config", "jp-mod.toml"]);
    eventually("jp-mod linked with us-dod again", async || up(&mesh).await).await;
    // Still a relay partner, but no longer a peer node: the link ends too.
    let address = format!("address = \"{}\"\n", mesh.nodes["us-dod"].addr);
    std::fs::write(&path, with_peer.replace(&address, "")).unwrap();
    common::renkei_ok(&mesh.dir, &["reload", "--config", "jp-mod.toml"]);
    eventually("jp-mod's link ended", async || {
        let down = records(&mesh, "jp-mod", AuditEvent::LinkDown).await;
        down.iter()
            .any(|r| r.reason.contains("no longer a peer node"))
    })
    .await;
    mesh.stop_all();
}
