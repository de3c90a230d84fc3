//! The benchmark's phases, each against a fresh node: saturation, paced latency, an
//! offline partner's backlog and reading a long audit log. The clients they run are
//! `clients`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::clients::{batches_each, publish, subscribe, Receiver};
use super::{connect, connect_to, publisher_id, sign, subscriber_id, Setup};
use crate::client::Client;
use crate::proto;
use crate::timestamp::Timestamp;

/// Signs `count` bulletins numbered from 0, dealt round-robin to the publishers.
pub(super) fn sign_all(
    setup: &Setup,
    count: usize,
) -> anyhow::Result<Vec<Vec<(usize, proto::SignedBulletin)>>> {
    sign_all_with(setup, count, |key, id, n| sign(key, id, n, &setup.body))
}

/// [`sign_all`] with `make` signing each: (the publisher's key, its id, the number).
pub(super) fn sign_all_with(
    setup: &Setup,
    count: usize,
    make: impl Fn(&ed25519_dalek::SigningKey, &str, usize) -> anyhow::Result<proto::SignedBulletin>,
) -> anyhow::Result<Vec<Vec<(usize, proto::SignedBulletin)>>> {
    let mut batches = vec![Vec::new(); setup.args.publishers];
    for n in 0..count {
        let p = n % setup.args.publishers;
        let id = publisher_id(p);
        batches[p].push((n, make(&setup.keys[&id], &id, n)?));
    }
    Ok(batches)
}

/// P publishers push every bulletin as fast as the node takes them; S subscribers
/// receive, verify and ack.
pub(super) async fn saturation(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    eprintln!(
        "renkei bench: saturation: signing {} bulletins…",
        a.bulletins
    );
    let batches = sign_all(&setup, a.bulletins)?;
    let node = setup.start_node("saturation")?;
    let receiver = Receiver {
        verify: !a.skip_verify,
        sent: None,
        batches: batches_each(a.subscribers),
    };
    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..a.subscribers {
        let client = connect(&setup.dir, &subscriber_id(i), node.addr).await?;
        subscribers.spawn(subscribe(
            client,
            setup.clone(),
            a.bulletins,
            receiver.clone(),
        ));
    }
    let mut clients = Vec::new();
    for i in 0..a.publishers {
        clients.push(connect(&setup.dir, &publisher_id(i), node.addr).await?);
    }
    eprintln!("renkei bench: saturation: publishing…");
    let cpu_before = (node.cpu_seconds(), own_cpu_seconds());
    let start = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for (client, batch) in clients.into_iter().zip(batches) {
        publishers.spawn(publish(client, batch, None));
    }
    let mut accepted = 0;
    while let Some(r) = publishers.join_next().await {
        accepted += r.context("a publisher task")??.accepted;
    }
    let publish_time = start.elapsed();
    let mut last = start;
    while let Some(r) = subscribers.join_next().await {
        last = last.max(r.context("a subscriber task")??.0);
    }
    let deliver_time = last - start;
    let wall = start.elapsed().as_secs_f64();
    let node_cpu = node.cpu_seconds().zip(cpu_before.0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_seconds().zip(cpu_before.1).map(|(b, a)| b - a);
    let peak_rss = node.peak_rss();
    let commits = commit_figures(&node).await;
    node.stop()?;
    let acked = accepted * a.subscribers;
    Ok(json!({
        "commits": commits,
        "accepted": accepted,
        "accepted_per_s": (accepted as f64 / publish_time.as_secs_f64()).round(),
        "acked_deliveries": acked,
        "acked_deliveries_per_s": (acked as f64 / deliver_time.as_secs_f64()).round(),
        "publish_seconds": publish_time.as_secs_f64(),
        "deliver_seconds": deliver_time.as_secs_f64(),
        "node_peak_rss_bytes": peak_rss,
        "node_cpu_us_per_accepted": node_cpu.map(|c| (c * 1e6 / accepted.max(1) as f64).round()),
        "node_cores_busy": node_cpu.map(|c| c / wall),
        "clients_cores_busy": own_cpu.map(|c| c / wall),
        "database_bytes": super::dir_size(&setup.dir.join("saturation")),
    }))
}

/// CPU seconds this process (the benchmark's clients) has used.
fn own_cpu_seconds() -> Option<f64> {
    super::node::cpu_seconds("/proc/self/stat")
}

pub(super) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// The clients of a timed run: publishers connected to one node, subscribers already
/// receiving `count` deliveries from another (or the same), and the send times they
/// share, counted from `epoch` (200 ms ahead, so everyone is connected first).
pub(super) struct TimedClients {
    pub publishers: Vec<Client>,
    pub subscribers: tokio::task::JoinSet<anyhow::Result<(Instant, Vec<u64>)>>,
    pub sent: Arc<Vec<AtomicU64>>,
    pub epoch: Instant,
}

/// Connects the publishers to `publish_at` and the subscribers to `receive_at` (each an
/// address and the node's id) for a run of `count` bulletins.
pub(super) async fn timed_clients(
    setup: &Arc<Setup>,
    count: usize,
    publish_at: (std::net::SocketAddr, &str),
    receive_at: (std::net::SocketAddr, &str),
) -> anyhow::Result<TimedClients> {
    let a = &setup.args;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let mut publishers = Vec::new();
    for i in 0..a.publishers {
        let (addr, node) = publish_at;
        publishers.push(connect_to(&setup.dir, &publisher_id(i), addr, node).await?);
    }
    let epoch = Instant::now() + Duration::from_millis(200);
    let receiver = Receiver {
        verify: !a.skip_verify,
        sent: Some((sent.clone(), epoch)),
        batches: batches_each(a.subscribers),
    };
    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..a.subscribers {
        let (addr, node) = receive_at;
        let client = connect_to(&setup.dir, &subscriber_id(i), addr, node).await?;
        subscribers.spawn(subscribe(client, setup.clone(), count, receiver.clone()));
    }
    Ok(TimedClients {
        publishers,
        subscribers,
        sent,
        epoch,
    })
}

/// Publishers send at the offered rate in total; every delivery's publish → delivery
/// time is measured at each subscriber, and every publish's time to its ACCEPTED at its
/// publisher (what the node's side of the path costs, before any delivery).
pub(super) async fn latency(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    let count = ((a.rate * a.latency_seconds) as usize).max(a.publishers);
    eprintln!("renkei bench: latency: signing {count} bulletins…");
    let batches = sign_all(&setup, count)?;
    let node = setup.start_node("latency")?;
    let at = (node.addr, super::HUB);
    let TimedClients {
        publishers: clients,
        mut subscribers,
        sent,
        epoch,
    } = timed_clients(&setup, count, at, at).await?;
    eprintln!(
        "renkei bench: latency: offering {} bulletins/s for {} s…",
        a.rate, a.latency_seconds
    );
    let cpu_before = node.cpu_seconds();
    let mut publishers = tokio::task::JoinSet::new();
    for (client, batch) in clients.into_iter().zip(batches) {
        publishers.spawn(publish(client, batch, Some((sent.clone(), epoch, a.rate))));
    }
    let mut answered = Vec::new();
    while let Some(r) = publishers.join_next().await {
        answered.extend(r.context("a publisher task")??.answered_us);
    }
    let mut all = Vec::new();
    while let Some(r) = subscribers.join_next().await {
        all.extend(r.context("a subscriber task")??.1);
    }
    let node_cpu = node.cpu_seconds().zip(cpu_before).map(|(b, a)| b - a);
    answered.sort_unstable();
    let commits = commit_figures(&node).await;
    node.stop()?;
    all.sort_unstable();
    Ok(json!({
        "commits": commits,
        "offered_per_s": a.rate,
        "bulletins": count,
        "deliveries_measured": all.len(),
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "p999_ms": percentile(&all, 0.999),
        "max_ms": all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        "accepted_p50_ms": percentile(&answered, 0.50),
        "accepted_p99_ms": percentile(&answered, 0.99),
        "node_cpu_us_per_bulletin": node_cpu.map(|c| (c * 1e6 / count.max(1) as f64).round()),
    }))
}

/// One partner is offline while the backlog is published (signed on the fly, so the
/// benchmark's own memory stays small); then it reconnects and drains it.
pub(super) async fn backlog(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    let node = setup.start_node("backlog")?;
    eprintln!(
        "renkei bench: backlog: queueing {} bulletins for an offline partner…",
        a.backlog
    );
    let chunk = 20_000;
    let mut n = 0;
    let fill = Instant::now();
    while n < a.backlog {
        let count = chunk.min(a.backlog - n);
        let mut batches = vec![Vec::new(); a.publishers];
        for k in n..n + count {
            let p = k % a.publishers;
            let id = publisher_id(p);
            batches[p].push((k, sign(&setup.keys[&id], &id, k, &setup.body)?));
        }
        let mut publishers = tokio::task::JoinSet::new();
        for (i, batch) in batches.into_iter().enumerate() {
            let client = connect(&setup.dir, &publisher_id(i), node.addr).await?;
            publishers.spawn(publish(client, batch, None));
        }
        while let Some(r) = publishers.join_next().await {
            r.context("a publisher task")??;
        }
        n += count;
    }
    let fill_time = fill.elapsed();
    let rss_filled = node.peak_rss();
    eprintln!("renkei bench: backlog: draining…");
    let receiver = Receiver {
        verify: !a.skip_verify,
        sent: None,
        batches: batches_each(1),
    };
    let client = connect(&setup.dir, &subscriber_id(0), node.addr).await?;
    let start = Instant::now();
    let (last, _) = subscribe(client, setup.clone(), a.backlog, receiver).await?;
    let drain = last - start;
    let rss_drained = node.peak_rss();
    node.stop()?;
    Ok(json!({
        "bulletins": a.backlog,
        "fill_seconds_including_signing": fill_time.as_secs_f64(),
        "node_peak_rss_bytes_after_fill": rss_filled,
        "node_peak_rss_bytes_after_drain": rss_drained,
        "drain_per_s": (a.backlog as f64 / drain.as_secs_f64()).round(),
        "database_bytes": super::dir_size(&setup.dir.join("backlog")),
    }))
}

/// The audit log at scale, through the store directly: appending `--audit-records`
/// records, a page of 100 by partner, verifying the whole export, and reopening.
pub(super) async fn audit(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let records = setup.args.audit_records;
    let dir = setup.dir.join("audit");
    tokio::task::spawn_blocking(move || audit_blocking(&dir, records))
        .await
        .context("the audit phase")?
}

/// Appends `records` delivery records, round-robin over `partners`, a thousand per
/// group commit.
fn append_deliveries(
    store: &crate::store::Store,
    partners: &[crate::identity::PartnerId],
    records: u64,
) -> anyhow::Result<()> {
    use crate::audit::record::Event;
    use crate::store::Entry;
    const BATCH: u64 = 1_000;
    let mut n = 0;
    while n < records {
        let count = BATCH.min(records - n);
        let entries = (n..n + count)
            .map(|i| {
                let p = &partners[(i % partners.len() as u64) as usize];
                Entry::Event(Some(Event::delivered(p, vec![i])), None)
            })
            .collect();
        store.commit(entries, Timestamp::now())?;
        n += count;
    }
    Ok(())
}

/// A page of 100 records concerning `partner`, the first and one deep in the log, five
/// times each: the median time (ms) and the most records a page read.
fn page_timing(
    log: &crate::store::AuditReader<'_>,
    partner: &crate::identity::PartnerId,
    records: u64,
) -> anyhow::Result<(f64, u64)> {
    let mut timings = Vec::new();
    let mut read = 0;
    for after in [None, Some(records / 2)] {
        for _ in 0..5 {
            let q = crate::audit::Query {
                partner: Some(partner.clone()),
                after,
                limit: 100,
                ..crate::audit::Query::default()
            };
            let t = Instant::now();
            let page = log.query(&q)?;
            timings.push(t.elapsed());
            read = read.max(page.records_read);
        }
    }
    timings.sort();
    Ok((timings[timings.len() / 2].as_secs_f64() * 1000.0, read))
}

/// The whole log verified as `renkei audit verify` does, the records read from the
/// store one at a time: records per second.
fn verify_offline(
    log: &crate::store::AuditReader<'_>,
    key: &ed25519_dalek::SigningKey,
    records: u64,
) -> anyhow::Result<f64> {
    use crate::audit::export::{self, VerifyError};
    let header = proto::ExportHeader {
        format: export::FORMAT.into(),
        node_id: "bench-hub".into(),
        origin: "renkei/bench-hub/audit".into(),
        public_key: bytes::Bytes::copy_from_slice(key.verifying_key().as_bytes()),
        records,
        exported_unix_ms: 0,
    };
    let checkpoints: Vec<String> = log
        .checkpoints()
        .map(|c| c.map(|(_, n)| n))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let stored = log
        .records_from(0)
        .map(|r| r.map_err(|e| VerifyError::Unreadable(e.to_string())));
    export::verify_records(&header, stored, &checkpoints, &key.verifying_key(), &[])?;
    Ok(records as f64 / t.elapsed().as_secs_f64())
}

fn audit_blocking(dir: &std::path::Path, records: u64) -> anyhow::Result<Value> {
    use crate::audit::checkpoint::CheckpointSigner;
    use crate::identity::PartnerId;
    use crate::store::Store;

    const CACHE: u64 = 64 << 20;
    const PARTNERS: u64 = 10;
    eprintln!("renkei bench: audit: appending {records} records…");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let signer = CheckpointSigner::new("renkei/bench-hub/audit", key.clone())?;
    let partners: Vec<PartnerId> = (0..PARTNERS)
        .map(|i| format!("partner-{i}").parse())
        .collect::<Result<_, _>>()?;
    let store = Store::open(dir, CACHE)?;
    let start = Instant::now();
    append_deliveries(&store, &partners, records)?;
    store.sign_checkpoint(&signer)?;
    let append = start.elapsed();
    let log = store.audit();
    let (page_ms, read) = page_timing(&log, &partners[3], records)?;

    let verify_per_s = verify_offline(&log, &key, records)?.round();

    // Reopening: what a restarting node does before it accepts connections.
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir, CACHE)?;
    store
        .audit()
        .check_checkpoint("renkei/bench-hub/audit", &key.verifying_key())?;
    let reopen = t.elapsed();
    Ok(json!({
        "records": records,
        "append_records_per_s": (records as f64 / append.as_secs_f64()).round(),
        "query_page_100_by_partner_ms": page_ms,
        "query_records_read": read,
        "verify_records_per_s": verify_per_s,
        "reopen_ms": reopen.as_secs_f64() * 1000.0,
        "database_bytes": super::dir_size(dir),
    }))
}

/// The node's group commits in a phase, from its `/metrics` histogram (bucket upper
/// bounds, so an estimate from above).
async fn commit_figures(node: &super::node::NodeProcess) -> Value {
    match node.commit_latency().await {
        Some((count, p50, p99, slow)) => json!({
            "count": count,
            "p50_ms_at_most": p50,
            "p99_ms_at_most": p99,
            "over_25_ms": slow,
        }),
        None => Value::Null,
    }
}
