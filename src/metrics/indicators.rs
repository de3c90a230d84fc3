//! The programme's indicators per fiscal year, as its review sheet lays them out:
//! consultations, exercises and threat exchanges held (events, each once), foreign
//! countries and organisations engaged both ways; each with the target the operator
//! set for that year (`[[target]]`) and the actual from the log. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{fiscal_year_containing, Period, Row, BY_AFFILIATION, EVERYONE};
use crate::proto;

/// The names of the indicators, in the review sheet's order.
pub const INDICATORS: [&str; 5] = [
    "consultations",
    "exercises",
    "threat_exchanges",
    "countries_engaged",
    "organisations_engaged",
];

/// One `[[target]]`: what the programme aims at in one fiscal year.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct YearTargets {
    /// The year the fiscal year starts in (2026 = FY2026).
    pub fiscal_year: u32,
    /// Consultations held (events).
    pub consultations: Option<u64>,
    /// Exercises held (events).
    pub exercises: Option<u64>,
    /// Threat exchanges (events of every other kind).
    pub threat_exchanges: Option<u64>,
    /// Foreign countries engaged both ways.
    pub countries_engaged: Option<u64>,
    /// International organisations engaged both ways.
    pub organisations_engaged: Option<u64>,
}

impl YearTargets {
    fn get(&self, name: &str) -> Option<u64> {
        match name {
            "consultations" => self.consultations,
            "exercises" => self.exercises,
            "threat_exchanges" => self.threat_exchanges,
            "countries_engaged" => self.countries_engaged,
            "organisations_engaged" => self.organisations_engaged,
            _ => None,
        }
    }
}

/// One fiscal year's sums: events by kind, and who was engaged which way.
#[derive(Default)]
struct Year {
    events: BTreeMap<String, u64>,
    ways: BTreeMap<String, (bool, bool)>,
}

/// The indicators of the fiscal year holding `period.since` and of every earlier one
/// (at most ten) the log reaches or a target names, with `targets`; `foreign` says
/// which affiliations count as engaged countries and which as organisations (the
/// domestic one as neither).
pub(super) fn indicators(
    period: &Period,
    fiscal_start: u8,
    rows: &[Row],
    targets: &[YearTargets],
    foreign: impl Fn(&str) -> (bool, bool),
) -> Vec<proto::Indicator> {
    let Ok(this) = Period::fiscal_year_of(period.since, fiscal_start) else {
        return Vec::new();
    };
    let mut years: BTreeMap<u32, Year> = BTreeMap::new();
    let end = this.until;
    let fy_of =
        |p: &Period| u32::try_from(fiscal_year_containing(p.since, fiscal_start)).unwrap_or(0);
    let mut starts = vec![(this.since, fy_of(&this))];
    let mut p = this;
    for _ in 0..10 {
        let Ok(before) = Period::fiscal_year_of(p.previous.0, fiscal_start) else {
            break;
        };
        starts.push((before.since, fy_of(&before)));
        p = before;
    }
    starts.reverse();
    let first_day = starts.first().map_or(0, |s| s.0);
    for (day, party, name, value) in rows {
        let Some(name) = name.strip_prefix(BY_AFFILIATION) else {
            continue;
        };
        if *day < first_day || *day >= end || *value == 0 {
            continue;
        }
        let i = starts.partition_point(|(s, _)| s <= day).saturating_sub(1);
        let Some(&(_, fy)) = starts.get(i) else {
            continue;
        };
        let year = years.entry(fy).or_default();
        if party == EVERYONE {
            if let Some(kind) = name.strip_prefix("events.") {
                *year.events.entry(kind.to_owned()).or_default() += value;
            }
        } else {
            let w = year.ways.entry(party.clone()).or_default();
            w.0 |= name.starts_with("received.");
            w.1 |= name.starts_with("shared.");
        }
    }
    let with_targets: BTreeSet<u32> = targets.iter().map(|t| t.fiscal_year).collect();
    // A year with targets and nothing yet still shows them against zero.
    for (_, fy) in starts.iter().filter(|(_, fy)| with_targets.contains(fy)) {
        years.entry(*fy).or_default();
    }
    let mut out = Vec::new();
    for (fy, year) in years
        .iter()
        .filter(|(fy, y)| !y.events.is_empty() || with_targets.contains(fy))
    {
        let target = targets.iter().find(|t| t.fiscal_year == *fy);
        for name in INDICATORS {
            out.push(proto::Indicator {
                fiscal_year: *fy,
                name: name.to_owned(),
                actual: actual(year, name, &foreign),
                target: target.and_then(|t| t.get(name)),
            });
        }
    }
    out
}

fn actual(year: &Year, name: &str, foreign: &impl Fn(&str) -> (bool, bool)) -> u64 {
    let events = |f: &dyn Fn(&str) -> bool| -> u64 {
        year.events
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, v)| v)
            .sum()
    };
    let engaged = |which: usize| -> u64 {
        year.ways
            .iter()
            .filter(|(a, w)| w.0 && w.1 && [foreign(a).0, foreign(a).1][which])
            .count() as u64
    };
    match name {
        "consultations" => events(&|k| k == "consultation"),
        "exercises" => events(&|k| k == "exercise"),
        "threat_exchanges" => events(&|k| k != "consultation" && k != "exercise"),
        "countries_engaged" => engaged(0),
        _ => engaged(1),
    }
}
