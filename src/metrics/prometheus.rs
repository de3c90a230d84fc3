//! The node's counters in the Prometheus text exposition format (version 0.0.4), for
//! the admin listener's `/metrics`. Pure: totals and gauges in, text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
}

/// A counter family: metric name, help, and the label its name suffix fills.
struct Family {
    prefix: &'static str,
    metric: &'static str,
    help: &'static str,
    label: Option<&'static str>,
}

const FAMILIES: &[Family] = &[
    Family {
        prefix: "received.",
        metric: "renkei_bulletins_received_total",
        help: "Bulletins accepted from a partner, by kind.",
        label: Some("kind"),
    },
    Family {
        prefix: "shared.",
        metric: "renkei_bulletins_shared_total",
        help: "Accepted bulletins shared with a partner, by kind.",
        label: Some("kind"),
    },
    Family {
        prefix: "withheld.",
        metric: "renkei_bulletins_withheld_total",
        help: "Accepted bulletins withheld from a partner, by reason.",
        label: Some("reason"),
    },
    Family {
        prefix: "rejected.",
        metric: "renkei_bulletins_rejected_total",
        help: "Publishes and requests refused, by error.",
        label: Some("error"),
    },
    Family {
        prefix: "duplicate",
        metric: "renkei_bulletins_duplicate_total",
        help: "Bulletins published again with the same digest.",
        label: None,
    },
    Family {
        prefix: "delivered",
        metric: "renkei_deliveries_total",
        help: "Bulletins delivered to a partner (redeliveries included).",
        label: None,
    },
    Family {
        prefix: "acked",
        metric: "renkei_acks_total",
        help: "Deliveries a partner acknowledged.",
        label: None,
    },
    Family {
        prefix: "connections_refused",
        metric: "renkei_connections_refused_total",
        help: "Connections refused (partner \"(unnamed)\" when the certificate named none).",
        label: None,
    },
    Family {
        prefix: "connections",
        metric: "renkei_connections_total",
        help: "Connections accepted.",
        label: None,
    },
    Family {
        prefix: "auditor_queries",
        metric: "renkei_auditor_queries_total",
        help: "Requests from auditors.",
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
    for f in FAMILIES {
        let mut samples = Vec::new();
        for ((partner, name), value) in totals {
            let Some(rest) = name.strip_prefix(f.prefix) else {
                continue;
            };
            let labels = match f.label {
                Some(label) => format!(
                    "partner=\"{}\",{label}=\"{}\"",
                    escape(partner),
                    escape(rest)
                ),
                None if rest.is_empty() => format!("partner=\"{}\"", escape(partner)),
                None => continue,
            };
            samples.push(format!("{}{{{labels}}} {value}", f.metric));
        }
        if !samples.is_empty() {
            header(&mut out, f.metric, f.help, "counter");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
    }
    latency(&mut out, totals);
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
        header(&mut out, metric, help, "gauge");
        let _ = writeln!(out, "{metric} {value}");
    }
    header(
        &mut out,
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
    out
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
