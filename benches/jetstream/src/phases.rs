//! The two phases, each against a fresh nats-server: saturation (publishers as fast as
//! the server acks them, four durable consumers acking every message) and paced latency.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::clients::{self, Consumed, Pace};
use crate::report::{Latency, Saturation};
use crate::server::{self, NatsServer};

/// The shape of the workload, as the flags set it.
#[derive(Clone, Debug)]
pub struct Workload {
    pub publishers: usize,
    pub in_flight: usize,
    pub consumers: usize,
    pub messages: u64,
    pub body_bytes: usize,
    pub batch: usize,
    pub seconds: f64,
}

impl Workload {
    /// Publisher `p`'s share of the acks in flight (at least one).
    fn window(&self, p: usize) -> usize {
        let extra = usize::from(p < self.in_flight % self.publishers);
        (self.in_flight / self.publishers + extra).max(1)
    }

    /// The numbers of the messages publisher `p` sends, of `count`: dealt round-robin.
    fn numbers(&self, p: usize, count: u64) -> Vec<u64> {
        (p as u64..count).step_by(self.publishers).collect()
    }
}

/// The clients of one run, connected and waiting.
struct Run {
    server: NatsServer,
    pullers: Vec<clients::Puller>,
    publishers: Vec<async_nats::jetstream::Context>,
    consumers: JoinSet<anyhow::Result<Consumed>>,
}

/// Starts a server, makes the stream and the durable consumers and connects the
/// publishers.
async fn prepare(program: &Path, w: &Workload) -> anyhow::Result<Run> {
    let server = NatsServer::start(program)?;
    let admin = clients::connect(server.addr, 1).await?;
    clients::create_stream(&admin).await?;
    let mut pullers = Vec::new();
    for i in 0..w.consumers {
        pullers.push(clients::create_consumer(server.addr, &format!("consumer-{i}")).await?);
    }
    let mut publishers = Vec::new();
    for p in 0..w.publishers {
        publishers.push(clients::connect(server.addr, w.window(p)).await?);
    }
    Ok(Run {
        server,
        pullers,
        publishers,
        consumers: JoinSet::new(),
    })
}

/// Sets the consumers of `run` pulling `count` messages each, measuring latency from
/// `epoch` if given.
fn spawn_consumers(run: &mut Run, w: &Workload, count: u64, epoch: Option<Instant>) {
    for puller in std::mem::take(&mut run.pullers) {
        run.consumers
            .spawn(clients::consume(puller, count, w.batch, epoch));
    }
}

/// Spawns the publishers of `run` on `count` messages, paced or not; returns them.
fn spawn_publishers(
    run: &mut Run,
    w: &Workload,
    count: u64,
    pace: Option<Pace>,
) -> JoinSet<anyhow::Result<u64>> {
    let body = Bytes::from(vec![b'x'; w.body_bytes]);
    let mut publishers = JoinSet::new();
    for (p, js) in std::mem::take(&mut run.publishers).into_iter().enumerate() {
        let numbers = w.numbers(p, count);
        let subject = format!("bench.publisher-{p}");
        publishers.spawn(clients::publish(
            js,
            subject,
            numbers,
            w.window(p),
            body.clone(),
            pace,
        ));
    }
    publishers
}

/// The messages every publisher had accepted, once all are done.
async fn accepted(mut publishers: JoinSet<anyhow::Result<u64>>) -> anyhow::Result<u64> {
    let mut accepted = 0;
    while let Some(r) = publishers.join_next().await {
        accepted += r.context("a publisher task")??;
    }
    Ok(accepted)
}

/// When the last consumer acked its last message (no earlier than `start`), every
/// latency measured, and the redeliveries seen.
async fn consumed(run: &mut Run, start: Instant) -> anyhow::Result<(Instant, Vec<u64>, u64)> {
    let (mut last, mut all, mut redeliveries) = (start, Vec::new(), 0);
    while let Some(r) = run.consumers.join_next().await {
        let c = r.context("a consumer task")??;
        last = last.max(c.finished);
        all.extend(c.latencies_us);
        redeliveries += c.redeliveries;
    }
    Ok((last, all, redeliveries))
}

/// Publishers push `messages` as fast as the server acks them, within their windows;
/// the consumers receive and ack every one.
pub async fn saturation(program: &Path, w: &Workload) -> anyhow::Result<Saturation> {
    let mut run = prepare(program, w).await?;
    spawn_consumers(&mut run, w, w.messages, None);
    eprintln!(
        "jetstream bench: saturation: publishing {} messages…",
        w.messages
    );
    let cpu_before = (run.server.cpu_seconds(), own_cpu_seconds());
    let start = Instant::now();
    let accepted = accepted(spawn_publishers(&mut run, w, w.messages, None)).await?;
    let publish_time = start.elapsed().as_secs_f64();
    let (last, _, redeliveries) = consumed(&mut run, start).await?;
    let deliver_time = (last - start).as_secs_f64();
    let wall = start.elapsed().as_secs_f64();
    let server_cpu = run
        .server
        .cpu_seconds()
        .zip(cpu_before.0)
        .map(|(b, a)| b - a);
    let own_cpu = own_cpu_seconds().zip(cpu_before.1).map(|(b, a)| b - a);
    let acked = accepted * w.consumers as u64;
    Ok(Saturation {
        accepted,
        accepted_per_s: (accepted as f64 / publish_time).round(),
        acked_deliveries: acked,
        acked_deliveries_per_s: (acked as f64 / deliver_time).round(),
        redeliveries,
        publish_seconds: publish_time,
        deliver_seconds: deliver_time,
        server_cpu_us_per_accepted: server_cpu.map(|c| c * 1e6 / accepted.max(1) as f64),
        server_cores_busy: server_cpu.map(|c| c / wall),
        clients_cores_busy: own_cpu.map(|c| c / wall),
        server_peak_rss_bytes: run.server.peak_rss(),
        store_bytes: run.server.store_bytes(),
    })
}

/// Publishers together offer `rate` messages/s for the workload's seconds, each message
/// due on a schedule from a shared start; every delivery's send → receipt time is
/// measured at each consumer.
pub async fn latency(program: &Path, w: &Workload, rate: f64) -> anyhow::Result<Latency> {
    let count = ((rate * w.seconds).round() as u64).max(w.publishers as u64);
    let mut run = prepare(program, w).await?;
    // The start lies ahead, so every consumer is pulling before the first message.
    let epoch = Instant::now() + Duration::from_millis(200);
    spawn_consumers(&mut run, w, count, Some(epoch));
    eprintln!(
        "jetstream bench: latency: offering {rate} messages/s for {} s…",
        w.seconds
    );
    let pace = Pace { epoch, rate };
    let accepted = accepted(spawn_publishers(&mut run, w, count, Some(pace))).await?;
    let (_, mut all, redeliveries) = consumed(&mut run, epoch).await?;
    all.sort_unstable();
    Ok(Latency {
        offered_per_s: rate,
        seconds: w.seconds,
        accepted,
        deliveries_measured: all.len() as u64,
        redeliveries,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
        max_ms: all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        server_peak_rss_bytes: run.server.peak_rss(),
    })
}

/// The `p` quantile of `sorted` (µs), in ms: the smallest value at or above it.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// CPU seconds this process (the benchmark's clients) has used.
fn own_cpu_seconds() -> Option<f64> {
    server::cpu_seconds("/proc/self/stat")
}
