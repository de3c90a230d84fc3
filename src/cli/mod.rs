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
mod demo;
mod policy;

/// renkei: a secure information-sharing broker for signed cyber-threat bulletins.
#[derive(Parser, Debug)]
#[command(name = "renkei", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
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

/// The fields of a bulletin given on the command line (shared with `publish`).
#[derive(Args, Debug)]
pub struct BulletinFields {
    /// Partner id of the originator (must own the signing key).
    #[arg(long)]
    origin: PartnerId,
    /// TLP level: clear, green, amber, amber+strict or red.
    #[arg(long)]
    tlp: Tlp,
    /// Kind: indicator, advisory, incident, vulnerability, exercise, consultation, report.
    #[arg(long)]
    kind: Kind,
    /// One-line title.
    #[arg(long)]
    title: String,
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

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Demo { dir } => demo::run(dir.as_deref()),
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
