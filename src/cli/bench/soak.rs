//! The soak phase (`--phases soak`): the federation phase's line of three nodes at a
//! paced `--soak-rate` (2,000/s) for `--soak-minutes` (60), a minute at a time, each
//! minute with new subscriber connections at the last node (desks coming and going)
//! that must each receive every bulletin of the minute. After each minute every
//! node's resident memory, open files and database size are sampled.
//!
//! Reported: the samples, each node's memory growth after the first minute (warm-up)
//! and its database's growth beside the bytes of bulletins it stored meanwhile. Not in
//! the default phases: an hour is a soak, not a benchmark.

use std::sync::Arc;

use prost::Message as _;
use serde_json::{json, Value};

use super::federation::{run_once, start_line, LINE};
use super::node::NodeProcess;
use super::phases::percentile;
use super::Setup;

/// One minute's sample of one node: its database split into renkei's value files
/// (bulletins and audit records, which only grow with what is stored) and the rest,
/// the key-value engine's files (indexes, and what its compactions have yet to drop).
fn sample(setup: &Setup, node: &NodeProcess, id: &str) -> Value {
    let dir = setup.dir.join(format!("federation-{id}"));
    let (all, values) = (dir_bytes(&dir), dir_bytes(&dir.join("values")));
    json!({
        "node": id,
        "rss_bytes": node.rss(),
        "open_files": node.open_files(),
        "database_bytes": all,
        "value_file_bytes": values,
        "engine_bytes": all.saturating_sub(values),
    })
}

/// Bytes of the files under `dir`, recursively (0 for what cannot be read).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of one bulletin as stored: its signed encoding.
fn bulletin_bytes(setup: &Setup) -> anyhow::Result<u64> {
    let id = super::publisher_id(0);
    let b = super::sign(&setup.keys[&id], &id, 0, &setup.body)?;
    Ok(b.encoded_len() as u64)
}

/// The soak phase's figures.
pub(super) async fn soak(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    let per_minute = ((a.soak_rate * 60.0) as usize).max(a.publishers);
    let nodes = start_line(&setup)?;
    let mut minutes = Vec::new();
    for minute in 1..=a.soak_minutes {
        eprintln!(
            "renkei bench: soak: minute {minute} of {}, {per_minute} bulletins at {}/s…",
            a.soak_minutes, a.soak_rate
        );
        let (_, _, latencies, _) = run_once(&setup, &nodes, per_minute, Some(a.soak_rate)).await?;
        let samples: Vec<Value> = nodes
            .iter()
            .zip(LINE)
            .map(|(n, id)| sample(&setup, n, id))
            .collect();
        minutes.push(json!({
            "minute": minute,
            "end_to_end_p50_ms": percentile(&latencies, 0.50),
            "end_to_end_p99_ms": percentile(&latencies, 0.99),
            "nodes": samples,
        }));
    }
    for n in nodes {
        n.stop()?;
    }
    let stored = bulletin_bytes(&setup)? * per_minute as u64;
    Ok(json!({
        "rate": a.soak_rate,
        "minutes": a.soak_minutes,
        "bulletins_per_minute": per_minute,
        "bulletin_bytes_per_minute": stored,
        "subscribers": a.subscribers,
        "samples": minutes,
        "growth_after_warm_up": growth(&minutes, stored),
    }))
}

/// Per node, from the end of the first minute to the end of the last: memory and
/// open files then and now, and database growth beside the bulletin bytes stored.
fn growth(minutes: &[Value], stored_per_minute: u64) -> Value {
    let (Some(first), Some(last)) = (minutes.first(), minutes.last()) else {
        return json!({});
    };
    let later = minutes.len().saturating_sub(1) as u64;
    let per_node = LINE.iter().enumerate().map(|(i, id)| {
        let at = |m: &Value, key: &str| m["nodes"][i][key].as_u64().unwrap_or(0);
        let then_now = |key: &str| [at(first, key), at(last, key)];
        let [db_then, db_now] = then_now("database_bytes");
        let [values_then, values_now] = then_now("value_file_bytes");
        (
            id.to_string(),
            json!({
                "rss_bytes": then_now("rss_bytes"),
                "open_files": then_now("open_files"),
                "database_growth_bytes": db_now.saturating_sub(db_then),
                "value_file_growth_bytes": values_now.saturating_sub(values_then),
                "bulletin_bytes_stored": stored_per_minute * later,
            }),
        )
    });
    Value::Object(per_node.collect())
}
