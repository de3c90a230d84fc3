//! Links between nodes: a node down or cut off catching up, two nodes dialling each
//! other at once, impostors, and reloads that remove or add a peer.

use super::*;

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
    // jp-mod's own dial to uk-mod fails on the pin too, once it has been tried.
    eventually(
        "jp-mod's link with uk-mod says why it is down",
        async || {
            let uk = link(&mesh, "jp-mod", "uk-mod");
            uk["up"] == false
                && uk["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("pinned"))
        },
    )
    .await;
    // cn-pla's dials complete the handshake before jp-mod refuses them, so its link
    // may show up for a moment after each; it is down between them.
    eventually("cn-pla's link with jp-mod down", async || {
        link(&mesh, "cn-pla", "jp-mod")["up"] == false
    })
    .await;
    assert!(status(&mesh, "jp-mod")["links"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["peer"] != "cn-pla"));
    drop(fake_node);
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
