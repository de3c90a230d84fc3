//! `renkei demo`: a local federation on embedded defaults. Three defence organisations
//! each run a node in its own process on 127.0.0.1 (Tokyo's `jp-mod`, NATO's cyber
//! defence centre `nato-ccdcoe` in Tallinn, Washington's `us-dod`), peered with each
//! other, with liaison desks behind each. A short story drawn from real cooperation
//! programmes crosses the federation; everything is real: QUIC + mutual TLS, Ed25519
//! signatures checked at every hop, the store on disk, and each node's audit log verified.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::node::operator::{self, NodeStatus, OperatorRequest};

mod nodes;
mod scenario;
mod setup;

use nodes::Nodes;
use scenario::{PATIENCE, WHILE_DOWN, WHILE_UP};
use setup::{Federation, DESKS, NODES};

/// The node that goes down and catches up.
const DOWN: &str = "nato-ccdcoe";

/// Node `id`'s status, through its operator socket.
async fn status(fed: &Federation, id: &str) -> anyhow::Result<NodeStatus> {
    let data = fed.dir.join(format!("{id}-data"));
    let reply = operator::request(&data, &OperatorRequest::Status, PATIENCE).await?;
    reply
        .status
        .with_context(|| format!("{id} gave no status: {}", reply.message))
}

/// Waits until every node reports every link up.
async fn linked(fed: &Federation) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for n in NODES {
        while !status(fed, n.id).await?.links.iter().all(|l| l.up) {
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not link with its peers within {PATIENCE:?}", n.id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn start_all(fed: &Federation, nodes: &mut Nodes) -> anyhow::Result<()> {
    println!(
        "\nThree nodes, each its own `renkei serve` process, all peered (QUIC, mutual TLS 1.3):"
    );
    for n in NODES {
        let addr = nodes.start(&fed.dir, n.id).await?;
        let desks: Vec<&str> = DESKS
            .iter()
            .filter(|d| d.node == n.id)
            .map(|d| d.id)
            .collect();
        println!(
            "  {} ({}) on {addr}: desks {}, audit office {}",
            n.id,
            n.city,
            desks.join(", "),
            n.auditor
        );
    }
    linked(fed).await?;
    let s = status(fed, "jp-mod").await?;
    for l in &s.links {
        println!(
            "  link jp-mod - {}: up, {}",
            l.peer,
            l.dialled_by.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Tallinn's node stops; Tokyo publishes; Tokyo's status shows the queue waiting; the
/// node comes back.
async fn outage(fed: &Federation, nodes: &mut Nodes) -> anyhow::Result<()> {
    println!("\n{DOWN} stops (SIGTERM) and Tokyo publishes meanwhile:");
    nodes.stop(DOWN).await?;
    scenario::publish(fed, &WHILE_DOWN).await?;
    let s = status(fed, "jp-mod").await?;
    if let Some(l) = s.links.iter().find(|l| l.peer == DOWN) {
        println!(
            "  jp-mod's status: link with {DOWN} {}, {} bulletin(s) queued towards it",
            if l.up { "up" } else { "DOWN" },
            l.to_peer.depth
        );
    }
    nodes.start(&fed.dir, DOWN).await?;
    println!("  {DOWN} starts again; the links come back and the queue drains");
    Ok(())
}

/// The RED note's decisions at its first relay, jp-mod, and its absence from the log
/// of the node it never reached.
async fn within_audience(fed: &Federation, id: &str) -> anyhow::Result<()> {
    let records = |auditor: &'static str, node: &'static str| async move {
        let client = scenario::connect(&fed.dir, auditor, node, fed).await?;
        let page = client
            .audit_query(crate::proto::AuditQuery {
                bulletin_id: id.to_string(),
                ..Default::default()
            })
            .await?;
        client.close().await;
        let records: Vec<crate::proto::AuditRecord> = page
            .records
            .into_iter()
            .map(prost::Message::decode)
            .collect::<Result<_, _>>()?;
        anyhow::Ok(records)
    };
    let accepted = crate::proto::AuditEvent::BulletinAccepted as i32;
    let at_jp = records("jp-audit", "jp-mod").await?;
    let r = at_jp
        .iter()
        .find(|r| r.event == accepted)
        .context("jp-mod's record of the RED note")?;
    println!(
        "\nThe RED note at its first relay, as jp-mod's log records it (received from {}):",
        r.partner
    );
    for d in &r.decisions {
        let what = if d.shared {
            "shared".to_string()
        } else {
            format!("withheld: {}", d.detail)
        };
        println!("  {:<12} {what}", d.partner);
    }
    let at_nato = records("nato-audit", "nato-ccdcoe").await?;
    println!(
        "  nato-ccdcoe's log holds {} record(s) of it: it never left its audience's way",
        at_nato.len()
    );
    Ok(())
}

/// Each node's audit office exports its log and verifies it against the node's key;
/// Tokyo's office reads the fiscal year's cooperation metrics.
async fn audit(fed: &Federation) -> anyhow::Result<()> {
    println!("\nEach audit office verifies its node's log (Merkle tree and signed checkpoints):");
    for n in NODES {
        let key = fed
            .keys
            .get(n.id)
            .context("the node's key")?
            .verifying_key();
        let s =
            super::audit::verify_node(&fed.dir.join(format!("{}.toml", n.auditor)), &key).await?;
        println!(
            "  {}: {} records, {} checkpoint(s), verified with {}'s key; root {}",
            n.id, s.records, s.checkpoints, n.id, s.root
        );
    }
    let client = scenario::connect(&fed.dir, "jp-audit", "jp-mod", fed).await?;
    let today = crate::metrics::day_of(crate::timestamp::Timestamp::now().unix_ms());
    let period = crate::metrics::Period::fiscal_year_of(today, 4)?;
    let report = client
        .metrics(crate::proto::MetricsRequest {
            since_day: period.since,
            until_day: period.until,
            view: crate::proto::MetricsView::Affiliation as i32,
            ..Default::default()
        })
        .await?;
    client.close().await;
    println!(
        "\nTokyo's cooperation metrics, {} (from jp-mod's log, as jp-audit reads them;\n`renkei metrics --config jp-audit.toml` shows every figure):",
        report.label
    );
    print!("{}", cooperation(&report));
    Ok(())
}

/// The logic model's outputs per country or organisation: the consultations,
/// exercises and threat exchanges (bulletins of every other kind) each took part in,
/// each bulletin once; the events themselves; then who was engaged both ways.
fn cooperation(report: &crate::proto::MetricsReport) -> String {
    let line = |who: &str, o: crate::metrics::logic::Outputs| {
        format!(
            "  {:<22} {:>13} {:>9} {:>16}\n",
            who, o.consultations, o.exercises, o.threats
        )
    };
    let mut out = format!(
        "  {:<22} {:>13} {:>9} {:>16}\n",
        "country/organisation", "consultations", "exercises", "threat exchanges"
    );
    for row in crate::metrics::logic::logic_model(report) {
        if row.now.total() > 0 {
            let who = match row.partner == report.domestic {
                true => format!("{} (domestic)", row.partner),
                false => row.partner,
            };
            out += &line(&who, row.now);
        }
    }
    let mut events = crate::metrics::logic::Outputs::default();
    for f in &report.events {
        events.add(report.view(), &f.name, f.value);
    }
    out += &line("events (each once)", events);
    let none = |l: &[String]| match l.is_empty() {
        true => "none".to_owned(),
        false => l.join(", "),
    };
    out += &format!(
        "  foreign countries engaged both ways: {} ({}); organisations: {}; newly: {}\n",
        report.engaged.len(),
        none(&report.engaged),
        none(&report.organisations_engaged),
        none(&report.newly_engaged)
    );
    out
}

async fn play(fed: &Federation, nodes: &mut Nodes) -> anyhow::Result<()> {
    start_all(fed, nodes).await?;
    println!("\nPublishing (each node applies its own policy at its hop):");
    let mut red = None;
    for step in WHILE_UP {
        let id = scenario::publish(fed, step).await?;
        if step.tlp == crate::bulletin::Tlp::Red {
            red = Some(id);
        }
    }
    scenario::forge(fed).await?;
    outage(fed, nodes).await?;
    println!("\nDeliveries (path: the nodes each bulletin crossed, each verifying it):");
    let expected = scenario::expected(WHILE_UP.iter().chain([&WHILE_DOWN]));
    scenario::deliver_all(fed, &expected).await?;
    if let Some(id) = red {
        within_audience(fed, &id).await?;
    }
    audit(fed).await?;
    nodes.stop_all().await
}

pub(super) async fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    let tmp;
    let (dir, kept) = match dir {
        Some(d) => (d.to_owned(), true),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            (tmp.path().to_owned(), false)
        }
    };
    let fed = setup::prepare(&dir)?;
    let mut nodes = Nodes::default();
    play(&fed, &mut nodes).await?;
    if kept {
        println!(
            "\nThe nodes stopped cleanly; their databases are in {}/*-data.",
            dir.display()
        );
        println!(
            "The worked setup of the README's tour is in {}: {}.",
            dir.display(),
            Federation::files().join(", ")
        );
    } else {
        println!("\nThe nodes stopped cleanly. (Their files were in a temporary directory, now removed: pass --dir to keep them.)");
    }
    Ok(())
}
