//! Random sequences of publishing, rejections, deliveries and acks through a real node:
//! afterwards every metric equals a recount of the audit records, counted here
//! independently of the node's own counting.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::federation::{sign_as, Federation, Plan, PATIENCE};
use common::tables::{auditor, liaison};
use proptest::prelude::*;
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::metrics::{self, Period};
use renkei::node::operator::{self, OperatorRequest};
use renkei::proto::{self, AuditEvent};

/// The hub with a RED, an AMBER and a GREEN desk and an auditor.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red"))
        .partner(
            liaison("uk-mod", "amber").with(r#"kinds = ["indicator", "exercise", "consultation"]"#),
        )
        .partner(liaison("ee-mod", "green"))
        .partner(auditor("audit-office"))
}

const DESKS: [&str; 3] = ["us-dod", "uk-mod", "ee-mod"];

#[derive(Clone, Debug)]
enum Op {
    /// A desk publishes; `forged` signs it with another desk's key; `twice` sends it again.
    Publish {
        desk: usize,
        tlp: Tlp,
        kind: Kind,
        forged: bool,
        twice: bool,
    },
    /// A desk receives up to `take` deliveries and acks the first `ack` of them.
    Receive {
        desk: usize,
        take: usize,
        ack: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let tlp = prop::sample::select(vec![Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::Red]);
    let kind = prop::sample::select(vec![
        Kind::Indicator,
        Kind::Exercise,
        Kind::Consultation,
        Kind::Advisory,
    ]);
    prop_oneof![
        3 => (0..3usize, tlp, kind, prop::bool::weighted(0.15), prop::bool::weighted(0.15))
            .prop_map(|(desk, tlp, kind, forged, twice)| Op::Publish { desk, tlp, kind, forged, twice }),
        1 => (0..3usize, 0..5usize, 0..5usize)
            .prop_map(|(desk, take, ack)| Op::Receive { desk, take, ack }),
    ]
}

/// The test's own recount: (partner, counter) → total, from the decoded records.
fn recount(records: &[proto::AuditRecord]) -> BTreeMap<(String, String), u64> {
    let mut n: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut add =
        |p: &str, name: String, by: u64| *n.entry((p.to_owned(), name)).or_default() += by;
    for r in records {
        let kind = Kind::from_proto(r.kind)
            .map(|k| k.to_string())
            .unwrap_or_default();
        match AuditEvent::try_from(r.event).unwrap() {
            AuditEvent::BulletinAccepted => {
                add(&r.partner, format!("received.{kind}"), 1);
                for d in &r.decisions {
                    if d.shared {
                        add(&d.partner, format!("shared.{kind}"), 1);
                    } else {
                        let reason = proto::WithholdReason::try_from(d.reason).unwrap();
                        let name = reason.as_str_name().trim_start_matches("WITHHOLD_REASON_");
                        add(&d.partner, format!("withheld.{}", name.to_lowercase()), 1);
                    }
                }
            }
            AuditEvent::BulletinRejected => {
                let code = proto::ErrorCode::try_from(r.error).unwrap();
                let name = code.as_str_name().trim_start_matches("ERROR_CODE_");
                add(&r.partner, format!("rejected.{}", name.to_lowercase()), 1);
            }
            AuditEvent::BulletinDuplicate => add(&r.partner, "duplicate".into(), 1),
            AuditEvent::Delivered => {
                add(&r.partner, "delivered".into(), r.bulletin_seqs.len() as u64)
            }
            AuditEvent::Acked => add(&r.partner, "acked".into(), r.bulletin_seqs.len() as u64),
            AuditEvent::ConnectionAccepted => add(&r.partner, "connections".into(), 1),
            _ => {}
        }
    }
    n
}

/// What the driven ops should leave on the record, counted as they happen.
#[derive(Default)]
struct Expected {
    /// How many deliveries each desk can expect: shared and not yet acked.
    waiting: [usize; 3],
    published: usize,
    acked_total: usize,
}

async fn run(ops: Vec<Op>) {
    let mut fed = hub().start().await;
    let mut clients = Vec::new();
    for d in DESKS {
        clients.push(fed.client(d).await);
    }
    let mut expected = Expected::default();
    for op in ops {
        match op {
            Op::Publish {
                desk,
                tlp,
                kind,
                forged,
                twice,
            } => {
                let signer = if forged { (desk + 1) % 3 } else { desk };
                let b = sign_as(
                    fed.key(DESKS[signer]),
                    DESKS[desk],
                    tlp,
                    kind,
                    "t",
                    &[],
                    &[],
                );
                let sends = if twice { 2 } else { 1 };
                for _ in 0..sends {
                    publish_and_count(&clients[desk], b.clone(), &mut expected).await;
                }
            }
            Op::Receive { desk, take, ack } => {
                receive_and_ack(&clients[desk], desk, take, ack, &mut expected).await
            }
        }
    }
    close_and_shut_down(&mut fed, clients).await;
    let data = fed.dir.path().join("data");
    let (records, rows) = read_the_log(&data);
    every_figure_equals_the_recount(&records, rows, &expected);
}

/// A desk publishes `b`; if accepted, counts it and the deliveries it owes each desk.
async fn publish_and_count(client: &Client, b: proto::SignedBulletin, expected: &mut Expected) {
    let r = client.publish(b).await.unwrap();
    if r.status == proto::PublishStatus::Accepted as i32 {
        expected.published += 1;
        for p in &r.shared_with {
            if let Some(i) = DESKS.iter().position(|d| d == p) {
                expected.waiting[i] += 1;
            }
        }
    }
}

/// `desk` receives up to `take` of the deliveries it waits for and acks the first `ack`.
async fn receive_and_ack(
    client: &Client,
    desk: usize,
    take: usize,
    ack: usize,
    expected: &mut Expected,
) {
    let take = take.min(expected.waiting[desk]);
    if take == 0 {
        return;
    }
    let mut sub = client.subscribe(take as u32).await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..take {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seqs.push(d.seq);
    }
    let ack = ack.min(take);
    if ack > 0 {
        sub.ack(seqs[..ack].to_vec()).await.unwrap();
    }
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    expected.waiting[desk] -= ack;
    expected.acked_total += ack;
}

/// The desks hang up and the node shuts down, so its store can be opened here.
async fn close_and_shut_down(fed: &mut Federation, clients: Vec<Client>) {
    for c in clients {
        c.close().await;
    }
    let node = fed.node.take().unwrap();
    node.shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

/// The audit records in the store at `data`, decoded, and its stored day counters.
fn read_the_log(data: &Path) -> (Vec<proto::AuditRecord>, Vec<metrics::Row>) {
    let store = renkei::store::Store::open(data, 16 << 20).unwrap();
    let log = store.audit();
    let records: Vec<proto::AuditRecord> = log
        .records_from(0)
        .map(|r| proto::AuditRecord::decode(r.unwrap()).unwrap())
        .collect();
    let rows = store.counted(u32::MAX).unwrap().rows;
    (records, rows)
}

/// The stored counters sum the records, and the report equals this test's own recount
/// and what the ops were expected to leave.
fn every_figure_equals_the_recount(
    records: &[proto::AuditRecord],
    rows: Vec<metrics::Row>,
    expected: &Expected,
) {
    // Stored day counters are the node's own sum of the same records...
    let stored = rows.clone();
    let summed: Vec<_> = metrics::aggregate(records)
        .into_iter()
        .map(|((d, p, n), v)| (d, p, n, v))
        .collect();
    assert_eq!(stored, summed, "counters moved with the records");
    // ...and the report over the period equals this test's own recount.
    let days = rows.iter().map(|r| r.0);
    let (first, last) = (days.clone().min().unwrap_or(0), days.max().unwrap_or(0));
    let period = Period::days(first, last + 1).unwrap();
    let report = metrics::report("jp-mod", &period, rows);
    let mut reported = BTreeMap::new();
    for p in &report.partners {
        for f in &p.figures {
            reported.insert((p.partner.clone(), f.name.clone()), f.value);
        }
    }
    let mine = recount(records);
    for (key, value) in &mine {
        assert_eq!(reported.get(key), Some(value), "{key:?}");
    }
    let accepted_records = mine
        .iter()
        .filter(|((_, n), _)| n.starts_with("received."))
        .map(|(_, v)| v)
        .sum::<u64>();
    assert_eq!(accepted_records, expected.published as u64);
    let acked: u64 = mine
        .iter()
        .filter(|((_, n), _)| n == "acked")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(acked, expected.acked_total as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_metric_equals_a_recount_of_the_log(ops in prop::collection::vec(op(), 1..25)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// The hub with a US and a Japanese desk and an auditor.
fn countries() -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red").with(r#"country = "US""#))
        .partner(liaison("jp-cdc", "red").with(r#"country = "JP""#))
        .partner(auditor("jp-audit"))
}

/// Figure `name` of row `party` in a report by country.
fn by_country(report: &proto::MetricsReport, party: &str, name: &str) -> u64 {
    report
        .partners
        .iter()
        .find(|p| p.partner == party)
        .and_then(|p| p.figures.iter().find(|f| f.name == name))
        .map_or(0, |f| f.value)
}

/// The figures by country follow whose each party was when each record was
/// written. The US desk's ministry is renamed CA half way (a reload): its first
/// bulletin stays the US's, its second is Canada's; Tokyo's own desk is domestic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_by_country_follow_the_configuration_in_force_at_each_record() {
    let mut fed = countries().start().await;
    let path = fed.config_path().to_owned();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "signing_key = \"certs/jp-mod/signing.key\"\n",
        "signing_key = \"certs/jp-mod/signing.key\"\ncountry = \"JP\"\n",
        1,
    );
    std::fs::write(&path, &text).unwrap();
    fed.restart().await;
    let us = fed.client("us-dod").await;
    let publish = async |client: &renkei::client::Client, b| {
        let r = client.publish(b).await.unwrap();
        assert_eq!(r.status, proto::PublishStatus::Accepted as i32, "{r:?}");
    };
    let first = fed.bulletin("us-dod", Tlp::Green, Kind::Consultation, "first", &[], &[]);
    publish(&us, first).await;
    std::fs::write(&path, text.replace("country = \"US\"", "country = \"CA\"")).unwrap();
    let reload = OperatorRequest::Reload;
    let reply = operator::request(&fed.data_dir(), &reload, PATIENCE)
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    let second = fed.bulletin("us-dod", Tlp::Green, Kind::Exercise, "second", &[], &[]);
    publish(&us, second).await;
    let jp = fed.client("jp-cdc").await;
    let reply = fed.bulletin("jp-cdc", Tlp::Green, Kind::Advisory, "reply", &[], &[]);
    publish(&jp, reply).await;

    let auditor = fed.client("jp-audit").await;
    let report = auditor
        .metrics(proto::MetricsRequest {
            view: proto::MetricsView::Affiliation as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.domestic, "JP");
    assert_eq!(by_country(&report, "US", "received.consultation"), 1);
    assert_eq!(
        by_country(&report, "US", "received.exercise"),
        0,
        "after the reload"
    );
    assert_eq!(by_country(&report, "CA", "received.exercise"), 1);
    assert_eq!(by_country(&report, "CA", "shared.advisory"), 1);
    assert_eq!(by_country(&report, "JP", "shared.consultation"), 1);
    assert_eq!(
        report.engaged,
        ["CA"],
        "both ways: only Canada, and never JP"
    );
    let events: u64 = report.events.iter().map(|f| f.value).sum();
    assert_eq!(events, 3, "each bulletin once");
    for c in [us, jp, auditor] {
        c.close().await;
    }
    fed.halt().await;
    recount_at_the_reported_size_gives_the_same_report(&fed.data_dir(), &report);
    fed.stop().await;
}

/// The report names the log it was computed from; an export taken later, recounted at
/// that size, gives the same root and the same figures.
fn recount_at_the_reported_size_gives_the_same_report(
    data: &std::path::Path,
    report: &proto::MetricsReport,
) {
    let dir = data.parent().unwrap();
    let data = data.to_str().unwrap();
    common::renkei_ok(
        dir,
        &["audit", "export", "--data-dir", data, "--out", "log.export"],
    );
    let size = report.log_size.to_string();
    let args = [
        "audit",
        "recount",
        "log.export",
        "--self-signed-ok",
        "--format",
        "json",
    ];
    let run = common::renkei_ok(dir, &[&args[..], &["--size", &size]].concat());
    let recount: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(report.log_size > 0);
    assert_eq!(recount["computed_from"]["log_size"], report.log_size);
    assert_eq!(
        recount["computed_from"]["log_root"],
        hex::encode(&report.log_root),
        "the same log"
    );
    for f in &report.events {
        let theirs = recount["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == f.name);
        assert_eq!(
            theirs.map(|e| e["value"].clone()),
            Some(f.value.into()),
            "{}",
            f.name
        );
    }
    let rows = |r: &serde_json::Value| r["partners"].to_string();
    let ours = serde_json::json!({"partners": report.partners.iter().map(|p| serde_json::json!({
        "partner": p.partner,
        "figures": p.figures.iter().map(|f| (f.name.clone(), f.value)).collect::<Vec<_>>(),
    })).collect::<Vec<_>>()});
    let theirs = serde_json::json!({"partners": recount["partners"].as_array().unwrap().iter().map(|p| serde_json::json!({
        "partner": p["partner"],
        "figures": p["figures"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap().to_owned(), f["value"].as_u64().unwrap())).collect::<Vec<_>>(),
    })).collect::<Vec<_>>()});
    assert_eq!(rows(&ours), rows(&theirs), "the same rows");
    // The whole export names its own size, and another root if the log grew since.
    let all = common::renkei_ok(dir, &args);
    let all: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    let all_size = all["computed_from"]["log_size"].as_u64().unwrap();
    assert!(all_size >= report.log_size);
    if all_size > report.log_size {
        assert_ne!(
            all["computed_from"]["log_root"],
            recount["computed_from"]["log_root"]
        );
    }
}
