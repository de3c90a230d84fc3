//! The `renkei` command line: argument parsing and the glue from each subcommand to
//! the library. Errors here are `anyhow` and end as one line on stderr with a
//! non-zero exit; nothing below this module prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{
    AuditCommand, BulletinCommand, BulletinFields, By, CertsCommand, ConfigCommand, LogSource,
    PartnerCommand, PolicyCommand, ReportFormat,
};

/// `println!` for command output: see [`emit`].
macro_rules! emitln {
    ($($t:tt)*) => {
        $crate::cli::emit(format_args!($($t)*))
    };
}

mod audit;
mod bench;
mod bulletin;
mod certs;
mod check;
mod commands;
mod dashboard;
mod demo;
mod metrics;
mod misp_feed;
mod misp_in;
mod operate;
mod partner;
mod policy;
mod publish;
mod serve;
mod subscribe;

/// renkei: a secure information-sharing broker for signed cyber-threat bulletins.
#[derive(Parser, Debug)]
#[command(name = "renkei", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Human,
    Json,
}

/// Logs to stderr; `RUST_LOG` overrides the level (`default_level` otherwise).
fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Development PKI: a federation CA, TLS certificates and signing keys.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its public key.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Create, verify and inspect signed bulletins.
    #[command(subcommand)]
    Bulletin(BulletinCommand),
    /// Check a node configuration and the key and certificate files it names; print
    /// each problem with its field. Exits non-zero on any error (warnings alone pass).
    CheckConfig {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Onboard partners: print this node's public card, add a partner from its card.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Write a first configuration for a node, a desk or an auditor.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a node until SIGINT or SIGTERM; SIGHUP reloads its configuration.
    Serve {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask the running node to read its configuration again (as SIGHUP does): new
    /// partners, keys, revocations and rules apply at once; removed partners are
    /// disconnected. Goes through the operator socket in the data directory.
    Reload {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the running node's links with its peer nodes: up or down and since when,
    /// who dialled, the last error, and the queue each way. Goes through the operator
    /// socket, like reload.
    Status {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running node for a consistent copy of its database in a new directory
    /// (which the node's user must be able to create). Publishing pauses while it copies.
    Backup {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The new directory for the copy.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a new, empty data directory and verify its audit log.
    Restore {
        /// The backup directory (made by `renkei backup`).
        #[arg(long)]
        from: PathBuf,
        /// Restore into this configuration's node.data_dir, verifying with its key.
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// Restore into this directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With --data-dir: the node's signing public key (`ed25519:…` or a .pub file), so that a
        /// backup re-signed with another key is refused.
        #[arg(long, requires = "data_dir")]
        key: Option<String>,
        /// A checkpoint kept from the node (`renkei audit checkpoint`): a backup older
        /// than it, or of another history, is refused.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Restore a backup whose manifest carries no signature (made by a renkei from
        /// before manifests were signed). Without it such a backup is refused: a stripped
        /// signature looks the same.
        #[arg(long)]
        allow_unsigned_manifest: bool,
        /// Print one JSON line instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Sign and publish a bulletin (or publish a signed file) to the node; says who gets
    /// it, and exits non-zero when it is rejected or shared with nobody.
    Publish(publish::PublishArgs),
    /// Receive bulletins shared with this desk: verify each, print (and save, or hand to a
    /// command) what verifies, and acknowledge only that.
    Subscribe(subscribe::SubscribeArgs),
    /// Sharing policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// End-to-end benchmark: a real node and clients on 127.0.0.1, with the machine's
    /// Ed25519 limit measured in the same run.
    Bench {
        /// Publishing connections.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Subscribing partners (the fan-out).
        #[arg(long, default_value_t = 4)]
        subscribers: usize,
        /// Bulletins to publish (signed before timing starts).
        #[arg(long, default_value_t = 200_000)]
        bulletins: usize,
        /// Body size of each bulletin.
        #[arg(long, default_value_t = 1024)]
        body_bytes: usize,
        /// Subscribers decode but do not verify signatures (the report says so).
        #[arg(long)]
        skip_verify: bool,
        /// Offered rate (bulletins/s, all publishers together) in the latency phase.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// How long the latency phase offers that rate.
        #[arg(long, default_value_t = 5.0)]
        latency_seconds: f64,
        /// Bulletins queued for an offline partner in the backlog phase.
        #[arg(long, default_value_t = 100_000)]
        backlog: usize,
        /// Records in the audit phase's log.
        #[arg(long, default_value_t = 200_000)]
        audit_records: u64,
        /// Accepted-bulletin records in the metrics phase's log.
        #[arg(long, default_value_t = 10_000_000)]
        metrics_records: u64,
        /// Kill-and-restart cycles of the crash phase.
        #[arg(long, default_value_t = 20)]
        cycles: usize,
        /// Partners connected at once in the partners phase.
        #[arg(long, default_value_t = 100)]
        partners: usize,
        /// Minutes the soak phase runs.
        #[arg(long, default_value_t = 60)]
        soak_minutes: usize,
        /// Bulletins/s the soak phase offers, all publishers together.
        #[arg(long, default_value_t = 2_000.0)]
        soak_rate: f64,
        /// The lazyfs program the power phase mounts the node's data on (built from
        /// benches/lazyfs).
        #[arg(long, default_value = "lazyfs")]
        lazyfs: PathBuf,
        /// The full run: a backlog of 1,000,000, an audit log of 1,000,000 and 200
        /// crash cycles.
        #[arg(long)]
        full: bool,
        /// Phases to run, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "saturation,latency,backlog,audit,limit"
        )]
        phases: Vec<bench::Phase>,
        /// The hostile phase's attacks, comma-separated (the unloaded desk always runs
        /// first, as their yardstick).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "padded,holders,flooder,flooders"
        )]
        attacks: Vec<bench::Attack>,
        /// Also write every figure, the parameters and the machine as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Query, export, verify and prove a node's tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Information-sharing metrics per partner for a fiscal year or a date range.
    Metrics {
        #[command(flatten)]
        source: LogSource,
        /// The fiscal year starting in this calendar year (e.g. 2026 = FY2026).
        #[arg(long, conflicts_with_all = ["since", "until"])]
        fiscal_year: Option<u32>,
        /// First day (YYYY-MM-DD).
        #[arg(long, requires = "until")]
        since: Option<String>,
        /// Last day (YYYY-MM-DD), included.
        #[arg(long, requires = "since")]
        until: Option<String>,
        /// First month of the fiscal year, with --data-dir (a node's own config says it).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=12))]
        fiscal_year_start: u8,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Rows per country or organisation (the programme's figures), or per partner.
        #[arg(long, value_enum, default_value_t = By::Country)]
        by: By,
    },
    /// The auditor's dashboard: metrics per fiscal year with charts, the audit log
    /// searchable, the signed checkpoint with proofs, the peer links; every table as
    /// CSV. Served over HTTP; every page is a query on the node's record.
    Dashboard {
        /// The auditor's client configuration.
        #[arg(long)]
        config: PathBuf,
        /// Where to serve it (keep it on loopback: it shows the log to whoever reaches it).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// A local federation demo on embedded defaults, in a temporary directory (or DIR).
    Demo {
        /// Keep the demo's files in DIR instead of a temporary directory, with the worked
        /// setup of the README's tour: hub.toml, one config per desk, auditor.toml.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Prints one line on stdout. A reader that went away (`renkei audit query | head`)
/// ends the process quietly instead of with a panic.
pub(crate) fn emit(line: impl std::fmt::Display) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Runs an async command on a multi-threaded runtime.
/// A public key given on the command line (`flag`), either way the tools write one: the
/// text `ed25519:<base64>`, or the path of a `.pub` file holding it.
fn public_key_arg(flag: &str, arg: &str) -> anyhow::Result<crate::identity::PublicKey> {
    use anyhow::Context as _;
    if arg.trim_start().starts_with("ed25519:") {
        return arg.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    }
    let path = std::path::Path::new(arg);
    let text = crate::files::read_text(path)
        .with_context(|| format!("{flag}: neither ed25519:<base64> nor a readable .pub file"))?;
    text.parse()
        .map_err(|e| anyhow::anyhow!("{flag}: {}: {e}", path.display()))
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    runtime.block_on(f)
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("renkei: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench { .. } => run_bench(command),
        Command::Metrics { .. } => run_metrics(command),
        Command::Dashboard { config, listen } => block_on(dashboard::run(&config, listen)),
        Command::Serve { .. }
        | Command::Reload { .. }
        | Command::Status { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::CheckConfig { .. }
        | Command::Partner(_)
        | Command::Config(_) => run_operator(command),
        command => run_desk(command),
    }
}

/// The commands of a desk and of offline work: keys, bulletins, policy, publish,
/// subscribe, the demo and the audit log.
fn run_desk(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Certs(CertsCommand::Init {
            dir,
            nodes,
            force,
            new_ca,
        }) => {
            let replace = crate::pki::Replace {
                nodes: force,
                ca: new_ca,
            };
            certs::init(&dir, &nodes, replace)
        }
        Command::Certs(CertsCommand::Request { id, dir, renew }) => {
            certs::request(&id, &dir, renew)
        }
        Command::Certs(CertsCommand::Sign { dir, csr, id, out }) => {
            certs::sign(&dir, &csr, id.as_ref(), out.as_deref())
        }
        Command::Keygen { out, force } => certs::keygen(&out, force),
        Command::Bulletin(BulletinCommand::New { key, fields, out }) => {
            bulletin::new(&key, fields, &out)
        }
        Command::Bulletin(BulletinCommand::Verify {
            pubkey,
            config,
            file,
        }) => bulletin::verify(pubkey.as_deref(), config.as_deref(), &file),
        Command::Bulletin(BulletinCommand::Show { file }) => bulletin::show(&file),
        Command::Policy(PolicyCommand::Explain {
            config,
            bulletin,
            from,
            json,
        }) => policy::explain(&config, &bulletin, from.as_ref(), json),
        Command::Demo { dir } => block_on(demo::run(dir.as_deref())),
        Command::Audit(cmd) => audit::run_audit(cmd),
        Command::Publish(args) => block_on(publish::publish(args)),
        Command::Subscribe(args) => block_on(subscribe::subscribe(args)),
        other => unreachable_command(&other),
    }
}

/// A command sent to the wrong group by [`run`]: a bug, reported rather than panicking.
fn unreachable_command(command: &Command) -> anyhow::Result<()> {
    anyhow::bail!("internal error: no handler for {command:?}")
}

/// `renkei bench`.
fn run_bench(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench {
            publishers,
            subscribers,
            bulletins,
            body_bytes,
            skip_verify,
            rate,
            latency_seconds,
            backlog,
            audit_records,
            metrics_records,
            cycles,
            partners,
            soak_minutes,
            soak_rate,
            lazyfs,
            full,
            phases,
            attacks,
            json,
        } => block_on(bench::run(bench::BenchArgs {
            publishers,
            subscribers,
            bulletins,
            body_bytes,
            skip_verify,
            rate,
            latency_seconds,
            backlog: if full { 1_000_000 } else { backlog },
            audit_records: if full { 1_000_000 } else { audit_records },
            metrics_records,
            cycles: if full { 200 } else { cycles },
            partners,
            soak_minutes,
            soak_rate,
            lazyfs,
            phases,
            attacks,
            json,
        })),
        other => unreachable_command(&other),
    }
}

/// `renkei metrics`.
fn run_metrics(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Metrics {
            source,
            fiscal_year,
            since,
            until,
            fiscal_year_start,
            format,
            by,
        } => {
            audit::Source::new(source.config.as_deref(), source.data_dir.as_deref()).and_then(|s| {
                let args = metrics::MetricsArgs {
                    fiscal_year,
                    since,
                    until,
                    fiscal_start: fiscal_year_start,
                    format,
                    view: by.view(),
                };
                block_on(metrics::run(s, args))
            })
        }
        other => unreachable_command(&other),
    }
}

/// The operator's commands: serve, reload, backup, restore, check-config, partner.
fn run_operator(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => block_on(serve::run(&config)),
        Command::Reload { config } => block_on(operate::reload(&config)),
        Command::Status { config, json } => block_on(operate::status(&config, json)),
        Command::Backup { config, out } => block_on(operate::backup(&config, &out)),
        Command::Restore {
            from,
            config,
            data_dir,
            key,
            trusted_checkpoint,
            allow_unsigned_manifest,
            json,
        } => operate::restore(operate::RestoreArgs {
            from: &from,
            config: config.as_deref(),
            data_dir: data_dir.as_deref(),
            key: key.as_deref(),
            trusted: trusted_checkpoint.as_deref(),
            unsigned_ok: allow_unsigned_manifest,
            as_json: json,
        }),
        Command::CheckConfig { config } => check::run(&config),
        Command::Partner(PartnerCommand::Card {
            node_dir,
            address,
            new_key,
            old_key_until,
            who,
        }) => {
            let rotation = match (new_key, old_key_until) {
                (Some(key), Some(until)) => Some((public_key_arg("--new-key", &key)?, until)),
                _ => None,
            };
            partner::card(&node_dir, address.as_deref(), rotation, who.affiliation())
        }
        Command::Partner(PartnerCommand::Update { config, card }) => {
            partner::update(&config, &card)
        }
        Command::Config(command) => partner::new_config(command),
        Command::Partner(PartnerCommand::Add {
            config,
            card,
            role,
            via,
            clearance,
            groups,
            kinds,
        }) => partner::onboard(
            &config,
            &card,
            partner::Onboard {
                role,
                via,
                clearance,
                groups,
                kinds,
            },
        ),
        other => unreachable_command(&other),
    }
}

/// The cause chain on one line, joined by ": ", each cause once: many errors already
/// say their cause in their own text, and repeating it reads as two failures.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line += ": ";
        }
        line += &text;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = anyhow::Error::new(crate::files::FileError::Io {
            path: "hub.toml".into(),
            source: io,
        })
        .context("reading the config");
        assert_eq!(
            one_line(&err),
            "reading the config: hub.toml: No such file or directory"
        );
    }
}
