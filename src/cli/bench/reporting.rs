//! The `metrics` phase: the programme's report on a large log. It appends
//! `--metrics-records` accepted-bulletin records (ten million by default) over two
//! fiscal years straight into a store, as a busy node would have written them, then
//! times what an auditor waits for: the fiscal-year report by country and by partner,
//! read from the day counters at one log size (`Store::counted`), and the same report
//! recounted from every record, as `audit recount` does offline.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::audit::record::Event;
use crate::bulletin::{BulletinId, Digest, Header, Kind, Tlp};
use crate::identity::{Affiliation, PartnerId};
use crate::metrics::{self, Period, Programme};
use crate::proto;
use crate::store::{Entry, Store};
use crate::timestamp::Timestamp;

/// The parties of the benchmark's federation: (partner id, country or organisation).
const PARTIES: [(&str, &str); 10] = [
    ("jp-cdc", "JP"),
    ("us-dod", "US"),
    ("au-dod", "AU"),
    ("gb-mod", "GB"),
    ("de-bmvg", "DE"),
    ("fr-mod", "FR"),
    ("ee-mod", "EE"),
    ("vn-mod", "VN"),
    ("nato-ccdcoe", "NATO"),
    ("asean-cert", "ASEAN"),
];
const KINDS: [Kind; 4] = [
    Kind::Consultation,
    Kind::Exercise,
    Kind::Indicator,
    Kind::Advisory,
];
/// Records per group commit.
const BATCH: u64 = 2_000;
/// The log covers FY2025 and FY2026 (April to March).
const FIRST_DAY: &str = "2025-04-01T00:00:00Z";
const DAYS: u64 = 730;
const DAY_MS: u64 = 86_400_000;

/// The phase: build the log, then time the reports.
pub(super) async fn metrics_phase(records: u64, dir: std::path::PathBuf) -> anyhow::Result<Value> {
    tokio::task::spawn_blocking(move || run(records, &dir))
        .await
        .context("the metrics phase")?
}

fn run(records: u64, dir: &std::path::Path) -> anyhow::Result<Value> {
    let store = Store::open(dir, 64 << 20)?;
    eprintln!("renkei bench: metrics: appending {records} accepted-bulletin records…");
    let parties = parties()?;
    let start = Instant::now();
    append(&store, &parties, records)?;
    let append = start.elapsed();
    let until = metrics::day_of(first_ms()? + DAYS * DAY_MS);
    let request = proto::MetricsRequest {
        fiscal_year: 2026,
        ..Default::default()
    };
    let period = Period::requested(&request, 4, until)?;
    let by_country = median_ms(5, || {
        report(&store, &period, proto::MetricsView::Affiliation)
    })?;
    let by_partner = median_ms(5, || report(&store, &period, proto::MetricsView::Partner))?;
    let counted = store.counted(period.until)?;
    let rows = counted.rows.len();
    let t = Instant::now();
    let recounted = recount(&store, &period)?;
    let recount = t.elapsed();
    let node = report(&store, &period, proto::MetricsView::Affiliation)?;
    anyhow::ensure!(
        recounted.partners == node.partners && recounted.events == node.events,
        "the recount differs from the counters"
    );
    Ok(json!({
        "records": records,
        "append_records_per_s": (records as f64 / append.as_secs_f64()).round(),
        "counter_rows": rows,
        "report_fiscal_year_by_country_ms": by_country,
        "report_fiscal_year_by_partner_ms": by_partner,
        "recount_from_records_s": recount.as_secs_f64(),
        "recount_records_per_s": (records as f64 / recount.as_secs_f64()).round(),
        "database_bytes": super::dir_size(dir),
    }))
}

/// Each party's id and affiliation.
fn parties() -> anyhow::Result<Vec<(PartnerId, Affiliation)>> {
    PARTIES
        .iter()
        .map(|(id, a)| {
            let affiliation = match a.parse() {
                Ok(country) => Affiliation::Country(country),
                Err(_) => Affiliation::Organisation(a.parse()?),
            };
            Ok((id.parse()?, affiliation))
        })
        .collect()
}

fn first_ms() -> anyhow::Result<u64> {
    Ok(FIRST_DAY.parse::<Timestamp>()?.unix_ms())
}

/// Appends `records` accepted bulletins spread evenly over the two years: origin,
/// kind and the three partners each is shared with turn round the parties.
fn append(store: &Store, parties: &[(PartnerId, Affiliation)], records: u64) -> anyhow::Result<()> {
    let first = first_ms()?;
    let step = (DAYS * DAY_MS) as f64 / records.max(1) as f64;
    let mut n = 0;
    while n < records {
        let count = BATCH.min(records - n);
        let now = Timestamp::from_unix_ms(first + (n as f64 * step) as u64);
        let entries = (n..n + count).map(|i| accepted(parties, i, now)).collect();
        store.commit(entries, now)?;
        n += count;
    }
    Ok(())
}

/// Record `i`: an accepted bulletin with its decisions and whose each party was.
fn accepted(parties: &[(PartnerId, Affiliation)], i: u64, now: Timestamp) -> Entry {
    let at = |k: u64| &parties[(k % parties.len() as u64) as usize];
    let (origin, affiliation) = at(i);
    let header = Header {
        id: BulletinId::new_v7(now),
        origin: origin.clone(),
        created: now,
        tlp: Tlp::Green,
        kind: KINDS[(i / 3 % KINDS.len() as u64) as usize],
        tags: vec![],
        audience: vec![],
    };
    let share = crate::policy::Decision::Share;
    let to: Vec<_> = (1..=3).map(|k| &at(i + k * 7 / 3 + 1).0).collect();
    let event = Event::accepted(
        origin,
        &header,
        Digest([0; 32]),
        to.iter().map(|p| (*p, &share)),
    )
    .with_affiliations(Some(affiliation), |p| {
        parties
            .iter()
            .find(|(id, _)| id.as_str() == p)
            .map(|(_, a)| a.clone())
    });
    Entry::Event(Some(event), None)
}

/// The fiscal-year report as the node answers an auditor.
fn report(
    store: &Store,
    period: &Period,
    view: proto::MetricsView,
) -> anyhow::Result<proto::MetricsReport> {
    let counted = store.counted(period.until)?;
    let programme = Programme {
        domestic: Some("JP"),
        fiscal_start: 4,
        targets: &[],
    };
    Ok(metrics::report_in_view(
        view,
        "bench-hub",
        programme,
        period,
        counted.into(),
    ))
}

/// The same report from every record, decoded and counted again.
fn recount(store: &Store, period: &Period) -> anyhow::Result<proto::MetricsReport> {
    use prost::Message as _;
    let mut totals = std::collections::BTreeMap::new();
    let mut chunk = Vec::with_capacity(10_000);
    let mut add = |chunk: &mut Vec<proto::AuditRecord>| {
        for (k, v) in metrics::aggregate(chunk.iter()) {
            *totals.entry(k).or_insert(0) += v;
        }
        chunk.clear();
    };
    for bytes in store.audit().records_from(0) {
        chunk.push(proto::AuditRecord::decode(bytes?)?);
        if chunk.len() == chunk.capacity() {
            add(&mut chunk);
        }
    }
    add(&mut chunk);
    let rows = totals.into_iter().map(|((d, p, n), v)| (d, p, n, v));
    let programme = Programme {
        domestic: Some("JP"),
        fiscal_start: 4,
        targets: &[],
    };
    Ok(metrics::report_by_affiliation(
        "bench-hub",
        programme,
        period,
        rows,
    ))
}

/// The median of `n` timings of `f`, in milliseconds.
fn median_ms<T>(n: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[n / 2])
}
