//! The `renkei` command line: argument parsing and the glue from each subcommand to
//! the library. Errors here are `anyhow` and end as one line on stderr with a
//! non-zero exit; nothing below this module prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::bulletin::{Kind, Tlp};
use crate::identity::PartnerId;

mod bulletin;
mod certs;
mod client;
mod demo;
mod policy;
mod serve;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    /// Run a node until SIGINT or SIGTERM.
    Serve {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Sign and publish a bulletin (or publish a signed file) to the node; prints the
    /// result as one JSON line and exits non-zero when rejected.
    Publish {
        /// The client configuration file.
        #[arg(long)]
        config: PathBuf,
        /// An already signed bulletin to publish instead of the fields below.
        #[arg(long, conflicts_with_all = ["origin", "tlp", "kind", "title"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        fields: BulletinFields,
    },
    /// Receive bulletins shared with this partner: verify each, print one JSON line, ack.
    Subscribe {
        /// The client configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many bulletins.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds without a delivery.
        #[arg(long)]
        idle_timeout: Option<u64>,
    },
    /// Sharing policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// A local federation demo on embedded defaults, in a temporary directory.
    Demo {
        /// Keep the demo's files in DIR instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// For every partner of a node, would this bulletin be shared, and if not, why?
    Explain {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The SignedBulletin file.
        #[arg(long)]
        bulletin: PathBuf,
        /// The partner that hands the bulletin to the node (default: its origin).
        #[arg(long)]
        from: Option<PartnerId>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create the federation CA (or reuse the one in DIR) and keys for each node.
    Init {
        /// Directory for ca.crt, ca.key and one sub-directory per node.
        #[arg(long)]
        dir: PathBuf,
        /// Partner ids of the nodes, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<PartnerId>,
        /// Overwrite existing keys and certificates, the CA included.
        #[arg(long)]
        force: bool,
    },
}

/// The fields of a bulletin given on the command line (shared with `publish`, where
/// `--file` may replace them all, so "required" is checked when the bulletin is built).
#[derive(Args, Debug)]
pub struct BulletinFields {
    /// Partner id of the originator, who must own the signing key (required; `publish`
    /// defaults to the client's id).
    #[arg(long)]
    origin: Option<PartnerId>,
    /// TLP level: clear, green, amber, amber+strict or red (required).
    #[arg(long)]
    tlp: Option<Tlp>,
    /// Kind: indicator, advisory, incident, vulnerability, exercise, consultation,
    /// report (required).
    #[arg(long)]
    kind: Option<Kind>,
    /// One-line title (required).
    #[arg(long)]
    title: Option<String>,
    /// Short summary.
    #[arg(long, default_value = "")]
    summary: String,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A recipient: a partner id or group:NAME (repeatable).
    #[arg(long = "audience")]
    audience: Vec<String>,
    /// An earlier bulletin id this one refers to (repeatable).
    #[arg(long = "reference")]
    references: Vec<String>,
    /// File holding the body (e.g. a STIX 2.1 bundle).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// MIME type of the body; guessed from the body when absent.
    #[arg(long)]
    content_type: Option<String>,
    /// Bulletin id (canonical UUID); a fresh UUID v7 when absent.
    #[arg(long)]
    id: Option<String>,
    /// Creation time (RFC 3339); now when absent.
    #[arg(long)]
    created: Option<crate::timestamp::Timestamp>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum BulletinCommand {
    /// Sign a new bulletin and write it as a binary SignedBulletin.
    New {
        /// The originator's Ed25519 signing key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        fields: BulletinFields,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a SignedBulletin file; print a JSON summary and exit 0 when valid.
    Verify {
        /// The signer's public key: a signing.pub file or the text ed25519:<base64>.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        pubkey: Option<String>,
        /// Or a node configuration, whose partner keys and revocations are used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The SignedBulletin file.
        file: PathBuf,
    },
    /// Print a SignedBulletin file as JSON without verifying it.
    Show {
        /// The SignedBulletin file.
        file: PathBuf,
    },
}

/// Runs an async command on a multi-threaded runtime.
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
    let result = match cli.command {
        Command::Certs(CertsCommand::Init { dir, nodes, force }) => {
            certs::init(&dir, &nodes, force)
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
        Command::Serve { config } => block_on(serve::run(&config)),
        Command::Publish {
            config,
            file,
            fields,
        } => block_on(client::publish(&config, fields, file)),
        Command::Subscribe {
            config,
            count,
            idle_timeout,
        } => block_on(client::subscribe(&config, count, idle_timeout)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the whole cause chain, joined by ": ".
            eprintln!("renkei: {err:#}");
            ExitCode::FAILURE
        }
    }
}
