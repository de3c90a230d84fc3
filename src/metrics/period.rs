//! Periods of whole UTC days a report covers: fiscal years (starting in a given month),
//! day ranges, the period before of the same kind, and their months and quarters.
//! Pure: days in, days out; no clock.

use std::collections::BTreeMap;

use time::{Date, Month};

use crate::proto;

/// Why a period cannot be reported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    /// A date that does not exist or is out of range.
    #[error("no such period: {0}")]
    BadPeriod(String),
}

/// A span of whole UTC days, `[since, until)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// First day (days since 1970-01-01).
    pub since: u32,
    /// Day after the last.
    pub until: u32,
    /// The one before, of the same kind.
    pub previous: (u32, u32),
    /// How to name it.
    pub label: String,
}

const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

pub(super) fn day_number(d: Date) -> Result<u32, MetricsError> {
    u32::try_from(d.to_julian_day() - UNIX_EPOCH_JULIAN)
        .map_err(|_| MetricsError::BadPeriod(format!("{d} is before 1970")))
}

pub(super) fn date_of(day: u32) -> Date {
    i32::try_from(day)
        .ok()
        .and_then(|d| d.checked_add(UNIX_EPOCH_JULIAN))
        .and_then(|j| Date::from_julian_day(j).ok())
        .unwrap_or(Date::MAX)
}

/// Longest period a report covers (about ten years), so one request stays small.
pub const MAX_PERIOD_DAYS: u32 = 3_660;

fn month_start(year: i32, month: Month) -> Result<Date, MetricsError> {
    Date::from_calendar_date(year, month, 1)
        .map_err(|e| MetricsError::BadPeriod(format!("{year}-{month}: {e}")))
}

/// Adds `n` months to the first of a month.
fn add_months(d: Date, n: i32) -> Result<Date, MetricsError> {
    let index = d.year() * 12 + (d.month() as i32 - 1) + n;
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8)
        .map_err(|e| MetricsError::BadPeriod(e.to_string()))?;
    month_start(index.div_euclid(12), month)
}

impl Period {
    /// The fiscal year that starts in `start_month` of `year` (FY2026 with April: from
    /// 2026-04-01 to 2027-03-31, as the Japanese government counts).
    pub fn fiscal_year(year: i32, start_month: u8) -> Result<Period, MetricsError> {
        let month = Month::try_from(start_month)
            .map_err(|_| MetricsError::BadPeriod(format!("month {start_month}")))?;
        let start = month_start(year, month)?;
        let end = add_months(start, 12)?;
        let prev = add_months(start, -12)?;
        Ok(Period {
            since: day_number(start)?,
            until: day_number(end)?,
            previous: (day_number(prev)?, day_number(start)?),
            label: format!(
                "FY{year} ({start} to {})",
                end.previous_day().unwrap_or(end)
            ),
        })
    }

    /// The fiscal year holding `day`.
    pub fn fiscal_year_of(day: u32, start_month: u8) -> Result<Period, MetricsError> {
        Period::fiscal_year(fiscal_year_containing(day, start_month), start_month)
    }

    /// The period a metrics request asks for: a fiscal year, a day range, or else the
    /// fiscal year holding `today`.
    pub fn requested(
        r: &proto::MetricsRequest,
        fiscal_start: u8,
        today: u32,
    ) -> Result<Period, MetricsError> {
        if r.fiscal_year != 0 {
            let year = i32::try_from(r.fiscal_year)
                .map_err(|_| MetricsError::BadPeriod(format!("fiscal year {}", r.fiscal_year)))?;
            Period::fiscal_year(year, fiscal_start)
        } else if r.since_day != 0 || r.until_day != 0 {
            Period::days(r.since_day, r.until_day)
        } else {
            Period::fiscal_year_of(today, fiscal_start)
        }
    }

    /// The days `[since, until)`, compared with the same number of days before.
    pub fn days(since: u32, until: u32) -> Result<Period, MetricsError> {
        if until <= since {
            return Err(MetricsError::BadPeriod(format!(
                "{} is not after {}",
                date_of(until),
                date_of(since)
            )));
        }
        let len = until - since;
        if len > MAX_PERIOD_DAYS || date_of(until) == Date::MAX {
            return Err(MetricsError::BadPeriod(format!(
                "{len} days from {}: a report covers at most {MAX_PERIOD_DAYS} days",
                date_of(since)
            )));
        }
        Ok(Period {
            since,
            until,
            previous: (since.saturating_sub(len), since),
            label: format!("{} to {}", date_of(since), date_of(until - 1)),
        })
    }

    /// The months (or quarters, `step` = 3) from the period's first month, clipped to
    /// it: a fiscal year's quarters are fiscal quarters.
    pub(super) fn spans(&self, step: i32) -> Vec<(u32, u32, String)> {
        let first = date_of(self.since);
        let Ok(mut start) = month_start(first.year(), first.month()) else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut n = 1;
        while let Ok(s) = day_number(start) {
            if s >= self.until {
                break;
            }
            let Ok(next) = add_months(start, step) else {
                break;
            };
            let Ok(e) = day_number(next) else { break };
            let label = if step == 1 {
                format!("{}-{:02}", start.year(), start.month() as u8)
            } else {
                format!("Q{n} from {}-{:02}", start.year(), start.month() as u8)
            };
            out.push((s.max(self.since), e.min(self.until), label));
            start = next;
            n += 1;
        }
        out
    }
}

/// The span of `spans` holding `day`: they are in order and do not overlap, so the last
/// one starting by `day`, if it has not ended.
pub(super) fn holding(spans: &[(u32, u32, String)], day: u32) -> Option<usize> {
    let i = spans
        .partition_point(|(s, _, _)| *s <= day)
        .checked_sub(1)?;
    (day < spans[i].1).then_some(i)
}

/// Each span with its sums by counter name.
pub(super) fn span_totals(
    spans: Vec<(u32, u32, String)>,
    sums: Vec<BTreeMap<String, u64>>,
) -> Vec<proto::PeriodTotals> {
    spans
        .into_iter()
        .zip(sums)
        .map(|((s, u, label), sums)| proto::PeriodTotals {
            since_day: s,
            until_day: u,
            label,
            figures: sums
                .into_iter()
                .map(|(name, value)| proto::Figure {
                    name,
                    value,
                    previous: 0,
                })
                .collect(),
        })
        .collect()
}

/// The year the fiscal year holding `day` starts in (FY2026 = 2026).
pub fn fiscal_year_containing(day: u32, start_month: u8) -> i32 {
    let d = date_of(day);
    if (d.month() as u8) < start_month {
        d.year() - 1
    } else {
        d.year()
    }
}
