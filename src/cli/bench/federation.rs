//! The federation phase: three nodes in a line (`bench-a` — `bench-b` — `bench-c`),
//! each `renkei serve` in its own process, peered over QUIC. Publishers are desks of
//! the first node, subscribers desks of the last: every bulletin crosses two links and
//! is verified, decided and committed at each of the three nodes.
//!
//! First at saturation (accepted/s at the first node, delivered/s at the last, each
//! node's CPU per bulletin), then at the latency phase's paced rate (first → last
//! node: publish to delivery, p50 and p99).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::clients::publish;
use super::node::NodeProcess;
use super::phases::{percentile, sign_all, timed_clients, TimedClients};
use super::{publisher_id, subscriber_id, Setup};
use crate::identity::PublicKey;

/// The paced rate of the latency run at most: three nodes and the clients share the
/// machine's cores, so the latency phase's default (10,000/s) is past saturation here
/// and would measure the queue.
const PACED_AT_MOST: f64 = 1_000.0;

/// The line's nodes, first to last.
pub(super) const LINE: [&str; 3] = ["bench-a", "bench-b", "bench-c"];

/// A free UDP port on 127.0.0.1 for a node its peers must be told of before it starts.
fn free_udp() -> anyhow::Result<SocketAddr> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(s.local_addr()?)
}

/// Node `i` of the line: its peers, the publishers (first) or subscribers (last), and
/// the publishers as origins beyond its peers.
fn config(setup: &Setup, i: usize, addrs: &[SocketAddr], admin: SocketAddr) -> String {
    let id = LINE[i];
    let mut t = format!(
        "[node]\nid = \"{id}\"\nlisten = \"{}\"\ndata_dir = \"federation-{id}\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/{id}/tls.crt\"\ntls_key = \"certs/{id}/tls.key\"\nsigning_key = \"certs/{id}/signing.key\"\n\
         [limits]\nmax_clock_skew_secs = 3600\n{}[admin]\nlisten = \"{admin}\"\n",
        addrs[i],
        super::LIFTED
    );
    let key = |p: &str| {
        setup
            .keys
            .get(p)
            .map(|k| PublicKey::of(k).to_string())
            .unwrap_or_default()
    };
    let neighbours: Vec<usize> = [i.checked_sub(1), Some(i + 1).filter(|n| *n < LINE.len())]
        .into_iter()
        .flatten()
        .collect();
    for n in &neighbours {
        t += &format!(
            "\n[[partner]]\nid = \"{}\"\nrole = \"relay\"\nclearance = \"green\"\naddress = \"{}\"\nkeys = [{{ public = \"{}\" }}]\n",
            LINE[*n],
            addrs[*n],
            key(LINE[*n])
        );
    }
    for p in (0..setup.args.publishers).map(publisher_id) {
        if i == 0 {
            t += &format!(
                "\n[[partner]]\nid = \"{p}\"\nrole = \"liaison\"\nclearance = \"green\"\nkinds = []\nkeys = [{{ public = \"{}\" }}]\n",
                key(&p)
            );
        } else {
            t += &format!(
                "\n[[origin]]\nid = \"{p}\"\nvia = [\"{}\"]\nkeys = [{{ public = \"{}\" }}]\n",
                LINE[i - 1],
                key(&p)
            );
        }
    }
    if i == LINE.len() - 1 {
        for s in (0..setup.args.subscribers).map(subscriber_id) {
            t += &format!(
                "\n[[partner]]\nid = \"{s}\"\nrole = \"liaison\"\nclearance = \"green\"\n"
            );
        }
    }
    t
}

/// Starts the line's three nodes, each in its own process.
pub(super) fn start_line(setup: &Setup) -> anyhow::Result<Vec<NodeProcess>> {
    let addrs: Vec<SocketAddr> = LINE
        .iter()
        .map(|_| free_udp())
        .collect::<anyhow::Result<_>>()?;
    let mut nodes = Vec::new();
    for (i, id) in LINE.iter().enumerate() {
        let admin = super::node::free_port()?;
        let path = setup.dir.join(format!("federation-{id}.toml"));
        let text = config(setup, i, &addrs, admin);
        crate::files::write(&path, text.as_bytes(), crate::files::Access::Public, true)?;
        nodes.push(NodeProcess::start(&path, admin)?);
    }
    Ok(nodes)
}

/// One run through the line: `count` bulletins, paced at `rate` per second if given.
/// Returns the time to publish, the time until the last delivery, the latencies (µs)
/// and each node's CPU seconds.
pub(super) async fn run_once(
    setup: &Arc<Setup>,
    nodes: &[NodeProcess],
    count: usize,
    rate: Option<f64>,
) -> anyhow::Result<(Duration, Duration, Vec<u64>, Vec<Option<f64>>)> {
    let batches = sign_all(setup, count)?;
    let last = LINE.len() - 1;
    let first_node = (nodes[0].addr, LINE[0]);
    let last_node = (nodes[last].addr, LINE[last]);
    let TimedClients {
        publishers,
        mut subscribers,
        sent,
        epoch,
    } = timed_clients(setup, count, first_node, last_node).await?;
    let cpu: Vec<Option<f64>> = nodes.iter().map(NodeProcess::cpu_seconds).collect();
    tokio::time::sleep_until(epoch.into()).await;
    let mut sending = tokio::task::JoinSet::new();
    for (client, batch) in publishers.into_iter().zip(batches) {
        let pace = (sent.clone(), epoch, rate.unwrap_or(f64::INFINITY));
        sending.spawn(publish(client, batch, Some(pace)));
    }
    while let Some(r) = sending.join_next().await {
        r.context("a publisher task")??;
    }
    let published = epoch.elapsed();
    let (mut done, mut latencies) = (epoch, Vec::new());
    while let Some(r) = subscribers.join_next().await {
        let (at, l) = r.context("a subscriber task")??;
        done = done.max(at);
        latencies.extend(l);
    }
    let used = nodes
        .iter()
        .zip(cpu)
        .map(|(n, before)| n.cpu_seconds().zip(before).map(|(b, a)| b - a))
        .collect();
    latencies.sort_unstable();
    Ok((published, done - epoch, latencies, used))
}

/// The federation phase's figures.
pub(super) async fn federation(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let a = &setup.args;
    eprintln!(
        "renkei bench: federation: three nodes in a line, {} bulletins at saturation…",
        a.bulletins
    );
    let nodes = start_line(&setup)?;
    let (published, delivered, _, cpu) = run_once(&setup, &nodes, a.bulletins, None).await?;
    let per_node: BTreeMap<&str, Value> = LINE
        .iter()
        .zip(&cpu)
        .map(|(id, c)| {
            (
                *id,
                json!(c.map(|c| (c * 1e6 / a.bulletins as f64).round())),
            )
        })
        .collect();
    let rate = a.rate.min(PACED_AT_MOST);
    let count = ((rate * a.latency_seconds) as usize).max(a.publishers);
    eprintln!("renkei bench: federation: {count} bulletins paced at {rate}/s…");
    let (_, _, latencies, _) = run_once(&setup, &nodes, count, Some(rate)).await?;
    for n in nodes {
        n.stop()?;
    }
    Ok(json!({
        "nodes": LINE,
        "bulletins": a.bulletins,
        "accepted_per_s_first_node": (a.bulletins as f64 / published.as_secs_f64()).round(),
        "delivered_per_s_last_node": (a.bulletins as f64 / delivered.as_secs_f64()).round(),
        "node_cpu_us_per_bulletin": per_node,
        "paced_per_s": rate,
        "paced_bulletins": count,
        "deliveries_measured": latencies.len(),
        "end_to_end_p50_ms": percentile(&latencies, 0.50),
        "end_to_end_p99_ms": percentile(&latencies, 0.99),
        "end_to_end_max_ms": latencies.last().map_or(0.0, |m| *m as f64 / 1000.0),
    }))
}
