//! `renkei audit recount`: the metrics report worked out again from an export, offline,
//! once the export verifies: every record's counters as the node moved them
//! (`metrics::aggregate`, the same definition), summed the same way. An auditor gets
//! the node's figures without trusting the node to add them up; targets live in the
//! node's configuration, not in the log, so the review sheet shows actuals only.

use anyhow::bail;
use prost::Message as _;

use super::{check_export, VerifyArgs};
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
    /// One JSON document instead of the table.
    pub json: bool,
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
    let mut records = Vec::with_capacity(export.records.len());
    for bytes in &export.records {
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
    let rows: Vec<metrics::Row> = metrics::aggregate(&records)
        .into_iter()
        .map(|((day, party, name), value)| (day, party, name, value))
        .collect();
    let node = &export.header.node_id;
    let report = match a.request.view() {
        proto::MetricsView::Partner => metrics::report(node, &period, rows),
        proto::MetricsView::Affiliation => {
            let programme = Programme {
                domestic: domestic.as_deref(),
                fiscal_start: a.fiscal_start,
                targets: &[],
            };
            metrics::report_by_affiliation(node, programme, &period, rows)
        }
    };
    match a.json {
        true => emitln!(
            "{}",
            serde_json::to_string_pretty(&crate::cli::metrics::report_json(&report))?
        ),
        false => print!("{}", crate::cli::metrics::table(&report)),
    }
    Ok(())
}
