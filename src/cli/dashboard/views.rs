//! What each dashboard page shows, from the node's answers to the auditor: the tables
//! (each also CSV, `?csv=NAME`), the chart, the search form, the proof.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use prost::Message as _;
use serde_json::Value;

use super::html::{bar_chart, escape, Table};
use super::{Dash, Shown};
use crate::metrics::logic::{logic_model, outputs_of, Outputs};
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

type Params = HashMap<String, String>;

/// The table `p` asks for as CSV, if it asks, else the page.
fn shown(p: &Params, title: String, tables: &[&Table], body: String) -> Shown {
    if let Some(name) = p.get("csv") {
        if let Some(t) = tables.iter().find(|t| t.name == name) {
            return Shown::Csv {
                name: t.name.to_owned(),
                text: t.to_csv(),
            };
        }
    }
    Shown::Page { title, body }
}

/// The query string of `p` with `csv=name` added, for a table's download link.
fn csv_href(path: &str, p: &Params, name: &str) -> String {
    let mut q: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| *k != "csv")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    q.sort();
    q.push(("csv".into(), name.into()));
    let query = serde_urlencoded::to_string(&q).unwrap_or_default();
    format!("{path}?{query}")
}

fn change(now: u64, before: u64) -> [String; 2] {
    let pct = match (now, before) {
        (0, 0) => String::new(),
        (_, 0) => "new".into(),
        _ => format!(
            "{:+.0}%",
            (now as f64 - before as f64) * 100.0 / before as f64
        ),
    };
    [format!("{:+}", now as i64 - before as i64), pct]
}

/// The logic model of a fiscal year: the table, the engaged partners, the chart.
pub(super) async fn metrics(d: &Dash, p: &Params) -> anyhow::Result<Shown> {
    let fy: u32 = match p.get("fy") {
        Some(y) => y.parse().context("fy: not a year")?,
        None => 0,
    };
    let request = proto::MetricsRequest {
        fiscal_year: fy,
        view: proto::MetricsView::Affiliation as i32,
        ..Default::default()
    };
    let r = d.ask(async |c| c.metrics(request).await).await?;
    let logic = logic_table(&r);
    let months = months_table(&r);
    let engaged = engaged_table(&r);
    let sheet = indicators_table(&r);
    let year = r
        .label
        .trim_start_matches("FY")
        .split(' ')
        .next()
        .and_then(|y| y.parse::<u32>().ok());
    let nav = year.map_or(String::new(), |y| {
        format!(
            "<p><a href=\"/?fy={}\">← FY{}</a> &nbsp; <a href=\"/?fy={}\">FY{} →</a></p>",
            y - 1,
            y - 1,
            y + 1,
            y + 1
        )
    });
    let growth = change(r.engaged.len() as u64, u64::from(r.engaged_previous));
    let labels: Vec<String> = r.months.iter().map(|m| m.label.clone()).collect();
    let outputs: Vec<Outputs> = r.months.iter().map(|m| outputs_of(r.view(), m)).collect();
    let chart = bar_chart(
        "Bulletins exchanged per month",
        &labels,
        &[
            (
                "consultations",
                outputs.iter().map(|o| o.consultations).collect(),
            ),
            ("exercises", outputs.iter().map(|o| o.exercises).collect()),
            (
                "threat exchanges",
                outputs.iter().map(|o| o.threats).collect(),
            ),
        ],
    );
    let body = format!(
        "<p id=\"period\">{}, against the year before. Consultations, exercises and threat exchanges count the bulletins each country or organisation took part in (sent, or was shared with), each once; a bulletin relayed by another node counts for its origin's country. The last row counts each event once.</p>{nav}\
         <h2>Indicators against targets</h2>{}\
         <h2>Outputs per country or organisation</h2>{}\
         <h2>Foreign countries engaged both ways</h2><p id=\"engaged\">{} engaged (previous year {}, {}): {}; organisations: {}</p>{}\
         <h2>Over the year</h2>{chart}{}\
         <p id=\"computed\">Computed from the first {} records of the signed log, Merkle root <code>{}</code>: <a href=\"/checkpoint\">the checkpoint</a> proves it, and <code>renkei audit recount EXPORT --size {}</code> gives the same figures.</p>",
        escape(&r.label),
        sheet.to_html(&csv_href("/", p, "indicators")),
        logic.to_html(&csv_href("/", p, "outputs")),
        r.engaged.len(),
        r.engaged_previous,
        [growth[0].as_str(), growth[1].as_str()].join(" ").trim(),
        escape(&or_none(&r.engaged)),
        escape(&or_none(&r.organisations_engaged)),
        engaged.to_html(&csv_href("/", p, "engaged")),
        months.to_html(&csv_href("/", p, "months")),
        r.log_size,
        hex::encode(&r.log_root),
        r.log_size,
    );
    let title = format!("Cooperation metrics, {}", r.label);
    Ok(shown(p, title, &[&sheet, &logic, &months, &engaged], body))
}

/// The names, or "none".
fn or_none(names: &[String]) -> String {
    match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(", "),
    }
}

/// The programme's review sheet: each indicator per fiscal year, with its target and
/// the achievement where one is set.
fn indicators_table(r: &proto::MetricsReport) -> Table {
    let years: std::collections::BTreeSet<u32> =
        r.indicators.iter().map(|i| i.fiscal_year).collect();
    let mut headers = vec!["indicator".to_owned()];
    for y in &years {
        headers.extend([
            format!("FY{y} target"),
            format!("FY{y} actual"),
            format!("FY{y} achievement"),
        ]);
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new("indicators", &headers);
    for name in crate::metrics::INDICATORS {
        let mut row = vec![name.replace('_', " ")];
        for y in &years {
            let i = r
                .indicators
                .iter()
                .find(|i| i.fiscal_year == *y && i.name == name);
            let (target, actual) = (i.and_then(|i| i.target), i.map_or(0, |i| i.actual));
            let achievement = target
                .filter(|t| *t > 0)
                .map(|t| format!("{:.0}%", actual as f64 * 100.0 / t as f64));
            row.extend([
                target.map(|t| t.to_string()).unwrap_or_default(),
                actual.to_string(),
                achievement.unwrap_or_default(),
            ]);
        }
        t.rows.push(row);
    }
    t
}

fn logic_table(r: &proto::MetricsReport) -> Table {
    let mut t = Table::new(
        "outputs",
        &[
            "country or organisation",
            "consultations",
            "previous",
            "change",
            "%",
            "exercises",
            "previous",
            "change",
            "%",
            "threat exchanges",
            "previous",
            "change",
            "%",
        ],
    );
    let add = |t: &mut Table, name: &str, now: Outputs, before: Outputs| {
        let mut row = vec![name.to_owned()];
        for (n, b) in [
            (now.consultations, before.consultations),
            (now.exercises, before.exercises),
            (now.threats, before.threats),
        ] {
            let [c, pct] = change(n, b);
            row.extend([n.to_string(), b.to_string(), c, pct]);
        }
        t.rows.push(row);
    };
    for row in logic_model(r) {
        let name = match row.partner == r.domestic {
            true => format!("{} (domestic)", row.partner),
            false => row.partner.clone(),
        };
        add(&mut t, &name, row.now, row.before);
    }
    // The events themselves, each once, however many took part.
    let (mut all_now, mut all_before) = (Outputs::default(), Outputs::default());
    for f in &r.events {
        all_now.add(r.view(), &f.name, f.value);
        all_before.add(r.view(), &f.name, f.previous);
    }
    add(&mut t, "all (each event once)", all_now, all_before);
    t
}

fn months_table(r: &proto::MetricsReport) -> Table {
    let mut t = Table::new(
        "months",
        &["month", "consultations", "exercises", "threat exchanges"],
    );
    for m in &r.months {
        let o = outputs_of(r.view(), m);
        t.rows.push(vec![
            m.label.clone(),
            o.consultations.to_string(),
            o.exercises.to_string(),
            o.threats.to_string(),
        ]);
    }
    t
}

fn engaged_table(r: &proto::MetricsReport) -> Table {
    let mut t = Table::new("engaged", &["country or organisation", "newly engaged"]);
    for p in r.engaged.iter().chain(&r.organisations_engaged) {
        let new = if r.newly_engaged.contains(p) {
            "yes"
        } else {
            "no"
        };
        t.rows.push(vec![p.clone(), new.into()]);
    }
    t
}

/// The audit log, searched.
pub(super) async fn log(d: &Dash, p: &Params) -> anyhow::Result<Shown> {
    let get = |k: &str| {
        p.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let time = |k: &str, end: bool| -> anyhow::Result<u64> {
        Ok(match get(k) {
            Some(v) => crate::cli::audit::parse_time(&v, end)?.unix_ms(),
            None => 0,
        })
    };
    let event = match get("event") {
        Some(e) => crate::cli::audit::parse_event(&e)? as u32,
        None => 0,
    };
    let query = proto::AuditQuery {
        partner: get("partner").unwrap_or_default(),
        bulletin_id: get("bulletin").unwrap_or_default(),
        event,
        since_unix_ms: time("since", false)?,
        until_unix_ms: time("until", true)?,
        after: get("after")
            .map(|a| a.parse())
            .transpose()
            .context("after: not a number")?,
        limit: 100,
    };
    let page = d.ask(async |c| c.audit_query(query).await).await?;
    let records = page
        .records
        .iter()
        .map(|b| proto::AuditRecord::decode(b.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let table = records_table(&records);
    let more = page.next_after.map_or(String::new(), |n| {
        let mut q = p.clone();
        q.remove("csv");
        q.insert("after".into(), n.to_string());
        let mut q: Vec<_> = q.into_iter().collect();
        q.sort();
        format!(
            "<p><a href=\"/log?{}\">Next page →</a></p>",
            escape(&serde_urlencoded::to_string(&q).unwrap_or_default())
        )
    });
    let field = |k: &str, label: &str, hint: &str| {
        format!(
            "<label>{label} <input name=\"{k}\" value=\"{}\" placeholder=\"{hint}\"></label> ",
            escape(&get(k).unwrap_or_default())
        )
    };
    let body = format!(
        "<form method=\"get\" action=\"/log\">{}{}{}{}{}<button type=\"submit\">Search</button></form>\
         <p id=\"found\">{} record(s) on this page, of {} in the log.</p>{}{more}",
        field("partner", "Partner", "us-dod"),
        field("bulletin", "Bulletin id", "uuid"),
        field("event", "Event", "accepted, withdrawn…"),
        field("since", "Since", "2026-04-01"),
        field("until", "Until", "2027-03-31"),
        records.len(),
        page.log_size,
        table.to_html(&csv_href("/log", p, "records")),
    );
    Ok(shown(p, "Audit log".into(), &[&table], body))
}

fn records_table(records: &[proto::AuditRecord]) -> Table {
    let mut t = Table::new(
        "records",
        &[
            "seq",
            "time",
            "event",
            "partner",
            "bulletin",
            "origin",
            "TLP",
            "kind",
            "shared with",
            "withheld from (why)",
            "detail",
        ],
    );
    for r in records {
        let v = crate::cli::audit::record_json(r);
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        let decisions = v["decisions"].as_array().cloned().unwrap_or_default();
        let shared: Vec<&str> = decisions
            .iter()
            .filter(|d| d["shared"] == true)
            .filter_map(|d| d["partner"].as_str())
            .collect();
        let withheld: Vec<String> = decisions
            .iter()
            .filter(|d| d["shared"] == false)
            .map(|d| {
                format!(
                    "{} ({})",
                    d["partner"].as_str().unwrap_or(""),
                    d["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        let mut detail = s("reason");
        if let Some(seqs) = v["bulletin_seqs"].as_array() {
            let seqs: Vec<String> = seqs.iter().map(Value::to_string).collect();
            detail = format!("{detail} bulletins {}", seqs.join(" "))
                .trim()
                .to_owned();
        }
        t.rows.push(vec![
            r.seq.to_string(),
            Timestamp::from_unix_ms(r.time_unix_ms).fixed(),
            s("event"),
            s("partner"),
            s("bulletin_id"),
            s("origin"),
            s("tlp"),
            s("kind"),
            shared.join(", "),
            withheld.join(", "),
            detail,
        ]);
    }
    t
}

/// The latest signed checkpoint, and (with `?seq=N`) an inclusion proof checked here
/// against it.
pub(super) async fn checkpoint(d: &Dash, p: &Params) -> anyhow::Result<Shown> {
    let signed = d.ask(async |c| c.checkpoint().await).await?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        &<[u8; 32]>::try_from(signed.public_key.as_ref())
            .context("the node's key is not 32 bytes")?,
    )?;
    let seq = p.get("seq").map(|s| s.trim()).filter(|s| !s.is_empty());
    let proof = match seq {
        Some(seq) => {
            let seq: u64 = seq.parse().context("seq: not a number")?;
            Some(d.ask(async |c| c.inclusion_proof(seq, 0).await).await?)
        }
        None => None,
    };
    // The checkpoint the proof leads to, when there is one (asking grew the log).
    let note = proof.as_ref().map_or(&signed.note, |p| &p.checkpoint);
    let stated = crate::audit::checkpoint::stated(note)?;
    let public = crate::identity::PublicKey::new(key)
        .map(|k| k.to_string())
        .unwrap_or_default();
    let mut body = format!(
        "<p>The node signed its log at <strong id=\"size\">{}</strong> records with root <code id=\"root\">{}</code>, \
         with key <code>{}</code> (compare it with the key on the node's card).</p><pre><code>{}</code></pre>\
         <form method=\"get\" action=\"/checkpoint\"><label>Verify record <input name=\"seq\" value=\"{}\" size=\"8\"></label> \
         <button type=\"submit\">Verify</button></form>",
        stated.size,
        stated.root,
        escape(&public),
        escape(note),
        escape(seq.unwrap_or("")),
    );
    body += &witnessed_html(d).await;
    if let Some(proof) = proof {
        body += &match crate::cli::audit::proof_json(&d.node, &key, &proof) {
            Ok(v) => proof_html(&v),
            Err(e) => format!(
                "<p class=\"bad\" id=\"verdict\">Not verified: {}</p>",
                escape(&format!("{e:#}"))
            ),
        };
    }
    Ok(Shown::Page {
        title: "Signed checkpoint".into(),
        body,
    })
}

/// The newest checkpoint peer nodes cosigned, with each cosignature as it states itself
/// (an auditor checks them with the witnesses' keys: `renkei audit verify --witness`).
async fn witnessed_html(d: &Dash) -> String {
    let Ok(w) = d.ask(async |c| c.witnessed_checkpoint().await).await else {
        return "<p id=\"witnessed\">No checkpoint of this log carries a witness's cosignature yet.</p>".into();
    };
    let size = crate::audit::checkpoint::stated(&w.note).map_or(0, |v| v.size);
    let items: String = crate::audit::witness::cosignatures(&w.note)
        .iter()
        .map(|(name, time)| {
            let at = crate::timestamp::Timestamp::from_unix_ms(time.saturating_mul(1000));
            format!(
                "<li><code>{}</code> at {}</li>",
                escape(name),
                escape(&at.to_string())
            )
        })
        .collect();
    format!(
        "<h2>Witnessed</h2><p id=\"witnessed\">The newest checkpoint peer nodes cosigned covers <strong>{size}</strong> records; \
         check the cosignatures with <code>renkei audit verify --witness</code>:</p><ul id=\"cosignatures\">{items}</ul>"
    )
}

fn proof_html(v: &Value) -> String {
    let hashes: Vec<String> = v["proof"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|h| format!("<li><code>{h}</code></li>"))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "<p class=\"ok\" id=\"verdict\">Verified: record {} is in the log of {} records the node signed.</p>\
         <p>Leaf hash <code>{}</code>; the proof, from the leaf up to root <code>{}</code>:</p><ol>{}</ol>\
         <p>The record:</p><pre><code>{}</code></pre>",
        v["seq"],
        v["tree_size"],
        v["leaf_hash"].as_str().unwrap_or(""),
        v["root"].as_str().unwrap_or(""),
        hashes.join(""),
        escape(&serde_json::to_string_pretty(&v["record"]).unwrap_or_default()),
    )
}

/// The peer links as the log tells them: the last LINK_UP or LINK_DOWN of each peer.
pub(super) async fn links(d: &Dash, p: &Params) -> anyhow::Result<Shown> {
    let mut last: BTreeMap<String, proto::AuditRecord> = BTreeMap::new();
    let mut cut_short = false;
    for event in [AuditEvent::LinkUp, AuditEvent::LinkDown] {
        let mut after = None;
        // A bounded walk: 50 pages of links are years of a flapping link.
        for page_no in 0..50 {
            let q = proto::AuditQuery {
                event: event as u32,
                after,
                limit: 1000,
                ..Default::default()
            };
            let page = d.ask(async |c| c.audit_query(q).await).await?;
            for bytes in &page.records {
                let r = proto::AuditRecord::decode(bytes.as_ref())?;
                if last.get(&r.partner).is_none_or(|l| l.seq < r.seq) {
                    last.insert(r.partner.clone(), r);
                }
            }
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
            cut_short |= page_no == 49;
        }
    }
    let mut t = Table::new("links", &["peer", "state", "since", "why"]);
    for (peer, r) in &last {
        let up = r.event == AuditEvent::LinkUp as i32;
        t.rows.push(vec![
            peer.clone(),
            if up { "up" } else { "down" }.into(),
            Timestamp::from_unix_ms(r.time_unix_ms).fixed(),
            r.reason.clone(),
        ]);
    }
    let note = if cut_short {
        "<p class=\"bad\">The log holds more link records than this page reads (50,000 of each kind): the states shown may be old. `renkei status` on the node is current.</p>"
    } else {
        ""
    };
    let (refused, more) = peer_refusals(d).await?;
    let more = if more {
        "<p class=\"bad\">More refusals are on the log than this page reads (50,000).</p>"
    } else {
        ""
    };
    let body = format!(
        "<p>Each peer node's link as the node's log last recorded it.</p>{note}{}\
         <h2>Deliveries refused by peers</h2><p>Bulletins a peer node took but would not \
         share on (PEER_REFUSED), by peer and its reason: fix the origin, key or rule it \
         names on that side.</p>{more}{}",
        t.to_html(&csv_href("/links", p, "links")),
        refused.to_html(&csv_href("/links", p, "refusals"))
    );
    Ok(shown(p, "Peer links".into(), &[&t, &refused], body))
}

/// PEER_REFUSED records by peer and error: how many, when the last, and its words;
/// `true` if the log holds more than a bounded walk reads.
async fn peer_refusals(d: &Dash) -> anyhow::Result<(Table, bool)> {
    let mut by: BTreeMap<(String, i32), (u64, proto::AuditRecord)> = BTreeMap::new();
    let mut after = None;
    for _ in 0..50 {
        let q = proto::AuditQuery {
            event: AuditEvent::PeerRefused as u32,
            after,
            limit: 1000,
            ..Default::default()
        };
        let page = d.ask(async |c| c.audit_query(q).await).await?;
        for bytes in &page.records {
            let r = proto::AuditRecord::decode(bytes.as_ref())?;
            let entry = by
                .entry((r.partner.clone(), r.error))
                .or_insert((0, r.clone()));
            entry.0 += 1;
            entry.1 = r;
        }
        match page.next_after {
            Some(n) => after = Some(n),
            None => {
                return Ok((refusal_table(by), false));
            }
        }
    }
    Ok((refusal_table(by), true))
}

fn refusal_table(by: BTreeMap<(String, i32), (u64, proto::AuditRecord)>) -> Table {
    let mut t = Table::new(
        "refusals",
        &["peer", "error", "refused", "last", "why (the last)"],
    );
    for ((peer, error), (n, r)) in by {
        let error = proto::ErrorCode::try_from(error).map_or_else(
            |_| error.to_string(),
            |e| {
                e.as_str_name()
                    .trim_start_matches("ERROR_CODE_")
                    .to_ascii_lowercase()
            },
        );
        t.rows.push(vec![
            peer,
            error,
            n.to_string(),
            Timestamp::from_unix_ms(r.time_unix_ms).fixed(),
            r.reason,
        ]);
    }
    t
}
