//! A hub run by Japan's defence ministry with five partners. The US liaison publishes
//! bulletins at every TLP level; each partner receives exactly what its clearance, its
//! kinds, its denied tags and the audience allow, and the publisher is told why not.

use crate::common;

use std::collections::HashMap;

use common::federation::{receive, Federation, Plan};
use common::tables::{auditor, liaison, relay};
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::proto::{self, PublishStatus, WithholdReason};

/// The hub with five partners and an auditor.
fn hub() -> Plan {
    let disclosure = r#"# The operator lets publishers see who did not get a bulletin and why.
[disclosure]
withheld = true
"#;
    Federation::around("jp-mod")
        .config(disclosure)
        .partner(liaison("us-dod", "red").with(r#"groups = ["five-eyes"]"#))
        .partner(liaison("uk-mod", "red").with(r#"groups = ["five-eyes", "nato"]"#))
        .partner(
            relay("nato-ccdcoe", "amber+strict")
                .keyed()
                .with(r#"groups = ["nato"]"#),
        )
        .partner(
            liaison("ee-mod", "amber")
                .with(r#"groups = ["nato"]"#)
                .with(r#"deny_tags = ["national-only"]"#),
        )
        .partner(
            liaison("vn-mod", "green").with(r#"kinds = ["indicator", "advisory", "exercise"]"#),
        )
        .partner(auditor("audit-office"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partner_receives_what_the_policy_allows_and_nothing_else() {
    let fed = hub().start().await;
    let us = fed.client("us-dod").await;

    let welcome = us.hello().await.unwrap();
    assert_eq!(welcome.node_id, "jp-mod");
    assert_eq!(welcome.partner_id, "us-dod");
    let results = publish_six_pipelined(&fed, &us).await;

    // The publisher is told who gets the RED note and why every other partner does not.
    let red = &results[1];
    assert_eq!(red.shared_with, ["uk-mod"]);
    let why = withheld(red);
    assert_eq!(why["us-dod"], WithholdReason::Origin as i32);
    assert_eq!(why["nato-ccdcoe"], WithholdReason::AboveClearance as i32);
    assert_eq!(why["ee-mod"], WithholdReason::AboveClearance as i32);
    assert_eq!(why["vn-mod"], WithholdReason::AboveClearance as i32);
    assert!(
        !why.contains_key("audit-office"),
        "auditors are never named"
    );
    assert_eq!(
        withheld(&results[3])["ee-mod"],
        WithholdReason::DeniedTag as i32
    );
    assert_eq!(
        withheld(&results[4])["vn-mod"],
        WithholdReason::KindNotShared as i32
    );

    // Each partner receives its share, in publication order, ending with the barrier.
    let expect: [(&str, &[&str]); 4] = [
        ("uk-mod", &[GREEN, RED, STRICT, AMBER, VULN, BARRIER]),
        ("nato-ccdcoe", &[GREEN, STRICT, AMBER, VULN, BARRIER]),
        ("ee-mod", &[GREEN, VULN, BARRIER]),
        ("vn-mod", &[GREEN, BARRIER]),
    ];
    for (partner, titles) in expect {
        let client = fed.client(partner).await;
        let got = receive(&client, titles.len()).await;
        let got_titles: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(got_titles, titles, "{partner}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "increasing seqs");
        client.close().await;
    }
    us.close().await;
    fed.stop().await;
}

const GREEN: &str = "Cyber Coalition: dates";
const RED: &str = "Staff talks record";
const STRICT: &str = "Incident at a NATO site";
const AMBER: &str = "Advisory for NATO";
const VULN: &str = "Router vulnerability";
const BARRIER: &str = "barrier";

/// The US desk pipelines six bulletins on one stream: a GREEN exercise, a RED note for
/// uk-mod, AMBER+STRICT and AMBER for NATO (the latter tagged national-only), a GREEN
/// vulnerability and a CLEAR barrier. Each result, in order, accepted.
async fn publish_six_pipelined(fed: &Federation, us: &Client) -> Vec<proto::PublishResult> {
    let plan = [
        (Tlp::Green, Kind::Exercise, GREEN, &[][..], &[][..]),
        (Tlp::Red, Kind::Consultation, RED, &["uk-mod"][..], &[][..]),
        (
            Tlp::AmberStrict,
            Kind::Incident,
            STRICT,
            &["group:nato"][..],
            &[][..],
        ),
        (
            Tlp::Amber,
            Kind::Advisory,
            AMBER,
            &["group:nato"][..],
            &["national-only"][..],
        ),
        (Tlp::Green, Kind::Vulnerability, VULN, &[][..], &[][..]),
        (Tlp::Clear, Kind::Indicator, BARRIER, &[][..], &[][..]),
    ];
    let mut publisher = us.publisher().await.unwrap();
    for (i, (tlp, kind, title, audience, tags)) in plan.iter().enumerate() {
        let b = fed.bulletin("us-dod", *tlp, *kind, title, audience, tags);
        publisher.send(i as u64, b).await.unwrap();
    }
    publisher.finish();
    let mut results = Vec::new();
    while let Some(r) = publisher.recv().await.unwrap() {
        results.push(r);
    }
    assert_eq!(results.len(), plan.len());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.request_id, i as u64, "results come back in order");
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    }
    results
}

/// Who a result says was withheld the bulletin, and why.
fn withheld(result: &proto::PublishResult) -> HashMap<&str, i32> {
    result
        .withheld
        .iter()
        .map(|w| (w.partner.as_str(), w.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_may_neither_publish_nor_receive() {
    let fed = hub().start().await;
    let auditor = fed.client("audit-office").await;
    let welcome = auditor.hello().await.unwrap();
    assert_eq!(welcome.role, renkei::proto::Role::Auditor as i32);
    let b = fed.bulletin("us-dod", Tlp::Green, Kind::Report, "r", &[], &[]);
    let err = auditor.publish(b).await.unwrap_err();
    assert!(
        err.to_string().contains("ERROR_CODE_NOT_PERMITTED"),
        "{err}"
    );
    let mut sub = auditor.subscribe(0).await.unwrap();
    let err = sub.next().await.unwrap_err();
    assert!(
        err.to_string().contains("ERROR_CODE_NOT_PERMITTED"),
        "{err}"
    );
    auditor.close().await;
    fed.stop().await;
}
