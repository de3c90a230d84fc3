//! The node's counters in the Prometheus text exposition format (version 0.0.4), for
//! the admin listener's `/metrics`. Pure: totals and gauges in, text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{LATENCY_BOUNDS_MS, LATENCY_PREFIX, LATENCY_SUM};

/// Point-in-time values a scrape reports besides the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Records in the audit log.
    pub audit_records: u64,
    /// Records covered by the latest signed checkpoint.
    pub audit_checkpointed: u64,
    /// Bulletins stored (the last acceptance seq).
    pub bulletins_stored: u64,
    /// Open connections per partner.
    pub connections_open: Vec<(String, u64)>,
    /// KiB that frames in flight hold of the node's shared budget, and per partner.
    pub in_flight_kib: (u64, Vec<(String, u64)>),
    /// Milliseconds each partner's frames waited for its rates of bytes and of
    /// publishes (`[limits] partner_mib_per_sec`, `partner_publishes_per_sec`), summed
    /// over its streams.
    pub held_back_ms: Vec<(String, [u64; 2])>,
    /// Per partner that receives bulletins: its queue.
    pub queues: Vec<QueueGauge>,
    /// Frames read, written and refused by the process.
    pub frames: FrameTotals,
    /// Connection attempts asked to prove their address (QUIC Retry), and refused,
    /// before any handshake work.
    pub handshakes_retried: u64,
    /// See `handshakes_retried`.
    pub handshakes_refused: u64,
    /// How long group commits (write and flush) took.
    pub commit_latency: HistogramSnapshot,
    /// The links with peer nodes.
    pub links: Vec<LinkGauge>,
    /// Free bytes in the data directory's filesystem at the last group commit, and
    /// whether new bulletins are refused for lack of it.
    pub storage_free: (u64, bool),
}

/// One peer link at a scrape. Its queue towards the peer is the peer's
/// `renkei_queue_depth`; the peer's queue towards this node is on the peer's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkGauge {
    /// The peer node.
    pub peer: String,
    /// Whether a connection is up.
    pub up: bool,
    /// When it last came up or went down, milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Dials that failed since it was last up.
    pub dial_failures: u64,
    /// Bulletins the peer forwarded that were stored already.
    pub copies: u64,
    /// The peer's queue towards this node as it last said: bulletins, and the age of
    /// the oldest in milliseconds (unknown while the link is down).
    pub from_peer: Option<(u64, u64)>,
}

/// One partner's queue at a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueGauge {
    /// The partner.
    pub partner: String,
    /// Bulletins shared with it and not yet acknowledged.
    pub depth: u64,
    /// Age of the oldest of them, in milliseconds (0 when none).
    pub oldest_age_ms: u64,
}

/// Frame counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTotals {
    /// Read and decoded.
    pub read: u64,
    /// Written.
    pub written: u64,
    /// Refused: oversize, malformed or undecodable.
    pub refused: u64,
}

/// Upper bounds of the commit-latency buckets, in microseconds.
pub const COMMIT_BOUNDS_US: [u64; 11] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A histogram of durations, filled by one thread and read by scrapes without locks.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Per bucket of [`COMMIT_BOUNDS_US`], then the overflow bucket; not cumulative.
    buckets: [AtomicU64; COMMIT_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// What a [`DurationHistogram`] held at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket, not cumulative; the last is above every bound.
    pub buckets: Vec<u64>,
    /// Sum of the observations, in microseconds.
    pub sum_us: u64,
}

impl DurationHistogram {
    /// Counts one duration of `us` microseconds.
    pub fn observe(&self, us: u64) {
        let i = COMMIT_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(COMMIT_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A counter family: metric name, help, the label its row's key fills (`partner`, or
/// `country` for the rows per country or organisation; none for node-wide ones), and
/// the label its name suffix fills.
struct Family {
    prefix: &'static str,
    metric: &'static str,
    help: &'static str,
    subject: Option<&'static str>,
    label: Option<&'static str>,
}

const FAMILIES: &[Family] = &[
    // Per country or organisation (bounded by the configuration: its parties'
    // affiliations, and "?" for those it names none for).
    Family {
        prefix: "country.received.",
        metric: "renkei_country_bulletins_received_total",
        help: "Bulletins accepted whose origin is of this country or organisation (a relayed one counts for its origin's), by kind.",
        subject: Some("country"),
        label: Some("kind"),
    },
    Family {
        prefix: "country.shared.",
        metric: "renkei_country_bulletins_shared_total",
        help: "Accepted bulletins shared with this country or organisation, once per bulletin however many of its partners got it, by kind.",
        subject: Some("country"),
        label: Some("kind"),
    },
    Family {
        prefix: "country.took_part.",
        metric: "renkei_country_participations_total",
        help: "Accepted bulletins this country or organisation took part in (sent or was shared with), by kind.",
        subject: Some("country"),
        label: Some("kind"),
    },
    Family {
        prefix: "country.events.",
        metric: "renkei_events_total",
        help: "Accepted bulletins, each counted once, by kind.",
        subject: None,
        label: Some("kind"),
    },
    Family {
        prefix: "received.",
        metric: "renkei_bulletins_received_total",
        help: "Bulletins accepted from a partner, by kind.",
        subject: Some("partner"),
        label: Some("kind"),
    },
    Family {
        prefix: "shared.",
        metric: "renkei_bulletins_shared_total",
        help: "Accepted bulletins shared with a partner, by kind.",
        subject: Some("partner"),
        label: Some("kind"),
    },
    Family {
        prefix: "withheld.",
        metric: "renkei_bulletins_withheld_total",
        help: "Accepted bulletins withheld from a partner, by reason.",
        subject: Some("partner"),
        label: Some("reason"),
    },
    Family {
        prefix: "rejected.",
        metric: "renkei_bulletins_rejected_total",
        help: "Publishes and requests refused, by error.",
        subject: Some("partner"),
        label: Some("error"),
    },
    Family {
        prefix: "peer_refused.",
        metric: "renkei_peer_refused_total",
        help: "Deliveries a peer node took but refused, by its error.",
        subject: Some("partner"),
        label: Some("error"),
    },
    Family {
        prefix: "duplicate",
        metric: "renkei_bulletins_duplicate_total",
        help: "Bulletins published again with the same digest.",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "delivered",
        metric: "renkei_deliveries_total",
        help: "Bulletins delivered to a partner (redeliveries included).",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "acked",
        metric: "renkei_acks_total",
        help: "Deliveries a partner acknowledged.",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "receipts",
        metric: "renkei_receipts_total",
        help: "Acknowledgements that came with a signed receipt the node verified.",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "receipts_passed",
        metric: "renkei_receipts_passed_total",
        help: "Receipts a peer node passed back along the path.",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "witness_alarms",
        metric: "renkei_witness_alarms_total",
        help: "Times this node, witnessing a peer's audit log, caught it forking or rolling back (it cosigns nothing more of it).",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "ack_refused.",
        metric: "renkei_acks_refused_total",
        help: "Acknowledgements refused for a bad receipt, by error.",
        subject: Some("partner"),
        label: Some("error"),
    },
    Family {
        prefix: "connections_refused",
        metric: "renkei_connections_refused_total",
        help: "Connections refused (partner \"(unnamed)\" when the certificate named none).",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "connections",
        metric: "renkei_connections_total",
        help: "Connections accepted.",
        subject: Some("partner"),
        label: None,
    },
    Family {
        prefix: "auditor_queries",
        metric: "renkei_auditor_queries_total",
        help: "Requests from auditors.",
        subject: Some("partner"),
        label: None,
    },
];

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, metric: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {metric} {help}");
    let _ = writeln!(out, "# TYPE {metric} {kind}");
}

/// Renders every counter (summed over all days) and the gauges.
pub fn render(totals: &BTreeMap<(String, String), u64>, gauges: &Gauges) -> String {
    let mut out = String::new();
    counters(&mut out, totals);
    latency(&mut out, totals);
    node_gauges(&mut out, gauges);
    queues(&mut out, &gauges.queues);
    transport(&mut out, gauges);
    commit_latency(&mut out, &gauges.commit_latency);
    links(&mut out, &gauges.links);
    storage_free(&mut out, gauges.storage_free);
    out
}

/// The audit log's counters, one family each, per partner (and label).
fn counters(out: &mut String, totals: &BTreeMap<(String, String), u64>) {
    for f in FAMILIES {
        let mut samples = Vec::new();
        for ((partner, name), value) in totals {
            let Some(rest) = name.strip_prefix(f.prefix) else {
                continue;
            };
            let subject = f.subject.map(|s| format!("{s}=\"{}\"", escape(partner)));
            let label = match f.label {
                Some(label) => Some(format!("{label}=\"{}\"", escape(rest))),
                None if rest.is_empty() => None,
                None => continue,
            };
            let labels: Vec<String> = subject.into_iter().chain(label).collect();
            let labels = labels.join(",");
            samples.push(format!("{}{{{labels}}} {value}", f.metric));
        }
        if !samples.is_empty() {
            header(out, f.metric, f.help, "counter");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
    }
}

/// The audit log's size and what its checkpoint covers, bulletins stored, and the open
/// connections per partner.
fn node_gauges(out: &mut String, gauges: &Gauges) {
    for (metric, help, value) in [
        (
            "renkei_audit_records",
            "Records in the audit log.",
            gauges.audit_records,
        ),
        (
            "renkei_audit_checkpointed_records",
            "Records covered by the latest signed checkpoint.",
            gauges.audit_checkpointed,
        ),
        (
            "renkei_bulletins_stored",
            "Bulletins stored since the database was created.",
            gauges.bulletins_stored,
        ),
    ] {
        header(out, metric, help, "gauge");
        let _ = writeln!(out, "{metric} {value}");
    }
    header(
        out,
        "renkei_connections_open",
        "Open connections per partner.",
        "gauge",
    );
    for (partner, n) in &gauges.connections_open {
        let _ = writeln!(
            out,
            "renkei_connections_open{{partner=\"{}\"}} {n}",
            escape(partner)
        );
    }
    in_flight(out, gauges);
}

/// What frames in flight hold of the memory budgets (`[limits] *_in_flight_mib`).
fn in_flight(out: &mut String, gauges: &Gauges) {
    let (node, partners) = &gauges.in_flight_kib;
    let metric = "renkei_in_flight_node_kib";
    let help = "KiB of the node's in-flight budget that frames hold now (partners' floors aside).";
    header(out, metric, help, "gauge");
    let _ = writeln!(out, "{metric} {node}");
    let metric = "renkei_in_flight_kib";
    let help = "KiB that a partner's frames in flight hold now, its floor included.";
    header(out, metric, help, "gauge");
    for (partner, n) in partners {
        let _ = writeln!(out, "{metric}{{partner=\"{}\"}} {n}", escape(partner));
    }
    let metric = "renkei_held_back_seconds_total";
    let help = "Seconds a partner's frames waited for its rate of bytes or of publishes \
                before being read, summed over its streams.";
    header(out, metric, help, "counter");
    for (partner, [bytes, publishes]) in &gauges.held_back_ms {
        let partner = escape(partner);
        for (rate, ms) in [("bytes", bytes), ("publishes", publishes)] {
            let secs = *ms as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{metric}{{partner=\"{partner}\",rate=\"{rate}\"}} {secs}"
            );
        }
    }
}

/// Frames moved and handshakes turned away.
fn transport(out: &mut String, gauges: &Gauges) {
    let f = gauges.frames;
    header(
        out,
        "renkei_frames_total",
        "Frames moved by the node, by direction (refused: oversize, malformed or undecodable).",
        "counter",
    );
    for (direction, n) in [
        ("read", f.read),
        ("written", f.written),
        ("refused", f.refused),
    ] {
        let _ = writeln!(out, "renkei_frames_total{{direction=\"{direction}\"}} {n}");
    }
    header(
        out,
        "renkei_handshakes_total",
        "Connection attempts handled before any handshake work: asked to prove their address (retried) or refused (too many handshakes in progress).",
        "counter",
    );
    for (outcome, n) in [
        ("retried", gauges.handshakes_retried),
        ("refused", gauges.handshakes_refused),
    ] {
        let _ = writeln!(out, "renkei_handshakes_total{{outcome=\"{outcome}\"}} {n}");
    }
}

/// The disk-space guard's gauges.
fn storage_free(out: &mut String, (free, full): (u64, bool)) {
    header(
        out,
        "renkei_storage_free_bytes",
        "Free bytes in the data directory's filesystem, measured before the last group commit.",
        "gauge",
    );
    let _ = writeln!(out, "renkei_storage_free_bytes {free}");
    header(
        out,
        "renkei_storage_full",
        "1 while free space is below [storage] reserve_mib and new bulletins are refused with STORAGE_FULL.",
        "gauge",
    );
    let _ = writeln!(out, "renkei_storage_full {}", u8::from(full));
}

/// A gauge of each link: its name, its help, and its value for one link (none when
/// unknown).
type LinkRow = (&'static str, &'static str, fn(&LinkGauge) -> Option<String>);

const LINK_ROWS: [LinkRow; 6] = [
    (
        "renkei_peer_link_up",
        "Whether the link with a peer node is up (1) or down (0).",
        |l| Some(u8::from(l.up).to_string()),
    ),
    (
        "renkei_peer_link_changed_timestamp_seconds",
        "When the link with a peer node last came up or went down (Unix time).",
        |l| Some((l.since_unix_ms as f64 / 1000.0).to_string()),
    ),
    (
        "renkei_peer_link_dial_failures",
        "Failed dials of a peer node, and links with it that ended within a minute, since its link last stayed up.",
        |l| Some(l.dial_failures.to_string()),
    ),
    (
        "renkei_peer_copies_received",
        "Bulletins a peer node forwarded that this node had stored already (acknowledged, not recorded).",
        |l| Some(l.copies.to_string()),
    ),
    (
        "renkei_peer_queue_from_peer",
        "Bulletins a peer node has queued for this node, as it last said (the queue towards it is renkei_queue_depth).",
        |l| l.from_peer.map(|(depth, _)| depth.to_string()),
    ),
    (
        "renkei_peer_queue_from_peer_oldest_age_seconds",
        "Age of the oldest bulletin a peer node has queued for this node, as it last said.",
        |l| l.from_peer.map(|(_, ms)| (ms as f64 / 1000.0).to_string()),
    ),
];

fn links(out: &mut String, links: &[LinkGauge]) {
    for (metric, help, value) in LINK_ROWS {
        header(out, metric, help, "gauge");
        for l in links {
            if let Some(v) = value(l) {
                let _ = writeln!(out, "{metric}{{peer=\"{}\"}} {v}", escape(&l.peer));
            }
        }
    }
}

fn queues(out: &mut String, queues: &[QueueGauge]) {
    header(
        out,
        "renkei_queue_depth",
        "Bulletins shared with a partner and not yet acknowledged.",
        "gauge",
    );
    for q in queues {
        let _ = writeln!(
            out,
            "renkei_queue_depth{{partner=\"{}\"}} {}",
            escape(&q.partner),
            q.depth
        );
    }
    header(
        out,
        "renkei_queue_oldest_unacked_age_seconds",
        "Age of the oldest bulletin a partner has not acknowledged (0 when none).",
        "gauge",
    );
    for q in queues {
        let _ = writeln!(
            out,
            "renkei_queue_oldest_unacked_age_seconds{{partner=\"{}\"}} {}",
            escape(&q.partner),
            q.oldest_age_ms as f64 / 1000.0
        );
    }
}

fn commit_latency(out: &mut String, h: &HistogramSnapshot) {
    let metric = "renkei_commit_seconds";
    header(
        out,
        metric,
        "Group commits (write and flush to disk) by how long they took.",
        "histogram",
    );
    let mut cumulative = 0;
    for (i, bound) in COMMIT_BOUNDS_US.iter().enumerate() {
        cumulative += h.buckets.get(i).copied().unwrap_or(0);
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{metric}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += h.buckets.get(COMMIT_BOUNDS_US.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{metric}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{metric}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{metric}_count {cumulative}");
}

/// Acceptance-to-ack latency per partner as a histogram in seconds.
fn latency(out: &mut String, totals: &BTreeMap<(String, String), u64>) {
    let mut per: BTreeMap<&str, (BTreeMap<u64, u64>, u64)> = BTreeMap::new();
    for ((partner, name), value) in totals {
        if name == LATENCY_SUM {
            per.entry(partner).or_default().1 += value;
        } else if let Some(bound) = name.strip_prefix(LATENCY_PREFIX) {
            let bound = if bound == "inf" {
                u64::MAX
            } else {
                bound.parse().unwrap_or(u64::MAX)
            };
            *per.entry(partner).or_default().0.entry(bound).or_default() += value;
        }
    }
    if per.is_empty() {
        return;
    }
    let metric = "renkei_ack_latency_seconds";
    header(
        out,
        metric,
        "Time from acceptance to the partner's ack.",
        "histogram",
    );
    for (partner, (buckets, sum_ms)) in per {
        let p = escape(partner);
        let mut cumulative = 0;
        for bound in LATENCY_BOUNDS_MS {
            cumulative += buckets.get(bound).copied().unwrap_or(0);
            let le = *bound as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{metric}_bucket{{partner=\"{p}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += buckets.get(&u64::MAX).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{metric}_bucket{{partner=\"{p}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "{metric}_sum{{partner=\"{p}\"}} {}",
            sum_ms as f64 / 1000.0
        );
        let _ = writeln!(out, "{metric}_count{{partner=\"{p}\"}} {cumulative}");
    }
}
