//! The logic model's outputs per partner, as an auditor reports them to a ministry:
//! consultations, exercises and threat exchanges (bulletins of every other kind),
//! received and shared together, this period and the one before. In a report by
//! country or organisation, a row's outputs are the bulletins it took part in (each
//! once), and a month's the events of the month. Pure: a metrics
//! report in, rows out; `renkei demo` and `renkei dashboard` print the same numbers.

use crate::proto;

/// One partner's outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogicRow {
    /// The partner.
    pub partner: String,
    /// Consultations, exercises and threat exchanges this period.
    pub now: Outputs,
    /// The same over the period before.
    pub before: Outputs,
}

/// Bulletins received from or shared with a partner, by what they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Consultation bulletins.
    pub consultations: u64,
    /// Exercise bulletins.
    pub exercises: u64,
    /// Bulletins of every other kind (indicators, advisories, incidents, …).
    pub threats: u64,
}

impl Outputs {
    /// Adds one counter of a report cut by `view`: per partner `received.KIND` and
    /// `shared.KIND`; per country or organisation `took_part.KIND` (a row) and
    /// `events.KIND` (the whole node). Other counters are not outputs.
    pub fn add(&mut self, view: proto::MetricsView, name: &str, value: u64) {
        let kind = match view {
            proto::MetricsView::Partner => name
                .strip_prefix("received.")
                .or(name.strip_prefix("shared.")),
            proto::MetricsView::Affiliation => name
                .strip_prefix("took_part.")
                .or(name.strip_prefix("events.")),
        };
        let Some(kind) = kind else {
            return;
        };
        match kind {
            "consultation" => self.consultations += value,
            "exercise" => self.exercises += value,
            _ => self.threats += value,
        }
    }

    /// All three together.
    pub fn total(&self) -> u64 {
        self.consultations + self.exercises + self.threats
    }
}

/// The outputs of every partner with any, this period or the one before.
pub fn logic_model(report: &proto::MetricsReport) -> Vec<LogicRow> {
    report
        .partners
        .iter()
        .map(|p| {
            let mut row = LogicRow {
                partner: p.partner.clone(),
                ..LogicRow::default()
            };
            for f in &p.figures {
                row.now.add(report.view(), &f.name, f.value);
                row.before.add(report.view(), &f.name, f.previous);
            }
            row
        })
        .filter(|r| r.now.total() + r.before.total() > 0)
        .collect()
}

/// The node-wide outputs of one sub-period (a month or a quarter) of a report cut by
/// `view`.
pub fn outputs_of(view: proto::MetricsView, span: &proto::PeriodTotals) -> Outputs {
    let mut o = Outputs::default();
    for f in &span.figures {
        o.add(view, &f.name, f.value);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, value: u64, previous: u64) -> proto::Figure {
        proto::Figure {
            name: name.into(),
            value,
            previous,
        }
    }

    #[test]
    fn received_and_shared_add_up_by_kind_and_other_counters_do_not() {
        let report = proto::MetricsReport {
            partners: vec![
                proto::PartnerMetrics {
                    partner: "us-dod".into(),
                    figures: vec![
                        figure("received.consultation", 2, 1),
                        figure("shared.consultation", 1, 0),
                        figure("received.exercise", 1, 0),
                        figure("shared.indicator", 3, 4),
                        figure("received.advisory", 1, 0),
                        figure("delivered", 9, 9),
                        figure("withheld.above_clearance", 5, 0),
                    ],
                    latency: None,
                },
                proto::PartnerMetrics {
                    partner: "idle".into(),
                    figures: vec![figure("delivered", 3, 0)],
                    latency: None,
                },
            ],
            ..Default::default()
        };
        let rows = logic_model(&report);
        assert_eq!(rows.len(), 1, "a partner with no outputs is left out");
        let r = &rows[0];
        assert_eq!(
            (r.now.consultations, r.now.exercises, r.now.threats),
            (3, 1, 4)
        );
        assert_eq!(
            (r.before.consultations, r.before.exercises, r.before.threats),
            (1, 0, 4)
        );
    }
}
