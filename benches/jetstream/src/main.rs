//! `jetstream-bench`: NATS JetStream (a local `nats-server -js`) under the workload shape
//! of `renkei bench` — publishers with a window of acks in flight, durable consumers
//! acking every message, paced latency runs — printing the same kind of table, so the
//! two can be compared on one machine. See README.md beside Cargo.toml.

mod clients;
mod phases;
mod report;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use phases::Workload;
use report::{Parameters, Report};

/// NATS JetStream under `renkei bench`'s workload shape.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Publishers, each on its own connection.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Publish acks outstanding, in total across the publishers.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Durable pull consumers, each acking every message (the fan-out).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Messages published in the saturation phase.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Bytes in each message's body (at least 8: latency runs stamp the send time there).
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Messages a consumer asks for in each pull request.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Offered rates (messages/s, all publishers together) for latency runs; repeat the
    /// flag or give a comma list.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000.0, 1_000.0])]
    rate: Vec<f64>,
    /// Seconds each latency run offers its rate for.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Phases to run, as a comma list.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Phase::Saturation, Phase::Latency])]
    phases: Vec<Phase>,
    /// Also write the figures to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Saturation,
    Latency,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Saturation => f.write_str("saturation"),
            Phase::Latency => f.write_str("latency"),
        }
    }
}

impl Args {
    /// The workload the flags describe, checked.
    fn workload(&self) -> anyhow::Result<Workload> {
        anyhow::ensure!(self.publishers > 0, "--publishers must be at least 1");
        anyhow::ensure!(self.consumers > 0, "--consumers must be at least 1");
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        anyhow::ensure!(self.body_bytes >= 8, "--body-bytes must be at least 8");
        anyhow::ensure!(
            self.seconds.is_finite() && self.seconds > 0.0,
            "--seconds must be positive"
        );
        anyhow::ensure!(
            self.rate.iter().all(|r| r.is_finite() && *r > 0.0),
            "every --rate must be positive"
        );
        Ok(Workload {
            publishers: self.publishers,
            in_flight: self.in_flight,
            consumers: self.consumers,
            messages: self.messages,
            body_bytes: self.body_bytes,
            batch: self.batch,
            seconds: self.seconds,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(program) = server::find_on_path() else {
        eprintln!("nats-server is not installed: apt-get install nats-server");
        return ExitCode::from(2);
    };
    match run(&args, &program) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jetstream bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the phases asked for, then prints (and writes) the report.
fn run(args: &Args, program: &Path) -> anyhow::Result<()> {
    let w = args.workload()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report {
        nats_server_version: server::version(program),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        parameters: Parameters::from(&w),
        saturation: None,
        latency: Vec::new(),
    };
    if args.phases.contains(&Phase::Saturation) {
        let phase = phases::saturation(program, &w);
        report.saturation = Some(runtime.block_on(unless_interrupted(phase))?);
    }
    if args.phases.contains(&Phase::Latency) {
        for rate in &args.rate {
            let phase = phases::latency(program, &w, *rate);
            report
                .latency
                .push(runtime.block_on(unless_interrupted(phase))?);
        }
    }
    report::print(&report);
    if let Some(path) = &args.json {
        report::write_json(&report, path)?;
    }
    Ok(())
}

/// Runs `phase` to its end, or drops it on SIGINT or SIGTERM (so its server is
/// stopped) and fails.
async fn unless_interrupted<T>(
    phase: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        r = phase => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = terminate.recv() => anyhow::bail!("terminated"),
    }
}
