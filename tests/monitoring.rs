//! An operator's monitoring reads the node's admin listener: `/metrics` parses as
//! Prometheus text (with a real parser) and agrees with the auditor's report from the
//! audit log; `/healthz` and `/readyz` answer; anything else is refused politely.

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use common::federation::{receive, Federation, Plan, PATIENCE};
use common::tables::{auditor, liaison};
use renkei::bulletin::{Kind, Tlp};
use renkei::proto;

/// The hub with an admin listener, a RED and an AMBER desk and an auditor.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .config("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .partner(liaison("us-dod", "red"))
        .partner(liaison("uk-mod", "amber"))
        .partner(auditor("audit-office"))
}

/// One HTTP/1.1 request; returns the status code and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    )
}

fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v))
        | Some(prometheus_parse::Value::Gauge(v))
        | Some(prometheus_parse::Value::Untyped(v)) => *v,
        other => panic!("{metric}{labels:?}: {other:?}"),
    }
}

/// Reads and parses `/metrics`.
fn scrape(admin: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_scrapes_the_same_figures_the_auditor_reads() {
    let fed = hub().member("cn-pla").start().await;
    let admin = fed
        .node
        .as_ref()
        .unwrap()
        .admin_addr()
        .expect("[admin] listen is set");

    // Two exercises and a consultation from the US desk; the UK desk receives and acks.
    let us = fed.client("us-dod").await;
    for (kind, title) in [
        (Kind::Exercise, "Locked Shields planning"),
        (Kind::Exercise, "Cyber Coalition call"),
        (Kind::Consultation, "staff talks"),
    ] {
        let b = fed.bulletin("us-dod", Tlp::Green, kind, title, &[], &[]);
        let r = us.publish(b).await.unwrap();
        assert_eq!(r.status, proto::PublishStatus::Accepted as i32);
    }
    // Before the UK desk connects, its queue holds all three, the oldest waiting.
    let queued = scrape(admin);
    let depth =
        |s: &prometheus_parse::Scrape| sample(s, "renkei_queue_depth", &[("partner", "uk-mod")]);
    let oldest = |s: &prometheus_parse::Scrape| {
        sample(
            s,
            "renkei_queue_oldest_unacked_age_seconds",
            &[("partner", "uk-mod")],
        )
    };
    assert_eq!(depth(&queued), 3.0);
    assert!(
        (0.0..60.0).contains(&oldest(&queued)),
        "waiting since the publishes"
    );
    let uk = fed.client("uk-mod").await;
    assert_eq!(receive(&uk, 3).await.len(), 3);
    // A refused publish (the UK desk passing on a US bulletin) and a refused stranger,
    // so that every counter the Grafana dashboard charts has samples.
    let passed_on = fed.bulletin("us-dod", Tlp::Green, Kind::Advisory, "passed on", &[], &[]);
    let r = uk.publish(passed_on).await.unwrap();
    assert_eq!(r.status, proto::PublishStatus::Rejected as i32);
    let stranger = fed.client("cn-pla").await;
    assert!(stranger.hello().await.is_err(), "cn-pla is no partner");

    // The auditor's report comes from the audit log (and records the query).
    let auditor = fed.client("audit-office").await;
    let report = auditor
        .metrics(proto::MetricsRequest::default())
        .await
        .unwrap();

    let scrape = scrape(admin);
    the_counters_are_the_reports(&scrape, &report);
    the_histograms_and_gauges_say_what_happened(&scrape);
    assert_eq!(depth(&scrape), 0.0, "acknowledged: the queue is empty");
    assert_eq!(oldest(&scrape), 0.0);
    grafana_names_only_what_the_node_exports(&get(admin, "/metrics").1);
    the_listener_answers_only_what_it_serves(admin);

    for c in [us, uk, auditor] {
        c.close().await;
    }
    fed.stop().await;
}

/// Each counter of the scrape is the auditor's figure from the audit log.
fn the_counters_are_the_reports(scrape: &prometheus_parse::Scrape, report: &proto::MetricsReport) {
    let figure = |partner: &str, name: &str| {
        report
            .partners
            .iter()
            .find(|p| p.partner == partner)
            .and_then(|p| p.figures.iter().find(|f| f.name == name))
            .map_or(0, |f| f.value) as f64
    };

    let received = |kind| {
        sample(
            scrape,
            "renkei_bulletins_received_total",
            &[("partner", "us-dod"), ("kind", kind)],
        )
    };
    assert_eq!(received("exercise"), 2.0);
    assert_eq!(received("exercise"), figure("us-dod", "received.exercise"));
    assert_eq!(
        received("consultation"),
        figure("us-dod", "received.consultation")
    );
    let shared = sample(
        scrape,
        "renkei_bulletins_shared_total",
        &[("partner", "uk-mod"), ("kind", "exercise")],
    );
    assert_eq!(shared, figure("uk-mod", "shared.exercise"));
    // The events once each, and per country or organisation (these partners
    // name none, so their origins count under "?").
    let events = sample(scrape, "renkei_events_total", &[("kind", "exercise")]);
    assert!(events >= received("exercise"), "{events}");
    let by_origin = sample(
        scrape,
        "renkei_country_bulletins_received_total",
        &[("country", "?"), ("kind", "exercise")],
    );
    assert_eq!(by_origin, events, "each event counts once for its origin's");
    let acks = sample(scrape, "renkei_acks_total", &[("partner", "uk-mod")]);
    assert_eq!(acks, 3.0);
    assert_eq!(acks, figure("uk-mod", "acked"));
    let withheld = sample(
        scrape,
        "renkei_bulletins_withheld_total",
        &[("partner", "audit-office"), ("reason", "auditor")],
    );
    assert_eq!(withheld, 3.0);
}

/// The latency histogram counts every ack; frames moved and commits were timed; the
/// gauges say how big the log is and who is connected.
fn the_histograms_and_gauges_say_what_happened(scrape: &prometheus_parse::Scrape) {
    let histogram = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "renkei_ack_latency_seconds" && s.labels.get("partner") == Some("uk-mod")
        })
        .expect("a latency histogram for uk-mod");
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 3.0, "+Inf holds every ack");
        }
        other => panic!("{other:?}"),
    }
    assert!(sample(scrape, "renkei_frames_total", &[("direction", "read")]) >= 6.0);
    let commits = scrape
        .samples
        .iter()
        .find(|s| s.metric == "renkei_commit_seconds")
        .expect("the commit latency histogram");
    match &commits.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.last().unwrap().count >= 3.0, "every commit counted");
        }
        other => panic!("{other:?}"),
    }
    assert!(sample(scrape, "renkei_audit_records", &[]) >= 10.0);
    assert_eq!(sample(scrape, "renkei_bulletins_stored", &[]), 3.0);
    assert_eq!(
        sample(scrape, "renkei_connections_open", &[("partner", "us-dod")]),
        1.0
    );
}

/// `/healthz` and `/readyz` answer; anything else is refused politely, and a page that
/// rebinds a name of its own to this address reads nothing.
fn the_listener_answers_only_what_it_serves(admin: SocketAddr) {
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    assert_eq!(get(admin, "/admin/reload").0, 404);
    assert_eq!(
        http(admin, "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        (200, String::new()),
        "HEAD answers the head only"
    );
    assert_eq!(
        http(admin, "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").0,
        405
    );
    assert_eq!(
        http(
            admin,
            "GET /metrics HTTP/1.1\r\nHost: evil.example:9464\r\n\r\n"
        )
        .0,
        421
    );
    assert_eq!(http(admin, "\u{1}\u{2} nonsense\r\n\r\n").0, 400);
}

/// Every metric the Grafana dashboard in deploy/ queries is one the node exports (a
/// histogram by its family name): the dashboard cannot drift from /metrics.
fn grafana_names_only_what_the_node_exports(metrics: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana/renkei-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "the dashboard's queries: {exprs:?}");
    let mut named = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("renkei_") {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + word.len()..];
            named.insert(word.trim_end_matches("_bucket").to_string());
        }
    }
    assert!(named.len() >= 15, "{named:?}");
    for name in &named {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }
}

/// Every `expr` (a query) and `query` (a variable's) in the dashboard.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
