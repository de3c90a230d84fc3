//! `renkei audit recount`: the metrics report worked out again from an export, offline,
//! once the export verifies: every record's counters as the node moved them
//! (`metrics::aggregate`, the same definition), summed the same way. An auditor gets
//! the node's figures without trusting the node to add them up; targets live in the
//! node's configuration, not in the log, so the review sheet shows actuals only.
//! `--size` recounts the log as a report computed at that size saw it, root included.

use anyhow::bail;
use prost::Message as _;

use super::{check_export, VerifyArgs};
use crate::audit::merkle::Frontier;
use crate::metrics::{self, Period, Programme};
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

/// What to recount and how to print it.
pub(in crate::cli) struct RecountArgs<'a> {
    /// The export and what to verify it against.
    pub verify: VerifyArgs<'a>,
    /// The period, as `renkei metrics` asks for it.
    pub request: proto::MetricsRequest,
    /// First month of the fiscal year.
    pub fiscal_start: u8,
    /// Only the first this many records, as a report computed at that log size
    /// counted them (all of them when `None`).
    pub size: Option<u64>,
    /// How to print the report.
    pub format: crate::cli::commands::ReportFormat,
}

/// Verifies the export, then prints the report its records add up to.
pub(in crate::cli) fn recount(a: RecountArgs<'_>) -> anyhow::Result<()> {
    let self_signed_ok = a.verify.self_signed_ok;
    let (verdict, export) = check_export(a.verify)?;
    if !verdict.anchored && !self_signed_ok {
        bail!(
            "not verified: pass --key (the node's checkpoint key) or --trusted-checkpoint, \
             or --self-signed-ok to recount a log checked only against itself"
        );
    }
    let size = a.size.unwrap_or(export.records.len() as u64);
    let Some(counted) = usize::try_from(size)
        .ok()
        .and_then(|n| export.records.get(..n))
    else {
        bail!(
            "--size {size}: the export holds {} records",
            export.records.len()
        );
    };
    let mut tree = Frontier::default();
    let mut records = Vec::with_capacity(counted.len());
    for bytes in counted {
        tree.push(bytes);
        records.push(proto::AuditRecord::decode(bytes.clone())?);
    }
    // The node's own affiliation as its latest configuration said.
    let domestic = records
        .iter()
        .rev()
        .find(|r| r.event == AuditEvent::ConfigLoaded as i32)
        .map(|r| r.affiliation.clone())
        .filter(|a| !a.is_empty());
    let today = metrics::day_of(Timestamp::now().unix_ms());
    let period = Period::requested(&a.request, a.fiscal_start, today)?;
    let counters = metrics::Counters {
        rows: metrics::aggregate(&records)
            .into_iter()
            .map(|((day, party, name), value)| (day, party, name, value))
            .collect(),
        log_size: size,
        log_root: tree.root().0,
    };
    let programme = Programme {
        domestic: domestic.as_deref(),
        fiscal_start: a.fiscal_start,
        targets: &[],
    };
    let node = &export.header.node_id;
    let report = metrics::report_in_view(a.request.view(), node, programme, &period, counters);
    crate::cli::metrics::print(&report, a.format)
}
