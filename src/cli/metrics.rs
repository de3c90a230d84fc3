//! `renkei metrics`: the information-sharing report, from a running node (as an
//! auditor) or a stopped node's database, as a table, JSON or CSV, each naming the
//! log (size and root) the figures were computed from.

use serde_json::{json, Value};

use super::audit::{connect, open_store, parse_time, Source};
use super::commands::ReportFormat;
use super::dashboard::html::Table;
use crate::metrics::{self, Period};
use crate::proto;
use crate::timestamp::Timestamp;
use witnessed::{newest_cosigned, witnessed_json, witnessed_line};

mod witnessed;

/// What `renkei metrics` asks for.
pub(super) struct MetricsArgs {
    pub fiscal_year: Option<u32>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub fiscal_start: u8,
    pub format: ReportFormat,
    /// How the rows are cut.
    pub view: proto::MetricsView,
}

fn day(s: &str, end: bool) -> anyhow::Result<u32> {
    Ok(metrics::day_of(parse_time(s, end)?.unix_ms()))
}

pub(super) async fn run(source: Source<'_>, a: MetricsArgs) -> anyhow::Result<()> {
    let view = a.view;
    let mut request = proto::MetricsRequest {
        fiscal_year: a.fiscal_year.unwrap_or(0),
        view: view as i32,
        ..Default::default()
    };
    match (&a.since, &a.until) {
        (Some(s), Some(u)) => {
            request.since_day = day(s, false)?;
            request.until_day = day(u, true)? + 1;
        }
        (None, None) => {}
        _ => anyhow::bail!("give both --since and --until, or neither"),
    }
    let (report, witnessed) = match source {
        Source::Node(config) => {
            let client = connect(config).await?;
            let r = client.metrics(request).await?;
            let witnessed = client.witnessed_checkpoint().await.ok().map(|c| c.note);
            client.close().await;
            (r, witnessed)
        }
        Source::DataDir(dir) => {
            let store = open_store(dir)?;
            let node = store
                .identity()?
                .map(|(id, _)| id.to_string())
                .unwrap_or_default();
            let today = metrics::day_of(Timestamp::now().unix_ms());
            let period = Period::requested(&request, a.fiscal_start, today)?;
            let counted = store.counted(period.until)?;
            let own = store.audit().latest_affiliation()?;
            let programme = metrics::Programme {
                domestic: (!own.is_empty()).then_some(own.as_str()),
                fiscal_start: a.fiscal_start,
                targets: &[],
            };
            let witnessed = newest_cosigned(&store)?;
            let r = metrics::report_in_view(view, &node, programme, &period, counted.into());
            (r, witnessed)
        }
    };
    if a.format == ReportFormat::Json {
        let mut j = report_json(&report);
        j["computed_from"]["witnessed"] = witnessed.as_deref().map_or(Value::Null, witnessed_json);
        emitln!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    print(&report, a.format)?;
    if a.format == ReportFormat::Table {
        println!("{}", witnessed_line(&report, witnessed.as_deref()));
    }
    Ok(())
}

/// Prints `report` as `format` asks.
pub(super) fn print(report: &proto::MetricsReport, format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => emitln!("{}", serde_json::to_string_pretty(&report_json(report))?),
        ReportFormat::Table => print!("{}", table(report)),
        ReportFormat::Csv => print!("{}", csv(report).to_csv()),
    }
    Ok(())
}

/// The log a report was computed from, as a sentence.
fn computed_from(r: &proto::MetricsReport) -> String {
    format!(
        "computed from the first {} records of the log, Merkle root {}",
        r.log_size,
        hex::encode(&r.log_root)
    )
}

/// The columns of the CSV: each row a figure of one section's named row.
const CSV_COLUMNS: [&str; 9] = [
    "section",
    "name",
    "figure",
    "value",
    "previous",
    "change",
    "change_pct",
    "target",
    "achievement_pct",
];

/// The report as one table in long form: each figure a row, named by its section
/// (`log`, `events`, `domestic`, `country`, `partner`, `engaged`, `indicator`), the
/// row's name and the figure's.
fn csv(r: &proto::MetricsReport) -> Table {
    let mut t = Table::new("metrics", &CSV_COLUMNS);
    let row = |cells: &[&str]| {
        let mut row: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        row.resize(CSV_COLUMNS.len(), String::new());
        row
    };
    t.rows.push(row(&[
        "log",
        &r.node_id,
        "records",
        &r.log_size.to_string(),
    ]));
    t.rows
        .push(row(&["log", &r.node_id, "root", &hex::encode(&r.log_root)]));
    let view = match r.view() {
        proto::MetricsView::Affiliation => "country",
        proto::MetricsView::Partner => "partner",
    };
    let rows = std::iter::once(("events", "all", &r.events)).chain(r.partners.iter().map(|p| {
        let section = if p.partner == r.domestic {
            "domestic"
        } else {
            view
        };
        (section, p.partner.as_str(), &p.figures)
    }));
    for (section, name, figures) in rows {
        for f in figures {
            t.rows.push(figure_row(section, name, f));
        }
    }
    for name in r.engaged.iter().chain(&r.organisations_engaged) {
        let new = if r.newly_engaged.contains(name) {
            "1"
        } else {
            "0"
        };
        t.rows.push(row(&["engaged", name, "newly_engaged", new]));
    }
    t.rows.extend(r.indicators.iter().map(indicator_row));
    t
}

/// One figure with its growth, as a CSV row.
fn figure_row(section: &str, name: &str, f: &proto::Figure) -> Vec<String> {
    let g = growth(f.value, f.previous);
    let pct = g["change_pct"].as_f64().map(|p| format!("{p:.1}"));
    let cells = [
        section.to_owned(),
        name.to_owned(),
        f.name.clone(),
        f.value.to_string(),
        f.previous.to_string(),
        g["change"].to_string(),
        pct.unwrap_or_default(),
    ];
    cells
        .into_iter()
        .chain([String::new(), String::new()])
        .collect()
}

/// One indicator of one fiscal year, against its target, as a CSV row.
fn indicator_row(i: &proto::Indicator) -> Vec<String> {
    let achievement = i
        .target
        .filter(|t| *t > 0)
        .map(|t| format!("{:.1}", i.actual as f64 * 100.0 / t as f64));
    let (blank, target) = (String::new, i.target.map(|t| t.to_string()));
    vec![
        "indicator".to_owned(),
        format!("FY{}", i.fiscal_year),
        i.name.clone(),
        i.actual.to_string(),
        blank(),
        blank(),
        blank(),
        target.unwrap_or_default(),
        achievement.unwrap_or_default(),
    ]
}

fn growth(value: u64, previous: u64) -> Value {
    let delta = value as i64 - previous as i64;
    let pct = (previous > 0).then(|| (delta as f64) * 100.0 / previous as f64);
    json!({"change": delta, "change_pct": pct})
}

fn figures_json(figures: &[proto::Figure]) -> Value {
    figures
        .iter()
        .map(|f| {
            let mut v = json!({"name": f.name, "value": f.value, "previous": f.previous});
            let g = growth(f.value, f.previous);
            v["change"] = g["change"].clone();
            v["change_pct"] = g["change_pct"].clone();
            v
        })
        .collect()
}

/// The report as JSON, with growth worked out.
pub(crate) fn report_json(r: &proto::MetricsReport) -> Value {
    let days = |s: u32, u: u32| json!({"since_day": s, "until_day": u});
    json!({
        "node_id": r.node_id,
        "period": r.label,
        "days": days(r.since_day, r.until_day),
        "computed_from": {"log_size": r.log_size, "log_root": hex::encode(&r.log_root)},
        "previous_days": days(r.previous_since_day, r.previous_until_day),
        "partners": r.partners.iter().map(|p| {
            let l = p.latency.unwrap_or_default();
            json!({
                "partner": p.partner,
                "figures": figures_json(&p.figures),
                "latency": {"acked": l.acked, "p50_ms": l.p50_ms, "p95_ms": l.p95_ms},
            })
        }).collect::<Vec<_>>(),
        "by": match r.view() {
            proto::MetricsView::Affiliation => "country",
            proto::MetricsView::Partner => "partner",
        },
        "domestic": r.domestic,
        "events": figures_json(&r.events),
        "engaged": r.engaged,
        "newly_engaged": r.newly_engaged,
        "engaged_previous": r.engaged_previous,
        "organisations_engaged": r.organisations_engaged,
        "organisations_engaged_previous": r.organisations_engaged_previous,
        "indicators": r.indicators.iter().map(|i| json!({
            "fiscal_year": i.fiscal_year,
            "indicator": i.name,
            "actual": i.actual,
            "target": i.target,
            "achievement_pct": i.target.filter(|t| *t > 0).map(|t| i.actual as f64 * 100.0 / t as f64),
        })).collect::<Vec<_>>(),
        "engaged_growth": growth(r.engaged.len() as u64, u64::from(r.engaged_previous)),
        "months": r.months.iter().map(|m| json!({"label": m.label, "figures": figures_json(&m.figures)})).collect::<Vec<_>>(),
        "quarters": r.quarters.iter().map(|m| json!({"label": m.label, "figures": figures_json(&m.figures)})).collect::<Vec<_>>(),
    })
}

fn pct(value: u64, previous: u64) -> String {
    if previous == 0 {
        if value == 0 {
            "".into()
        } else {
            "new".into()
        }
    } else {
        format!(
            "{:+.0}%",
            (value as f64 - previous as f64) * 100.0 / previous as f64
        )
    }
}

fn ms(v: u64) -> String {
    if v == u64::MAX {
        ">1d".into()
    } else {
        format!("≤{v} ms")
    }
}

/// The report as a table for a terminal, per country or per partner as it was asked.
pub(crate) fn table(r: &proto::MetricsReport) -> String {
    match r.view() {
        proto::MetricsView::Affiliation => affiliation_table(r),
        proto::MetricsView::Partner => partner_table(r),
    }
}

/// The report per country or organisation: the events, each row (the domestic one
/// marked), and the countries and organisations engaged both ways.
fn affiliation_table(r: &proto::MetricsReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "renkei metrics: {} — {}, by country or organisation",
        r.node_id, r.label
    );
    let _ = writeln!(out, "{}", computed_from(r));
    let _ = writeln!(out);
    let row = |out: &mut String, who: &str, f: &proto::Figure| {
        let change = f.value as i64 - f.previous as i64;
        let _ = writeln!(
            out,
            "{:<22} {:<28} {:>8} {:>9} {:>+8} {:>7}",
            who,
            f.name,
            f.value,
            f.previous,
            change,
            pct(f.value, f.previous)
        );
    };
    let _ = writeln!(
        out,
        "{:<22} {:<28} {:>8} {:>9} {:>8} {:>7}",
        "", "figure", "value", "previous", "change", "%"
    );
    for f in &r.events {
        row(&mut out, "all (each event once)", f);
    }
    for p in &r.partners {
        let who = match p.partner.as_str() {
            d if d == r.domestic => format!("{d} (domestic)"),
            "?" => "? (named nowhere)".to_owned(),
            other => other.to_owned(),
        };
        for f in &p.figures {
            row(&mut out, &who, f);
        }
    }
    let _ = writeln!(out);
    let list = |names: &[String]| match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(", "),
    };
    let _ = writeln!(
        out,
        "foreign countries engaged (both ways): {} (previous period {}): {}",
        r.engaged.len(),
        r.engaged_previous,
        list(&r.engaged)
    );
    let _ = writeln!(
        out,
        "organisations engaged (both ways): {} (previous period {}): {}",
        r.organisations_engaged.len(),
        r.organisations_engaged_previous,
        list(&r.organisations_engaged)
    );
    let _ = writeln!(out, "newly engaged: {}", list(&r.newly_engaged));
    out += &review_sheet(&r.indicators);
    out
}

/// The indicators as the programme's review sheet lays them out: one row per
/// indicator, one column per fiscal year, each cell the actual and, where a target
/// is set, the target and the achievement.
fn review_sheet(indicators: &[proto::Indicator]) -> String {
    use std::fmt::Write as _;
    let years: std::collections::BTreeSet<u32> = indicators.iter().map(|i| i.fiscal_year).collect();
    if years.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nreview sheet (actual, or actual / target = achievement):\n");
    let _ = write!(out, "  {:<22}", "indicator");
    for y in &years {
        let _ = write!(out, " {:>22}", format!("FY{y}"));
    }
    out.push('\n');
    for name in crate::metrics::INDICATORS {
        let _ = write!(out, "  {name:<22}");
        for y in &years {
            let cell = indicators
                .iter()
                .find(|i| i.fiscal_year == *y && i.name == name)
                .map(|i| match i.target {
                    Some(t) if t > 0 => {
                        format!(
                            "{} / {t} = {:.0}%",
                            i.actual,
                            i.actual as f64 * 100.0 / t as f64
                        )
                    }
                    Some(t) => format!("{} / {t}", i.actual),
                    None => i.actual.to_string(),
                })
                .unwrap_or_default();
            let _ = write!(out, " {cell:>22}");
        }
        out.push('\n');
    }
    out
}

/// The report per partner.
fn partner_table(r: &proto::MetricsReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "renkei metrics: {} — {}", r.node_id, r.label);
    let _ = writeln!(out, "{}", computed_from(r));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:>8} {:>9} {:>8} {:>7}",
        "partner", "figure", "value", "previous", "change", "%"
    );
    for p in &r.partners {
        for f in &p.figures {
            let change = f.value as i64 - f.previous as i64;
            let _ = writeln!(
                out,
                "{:<16} {:<28} {:>8} {:>9} {:>+8} {:>7}",
                p.partner,
                f.name,
                f.value,
                f.previous,
                change,
                pct(f.value, f.previous)
            );
        }
        if let Some(l) = p.latency.as_ref().filter(|l| l.acked > 0) {
            let _ = writeln!(
                out,
                "{:<16} {:<28} p50 {} p95 {} ({} acked)",
                p.partner,
                "delivery latency",
                ms(l.p50_ms),
                ms(l.p95_ms),
                l.acked
            );
        }
    }
    let _ = writeln!(out);
    let change = match pct(r.engaged.len() as u64, u64::from(r.engaged_previous)) {
        c if c.is_empty() => String::new(),
        c => format!(", {c}"),
    };
    let names = match r.engaged.is_empty() {
        true => "none".to_owned(),
        false => r.engaged.join(", "),
    };
    let _ = writeln!(
        out,
        "engaged partners (both ways): {} (previous period {}{change}): {names}",
        r.engaged.len(),
        r.engaged_previous,
    );
    let _ = writeln!(
        out,
        "newly engaged: {}",
        if r.newly_engaged.is_empty() {
            "none".into()
        } else {
            r.newly_engaged.join(", ")
        }
    );
    for (title, spans) in [("by quarter", &r.quarters), ("by month", &r.months)] {
        let busy: Vec<_> = spans.iter().filter(|s| !s.figures.is_empty()).collect();
        if busy.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for s in busy {
            let parts: Vec<String> = s
                .figures
                .iter()
                .filter(|f| f.name.starts_with("received.") || f.name.starts_with("shared."))
                .map(|f| format!("{} {}", f.name, f.value))
                .collect();
            let _ = writeln!(out, "  {:<18} {}", s.label, parts.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_names_the_log_then_each_figure_in_its_section() {
        let figure = |name: &str, value, previous| proto::Figure {
            name: name.into(),
            value,
            previous,
        };
        let r = proto::MetricsReport {
            node_id: "jp-mod".into(),
            view: proto::MetricsView::Affiliation as i32,
            domestic: "JP".into(),
            log_size: 42,
            log_root: vec![0xab; 32].into(),
            events: vec![figure("events.consultation", 3, 2)],
            partners: vec![
                proto::PartnerMetrics {
                    partner: "JP".into(),
                    figures: vec![figure("shared.exercise", 1, 0)],
                    latency: None,
                },
                proto::PartnerMetrics {
                    partner: "US".into(),
                    figures: vec![figure("took_part.consultation", 2, 4)],
                    latency: None,
                },
            ],
            engaged: vec!["US".into()],
            newly_engaged: vec!["US".into()],
            indicators: vec![proto::Indicator {
                fiscal_year: 2026,
                name: "consultations".into(),
                actual: 3,
                target: Some(4),
            }],
            ..Default::default()
        };
        let text = csv(&r).to_csv();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[..8],
            [
                "section,name,figure,value,previous,change,change_pct,target,achievement_pct",
                "log,jp-mod,records,42,,,,,",
                &format!("log,jp-mod,root,{},,,,,", "ab".repeat(32)),
                "events,all,events.consultation,3,2,1,50.0,,",
                "domestic,JP,shared.exercise,1,0,1,,,",
                "country,US,took_part.consultation,2,4,-2,-50.0,,",
                "engaged,US,newly_engaged,1,,,,,",
                "indicator,FY2026,consultations,3,,,,4,75.0",
            ]
        );
        assert!(table(&r).contains(&format!(
            "computed from the first 42 records of the log, Merkle root {}",
            "ab".repeat(32)
        )));
    }

    #[test]
    fn a_period_with_no_engaged_partners_says_none() {
        let text = table(&proto::MetricsReport::default());
        assert!(
            text.contains("engaged partners (both ways): 0 (previous period 0): none\n"),
            "{text}"
        );
        let r = proto::MetricsReport {
            engaged: vec!["au-dod".into(), "uk-mod".into()],
            engaged_previous: 1,
            ..Default::default()
        };
        assert!(table(&r).contains(
            "engaged partners (both ways): 2 (previous period 1, +100%): au-dod, uk-mod\n"
        ));
    }
}
