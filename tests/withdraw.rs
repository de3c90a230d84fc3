//! The policy in force when a bulletin goes out decides whether it goes out. A desk is
//! offline while bulletins queue for it; the operator lowers its clearance, takes it out
//! of a group, denies it a tag and a kind, and revokes an origin's key. When the desk
//! comes back it receives only what the new rules still share, and the auditor finds a
//! WITHDRAWN record, with its reason, for everything else. A partner removed and added
//! again does not inherit its old queue, whether the node was running or not.

use crate::common;

use common::federation::{receive_titles, Federation, Plan};
use common::tables::{auditor, liaison, Partner};
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::node::operator::{self, OperatorRequest};
use renkei::proto::{self, AuditEvent, WithholdReason};

/// The hub with three RED desks, au-dod in nato, and an auditor.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red"))
        .partner(liaison("uk-mod", "red"))
        .partner(liaison("au-dod", "red").with(r#"groups = ["nato"]"#))
        .partner(auditor("nato-ccdcoe"))
}

async fn reload(fed: &Federation, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    std::fs::write(fed.config_path(), edit(text)).unwrap();
    let reply = operator::request(
        &fed.data_dir(),
        &OperatorRequest::Reload,
        common::federation::PATIENCE,
    )
    .await
    .expect("the operator socket answers");
    assert!(reply.ok, "{reply:?}");
}

async fn records(fed: &Federation, event: AuditEvent) -> Vec<proto::AuditRecord> {
    let auditor = fed.client("nato-ccdcoe").await;
    let query = proto::AuditQuery {
        event: event as u32,
        limit: 1000,
        ..Default::default()
    };
    let page = auditor.audit_query(query).await.expect("the auditor reads");
    auditor.close().await;
    page.records
        .iter()
        .map(|b| proto::AuditRecord::decode(b.clone()).expect("a record decodes"))
        .collect()
}

/// au-dod's table as the operator rewrites it.
fn au_dod(text: &str, new_table: &str) -> String {
    let old = text
        .split("[[partner]]")
        .find(|t| t.contains("\"au-dod\""))
        .unwrap();
    text.replace(&format!("[[partner]]{old}"), new_table)
}

/// `partner`'s table as the operator writes it, with its key in `fed`.
fn written(fed: &Federation, partner: Partner) -> String {
    let id = partner.id().to_owned();
    let key = renkei::identity::PublicKey::of(fed.key(&id)).to_string();
    format!("{partner}\n").replace(&format!("KEY({id})"), &key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_effect_on_what_is_already_queued() {
    let fed = hub().start().await;
    let us = fed.client("us-dod").await;
    let uk = fed.client("uk-mod").await;
    queue_seven_for_au_dod(&fed, &us, &uk).await;

    // The operator lowers au-dod to AMBER, takes it out of nato, denies it a tag and
    // incidents, and revokes uk-mod's signing key.
    let uk_key = renkei::identity::PublicKey::of(fed.key("uk-mod")).to_string();
    let lowered = liaison("au-dod", "amber")
        .with(r#"kinds = ["advisory"]"#)
        .with(r#"deny_tags = ["exercise-x"]"#);
    let lowered = written(&fed, lowered);
    reload(&fed, |text| {
        au_dod(&text, &lowered)
            + &format!("\n[[revoked]]\nkey = \"{uk_key}\"\nreason = \"laptop lost\"\n")
    })
    .await;

    // au-dod comes back: only what the new rules still share reaches it.
    let au = fed.client("au-dod").await;
    assert_eq!(
        receive_titles(&au, 2).await,
        ["amber for au-dod", "green plain"]
    );
    the_rest_is_recorded_as_withdrawn_after_the_reload(&fed).await;

    // A later subscription finds nothing left: the withdrawn are off the queue, and
    // nothing is recorded twice.
    let mut sub = au.subscribe(0).await.unwrap();
    let b = fed.bulletin("us-dod", Tlp::Green, Kind::Advisory, "after", &[], &[]);
    us.publish(b).await.unwrap();
    let next = tokio::time::timeout(common::federation::PATIENCE, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let title = proto::Bulletin::decode(next.bulletin.unwrap().bulletin)
        .unwrap()
        .title;
    assert_eq!(title, "after");
    sub.ack(vec![next.seq]).await.unwrap();
    sub.close().await.unwrap();
    assert_eq!(records(&fed, AuditEvent::Withdrawn).await.len(), 5);

    for c in [us, uk, au] {
        c.close().await;
    }
    fed.stop().await;
}

/// While au-dod is offline, seven bulletins are queued for it under the first rules:
/// each of them one the coming reload stops sharing with it for its own reason, and
/// two it still shares.
async fn queue_seven_for_au_dod(fed: &Federation, us: &Client, uk: &Client) {
    let none: &[&str] = &[];
    let queued = [
        (
            "us-dod",
            Tlp::Red,
            Kind::Incident,
            "red for au-dod",
            &["au-dod"][..],
            none,
        ),
        (
            "us-dod",
            Tlp::Amber,
            Kind::Advisory,
            "amber for nato",
            &["group:nato"][..],
            none,
        ),
        (
            "us-dod",
            Tlp::Amber,
            Kind::Advisory,
            "amber for au-dod",
            &["au-dod"][..],
            none,
        ),
        (
            "us-dod",
            Tlp::Green,
            Kind::Advisory,
            "green tagged",
            none,
            &["Exercise-X"][..],
        ),
        (
            "us-dod",
            Tlp::Green,
            Kind::Incident,
            "green incident",
            none,
            none,
        ),
        (
            "uk-mod",
            Tlp::Green,
            Kind::Advisory,
            "green by a revoked key",
            none,
            none,
        ),
        (
            "us-dod",
            Tlp::Green,
            Kind::Advisory,
            "green plain",
            none,
            none,
        ),
    ];
    for (origin, tlp, kind, title, audience, tags) in queued {
        let b = fed.bulletin(origin, tlp, kind, title, audience, tags);
        let client = if origin == "us-dod" { us } else { uk };
        let result = client.publish(b).await.unwrap();
        assert!(
            result.shared_with.contains(&"au-dod".to_string()),
            "{title}: queued for au-dod at first ({:?})",
            result.shared_with
        );
    }
}

/// Everything the reload stopped sharing is on the record as withdrawn from au-dod,
/// each with its reason, after the reload's own record; nothing withdrawn was
/// delivered.
async fn the_rest_is_recorded_as_withdrawn_after_the_reload(fed: &Federation) {
    let withdrawn = records(fed, AuditEvent::Withdrawn).await;
    let mut reasons: Vec<WithholdReason> = withdrawn
        .iter()
        .map(|r| {
            assert_eq!(r.partner, "au-dod");
            assert_eq!(r.bulletin_seqs.len(), 1);
            let why = &r.reason;
            assert!(why.starts_with("withdrawn from the queue: "), "{why}");
            assert!(!r.decisions[0].shared);
            WithholdReason::try_from(r.decisions[0].reason).unwrap()
        })
        .collect();
    reasons.sort_by_key(|r| *r as i32);
    assert_eq!(
        reasons,
        [
            WithholdReason::AboveClearance,
            WithholdReason::KindNotShared,
            WithholdReason::DeniedTag,
            WithholdReason::NotInAudience,
            WithholdReason::OriginKey,
        ],
        "{withdrawn:#?}"
    );
    let loaded = records(fed, AuditEvent::ConfigLoaded).await;
    let delivered = records(fed, AuditEvent::Delivered).await;
    let reload_seq = loaded.last().unwrap().seq;
    assert!(withdrawn.iter().all(|r| r.seq > reload_seq));
    let delivered_seqs: usize = delivered.iter().map(|r| r.bulletin_seqs.len()).sum();
    assert_eq!(
        delivered_seqs, 2,
        "nothing withdrawn was delivered: {delivered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_removed_and_added_again_starts_with_an_empty_queue() {
    let mut fed = hub().start().await;
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    let us = fed.client("us-dod").await;
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "queued before removal",
        &[],
        &[],
    );
    assert!(us
        .publish(b)
        .await
        .unwrap()
        .shared_with
        .contains(&"au-dod".into()));

    // Removed and added again by two reloads of the running node.
    reload(&fed, |t| au_dod(&t, "")).await;
    reload(&fed, |_| text.clone()).await;
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "queued while stopped",
        &[],
        &[],
    );
    assert!(us
        .publish(b)
        .await
        .unwrap()
        .shared_with
        .contains(&"au-dod".into()));
    us.close().await;

    // Removed and added again while the node was stopped.
    fed.halt().await;
    std::fs::write(fed.config_path(), au_dod(&text, "")).unwrap();
    fed.resume().await;
    fed.halt().await;
    std::fs::write(fed.config_path(), &text).unwrap();
    fed.resume().await;

    let us = fed.client("us-dod").await;
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "after it came back",
        &[],
        &[],
    );
    us.publish(b).await.unwrap();
    let au = fed.client("au-dod").await;
    assert_eq!(receive_titles(&au, 1).await, ["after it came back"]);

    let withdrawn = records(&fed, AuditEvent::Withdrawn).await;
    assert_eq!(withdrawn.len(), 2, "one per removal: {withdrawn:#?}");
    for r in &withdrawn {
        assert_eq!(r.partner, "au-dod");
        assert_eq!(r.bulletin_seqs.len(), 1, "its one queued bulletin");
        assert_eq!(r.decisions[0].reason, WithholdReason::PartnerRemoved as i32);
    }
    for c in [us, au] {
        c.close().await;
    }
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_withdrawn_whole_does_not_hold_up_what_follows() {
    let fed = hub().start().await;
    let us = fed.client("us-dod").await;
    // More RED bulletins for au-dod than one delivery window (8 here), then a GREEN one.
    for i in 0..20 {
        let b = fed.bulletin(
            "us-dod",
            Tlp::Red,
            Kind::Incident,
            &format!("red {i}"),
            &["au-dod"],
            &[],
        );
        us.publish(b).await.unwrap();
    }
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "green after them",
        &[],
        &[],
    );
    us.publish(b).await.unwrap();
    let green = written(&fed, liaison("au-dod", "green"));
    reload(&fed, |text| au_dod(&text, &green)).await;
    // Pages of nothing but withdrawn bulletins go by; the GREEN one arrives without
    // anything new being published.
    let au = fed.client("au-dod").await;
    assert_eq!(receive_titles(&au, 1).await, ["green after them"]);
    assert_eq!(records(&fed, AuditEvent::Withdrawn).await.len(), 20);
    for c in [us, au] {
        c.close().await;
    }
    fed.stop().await;
}
