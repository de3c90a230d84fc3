//! `renkei audit recount`: the metrics report worked out again from an export, offline,
//! once the export verifies: every record's counters as the node moved them
//! (`metrics::aggregate`, the same definition), summed the same way. An auditor gets
//! the node's figures without trusting the node to add them up; targets live in the
//! node's configuration, not in the log, so the review sheet shows actuals only.
//! `--size` recounts the log as a report computed at that size saw it, root included.
//! The export is read as it streams, twice to verify (its outline, then its records)
//! and once more to count, never held whole: a log of any length recounts in little
//! memory.

use anyhow::bail;
use prost::Message as _;

use super::{check_file_of, VerifyArgs};
use crate::audit::merkle::{Frontier, TreeHash};
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
    let checked = check_file_of(a.verify)?;
    let verdict = &checked.verdict;
    if !verdict.anchored && !self_signed_ok {
        bail!(
            "not verified: pass --key (the node's checkpoint key) or --trusted-checkpoint, \
             or --self-signed-ok to recount a log checked only against itself"
        );
    }
    let size = a.size.unwrap_or(verdict.records());
    if size > verdict.records() {
        bail!(
            "--size {size}: the export holds {} records",
            verdict.records()
        );
    }
    let counted = count_records(checked.records()?, size)?;
    if counted.root.to_string() != verdict.root() {
        bail!("the export changed while it was read: recount it again");
    }
    let today = metrics::day_of(Timestamp::now().unix_ms());
    let period = Period::requested(&a.request, a.fiscal_start, today)?;
    let programme = Programme {
        domestic: counted.domestic.as_deref(),
        fiscal_start: a.fiscal_start,
        targets: &[],
    };
    let node = verdict.node_id();
    let report =
        metrics::report_in_view(a.request.view(), node, programme, &period, counted.counters);
    crate::cli::metrics::print(&report, a.format)
}

/// What the first records of a log add up to.
struct Counted {
    counters: metrics::Counters,
    /// The node's own affiliation as its latest configuration among them said.
    domestic: Option<String>,
    /// The root of every record read, to be matched with the root verified: the file
    /// is read again to count, and must be the one checked.
    root: TreeHash,
}

/// Counts the first `size` of `records` as the node counts them, with their root, and
/// takes the rest into the root of all.
fn count_records(
    records: impl Iterator<Item = Result<bytes::Bytes, crate::audit::export::VerifyError>>,
    size: u64,
) -> anyhow::Result<Counted> {
    let mut tree = Frontier::default();
    let mut totals = metrics::Totals::new();
    let mut domestic = None;
    let mut at_size = (size == 0).then(|| tree.root());
    for (n, bytes) in (1u64..).zip(records) {
        let bytes = bytes?;
        tree.push(&bytes);
        if n > size {
            continue;
        }
        let record = proto::AuditRecord::decode(bytes)?;
        if record.event == AuditEvent::ConfigLoaded as i32 {
            domestic = Some(record.affiliation.clone());
        }
        metrics::add_up(&mut totals, &record);
        if n == size {
            at_size = Some(tree.root());
        }
    }
    let Some(at_size) = at_size else {
        bail!("the export holds fewer than {size} records");
    };
    let counters = metrics::Counters {
        rows: totals
            .into_iter()
            .map(|((day, party, name), value)| (day, party, name, value))
            .collect(),
        log_size: size,
        log_root: at_size.0,
    };
    Ok(Counted {
        counters,
        domestic: domestic.filter(|a| !a.is_empty()),
        root: tree.root(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_loaded(affiliation: &str) -> bytes::Bytes {
        let r = proto::AuditRecord {
            event: AuditEvent::ConfigLoaded as i32,
            affiliation: affiliation.into(),
            ..Default::default()
        };
        r.encode_to_vec().into()
    }

    #[test]
    fn the_first_records_are_counted_with_the_affiliation_the_latest_of_them_gave() {
        let log = [config_loaded("JP"), config_loaded("GB"), config_loaded("")];
        let count = |size| count_records(log.iter().cloned().map(Ok), size).unwrap();
        let first = count(1);
        assert_eq!(first.domestic.as_deref(), Some("JP"));
        assert_eq!(first.counters.log_size, 1);
        assert_eq!(count(2).domestic.as_deref(), Some("GB"));
        // The latest configuration names none: no domestic affiliation, not an older one.
        assert_eq!(count(3).domestic, None);
        let mut tree = Frontier::default();
        log.iter().take(2).for_each(|b| tree.push(b));
        assert_eq!(count(2).counters.log_root, tree.root().0);
        // Every record is taken into the root of all, whatever the size counted.
        tree.push(&log[2]);
        assert_eq!(count(1).root, tree.root());
        assert!(
            count_records(log.iter().cloned().map(Ok), 4).is_err(),
            "too few"
        );
    }
}
