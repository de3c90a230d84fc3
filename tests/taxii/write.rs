//! Writing to an inbox: objects become bulletins the node signs for a desk that may publish.

use super::*;

/// The Japanese desk's CTI tool pushes intelligence into its inbox; it becomes
/// bulletins of the node, signed with the node's key, one per TLP marking, and the
/// Australian desk receives them over QUIC and verifies them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_added_to_the_inbox_become_bulletins_signed_by_the_node() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);

    let envelope = json!({"x_renkei_audience": ["au-dod"], "objects": [
        object("indicator", 1, Some(GREEN)),
        object("report", 2, Some(AMBER)),
        object("malware", 3, None),
        {"type": "indicator", "spec_version": "2.1"},
    ]});
    let status = write_as(dir, &python, port, "jp-cdc", &envelope).await;
    assert_eq!(status["inbox"], "From jp-cdc to node jp-mod");
    assert_eq!(status["status"], "complete");
    assert_eq!(
        (
            status["total_count"].as_u64(),
            status["success_count"].as_u64()
        ),
        (Some(4), Some(3)),
        "{status}"
    );
    assert_eq!(status["failures"][0]["message"], "object 3: no \"id\"");

    // The Australian desk (cleared for AMBER) receives two bulletins from the node, and
    // the node's own published key verifies them; its CTI tool reads them back as STIX.
    let au = desk(dir, addr, "au-dod").await;
    let sub = au_dod_receives_two_signed_by_the_node(dir, &au).await;
    let ids: Vec<String> = (1..=3)
        .zip(["indicator", "report", "malware"])
        .map(|(n, t)| format!("{t}--10000000-0000-4000-8000-{n:012}"))
        .collect();
    au_dods_cti_tool_reads(dir, &python, port, &ids).await;

    // The log names the desk that wrote them.
    let origins: Vec<String> = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinAccepted)
        .await
        .into_iter()
        .filter(|r| r.partner == "jp-cdc")
        .map(|r| r.origin)
        .collect();
    assert_eq!(origins, ["jp-mod", "jp-mod"]);

    // The node signs for the desk only while the desk could publish itself: once its
    // key is revoked, what it adds is refused and the refusal recorded.
    let config = fs::read_to_string(dir.join("hub.toml")).unwrap();
    let revoked = format!(
        "{config}\n[[revoked]]\nkey = \"{}\"\nreason = \"desk compromised\"\n",
        common::public_key(dir, "jp-cdc")
    );
    fs::write(dir.join("hub.toml"), revoked).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    let again = json!({"objects": [object("indicator", 4, Some(GREEN))]});
    let status = write_as(dir, &python, port, "jp-cdc", &again).await;
    assert_eq!(status["success_count"].as_u64(), Some(0), "{status}");
    let why = status["failures"][0]["message"].as_str().unwrap();
    assert!(why.contains("no signing key in force"), "{why}");
    let refused = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinRejected).await;
    assert!(
        refused
            .iter()
            .any(|r| r.error == proto::ErrorCode::KeyRevoked as i32),
        "{refused:?}"
    );
    drop(sub);
    au.close().await;
    assert!(served.stop(PATIENCE).success());
}

/// A STIX object `t` numbered `n`, marked `marking` if given.
fn object(t: &str, n: u32, marking: Option<&str>) -> Value {
    let mut o = json!({"type": t, "spec_version": "2.1",
            "id": format!("{t}--10000000-0000-4000-8000-{n:012}"),
            "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z"});
    if let Some(m) = marking {
        o["object_marking_refs"] = json!([m]);
    }
    o
}

/// The Australian desk subscribes and receives two bulletins whose origin is the node,
/// verified with the node's published key: one GREEN, one AMBER. Its subscription.
async fn au_dod_receives_two_signed_by_the_node<'a>(
    dir: &Path,
    au: &'a Client,
) -> renkei::client::Subscription<'a> {
    let mut sub = au.subscribe(0).await.unwrap();
    let mut keyring = renkei::identity::Keyring::new();
    let node_key: renkei::identity::PublicKey = common::public_key(dir, "jp-mod").parse().unwrap();
    keyring.insert("jp-mod".parse().unwrap(), node_key, Default::default());
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let u = renkei::bulletin::UnverifiedBulletin::from_signed(
            d.bulletin.unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let v = renkei::bulletin::UnverifiedBulletin::verify_all(
            vec![u],
            &keyring,
            Timestamp::now(),
            &Limits::default(),
        )
        .pop()
        .unwrap()
        .expect("signed by the node");
        let h = v.header();
        assert_eq!(h.origin.as_str(), "jp-mod");
        got.push(h.tlp);
        sub.ack(vec![d.seq]).await.unwrap();
    }
    got.sort_by_key(|t| t.to_proto() as i32);
    assert_eq!(got, [Tlp::Green, Tlp::Amber]);
    sub
}

/// Through TAXII, the Australian desk's CTI tool (taxii2-client) reads the objects
/// `ids` back as STIX.
async fn au_dods_cti_tool_reads(dir: &Path, python: &Path, port: u16, ids: &[String]) {
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.to_owned());
        move || read_as(&dir, &python, port, "au-dod")
    })
    .await
    .unwrap()
    .expect("taxii2-client reads what was added");
    let read: Vec<&str> = seen["object_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for id in ids {
        assert!(read.contains(&id.as_str()), "{id} not in {read:?}");
    }
}
