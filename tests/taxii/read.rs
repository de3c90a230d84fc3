//! Reading a collection: paging, markings, bounds, and what was withdrawn from an id.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taxii_client_pages_through_what_is_shared_with_its_partner() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);

    // The US desk publishes over QUIC: five GREEN STIX bundles, one AMBER (beyond the
    // Japanese desk's clearance) and one plain-text note (no STIX to serve).
    let us = desk(dir, addr, "us-dod").await;
    the_us_desk_publishes_green_amber_and_plain(dir, &us).await;

    // The Japanese desk's CTI tool reads its collection in pages of three.
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        move || read_as(&dir, &python, port, "jp-cdc")
    })
    .await
    .unwrap()
    .expect("taxii2-client reads the gateway");
    the_discovery_names_the_root_and_both_collections(&seen, port);
    the_pages_hold_only_the_green_objects(&seen);

    a_client_of_another_ca_is_refused(dir, &python, port).await;
    every_page_handed_over_is_on_the_log(dir, addr).await;
    us.close().await;
    assert!(served.stop(PATIENCE).success());
}

/// `us` publishes five GREEN STIX bundles, one AMBER and one plain GREEN advisory.
async fn the_us_desk_publishes_green_amber_and_plain(dir: &Path, us: &Client) {
    for n in 1..=5 {
        publish(us, stix_bulletin(dir, n, Tlp::Green)).await;
    }
    publish(us, stix_bulletin(dir, 6, Tlp::Amber)).await;
    let key = common::signing_key(dir, "us-dod");
    publish(
        us,
        sign_as(
            &key,
            "us-dod",
            Tlp::Green,
            Kind::Advisory,
            "plain",
            &[],
            &[],
        ),
    )
    .await;
}

/// What the client `seen` at discovery: the node's title, its one API root on `port`,
/// TAXII 2.1, and jp-cdc's two collections, one to read and one to write.
fn the_discovery_names_the_root_and_both_collections(seen: &Value, port: u16) {
    assert_eq!(seen["title"], "renkei node jp-mod");
    assert_eq!(
        seen["api_roots"],
        json!([format!("https://jp-mod:{port}/api/")])
    );
    assert_eq!(
        seen["versions"],
        json!(["application/taxii+json;version=2.1"])
    );
    let collections = seen["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 2);
    assert_eq!(collections[0]["title"], "Shared with jp-cdc");
    assert_eq!(collections[0]["can_read"], true);
    assert_eq!(collections[1]["title"], "From jp-cdc to node jp-mod");
    assert_eq!(collections[1]["can_write"], true);
}

/// The pages the client `seen` hold the GREEN bundles' ten objects, in order, marked
/// GREEN, with their manifest, and none of the AMBER one's.
fn the_pages_hold_only_the_green_objects(seen: &Value) {
    // Ten objects (two per GREEN bundle), none of the AMBER one's.
    assert_eq!(seen["pages"], json!([3, 3, 3, 1]));
    let ids: Vec<&str> = seen["object_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let wanted: Vec<String> = (1..=5u32)
        .flat_map(|n| {
            ["indicator", "malware"].map(|t| format!("{t}--00000000-0000-4000-8000-{n:012}"))
        })
        .collect();
    assert_eq!(ids, wanted);
    for id in &wanted {
        assert_eq!(seen["markings"][id], json!([GREEN]), "{id} carries its TLP");
    }
    let manifest = seen["manifest"].as_array().unwrap();
    assert_eq!(manifest.len(), 10);
    assert_eq!(manifest[0]["version"], "2026-11-30T09:00:00.000Z");
    assert_eq!(
        manifest[0]["media_type"],
        "application/stix+json;version=2.1"
    );
    let added: Timestamp = manifest[0]["date_added"].as_str().unwrap().parse().unwrap();
    assert!(added <= Timestamp::now());
    assert_eq!(seen["one_object"], json!([wanted[0]]));
    assert_eq!(seen["indicators"], 5);
}

/// A client whose certificate another CA issued cannot read the gateway on `port`.
async fn a_client_of_another_ca_is_refused(dir: &Path, python: &Path, port: u16) {
    // A client with a certificate of another CA gets no further than the handshake.
    let stranger = tempfile::tempdir().unwrap();
    pki(stranger.path(), "jp-cdc");
    fs::copy(
        dir.join("certs/ca.crt"),
        stranger.path().join("certs/ca.crt"),
    )
    .unwrap();
    let refused = tokio::task::spawn_blocking({
        let (s, python) = (stranger.path().to_owned(), python.to_owned());
        move || read_as(&s, &python, port, "jp-cdc")
    })
    .await
    .unwrap();
    assert!(refused.is_err(), "{refused:?}");
}

/// The node's log holds the TAXII pages of objects and the manifest as deliveries to
/// jp-cdc.
async fn every_page_handed_over_is_on_the_log(dir: &Path, addr: std::net::SocketAddr) {
    // Every page handed over is on the log, as deliveries to jp-cdc through TAXII.
    let reasons: Vec<String> = jp_cdc_records(dir, addr, proto::AuditEvent::Delivered)
        .await
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        reasons.iter().filter(|r| *r == "TAXII: objects").count() >= 4,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "TAXII: manifest"),
        "{reasons:?}"
    );
}

/// A huge invalid object id in an inbox write once made a 2.4-million-character
/// record, and a page was capped in objects but not in bytes (a 21 MB response).
/// Records and pages are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ids_and_large_objects_stay_bounded_in_records_and_pages() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);

    // Six GREEN bulletins of one 760 KB indicator each: 4.5 MB in all.
    let us = desk(dir, addr, "us-dod").await;
    for n in 1..=6u32 {
        let o = json!({"type": "indicator", "spec_version": "2.1",
            "id": format!("indicator--20000000-0000-4000-8000-{n:012}"),
            "created": "2026-11-30T09:00:00.000Z", "modified": "2026-11-30T09:00:00.000Z",
            "description": "x".repeat(760_000),
            "pattern": "[ipv4-addr:value = '198.51.100.1']", "pattern_type": "stix",
            "valid_from": "2026-11-30T09:00:00Z"});
        publish(
            &us,
            bundle_bulletin(dir, 100 + n, (Tlp::Green, &[]), vec![o]),
        )
        .await;
    }
    let args = ["read.py", "100"];
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        move || run_script(&dir, &python, port, "jp-cdc", &args)
    })
    .await
    .unwrap()
    .expect("taxii2-client reads");
    assert_eq!(seen["pages"], json!([5, 1]), "4 MiB a page at most");

    // A 900 KB object id, which is no STIX id.
    let huge = json!({"objects": [{"type": "indicator", "id": "y".repeat(900_000)}]});
    let status = write_as(dir, &python, port, "jp-cdc", &huge).await;
    assert_eq!(
        status["failure_count"].as_u64(),
        Some(1),
        "{}",
        status["status"]
    );
    let refused = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinRejected).await;
    assert!(!refused.is_empty());
    for r in &refused {
        assert!(
            r.reason.len() < 4096,
            "a record of {} bytes",
            r.reason.len()
        );
    }
    us.close().await;
    assert!(served.stop(PATIENCE).success());
    // The auditor's export reads the whole log.
    common::renkei_ok(
        dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "log.export",
        ],
    );
}

/// A RED bulletin sent to a desk that was then removed and added again was once
/// still served through TAXII (unmarked), though QUIC withdrew it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_withdrawn_from_a_partner_id_stays_withdrawn_through_taxii() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,jp-cdc,au-dod,audit-office");
    let port = free_port();
    let red_desk = jp_cdc_table(dir, "red");
    let config = hub_config(dir, port).replace(&jp_cdc_table(dir, "green"), &red_desk);
    fs::write(dir.join("hub.toml"), &config).unwrap();
    let (served, addr) = serve(dir, "hub.toml");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let us = desk(dir, addr, "us-dod").await;
    publish(&us, stix_bulletin_to(dir, 7, Tlp::Red, &["jp-cdc"])).await;
    let read = |dir: &Path| {
        let (dir, python) = (dir.to_owned(), python.clone());
        tokio::task::spawn_blocking(move || read_as(&dir, &python, port, "jp-cdc"))
    };

    // The desk's tool reads the RED objects, each marked RED.
    let seen = read(dir).await.unwrap().expect("taxii2-client reads");
    assert_eq!(seen["object_ids"].as_array().unwrap().len(), 2);
    for (id, marking) in seen["markings"].as_object().unwrap() {
        assert_eq!(marking, &json!([RED]), "{id}");
    }

    // The desk is removed (its queue withdrawn) and its id added again.
    assert!(config.contains(&red_desk));
    fs::write(dir.join("hub.toml"), config.replace(&red_desk, "")).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    fs::write(dir.join("hub.toml"), &config).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);

    // The id starts afresh: nothing from before its removal, through either door.
    let again = read(dir).await.unwrap().expect("taxii2-client reads");
    assert_eq!(again["object_ids"], json!([]), "{again}");
    let withdrawn = jp_cdc_records(dir, addr, proto::AuditEvent::Withdrawn).await;
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    let after: Vec<_> = jp_cdc_records(dir, addr, proto::AuditEvent::Delivered)
        .await
        .into_iter()
        .filter(|r| r.seq > withdrawn[0].seq && !r.bulletin_seqs.is_empty())
        .collect();
    assert!(
        after.is_empty(),
        "handed over after its withdrawal: {after:?}"
    );
    us.close().await;
    assert!(served.stop(PATIENCE).success());
}
