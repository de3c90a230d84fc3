//! The figures, printed as a table shaped like `renkei bench`'s and written as JSON.

use serde::Serialize;

use crate::phases::Workload;

/// Everything one run measured.
#[derive(Serialize)]
pub struct Report {
    pub nats_server_version: String,
    pub cores: usize,
    pub parameters: Parameters,
    pub saturation: Option<Saturation>,
    pub latency: Vec<Latency>,
}

/// The workload's shape.
#[derive(Serialize)]
pub struct Parameters {
    pub publishers: usize,
    pub in_flight: usize,
    pub consumers: usize,
    pub messages: u64,
    pub body_bytes: usize,
    pub fetch_batch: usize,
    pub latency_seconds: f64,
}

impl From<&Workload> for Parameters {
    fn from(w: &Workload) -> Self {
        Parameters {
            publishers: w.publishers,
            in_flight: w.in_flight,
            consumers: w.consumers,
            messages: w.messages,
            body_bytes: w.body_bytes,
            fetch_batch: w.batch,
            latency_seconds: w.seconds,
        }
    }
}

/// The saturation phase's figures.
#[derive(Serialize)]
pub struct Saturation {
    pub accepted: u64,
    pub accepted_per_s: f64,
    pub acked_deliveries: u64,
    pub acked_deliveries_per_s: f64,
    pub redeliveries: u64,
    pub publish_seconds: f64,
    pub deliver_seconds: f64,
    pub server_cpu_us_per_accepted: Option<f64>,
    pub server_cores_busy: Option<f64>,
    pub clients_cores_busy: Option<f64>,
    pub server_peak_rss_bytes: u64,
    pub store_bytes: u64,
}

/// One latency run's figures.
#[derive(Serialize)]
pub struct Latency {
    pub offered_per_s: f64,
    pub seconds: f64,
    pub accepted: u64,
    pub deliveries_measured: u64,
    pub redeliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub server_peak_rss_bytes: u64,
}

/// Prints the table.
pub fn print(r: &Report) {
    println!(
        "jetstream bench — nats-server {}, {} cores",
        r.nats_server_version, r.cores
    );
    if let Some(s) = &r.saturation {
        saturation_lines(&r.parameters, s);
    }
    for l in &r.latency {
        println!(
            "  latency at {}/s for {} s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            l.offered_per_s, l.seconds, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        if l.redeliveries > 0 {
            println!("    redeliveries             {:>12}", l.redeliveries);
        }
    }
}

/// The saturation phase's lines of the table.
fn saturation_lines(p: &Parameters, s: &Saturation) {
    println!(
        "  saturation: {} publishers, {} in flight, {} durable consumers (fan-out {}), {}-byte bodies, {} messages",
        p.publishers, p.in_flight, p.consumers, p.consumers, p.body_bytes, p.messages
    );
    println!(
        "    accepted                 {:>12.1} messages/s",
        s.accepted_per_s
    );
    println!(
        "    acked deliveries         {:>12.1} per s",
        s.acked_deliveries_per_s
    );
    let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
    println!(
        "    server CPU               {:>12.1} µs per accepted message ({:.2} cores; clients {:.2})",
        f(s.server_cpu_us_per_accepted),
        f(s.server_cores_busy),
        f(s.clients_cores_busy)
    );
    println!(
        "    server peak RSS          {:>12} MiB",
        s.server_peak_rss_bytes >> 20
    );
    println!(
        "    stream on disk           {:>12} MiB",
        s.store_bytes >> 20
    );
    if s.redeliveries > 0 {
        println!("    redeliveries             {:>12}", s.redeliveries);
    }
}

/// Writes the report as JSON to `path`.
pub fn write_json(r: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
