//! Bulletins across hops: a line, a triangle and a ring of nodes, origins beyond a
//! peer, and an origin publishing after a relay's copy.

use super::*;

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

    let ee = tokyos_green_advisory_reaches_tallinn_as_japans(&mesh, &jp).await;

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

    the_nato_node_verified_tokyo_itself_and_recorded_the_refusal(&mesh).await;

    for c in [jp, nisc, nato, ee] {
        c.close().await;
    }
    mesh.stop_all();
}

/// `jp` publishes a GREEN advisory; Tallinn's desk receives it, verified, through NATO's
/// node, and Tallinn's log counts it as Japan's. Returns Tallinn's desk's client.
async fn tokyos_green_advisory_reaches_tallinn_as_japans(mesh: &Mesh, jp: &Client) -> Client {
    // Tokyo's GREEN advisory reaches Tallinn's desk through the NATO node.
    let shared = publish(jp, green(mesh, "jp-cdc", "green advisory")).await;
    assert_eq!(shared, ["jp-nisc", "nato-ccdcoe"], "its desks and its peer");
    let ee = mesh.client("ee-cert").await;
    let got = take(&ee, 1).await;
    assert_eq!(title(&got[0]), "green advisory");
    assert_eq!(got[0].path, ["jp-mod", "nato-ccdcoe", "ee-mod"]);
    verify(mesh, &got[0], "jp-cdc");
    // Tallinn's log says whose it was: Japan's, handed over by NATO's node,
    // shared with Estonia's desk. The figures count it for JP, not for the relay.
    let accepted = records(mesh, "ee-mod", AuditEvent::BulletinAccepted).await;
    let from_tokyo = accepted.iter().find(|r| r.origin == "jp-cdc").unwrap();
    assert_eq!(
        (from_tokyo.partner.as_str(), from_tokyo.affiliation.as_str()),
        ("nato-ccdcoe", "JP")
    );
    let to_desk = from_tokyo
        .decisions
        .iter()
        .find(|d| d.partner == "ee-cert")
        .unwrap();
    assert!(to_desk.shared && to_desk.affiliation == "EE", "{to_desk:?}");
    ee
}

/// NATO's log holds Tokyo's three bulletins, stored once each, and the NISC one refused
/// as of an unknown origin; Tallinn's holds two, and its links are to NATO only.
async fn the_nato_node_verified_tokyo_itself_and_recorded_the_refusal(mesh: &Mesh) {
    // The NATO node verified Tokyo's signature itself and recorded the refusal.
    let accepted = records(mesh, "nato-ccdcoe", AuditEvent::BulletinAccepted).await;
    assert_eq!(
        accepted.len(),
        3,
        "green, strict and fence were stored once each"
    );
    assert!(accepted
        .iter()
        .all(|r| r.origin == "jp-cdc" && r.partner == "jp-mod"));
    let rejected = records(mesh, "nato-ccdcoe", AuditEvent::BulletinRejected).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].error, ErrorCode::UnknownOrigin as i32);
    assert_eq!(rejected[0].origin, "jp-nisc");
    let ee_accepted = records(mesh, "ee-mod", AuditEvent::BulletinAccepted).await;
    assert_eq!(ee_accepted.len(), 2, "green and fence only");
    let up = records(mesh, "ee-mod", AuditEvent::LinkUp).await;
    assert!(!up.is_empty() && up.iter().all(|r| r.partner == "nato-ccdcoe"));
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
    // The refusal comes back over the link. au-dod, whose copy it was, has it
    // on its own record (it recorded the delivery as acked and nothing more before),
    // and says so in its status.
    let mut heard = Vec::new();
    eventually("au-dod hears us-dod's refusal", async || {
        heard = records(&mesh, "au-dod", AuditEvent::PeerRefused).await;
        !heard.is_empty()
    })
    .await;
    assert_eq!(heard[0].partner, "us-dod");
    assert_eq!(heard[0].error, ErrorCode::NotViaPeer as i32);
    assert!(
        heard[0].reason.starts_with("ERROR_CODE_NOT_VIA_PEER: ")
            && heard[0]
                .reason
                .contains("through jp-mod, not through au-dod"),
        "{}",
        heard[0].reason
    );
    let accepted = records(&mesh, "au-dod", AuditEvent::BulletinAccepted).await;
    assert_eq!(heard[0].bulletin_seqs, accepted[0].bulletin_seqs);
    let to_us = link(&mesh, "au-dod", "us-dod");
    assert_eq!(to_us["refused_by_peer"], 1, "{to_us}");
    assert!(
        to_us["last_refusal"]
            .as_str()
            .is_some_and(|w| w.contains("NOT_VIA_PEER")),
        "{to_us}"
    );
    for c in [jp, us] {
        c.close().await;
    }
    mesh.stop_all();
}

/// A bulletin a peer refused comes through once that peer's operator fixes
/// its configuration, without being published again. The sender offers it again when
/// either side's rules change, and both logs tell the whole story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bulletin_arrives_once_the_peer_learns_its_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "us-dod"],
        &[("jp-cdc", "jp-mod"), ("us-cybercom", "us-dod")],
        &[("jp-mod", "us-dod")],
        "",
    );
    mesh.forget("us-dod", "jp-cdc");
    mesh.start_all();
    let jp = mesh.client("jp-cdc").await;
    publish(
        &jp,
        green(&mesh, "jp-cdc", "before Washington knew Tokyo's desk"),
    )
    .await;
    let heard = refused_at(&mesh, "jp-mod", 1).await;
    assert_eq!(heard[0].error, ErrorCode::UnknownOrigin as i32);
    kept(&mesh, 1).await;

    // Tokyo's operator changes its own rules (a new partner): offered again, refused
    // again, since Washington still does not know the origin.
    let path = mesh.dir.join("jp-mod.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[[partner]]\nid = \"fr-mod\"\nrole = \"liaison\"\nclearance = \"green\"\n";
    std::fs::write(&path, text).unwrap();
    common::renkei_ok(&mesh.dir, &["reload", "--config", "jp-mod.toml"]);
    let heard = refused_at(&mesh, "jp-mod", 2).await;
    assert_eq!(heard[1].bulletin_seqs, heard[0].bulletin_seqs);

    // Washington's operator adds Tokyo's desk as an origin and reloads: it arrives.
    // (This rewrites jp-mod.toml without fr-mod too; jp-mod is not reloaded again.)
    mesh.remember("us-dod", "jp-cdc");
    common::renkei_ok(&mesh.dir, &["reload", "--config", "us-dod.toml"]);
    let us = mesh.client("us-cybercom").await;
    assert_eq!(
        take(&us, 1).await.iter().map(title).collect::<Vec<_>>(),
        ["before Washington knew Tokyo's desk"]
    );
    let seq = heard[0].bulletin_seqs[0];
    eventually("jp-mod records us-dod's ack of it", async || {
        let acked = records(&mesh, "jp-mod", AuditEvent::Acked).await;
        acked
            .iter()
            .any(|r| r.partner == "us-dod" && r.bulletin_seqs.contains(&seq))
    })
    .await;
    kept(&mesh, 0).await;
    let accepted = records(&mesh, "us-dod", AuditEvent::BulletinAccepted).await;
    assert_eq!(accepted.len(), 1, "stored once at us-dod");
    assert_eq!(accepted[0].partner, "jp-mod");
    for c in [jp, us] {
        c.close().await;
    }
    mesh.stop_all();
}

/// Node `n`'s PEER_REFUSED records, once it has at least `count`.
async fn refused_at(mesh: &Mesh, n: &str, count: usize) -> Vec<renkei::proto::AuditRecord> {
    eventually("the sender hears the peer's refusal", async || {
        records(mesh, n, AuditEvent::PeerRefused).await.len() >= count
    })
    .await;
    records(mesh, n, AuditEvent::PeerRefused).await
}

/// Waits until jp-mod's status says it keeps `n` of us-dod's refusals.
async fn kept(mesh: &Mesh, n: u64) {
    eventually("jp-mod's status counts what it keeps", async || {
        link(mesh, "jp-mod", "us-dod")["refused_kept"] == n
    })
    .await
}

/// A delivery larger than the receiving peer reads (its `Welcome.max_frame_bytes`)
/// once stayed first in the link's queue and held back everything after it. It is
/// withdrawn from that peer, on the record with both sizes, and the rest flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulletin_too_large_for_a_peer_is_withdrawn_and_the_rest_flows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new(
        tmp.path(),
        &["jp-mod", "us-dod"],
        &[("jp-cdc", "jp-mod"), ("us-cybercom", "us-dod")],
        &[("jp-mod", "us-dod")],
        "",
    );
    // us-dod reads bulletins of 64 KiB at most; jp-mod takes the default 1 MiB.
    let us_config = tmp.path().join(&mesh.nodes["us-dod"].config);
    let small =
        "\n[limits]\nmax_bulletin_bytes = 65536\nmax_body_bytes = 60000\nmax_frame_bytes = 66560\n";
    let text = std::fs::read_to_string(&us_config).unwrap() + small;
    std::fs::write(&us_config, text).unwrap();
    mesh.start_all();
    let jp = mesh.client("jp-cdc").await;
    let big = {
        let plain = green(&mesh, "jp-cdc", "too large for us-dod");
        let mut b = proto::Bulletin::decode(plain.bulletin).unwrap();
        b.body = vec![b'x'; 100_000].into();
        renkei::bulletin::sign(&b, mesh.key("jp-cdc"), &Limits::default()).unwrap()
    };
    publish(&jp, big).await;
    publish(&jp, green(&mesh, "jp-cdc", "after it")).await;
    let us = mesh.client("us-cybercom").await;
    let got: Vec<String> = take(&us, 1).await.iter().map(title).collect();
    assert_eq!(got, ["after it"]);
    let withdrawn = records(&mesh, "jp-mod", AuditEvent::Withdrawn).await;
    let too_large = proto::WithholdReason::TooLargeForPeer as i32;
    assert!(
        withdrawn.iter().any(|r| r.partner == "us-dod"
            && r.decisions[0].reason == too_large
            && r.decisions[0]
                .detail
                .contains("above the 66560 bytes the peer reads")),
        "{withdrawn:?}"
    );
    for c in [jp, us] {
        c.close().await;
    }
    mesh.stop_all();
}
