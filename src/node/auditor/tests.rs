//! An auditor's answers read from a store on disk, without a socket: a query page with
//! the delivered bulletins named, proofs inside and outside the log, a metrics report
//! for a period given against a date passed in.

use bytes::Bytes;
use ed25519_dalek::SigningKey;

use super::*;
use crate::bulletin::{self, Digest, Limits, UnverifiedBulletin};
use crate::policy::Decision;
use crate::proto::AuditEvent;
use crate::store::{Entry, NewBulletin};

const DAY: u64 = 86_400_000;
/// 2026-11-30.
const NOW: u64 = 20_787 * DAY;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

/// A store holding one accepted bulletin from us-dod, shared with au-dod and delivered.
fn store(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, 8 << 20).unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let draft = proto::Bulletin {
        id: bulletin::BulletinId::new_v7(Timestamp::from_unix_ms(NOW)).to_string(),
        origin: "us-dod".into(),
        created_unix_ms: NOW,
        tlp: proto::Tlp::Green as i32,
        kind: proto::Kind::Exercise as i32,
        title: "Cyber Coalition 2027".into(),
        ..Default::default()
    };
    let signed = bulletin::sign(&draft, &key, &Limits::default()).unwrap();
    let u = UnverifiedBulletin::from_signed(signed.clone(), &Limits::default()).unwrap();
    let (au, share) = (pid("au-dod"), Decision::Share);
    let audit = Event::accepted(&pid("us-dod"), u.header(), u.digest(), [(&au, &share)]);
    let new = NewBulletin {
        signed,
        digest: Digest::of(&Bytes::new()),
        origin: pid("us-dod"),
        id: u.header().id,
        received_from: pid("us-dod"),
        shared_with: vec![au.clone()],
        path: Vec::new(),
        relayed: false,
        audit,
    };
    let now = Timestamp::from_unix_ms(NOW);
    store.commit(vec![Entry::Bulletin(new)], now).unwrap();
    let delivered = Event::delivered(&au, vec![1]);
    store
        .commit(vec![Entry::Event(Some(delivered), None)], now)
        .unwrap();
    store
}

fn ask(store: &Store, frame: Client) -> Result<Server, Refusal> {
    let facts = Facts {
        node: "jp-mod".into(),
        fiscal_start: 4,
        domestic: Some("JP".into()),
        targets: Vec::new(),
    };
    read(store, frame, &facts, Timestamp::from_unix_ms(NOW))
}

#[test]
fn a_query_page_names_the_bulletins_its_deliveries_carry() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let q = proto::AuditQuery {
        partner: "au-dod".into(),
        event: AuditEvent::Delivered as u32,
        ..Default::default()
    };
    let Ok(Server::AuditPage(page)) = ask(&store, Client::AuditQuery(q)) else {
        panic!("a page");
    };
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.log_size, 2);
    let named = &page.bulletins[0];
    assert_eq!((named.seq, named.origin.as_str()), (1, "us-dod"));
    assert_eq!(named.title, "Cyber Coalition 2027");
    let bad = proto::AuditQuery {
        partner: "AU_DOD".into(),
        ..Default::default()
    };
    assert!(
        matches!(ask(&store, Client::AuditQuery(bad)), Err(Refusal::Invalid(e)) if e.starts_with("partner"))
    );
}

#[test]
fn proofs_are_given_inside_the_log_and_refused_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let inside = proto::InclusionRequest {
        seq: 1,
        tree_size: 2,
    };
    let Ok(Server::InclusionProof(p)) = ask(&store, Client::InclusionRequest(inside)) else {
        panic!("a proof");
    };
    assert_eq!((p.seq, p.tree_size, p.hashes.len()), (1, 2, 1));
    let outside = proto::InclusionRequest {
        seq: 2,
        tree_size: 2,
    };
    let refused = ask(&store, Client::InclusionRequest(outside));
    assert!(matches!(refused, Err(Refusal::Invalid(e)) if e.contains("not in a tree of 2")));
    let backwards = proto::ConsistencyRequest {
        old_size: 2,
        new_size: 1,
    };
    assert!(matches!(
        ask(&store, Client::ConsistencyRequest(backwards)),
        Err(Refusal::Invalid(_))
    ));
    let grown = proto::ConsistencyRequest {
        old_size: 1,
        new_size: 2,
    };
    assert!(matches!(
        ask(&store, Client::ConsistencyRequest(grown)),
        Ok(Server::ConsistencyProof(_))
    ));
}

#[test]
fn a_metrics_report_covers_the_fiscal_year_of_the_date_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let this_year = proto::MetricsRequest::default();
    let Ok(Server::MetricsReport(r)) = ask(&store, Client::MetricsRequest(this_year)) else {
        panic!("a report");
    };
    assert_eq!(r.node_id, "jp-mod");
    assert!(r.label.contains("FY2026"), "{}", r.label);
    assert!(r.since_day <= 20_787 && 20_787 <= r.until_day);
    assert!(
        !r.partners.is_empty(),
        "the exchange of 2026-11-30 is in it"
    );
}
