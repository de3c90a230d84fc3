//! A hub run by Japan's defence ministry with five partners. The US liaison publishes
//! bulletins at every TLP level; each partner receives exactly what its clearance, its
//! kinds, its denied tags and the audience allow, and the publisher is told why not.

use crate::common;

use std::collections::HashMap;

use common::federation::{receive, Federation};
use common::tables::{auditor, liaison, relay, tables};
use renkei::bulletin::{Kind, Tlp};
use renkei::proto::{PublishStatus, WithholdReason};

fn partners() -> String {
    let head = r#"# The operator lets publishers see who did not get a bulletin and why.
[disclosure]
withheld = true
"#;
    head.to_owned()
        + &tables(&[
            liaison("us-dod", "red").with(r#"groups = ["five-eyes"]"#),
            liaison("uk-mod", "red").with(r#"groups = ["five-eyes", "nato"]"#),
            relay("nato-ccdcoe", "amber+strict")
                .keyed()
                .with(r#"groups = ["nato"]"#),
            liaison("ee-mod", "amber")
                .with(r#"groups = ["nato"]"#)
                .with(r#"deny_tags = ["national-only"]"#),
            liaison("vn-mod", "green").with(r#"kinds = ["indicator", "advisory", "exercise"]"#),
            auditor("audit-office"),
        ])
}

const MEMBERS: &[&str] = &[
    "us-dod",
    "uk-mod",
    "nato-ccdcoe",
    "ee-mod",
    "vn-mod",
    "audit-office",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partner_receives_what_the_policy_allows_and_nothing_else() {
    let fed = Federation::start("jp-mod", MEMBERS, &partners()).await;
    let us = fed.client("us-dod").await;

    let welcome = us.hello().await.unwrap();
    assert_eq!(welcome.node_id, "jp-mod");
    assert_eq!(welcome.partner_id, "us-dod");

    let plan = [
        fed.bulletin(
            "us-dod",
            Tlp::Green,
            Kind::Exercise,
            "Cyber Coalition: dates",
            &[],
            &[],
        ),
        fed.bulletin(
            "us-dod",
            Tlp::Red,
            Kind::Consultation,
            "Staff talks record",
            &["uk-mod"],
            &[],
        ),
        fed.bulletin(
            "us-dod",
            Tlp::AmberStrict,
            Kind::Incident,
            "Incident at a NATO site",
            &["group:nato"],
            &[],
        ),
        fed.bulletin(
            "us-dod",
            Tlp::Amber,
            Kind::Advisory,
            "Advisory for NATO",
            &["group:nato"],
            &["national-only"],
        ),
        fed.bulletin(
            "us-dod",
            Tlp::Green,
            Kind::Vulnerability,
            "Router vulnerability",
            &[],
            &[],
        ),
        fed.bulletin("us-dod", Tlp::Clear, Kind::Indicator, "barrier", &[], &[]),
    ];
    let mut publisher = us.publisher().await.unwrap();
    for (i, b) in plan.iter().enumerate() {
        publisher.send(i as u64, b.clone()).await.unwrap();
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

    // The publisher is told who gets the RED note and why every other partner does not.
    let red = &results[1];
    assert_eq!(red.shared_with, ["uk-mod"]);
    let why: HashMap<&str, i32> = red
        .withheld
        .iter()
        .map(|w| (w.partner.as_str(), w.reason))
        .collect();
    assert_eq!(why["us-dod"], WithholdReason::Origin as i32);
    assert_eq!(why["nato-ccdcoe"], WithholdReason::AboveClearance as i32);
    assert_eq!(why["ee-mod"], WithholdReason::AboveClearance as i32);
    assert_eq!(why["vn-mod"], WithholdReason::AboveClearance as i32);
    assert!(
        !why.contains_key("audit-office"),
        "auditors are never named"
    );
    let amber = &results[3];
    let why: HashMap<&str, i32> = amber
        .withheld
        .iter()
        .map(|w| (w.partner.as_str(), w.reason))
        .collect();
    assert_eq!(why["ee-mod"], WithholdReason::DeniedTag as i32);
    let vuln = &results[4];
    let why: HashMap<&str, i32> = vuln
        .withheld
        .iter()
        .map(|w| (w.partner.as_str(), w.reason))
        .collect();
    assert_eq!(why["vn-mod"], WithholdReason::KindNotShared as i32);

    // Each partner receives its share, in publication order, ending with the barrier.
    let expect: [(&str, &[&str]); 4] = [
        (
            "uk-mod",
            &[
                "Cyber Coalition: dates",
                "Staff talks record",
                "Incident at a NATO site",
                "Advisory for NATO",
                "Router vulnerability",
                "barrier",
            ],
        ),
        (
            "nato-ccdcoe",
            &[
                "Cyber Coalition: dates",
                "Incident at a NATO site",
                "Advisory for NATO",
                "Router vulnerability",
                "barrier",
            ],
        ),
        (
            "ee-mod",
            &["Cyber Coalition: dates", "Router vulnerability", "barrier"],
        ),
        ("vn-mod", &["Cyber Coalition: dates", "barrier"]),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_may_neither_publish_nor_receive() {
    let fed = Federation::start("jp-mod", MEMBERS, &partners()).await;
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
