//! The report the cooperation programme reads: figures per country or organisation
//! (from the `country.` counters, which count a bulletin for its origin's affiliation
//! wherever it entered the federation), the events of the period each counted once,
//! the domestic row apart, and the foreign countries and organisations engaged both
//! ways against the period before. Pure, like the rest of `metrics`.

use std::collections::{BTreeMap, BTreeSet};

use super::indicators::{indicators, YearTargets};
use super::{holding, span_totals, Period, Row, BY_AFFILIATION, EVERYONE, UNKNOWN_AFFILIATION};
use crate::identity::{Country, Organisation};
use crate::proto;

/// Per row: counter name → (value in the period, value in the one before).
type Figures = BTreeMap<String, (u64, u64)>;

/// Whether the period's figures show a bulletin received from and one shared with.
#[derive(Clone, Copy, Default)]
struct BothWays(bool, bool);

impl BothWays {
    fn add(&mut self, name: &str) {
        self.0 |= name.starts_with("received.");
        self.1 |= name.starts_with("shared.");
    }
}

/// What a programme's report knows of the node beyond its counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Programme<'a> {
    /// The node's own country or organisation: the domestic row.
    pub domestic: Option<&'a str>,
    /// First month of the fiscal year.
    pub fiscal_start: u8,
    /// The targets the configuration sets, per fiscal year.
    pub targets: &'a [YearTargets],
}

/// What the `country.` rows of a programme's report add up to, before the report is
/// built from it.
struct Sums {
    /// Per country or organisation: its figures.
    per: BTreeMap<String, Figures>,
    /// The events themselves, each counted once.
    events: Figures,
    /// The period's months, and each one's event totals by counter name.
    months: Vec<(u32, u32, String)>,
    month_sums: Vec<BTreeMap<String, u64>>,
    /// The period's quarters, and each one's event totals by counter name.
    quarters: Vec<(u32, u32, String)>,
    quarter_sums: Vec<BTreeMap<String, u64>>,
    /// Who received or shared before the period.
    before: BTreeSet<String>,
    /// Who received and shared in the period, and in the period before it.
    now: BTreeMap<String, BothWays>,
    then: BTreeMap<String, BothWays>,
}

/// Sums the `country.` counters of `rows` over `period` and the period before it.
fn sum_rows(period: &Period, rows: Vec<Row>) -> Sums {
    let mut per: BTreeMap<String, Figures> = BTreeMap::new();
    let mut events = Figures::new();
    let (months, quarters) = (period.spans(1), period.spans(3));
    let mut month_sums = vec![BTreeMap::new(); months.len()];
    let mut quarter_sums = vec![BTreeMap::new(); quarters.len()];
    let mut before = BTreeSet::new();
    let (mut now, mut then) = (BTreeMap::new(), BTreeMap::new());
    let (prev_since, prev_until) = period.previous;
    for (day, party, name, value) in rows {
        let Some(name) = name.strip_prefix(BY_AFFILIATION) else {
            continue;
        };
        if value == 0 || day >= period.until {
            continue;
        }
        let current = day >= period.since;
        if !current && (name.starts_with("received.") || name.starts_with("shared.")) {
            before.insert(party.clone());
        }
        let previous = (prev_since..prev_until).contains(&day);
        if !current && !previous {
            continue;
        }
        let engaged: &mut BTreeMap<String, BothWays> = if current { &mut now } else { &mut then };
        engaged.entry(party.clone()).or_default().add(name);
        let figures = match party == EVERYONE {
            true => &mut events,
            false => per.entry(party).or_default(),
        };
        let slot = figures.entry(name.to_owned()).or_default();
        match current {
            true => slot.0 += value,
            false => slot.1 += value,
        }
        if current && name.starts_with("events.") {
            if let Some(i) = holding(&months, day) {
                *month_sums[i].entry(name.to_owned()).or_default() += value;
            }
            if let Some(i) = holding(&quarters, day) {
                *quarter_sums[i].entry(name.to_owned()).or_default() += value;
            }
        }
    }
    Sums {
        per,
        events,
        months,
        month_sums,
        quarters,
        quarter_sums,
        before,
        now,
        then,
    }
}

/// Sums the `country.` counters of `rows` over `period` (and the one before) for the
/// node `node_id`, with the programme's indicators per fiscal year.
pub fn report_by_affiliation(
    node_id: &str,
    programme: Programme<'_>,
    period: &Period,
    rows: impl IntoIterator<Item = Row>,
) -> proto::MetricsReport {
    let rows: Vec<Row> = rows.into_iter().collect();
    let domestic = programme.domestic;
    let kinds = |a: &str| {
        let own = Some(a) == domestic;
        (!own && is_country(a), !own && is_organisation(a))
    };
    let indicators = indicators(
        period,
        programme.fiscal_start,
        &rows,
        programme.targets,
        kinds,
    );
    let Sums {
        per,
        events,
        months,
        month_sums,
        quarters,
        quarter_sums,
        before,
        now,
        then,
    } = sum_rows(period, rows);
    let (prev_since, prev_until) = period.previous;
    let foreign = |kind: fn(&str) -> bool, engaged: &BTreeMap<String, BothWays>| -> Vec<String> {
        engaged
            .iter()
            .filter(|(a, w)| w.0 && w.1 && kind(a) && Some(a.as_str()) != domestic)
            .map(|(a, _)| a.clone())
            .collect()
    };
    let countries = foreign(is_country, &now);
    let organisations = foreign(is_organisation, &now);
    proto::MetricsReport {
        node_id: node_id.to_owned(),
        since_day: period.since,
        until_day: period.until,
        previous_since_day: prev_since,
        previous_until_day: prev_until,
        label: period.label.clone(),
        view: proto::MetricsView::Affiliation as i32,
        domestic: domestic.unwrap_or_default().to_owned(),
        newly_engaged: countries
            .iter()
            .chain(&organisations)
            .filter(|a| !before.contains(*a))
            .cloned()
            .collect(),
        engaged_previous: foreign(is_country, &then).len() as u32,
        organisations_engaged_previous: foreign(is_organisation, &then).len() as u32,
        engaged: countries,
        organisations_engaged: organisations,
        events: figures(events),
        partners: rows_per_party(per),
        months: span_totals(months, month_sums),
        quarters: span_totals(quarters, quarter_sums),
        indicators,
        ..Default::default()
    }
}

fn is_country(a: &str) -> bool {
    a.parse::<Country>().is_ok()
}

fn is_organisation(a: &str) -> bool {
    a != UNKNOWN_AFFILIATION && !is_country(a) && a.parse::<Organisation>().is_ok()
}

/// One row per country or organisation, with its figures (and no latency).
fn rows_per_party(per: BTreeMap<String, Figures>) -> Vec<proto::PartnerMetrics> {
    per.into_iter()
        .map(|(party, f)| proto::PartnerMetrics {
            partner: party,
            figures: figures(f),
            latency: None,
        })
        .collect()
}

fn figures(f: Figures) -> Vec<proto::Figure> {
    f.into_iter()
        .map(|(name, (value, previous))| proto::Figure {
            name,
            value,
            previous,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u32, party: &str, name: &str, value: u64) -> Row {
        (day, party.into(), format!("{BY_AFFILIATION}{name}"), value)
    }

    /// Tokyo's FY2026 and the year before: Estonia both ways both years; this year
    /// also the US both ways, Viet Nam only receiving, Japan itself, NATO's centre.
    fn tokyo() -> (Period, Vec<Row>) {
        let fy = Period::fiscal_year(2026, 4).unwrap();
        let (now, before) = (fy.since + 10, fy.previous.0 + 10);
        let rows = vec![
            row(before, "EE", "received.advisory", 1),
            row(before, "EE", "shared.advisory", 1),
            row(now, "EE", "received.advisory", 2),
            row(now, "EE", "shared.consultation", 1),
            row(now, "US", "received.exercise", 1),
            row(now, "US", "shared.exercise", 1),
            row(now, "VN", "shared.advisory", 3),
            row(now, "JP", "received.consultation", 4),
            row(now, "JP", "shared.consultation", 4),
            row(now, "NATO-CCDCOE", "received.exercise", 1),
            row(now, "NATO-CCDCOE", "shared.exercise", 1),
            row(now, "*", "events.consultation", 4),
            row(now, "*", "events.exercise", 1),
            row(before, "*", "events.consultation", 1),
        ];
        (fy, rows)
    }

    const TARGETS: [YearTargets; 1] = [YearTargets {
        fiscal_year: 2026,
        consultations: Some(8),
        exercises: None,
        threat_exchanges: None,
        countries_engaged: Some(3),
        organisations_engaged: None,
    }];

    fn programme() -> Programme<'static> {
        Programme {
            domestic: Some("JP"),
            fiscal_start: 4,
            targets: &TARGETS,
        }
    }

    #[test]
    fn countries_engaged_are_foreign_both_ways_and_counted_against_the_year_before() {
        let (fy, rows) = tokyo();
        let r = report_by_affiliation("jp-mod", programme(), &fy, rows);
        assert_eq!(r.engaged, ["EE", "US"], "foreign countries only");
        assert_eq!(r.engaged_previous, 1);
        assert_eq!(r.organisations_engaged, ["NATO-CCDCOE"]);
        assert_eq!(
            r.newly_engaged,
            ["US", "NATO-CCDCOE"],
            "Estonia was engaged before"
        );
        assert_eq!(r.domestic, "JP");
        let events: Vec<_> = r
            .events
            .iter()
            .map(|f| (f.name.as_str(), f.value, f.previous))
            .collect();
        assert_eq!(
            events,
            [("events.consultation", 4, 1), ("events.exercise", 1, 0)]
        );
        let rows: Vec<_> = r.partners.iter().map(|p| p.partner.as_str()).collect();
        assert_eq!(rows, ["EE", "JP", "NATO-CCDCOE", "US", "VN"]);
        let month = r.months.iter().find(|m| !m.figures.is_empty()).unwrap();
        assert_eq!(month.figures.len(), 2, "the months chart counts events");
    }

    fn sheet(r: &proto::MetricsReport) -> Vec<(u32, &str, u64, Option<u64>)> {
        r.indicators
            .iter()
            .map(|i| (i.fiscal_year, i.name.as_str(), i.actual, i.target))
            .collect()
    }

    #[test]
    fn the_review_sheet_gives_each_years_actuals_against_its_targets() {
        let (fy, rows) = tokyo();
        let r = report_by_affiliation("jp-mod", programme(), &fy, rows);
        let lines = sheet(&r);
        for line in [
            (2025, "consultations", 1, None),
            (2025, "countries_engaged", 1, None),
            (2026, "consultations", 4, Some(8)),
            (2026, "exercises", 1, None),
            (2026, "countries_engaged", 2, Some(3)),
            (2026, "organisations_engaged", 1, None),
        ] {
            assert!(lines.contains(&line), "{line:?} in {lines:?}");
        }
        // A year with targets and no record yet shows them against zero.
        let empty = report_by_affiliation("jp-mod", programme(), &fy, Vec::new());
        assert!(sheet(&empty).contains(&(2026, "consultations", 0, Some(8))));
    }
}
