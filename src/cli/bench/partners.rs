//! Many partners (`--phases partners --partners N`): N partners connected at once,
//! each publishing at its share of `--rate` and receiving everyone else's bulletins.
//! Run twice on fresh nodes: with every partner reading, then with one subscriber
//! stalled (subscribed, never reading nor acking), so the figures show whether one
//! stalled partner delays the others (head-of-line blocking) and what the node's
//! memory does meanwhile. The phase fails unless every reading partner receives every
//! bulletin the others published.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use prost::Message as _;
use serde_json::{json, Value};

use super::phases::percentile;
use super::{connect, sign, Setup, PATIENCE};
use crate::client::Client;
use crate::identity::PublicKey;
use crate::proto::PublishStatus;

/// The id of many-partners partner `i`.
pub(super) fn partner_id(i: usize) -> String {
    format!("p-{i:03}")
}

/// The `[[partner]]` tables: every partner publishes GREEN and receives all.
fn partners_toml(setup: &Setup) -> String {
    let mut text = String::new();
    for i in 0..setup.args.partners {
        let id = partner_id(i);
        let public = PublicKey::of(&setup.keys[&id]);
        text.push_str(&format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"green\"\nkeys = [{{ public = \"{public}\" }}]\n"
        ));
    }
    text
}

/// Both runs, side by side.
pub(super) async fn partners(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    if a.partners < 3 {
        bail!("--partners must be at least 3");
    }
    let reading = run(&setup, false).await?;
    let stalled = run(&setup, true).await?;
    Ok(json!({
        "partners": a.partners,
        "offered_per_s": a.rate.min(MAX_RATE),
        "all_reading": reading,
        "one_stalled": stalled,
    }))
}

/// Bulletins per second offered in all, at most: every one fans out to N - 1.
const MAX_RATE: f64 = 200.0;

/// One run on a fresh node; with `stall`, partner 0 subscribes and never reads.
async fn run(setup: &Arc<Setup>, stall: bool) -> anyhow::Result<Value> {
    let a = &setup.args;
    let n = a.partners;
    let rate = a.rate.min(MAX_RATE);
    let each = ((rate * a.latency_seconds / n as f64).ceil() as usize).max(1);
    let name = if stall {
        "partners-stalled"
    } else {
        "partners"
    };
    let node = setup.start_node_with(name, &partners_toml(setup))?;
    eprintln!("renkei bench: partners: connecting {n} partners ({name})…");
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(Arc::new(
            connect(&setup.dir, &partner_id(i), node.addr).await?,
        ));
    }
    let cpu_before = node.cpu_seconds();
    let mut subscribers = tokio::task::JoinSet::new();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let mut held = Some(held);
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        if stall && i == 0 {
            subscribers.spawn(stalled(client, held.take()));
            continue;
        }
        subscribers.spawn(receive(client, (n - 1) * each));
    }
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let (client, setup) = (client.clone(), setup.clone());
        publishers.spawn(async move { publish(&setup, client, i, each, rate / n as f64).await });
    }
    while let Some(r) = publishers.join_next().await {
        r.context("a publisher task")??;
    }
    let mut latencies = Vec::new();
    let _ = release.send(());
    while let Some(r) = subscribers.join_next().await {
        latencies.extend(r.context("a subscriber task")??);
    }
    let wall = started.elapsed().as_secs_f64();
    let node_cpu = node.cpu_seconds().zip(cpu_before).map(|(b, a)| b - a);
    let peak_rss = node.peak_rss();
    node.stop()?;
    latencies.sort_unstable();
    Ok(json!({
        "published": n * each,
        "deliveries_measured": latencies.len(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0),
        "node_peak_rss_bytes": peak_rss,
        "node_cores_busy": node_cpu.map(|c| c / wall),
        "seconds": wall,
    }))
}

/// Partner `i` publishes `count` bulletins at `rate` per second; all must be accepted.
async fn publish(
    setup: &Setup,
    client: Arc<Client>,
    i: usize,
    count: usize,
    rate: f64,
) -> anyhow::Result<()> {
    let id = partner_id(i);
    let key = &setup.keys[&id];
    let (mut sink, mut results) = client.publisher().await?.split();
    // Partners start spread over one interval, not all at once.
    let epoch =
        Instant::now() + Duration::from_secs_f64(i as f64 / setup.args.partners as f64 / rate);
    for n in 0..count {
        let due = epoch + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        sink.send(n as u64, sign(key, &id, n, &setup.body)?).await?;
    }
    sink.finish();
    for _ in 0..count {
        let r = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .context("a publisher waited too long")??
            .context("the node ended a publish stream early")?;
        if r.status != PublishStatus::Accepted as i32 {
            bail!("{id}'s bulletin was not accepted: {}", r.message);
        }
    }
    Ok(())
}

/// Receives `expected` deliveries, acking each batch; the latencies (µs, from the
/// bulletin's creation, in whole milliseconds, to its arrival).
async fn receive(client: Arc<Client>, expected: usize) -> anyhow::Result<Vec<u64>> {
    let mut sub = client.subscribe(0).await?;
    let mut latencies = Vec::with_capacity(expected);
    // Counted by id: a bulletin delivered twice must not stand in for one missed.
    let mut ids = std::collections::HashSet::with_capacity(expected);
    while ids.len() < expected {
        let first = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .with_context(|| {
                format!(
                    "a partner waited too long, with {} of {expected}",
                    latencies.len()
                )
            })??
            .context("the node ended a subscription")?;
        let mut batch = vec![first];
        while let Some(d) = sub.buffered()? {
            batch.push(d);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut seqs = Vec::with_capacity(batch.len());
        for d in batch {
            let signed = d.bulletin.context("a delivery without a bulletin")?;
            let b = crate::proto::Bulletin::decode(signed.bulletin)?;
            if ids.insert(b.id) {
                latencies.push(now_ms.saturating_sub(b.created_unix_ms) * 1000);
            }
            seqs.push(d.seq);
        }
        sub.ack(seqs).await?;
    }
    sub.close().await?;
    Ok(latencies)
}

/// Subscribes and never reads or acks, until `release`: the node's window for this
/// partner fills and stays full.
async fn stalled(
    client: Arc<Client>,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Vec<u64>> {
    let sub = client.subscribe(0).await?;
    if let Some(release) = release {
        let _ = release.await;
    }
    drop(sub);
    Ok(Vec::new())
}
