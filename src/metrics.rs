//! Information-sharing metrics: which day counters each audit record moves, and the
//! report an auditor reads (outputs per partner, growth against the previous period,
//! partners engaged, delivery latency), with periods from days up to fiscal years.
//!
//! Besides the counters per partner, each accepted bulletin moves counters per country
//! or organisation, as the record says whose each party was when it was written: under
//! the affiliation's own name (`EE`, `NATO-CCDCOE`: upper case, so never a partner id)
//! and names starting `country.`: the origin's `country.received.KIND`, each receiving
//! affiliation's `country.shared.KIND` (once per bulletin however many of its partners
//! got it), `country.took_part.KIND` for each affiliation among both, and the event
//! itself once under [`EVERYONE`] as `country.events.KIND`. A party the configuration
//! named no affiliation for counts under [`UNKNOWN_AFFILIATION`]. A relay's copy shared
//! on again when its origin publishes (BULLETIN_RESHARED) adds none of these: its new
//! receivers' affiliations may already have counted for that bulletin.
//!
//! Pure: [`each_count`] is the single definition of what a record adds, used both by
//! the store (which moves the counters in the same write as the record) and, through
//! [`count`] and [`aggregate`], by any recount of the log, so the two cannot drift
//! apart. Reading the counters is `store`'s job.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::bulletin::Kind;
use crate::proto::{self, AuditEvent};

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of a node time in milliseconds.
pub fn day_of(unix_ms: u64) -> u32 {
    u32::try_from(unix_ms / DAY_MS).unwrap_or(u32::MAX)
}

/// Upper bounds (ms) of the accepted-to-acked latency buckets; above the last is `inf`.
pub const LATENCY_BOUNDS_MS: &[u64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
    3_600_000, 86_400_000,
];

const LATENCY_PREFIX: &str = "latency.le_";
/// Sum of the acknowledged bulletins' latencies, so the buckets make a full histogram.
pub const LATENCY_SUM: &str = "latency.sum_ms";

/// Strips an enum's prefix from its protobuf name: `ERROR_CODE_BAD_SIGNATURE` →
/// `bad_signature`.
fn snake(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn kind_name(kind: i32) -> String {
    Kind::from_proto(kind).map_or_else(|| format!("kind_{kind}"), |k| k.as_str().to_owned())
}

fn error_name(code: i32) -> String {
    proto::ErrorCode::try_from(code).map_or_else(
        |_| format!("code_{code}"),
        |c| snake(c.as_str_name(), "ERROR_CODE_"),
    )
}

fn withhold_name(reason: i32) -> String {
    proto::WithholdReason::try_from(reason).map_or_else(
        |_| format!("reason_{reason}"),
        |r| snake(r.as_str_name(), "WITHHOLD_REASON_"),
    )
}

fn received_counter(kind: i32) -> String {
    format!("received.{}", kind_name(kind))
}

fn shared_counter(kind: i32) -> String {
    format!("shared.{}", kind_name(kind))
}

fn withheld_counter(reason: i32) -> String {
    format!("withheld.{}", withhold_name(reason))
}

fn rejected_counter(code: i32) -> String {
    format!("rejected.{}", error_name(code))
}

/// Where a bulletin's origin or receiver named no country or organisation.
pub const UNKNOWN_AFFILIATION: &str = "?";
/// Where the events themselves are counted, once each.
pub const EVERYONE: &str = "*";
/// The prefix of the counters kept per country or organisation.
pub const BY_AFFILIATION: &str = "country.";

/// Enum codes below this have their counter names formatted once, in [`Names`].
const NAMED_CODES: i32 = 64;

/// Every counter name a known code gives, formatted once per process: counting is on
/// the path of every audit record, and the names never change.
struct Names {
    received: Vec<String>,
    shared: Vec<String>,
    withheld: Vec<String>,
    rejected: Vec<String>,
    /// Per kind: `country.received.`, `country.shared.`, `country.took_part.`,
    /// `country.events.`.
    by_affiliation: [Vec<String>; 4],
    /// One per bound of [`LATENCY_BOUNDS_MS`], then `inf`.
    latency: Vec<String>,
}

fn names() -> &'static Names {
    static NAMES: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let table = |name: fn(i32) -> String| (0..NAMED_CODES).map(name).collect();
        Names {
            received: table(received_counter),
            shared: table(shared_counter),
            withheld: table(withheld_counter),
            rejected: table(rejected_counter),
            by_affiliation: ["received", "shared", "took_part", "events"].map(|what| {
                (0..NAMED_CODES)
                    .map(|k| format!("{BY_AFFILIATION}{what}.{}", kind_name(k)))
                    .collect()
            }),
            latency: LATENCY_BOUNDS_MS
                .iter()
                .map(|b| format!("{LATENCY_PREFIX}{b}"))
                .chain([format!("{LATENCY_PREFIX}inf")])
                .collect(),
        }
    })
}

/// The name for `code` from `table`, or `name` formats it now for a code outside it.
fn named(table: &'static [String], code: i32, name: fn(i32) -> String) -> Cow<'static, str> {
    match usize::try_from(code).ok().and_then(|c| table.get(c)) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(name(code)),
    }
}

fn latency_bucket(ms: u64) -> Cow<'static, str> {
    let latency = &names().latency;
    let i = LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(LATENCY_BOUNDS_MS.len());
    // The table has one name per bound and one for `inf`, so `i` is always in it.
    Cow::Borrowed(latency.get(i).map_or("latency.le_inf", String::as_str))
}

/// The counters an ack moves: the acks, those with a signed receipt, and the latency
/// histogram with its sum.
fn acked<'a>(
    record: &proto::AuditRecord,
    partner: &'a str,
    one: &mut impl FnMut(&'a str, Cow<'static, str>, u64),
) {
    one(partner, "acked".into(), record.bulletin_seqs.len() as u64);
    if !record.receipts.is_empty() {
        one(partner, "receipts".into(), record.receipts.len() as u64);
    }
    for ms in &record.latencies_ms {
        one(partner, latency_bucket(*ms), 1);
    }
    if !record.latencies_ms.is_empty() {
        let sum = record
            .latencies_ms
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
        one(partner, LATENCY_SUM.into(), sum);
    }
}

/// The counters one accepted bulletin moves per country or organisation (see the
/// module's text): each affiliation once per bulletin, whatever the number of its
/// partners.
fn by_affiliation<'a>(
    record: &'a proto::AuditRecord,
    names: &'static [Vec<String>; 4],
    one: &mut impl FnMut(&'a str, Cow<'static, str>, u64),
) {
    let name = |i: usize| -> Cow<'static, str> {
        let table: &'static [String] = &names[i];
        match usize::try_from(record.kind).ok().and_then(|k| table.get(k)) {
            Some(text) => Cow::Borrowed(text),
            None => {
                let what = ["received", "shared", "took_part", "events"][i];
                Cow::Owned(format!("{BY_AFFILIATION}{what}.{}", kind_name(record.kind)))
            }
        }
    };
    let known = |a: &'a str| if a.is_empty() { UNKNOWN_AFFILIATION } else { a };
    let origin = known(&record.affiliation);
    one(EVERYONE, name(3), 1);
    one(origin, name(0), 1);
    let mut receivers: Vec<&'a str> = record
        .decisions
        .iter()
        .filter(|d| d.shared)
        .map(|d| known(&d.affiliation))
        .collect();
    receivers.sort_unstable();
    receivers.dedup();
    for r in &receivers {
        one(r, name(1), 1);
    }
    let mut took_part = receivers;
    took_part.push(origin);
    took_part.sort_unstable();
    took_part.dedup();
    for a in took_part {
        one(a, name(2), 1);
    }
}

/// The counters an accepted bulletin moves: received from `partner`, shared with or
/// withheld from each partner decided for, and those per country or organisation.
fn accepted<'a>(
    record: &'a proto::AuditRecord,
    partner: &'a str,
    n: &'static Names,
    one: &mut impl FnMut(&'a str, Cow<'static, str>, u64),
) {
    let kind = record.kind;
    one(partner, named(&n.received, kind, received_counter), 1);
    for d in &record.decisions {
        let name = if d.shared {
            named(&n.shared, kind, shared_counter)
        } else {
            named(&n.withheld, d.reason, withheld_counter)
        };
        one(&d.partner, name, 1);
    }
    by_affiliation(record, &n.by_affiliation, one);
}

/// The counters a relay's copy shared on again moves: shared, for each partner it now
/// goes to.
fn reshared<'a>(
    record: &'a proto::AuditRecord,
    n: &'static Names,
    one: &mut impl FnMut(&'a str, Cow<'static, str>, u64),
) {
    for d in record.decisions.iter().filter(|d| d.shared) {
        one(&d.partner, named(&n.shared, record.kind, shared_counter), 1);
    }
}

/// Partner name used for events that name nobody (a certificate without a partner id).
pub const UNNAMED: &str = "(unnamed)";

/// One counter a record moves: on its day, for a partner, by name, by an amount.
/// Borrows the partner from the record: counting allocates nothing for known names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count<'a> {
    /// Day of the record.
    pub day: u32,
    /// The partner concerned.
    pub partner: &'a str,
    /// Counter name, e.g. `shared.exercise`.
    pub name: Cow<'static, str>,
    /// Amount added.
    pub by: u64,
}

/// Every counter `record` moves, as [`each_count`] names them.
pub fn count(record: &proto::AuditRecord) -> Vec<Count<'_>> {
    let mut out = Vec::new();
    each_count(record, |c| out.push(c));
    out
}

/// Calls `f` with every counter `record` moves. The one definition of the metrics.
pub fn each_count<'a>(record: &'a proto::AuditRecord, mut f: impl FnMut(Count<'a>)) {
    let day = day_of(record.time_unix_ms);
    let partner = if record.partner.is_empty() {
        UNNAMED
    } else {
        record.partner.as_str()
    };
    let mut one = |partner: &'a str, name: Cow<'static, str>, by: u64| {
        f(Count {
            day,
            partner,
            name,
            by,
        })
    };
    let n = names();
    let event = AuditEvent::try_from(record.event).unwrap_or(AuditEvent::Unspecified);
    match event {
        AuditEvent::BulletinAccepted => accepted(record, partner, n, &mut one),
        // Received once already: only the partners its origin's publish added count.
        AuditEvent::BulletinReshared => reshared(record, n, &mut one),
        AuditEvent::BulletinRejected => {
            one(
                partner,
                named(&n.rejected, record.error, rejected_counter),
                record.count.max(1),
            );
        }
        AuditEvent::PeerRefused => one(
            partner,
            format!("peer_refused.{}", error_name(record.error)).into(),
            1,
        ),
        AuditEvent::WitnessAlarm => one(partner, "witness_alarms".into(), 1),
        AuditEvent::ReceiptsPassed => one(
            partner,
            "receipts_passed".into(),
            record.receipts.len() as u64,
        ),
        AuditEvent::AckRefused => one(
            partner,
            format!("ack_refused.{}", error_name(record.error)).into(),
            1,
        ),
        AuditEvent::BulletinDuplicate => one(partner, "duplicate".into(), 1),
        AuditEvent::Delivered => one(
            partner,
            "delivered".into(),
            record.bulletin_seqs.len() as u64,
        ),
        AuditEvent::Acked => acked(record, partner, &mut one),
        AuditEvent::Withdrawn => one(
            partner,
            "withdrawn".into(),
            record.bulletin_seqs.len() as u64,
        ),
        AuditEvent::ConnectionAccepted => one(partner, "connections".into(), 1),
        AuditEvent::ConnectionRefused => one(partner, "connections_refused".into(), 1),
        AuditEvent::AuditorQuery => one(partner, "auditor_queries".into(), 1),
        AuditEvent::LinkUp => one(partner, "link_up".into(), 1),
        AuditEvent::LinkDown => one(partner, "link_down".into(), 1),
        AuditEvent::ConfigLoaded
        | AuditEvent::AuditKeyRotated
        | AuditEvent::KeyRevoked
        | AuditEvent::Operator
        | AuditEvent::Unspecified => {}
    }
}

/// Counts by (day, partner, name), as [`aggregate`] adds them up.
pub type Totals = BTreeMap<(u32, String, String), u64>;

/// Adds up the counts of many records by (day, partner, name).
pub fn aggregate<'a>(records: impl IntoIterator<Item = &'a proto::AuditRecord>) -> Totals {
    let mut totals = Totals::new();
    for r in records {
        add_up(&mut totals, r);
    }
    totals
}

/// Adds one record's counts to `totals`: [`aggregate`] a record at a time, for a log
/// read as it streams.
pub fn add_up(totals: &mut Totals, record: &proto::AuditRecord) {
    for c in count(record) {
        *totals
            .entry((c.day, c.partner.to_owned(), c.name.into_owned()))
            .or_insert(0) += c.by;
    }
}

/// One stored counter: (day, partner, name) = value.
pub type Row = (u32, String, String, u64);

/// What a report was computed from: counter rows as of one log size, with that size
/// and its Merkle root (the store reads them together).
pub struct Counters {
    /// Every counter row before the period's end.
    pub rows: Vec<Row>,
    /// How many records the rows count.
    pub log_size: u64,
    /// The root of those records.
    pub log_root: [u8; 32],
}

/// The report cut as `view` asks (per partner, or per country with the programme's
/// domestic row and targets), naming the log it was computed from.
pub fn report_in_view(
    view: proto::MetricsView,
    node_id: &str,
    programme: Programme<'_>,
    period: &Period,
    counted: Counters,
) -> proto::MetricsReport {
    let mut report = match view {
        proto::MetricsView::Partner => report(node_id, period, counted.rows),
        proto::MetricsView::Affiliation => {
            report_by_affiliation(node_id, programme, period, counted.rows)
        }
    };
    report.log_size = counted.log_size;
    report.log_root = bytes::Bytes::copy_from_slice(&counted.log_root);
    report
}

/// What the rows of a partner report add up to, before the report is built from it.
struct Tally {
    /// partner → name → (value, previous)
    per: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// The period's months, and each one's totals by counter name.
    months: Vec<(u32, u32, String)>,
    month_totals: Vec<BTreeMap<String, u64>>,
    /// The period's quarters, and each one's totals by counter name.
    quarters: Vec<(u32, u32, String)>,
    quarter_totals: Vec<BTreeMap<String, u64>>,
    /// Partners that received or shared before the period.
    exchanged_before: BTreeSet<String>,
    /// Per partner in the previous period: (received, shared).
    prev_engaged: BTreeMap<String, (bool, bool)>,
    /// Per partner in the period: (received, shared).
    engaged: BTreeMap<String, (bool, bool)>,
}

/// Adds up the partner counters of `rows` for `period` and the period before it.
fn tally(period: &Period, rows: impl IntoIterator<Item = Row>) -> Tally {
    // partner → name → (value, previous)
    let mut per: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    let months = period.spans(1);
    let quarters = period.spans(3);
    let mut month_totals: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); months.len()];
    let mut quarter_totals: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); quarters.len()];
    let mut exchanged_before: BTreeSet<String> = BTreeSet::new();
    let (prev_since, prev_until) = period.previous;
    let mut prev_engaged: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut engaged: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for (day, partner, name, value) in rows {
        // The counters per country or organisation have a report of their own.
        if value == 0 || day >= period.until || name.starts_with(BY_AFFILIATION) {
            continue;
        }
        let received = name.starts_with("received.");
        let shared = name.starts_with("shared.");
        if day < period.since && (received || shared) {
            exchanged_before.insert(partner.clone());
        }
        if day >= period.since {
            let e = engaged.entry(partner.clone()).or_default();
            e.0 |= received;
            e.1 |= shared;
            per.entry(partner.clone())
                .or_default()
                .entry(name.clone())
                .or_default()
                .0 += value;
            if let Some(i) = holding(&months, day) {
                *month_totals[i].entry(name.clone()).or_default() += value;
            }
            if let Some(i) = holding(&quarters, day) {
                *quarter_totals[i].entry(name.clone()).or_default() += value;
            }
        } else if (prev_since..prev_until).contains(&day) {
            let e = prev_engaged.entry(partner.clone()).or_default();
            e.0 |= received;
            e.1 |= shared;
            per.entry(partner).or_default().entry(name).or_default().1 += value;
        }
    }
    Tally {
        per,
        months,
        month_totals,
        quarters,
        quarter_totals,
        exchanged_before,
        prev_engaged,
        engaged,
    }
}

/// Builds the report for `period` from counter rows covering at least the days before
/// `period.until` (earlier rows tell which partners are newly engaged).
pub fn report(
    node_id: &str,
    period: &Period,
    rows: impl IntoIterator<Item = Row>,
) -> proto::MetricsReport {
    let Tally {
        per,
        months,
        month_totals,
        quarters,
        quarter_totals,
        exchanged_before,
        prev_engaged,
        engaged,
    } = tally(period, rows);
    let (prev_since, prev_until) = period.previous;
    let is_engaged = |(_, (r, s)): &(&String, &(bool, bool))| *r && *s;
    let engaged: Vec<String> = engaged
        .iter()
        .filter(is_engaged)
        .map(|(p, _)| p.clone())
        .collect();
    proto::MetricsReport {
        node_id: node_id.to_owned(),
        since_day: period.since,
        until_day: period.until,
        previous_since_day: prev_since,
        previous_until_day: prev_until,
        label: period.label.clone(),
        newly_engaged: engaged
            .iter()
            .filter(|p| !exchanged_before.contains(*p))
            .cloned()
            .collect(),
        engaged,
        engaged_previous: prev_engaged.iter().filter(is_engaged).count() as u32,
        partners: partner_metrics(per),
        months: span_totals(months, month_totals),
        quarters: span_totals(quarters, quarter_totals),
        ..Default::default()
    }
}

/// Each partner's figures (all but the latency buckets) and its latency summary.
fn partner_metrics(
    per: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
) -> Vec<proto::PartnerMetrics> {
    per.into_iter()
        .map(|(partner, figures)| {
            let latency = latency_summary(&figures);
            proto::PartnerMetrics {
                partner,
                figures: figures
                    .into_iter()
                    .filter(|(name, _)| !name.starts_with("latency."))
                    .map(|(name, (value, previous))| proto::Figure {
                        name,
                        value,
                        previous,
                    })
                    .collect(),
                latency: Some(latency),
            }
        })
        .collect()
}

mod by_affiliation;
mod indicators;
mod period;
pub use by_affiliation::{report_by_affiliation, Programme};
pub use indicators::{YearTargets, INDICATORS};
pub use period::{fiscal_year_containing, MetricsError, Period, MAX_PERIOD_DAYS};
use period::{holding, span_totals};

/// p50 and p95 of the period's latency buckets (each as its bucket's upper bound;
/// `u64::MAX` for the open bucket).
fn latency_summary(figures: &BTreeMap<String, (u64, u64)>) -> proto::Latency {
    let buckets: Vec<(u64, u64)> = figures
        .iter()
        .filter_map(|(name, (value, _))| {
            let bound = name.strip_prefix(LATENCY_PREFIX)?;
            let bound = if bound == "inf" {
                u64::MAX
            } else {
                bound.parse().ok()?
            };
            Some((bound, *value))
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let acked: u64 = buckets.iter().map(|(_, n)| n).sum();
    let percentile = |p: u64| {
        // The smallest bound below which at least p% of the acks fall.
        let need = (acked * p).div_ceil(100).max(1);
        let mut seen = 0;
        for (bound, n) in &buckets {
            seen += n;
            if seen >= need {
                return *bound;
            }
        }
        0
    };
    if acked == 0 {
        return proto::Latency::default();
    }
    proto::Latency {
        acked,
        p50_ms: percentile(50),
        p95_ms: percentile(95),
    }
}

pub mod logic;
pub(crate) mod prometheus;

#[cfg(test)]
mod tests;
