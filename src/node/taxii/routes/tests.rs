//! The gateway's pages against the rules gate, without a socket: the test plays the
//! storage thread, so it decides when a page's record is durable.

use bytes::Bytes;
use prost::Message as _;

use super::*;
use crate::audit::record::Event;
use crate::bulletin::{BulletinId, Digest, Header, Kind, Tlp};
use crate::identity::{CertFingerprint, Partner, PartnerId, Role};
use crate::node::testing::{liaisons, node_file, node_on};
use crate::node::writer::Request as Storage;
use crate::proto;
use crate::store::{Entry as Stored, NewBulletin, Store};

fn pid(s: &str) -> PartnerId {
    s.parse().expect("an id")
}

/// Stores a GREEN bulletin of us-dod holding one STIX indicator, shared with `with`.
fn store_indicator(store: &Store, with: &str) {
    let now = Timestamp::now();
    let id = BulletinId::new_v7(now);
    let bundle = json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
        "objects": [{"type": "indicator", "spec_version": "2.1",
            "id": "indicator--00000000-0000-4000-8000-000000000001",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z"}]});
    let bulletin = proto::Bulletin {
        id: id.to_string(),
        origin: "us-dod".into(),
        tlp: proto::Tlp::Green as i32,
        content_type: crate::bulletin::STIX_CONTENT_TYPE.into(),
        body: Bytes::from(bundle.to_string()),
        ..Default::default()
    };
    let signed = proto::SignedBulletin {
        bulletin: bulletin.encode_to_vec().into(),
        ..Default::default()
    };
    let header = Header {
        id,
        origin: pid("us-dod"),
        created: now,
        tlp: Tlp::Green,
        kind: Kind::Indicator,
        tags: vec![],
        audience: vec![],
    };
    let digest = Digest::of(&signed.bulletin);
    let new = NewBulletin {
        signed,
        digest,
        origin: pid("us-dod"),
        id,
        received_from: pid("us-dod"),
        shared_with: vec![pid(with)],
        path: Vec::new(),
        relayed: false,
        audit: Event::accepted(&pid("us-dod"), &header, digest, []),
    };
    store
        .commit(vec![Stored::Bulletin(new)], now)
        .expect("stored");
}

fn every_object() -> Query {
    Query {
        added_after: None,
        ids: vec![],
        types: vec![],
        versions: Versions::Last,
        after: None,
        limit: 100,
    }
}

/// A page and its DELIVERED record are made under one set of
/// rules. A reload (the gate's writer) waits for a page being recorded, and a page
/// waits for a reload in progress: CONFIG_LOADED never falls between the two.
#[tokio::test]
async fn a_page_and_its_record_are_made_under_one_set_of_rules() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, node_file(&liaisons(&["us-dod", "jp-cdc"]))).expect("written");
    let (shared, mut storage) = node_on(&path);
    store_indicator(&shared.storage.store, "jp-cdc");
    let base = "https://127.0.0.1:9443".to_owned();
    let gateway = Arc::new(Gateway::new(&shared, 1000, base));
    let caller = Caller {
        who: Partner::new(pid("jp-cdc"), Role::Liaison),
        cert: CertFingerprint::of_der(b"jp-cdc's certificate"),
    };
    let shared_id = collections_of(&gateway, &caller)
        .into_iter()
        .find(|(which, _)| *which == Which::Shared)
        .and_then(|(_, c)| c["id"].as_str().map(str::to_owned))
        .expect("jp-cdc's collection");
    let read = || {
        let (g, c, id) = (gateway.clone(), caller.clone(), shared_id.clone());
        tokio::spawn(page_response(g, c, id, every_object(), "objects", envelope))
    };

    // A page being recorded holds the rules: a reload cannot begin until it is durable.
    let page = read();
    let Some(Storage::Event {
        event: Some(event),
        done: Some(done),
        ..
    }) = storage.recv().await
    else {
        panic!("the page is recorded before it is sent");
    };
    assert_eq!(event.record().event, proto::AuditEvent::Delivered as i32);
    assert!(
        shared.rules.gate.try_write().is_err(),
        "a reload could record new rules between the page and its record"
    );
    done.send(Ok(())).expect("the page waits");
    let response = page.await.expect("the page is served");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(shared.rules.gate.try_write().is_ok(), "released once sent");

    // A reload in progress holds pages back until its rules are in force.
    let reload = shared.rules.gate.write().await;
    let page = read();
    let early = tokio::time::timeout(std::time::Duration::from_millis(200), storage.recv()).await;
    assert!(
        early.is_err(),
        "a page was recorded while the rules were changing"
    );
    drop(reload);
    let Some(Storage::Event {
        done: Some(done), ..
    }) = storage.recv().await
    else {
        panic!("the page is recorded once the rules are in force");
    };
    done.send(Ok(())).expect("the page waits");
    assert_eq!(page.await.expect("served").status(), StatusCode::OK);
}
