//! The subcommands' arguments (clap derive): what each command takes, with its help
//! text. `cli` dispatches them; nothing here runs anything.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::bulletin::{Kind, Tlp};
use crate::identity::{GroupName, PartnerId};

#[derive(Subcommand, Debug)]
pub(super) enum PartnerCommand {
    /// Print this node's public card (id, signing key, certificate fingerprint) as TOML.
    Card {
        /// The node's directory as `certs init` wrote it (tls.crt, signing.pub).
        #[arg(long)]
        node_dir: PathBuf,
        /// Where the node listens for partners, HOST:PORT.
        #[arg(long)]
        address: Option<String>,
        /// A key rotation: the new signing key (a .pub file from `renkei keygen`, or
        /// ed25519: text), announced with the node directory's key as the old one.
        #[arg(long, requires = "old_key_until")]
        new_key: Option<String>,
        /// With --new-key: until when the old key stays valid (RFC 3339, e.g.
        /// 2026-12-13T00:00:00Z), so that bulletins signed with it still verify.
        #[arg(long, requires = "new_key")]
        old_key_until: Option<crate::timestamp::Timestamp>,
        #[command(flatten)]
        who: Who,
    },
    /// Apply a partner's renewed card (a rotated signing key, a renewed certificate, a
    /// new address) to its [[partner]] or [[origin]], keeping the file's comments.
    Update {
        /// The node's configuration file (edited in place).
        #[arg(long)]
        config: PathBuf,
        /// The partner's renewed card (from `renkei partner card`).
        #[arg(long)]
        card: PathBuf,
    },
    /// Add a partner from its card to a node's configuration (an origin behind a peer
    /// with --role origin), or its keys to a desk's or an auditor's, keeping comments.
    Add {
        /// The node's, desk's or auditor's configuration file (edited in place).
        #[arg(long)]
        config: PathBuf,
        /// The partner's card (from `renkei partner card`).
        #[arg(long)]
        card: PathBuf,
        /// liaison, relay, auditor, or origin (one whose bulletins arrive through
        /// peers; with --via). Not for a desk's configuration.
        #[arg(long)]
        role: Option<String>,
        /// With --role origin: the peer nodes its bulletins come through, the first
        /// being the way towards it (comma-separated).
        #[arg(long, value_delimiter = ',')]
        via: Vec<PartnerId>,
        /// The highest TLP it may receive (required unless an auditor).
        #[arg(long)]
        clearance: Option<Tlp>,
        /// A group it belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<GroupName>,
        /// Kinds shared with it, comma-separated (all when absent).
        #[arg(long, value_delimiter = ',')]
        kinds: Option<Vec<Kind>>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum ConfigCommand {
    /// Write DIR/ID.toml for a new node, naming the files `renkei certs request --dir
    /// DIR` left there (ca.crt beside them); partners come with `partner add`.
    Node {
        /// The node's partner id.
        #[arg(long)]
        id: PartnerId,
        /// The UDP address partners reach it on, e.g. 0.0.0.0:4433.
        #[arg(long)]
        listen: String,
        /// The directory for the file, holding ca.crt and ID/.
        #[arg(long)]
        dir: PathBuf,
        /// Also serve /metrics, /healthz and /readyz here (HTTP, e.g. 127.0.0.1:9464).
        #[arg(long)]
        admin: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Write DIR/ID.toml for a liaison desk of the node NODE at SERVER.
    Desk {
        #[command(flatten)]
        client: NewClient,
    },
    /// Write DIR/ID.toml for an audit office of the node NODE at SERVER (no signing key).
    Auditor {
        #[command(flatten)]
        client: NewClient,
    },
}

/// Whose a node, desk or card is, for the cooperation figures.
#[derive(Args, Debug, Default)]
pub(super) struct Who {
    /// Its country, ISO 3166-1 alpha-2 (e.g. JP, EE, US).
    #[arg(long, conflicts_with = "organisation")]
    pub(super) country: Option<crate::identity::Country>,
    /// Or its international organisation (e.g. NATO-CCDCOE).
    #[arg(long)]
    pub(super) organisation: Option<crate::identity::Organisation>,
}

impl Who {
    /// What was given, if anything.
    pub(super) fn affiliation(&self) -> Option<crate::identity::Affiliation> {
        crate::identity::Affiliation::of(self.country, self.organisation.as_ref())
    }
}

/// Who a new desk or auditor is and which node it talks to.
#[derive(Args, Debug)]
pub(super) struct NewClient {
    /// Its partner id.
    #[arg(long)]
    pub(super) id: PartnerId,
    /// The node's partner id.
    #[arg(long)]
    pub(super) node: PartnerId,
    /// The node's UDP address, IP:PORT.
    #[arg(long)]
    pub(super) server: String,
    /// The directory for the file, holding ca.crt and ID/.
    #[arg(long)]
    pub(super) dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(super) enum PolicyCommand {
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

/// Where an audit command reads the log: a running node, or a stopped node's database.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub(super) struct LogSource {
    /// A client configuration with the auditor role: ask the running node.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// A stopped node's data directory: read its database directly.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Table,
    Json,
}

/// How `renkei metrics` and `audit recount` print a report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReportFormat {
    /// Aligned text for a terminal.
    Table,
    /// One JSON document, growth worked out.
    Json,
    /// One CSV table in long form (section, name, figure, value, …) for a spreadsheet.
    Csv,
}

/// How `renkei metrics` cuts its rows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum By {
    /// Per country or organisation, where the exchange really is (the programme's view).
    #[value(alias = "organisation")]
    Country,
    /// Per partner id, as bulletins were handed over.
    Partner,
}

impl By {
    /// The report cut this way.
    pub(super) fn view(self) -> crate::proto::MetricsView {
        match self {
            By::Country => crate::proto::MetricsView::Affiliation,
            By::Partner => crate::proto::MetricsView::Partner,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Records matching every filter given, oldest first, one page at a time.
    Query {
        #[command(flatten)]
        source: LogSource,
        /// Records concerning this partner: its events, and bulletins shared with it or
        /// withheld from it.
        #[arg(long)]
        partner: Option<PartnerId>,
        /// Records about this bulletin id.
        #[arg(long)]
        bulletin: Option<String>,
        /// Records of this event: bulletin_accepted, bulletin_rejected, acked, …
        #[arg(long, value_parser = super::audit::parse_event)]
        event: Option<crate::proto::AuditEvent>,
        /// From this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Up to this time (RFC 3339 or YYYY-MM-DD, the whole day).
        #[arg(long)]
        until: Option<String>,
        /// Continue after this seq (the previous page's last).
        #[arg(long)]
        after: Option<u64>,
        /// Records per page (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write the records, checkpoints and the node's public key to a self-contained file.
    Export {
        #[command(flatten)]
        source: LogSource,
        /// The export file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute the whole tree from the records and check every checkpoint.
    Verify {
        /// An export file.
        #[arg(required_unless_present = "data_dir", conflicts_with = "data_dir")]
        file: Option<PathBuf>,
        /// Or a stopped node's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The node's checkpoint key as you know it (ed25519:<base64>, or a .pub file):
        /// refuse any other.
        #[arg(long)]
        key: Option<String>,
        /// A checkpoint kept from earlier: the log must extend it (no rollback, no fork).
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Without --key or --trusted-checkpoint, succeed on a log that is only
        /// internally consistent (checked with the key it names itself).
        #[arg(long)]
        self_signed_ok: bool,
        /// A witness you trust, whose cosignatures count: its vkey
        /// (NAME+KEYID+BASE64) or a peer node's ID=ed25519:<base64> (repeatable).
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned a checkpoint of the log (1 when
        /// any --witness is given).
        #[arg(long)]
        min_witnesses: Option<usize>,
        /// Print one JSON line instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Work the metrics report out again from an export, offline, once it verifies:
    /// the figures `renkei metrics` gives, without trusting the node's sums.
    Recount {
        /// An export file (`renkei audit export`).
        file: PathBuf,
        /// The node's checkpoint key as you know it (ed25519:<base64>, or a .pub file).
        #[arg(long)]
        key: Option<String>,
        /// A checkpoint kept from earlier: the log must extend it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Recount a log checked only against the key it names itself.
        #[arg(long)]
        self_signed_ok: bool,
        /// The fiscal year starting in this calendar year (e.g. 2026 = FY2026).
        #[arg(long)]
        fiscal_year: Option<u32>,
        /// First month of the fiscal year.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=12))]
        fiscal_year_start: u8,
        /// Rows per country or organisation, or per partner.
        #[arg(long, value_enum, default_value_t = By::Country)]
        by: By,
        /// Count only the first N records: the log a report names as computed at N.
        #[arg(long)]
        size: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Print an inclusion proof of one record against the latest checkpoint (checked).
    Prove {
        #[command(flatten)]
        source: LogSource,
        /// The record's seq.
        #[arg(long)]
        seq: u64,
    },
    /// Print the latest signed checkpoint (a running node signs a fresh one); with
    /// --witness, the newest one enough of those witnesses cosigned.
    Checkpoint {
        #[command(flatten)]
        source: LogSource,
        /// A witness you trust (repeatable): its vkey or a peer node's ID=ed25519:<base64>.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of them must have cosigned it (1 when any --witness is given).
        #[arg(long)]
        min_witnesses: Option<usize>,
    },
    /// Rotate a stopped node's audit (checkpoint) key: the log records the change,
    /// signed by the old key and the new, and a checkpoint covering it is signed by
    /// both. Then name the new key as node.signing_key and start the node.
    RotateKey {
        /// The stopped node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The key the log is signed with now (PKCS#8 PEM).
        #[arg(long)]
        old_key: PathBuf,
        /// The key that signs it from now on (PKCS#8 PEM, e.g. from `renkei keygen`).
        #[arg(long)]
        new_key: PathBuf,
    },
    /// Who signed for a bulletin: its signed receipts on the log, each verified again
    /// with the keys given, and who acknowledged it unsigned; or, with --verify, check
    /// a set of receipts written with --out, offline.
    Receipts {
        /// A client configuration with the auditor role: ask the running node.
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// A stopped node's data directory: read its database directly.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The bulletin id.
        #[arg(long, required_unless_present = "verify")]
        bulletin: Option<String>,
        /// A set of receipts written with --out, to check offline.
        #[arg(long, conflicts_with_all = ["bulletin", "config", "data_dir"])]
        verify: Option<PathBuf>,
        /// Write the set of receipts to this file (JSON).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A receiver's signing key to verify its receipts with, ID=ed25519:…
        /// (repeatable).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// A client configuration whose [[partner]] keys verify receipts too.
        #[arg(long)]
        keys_from: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum CertsCommand {
    /// Create the federation CA (or reuse the one in DIR) and keys for each node.
    Init {
        /// Directory for ca.crt, ca.key and one sub-directory per node.
        #[arg(long)]
        dir: PathBuf,
        /// Partner ids to issue for (nodes, desks, auditors), comma-separated; none
        /// makes (or keeps) the CA alone.
        #[arg(long = "ids", alias = "nodes", value_delimiter = ',')]
        nodes: Vec<PartnerId>,
        /// Issue the listed nodes new certificates and signing keys over existing ones
        /// (the CA is kept). Without it, nodes that exist are kept and new ones added.
        #[arg(long)]
        force: bool,
        /// Make a new federation CA over the existing one (with --force for the listed
        /// nodes; every partner then needs the new ca.crt).
        #[arg(long)]
        new_ca: bool,
    },
    /// Make a TLS key and a certificate request (tls.csr) for ID in DIR/ID, with a
    /// signing key, for the federation CA's operator to sign (`certs sign`). The
    /// private keys never leave DIR.
    Request {
        /// The partner id the certificate will name.
        #[arg(long)]
        id: PartnerId,
        /// Directory for ID/tls.key, ID/tls.csr, ID/signing.key and ID/signing.pub.
        #[arg(long)]
        dir: PathBuf,
        /// A renewal: a new TLS key and request only; the signing key is kept.
        #[arg(long)]
        renew: bool,
    },
    /// Sign a certificate request with the federation CA in DIR; writes the
    /// certificate beside the request (tls.crt for tls.csr) or to --out.
    Sign {
        /// Directory holding ca.crt and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// The request (PEM), from `renkei certs request` or any PKCS#10 tool.
        #[arg(long)]
        csr: PathBuf,
        /// The partner id the request must name (refused otherwise).
        #[arg(long)]
        id: Option<PartnerId>,
        /// Where to write the certificate.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The fields of a bulletin given on the command line (shared with `publish`, where
/// `--file` may replace them all, so "required" is checked when the bulletin is built).
#[derive(Args, Debug, Default)]
pub(super) struct BulletinFields {
    /// Partner id of the originator, who owns the signing key (`bulletin new` needs
    /// it; `publish` takes the desk's own id when it is absent).
    #[arg(long)]
    pub(super) origin: Option<PartnerId>,
    /// TLP level: clear, green, amber, amber+strict or red (required).
    #[arg(long)]
    pub(super) tlp: Option<Tlp>,
    /// Kind: indicator, advisory, incident, vulnerability, exercise, consultation,
    /// report (required).
    #[arg(long)]
    pub(super) kind: Option<Kind>,
    /// One-line title (required).
    #[arg(long)]
    pub(super) title: Option<String>,
    /// Short summary.
    #[arg(long, default_value = "")]
    pub(super) summary: String,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// A recipient: a partner id or group:NAME (repeatable).
    #[arg(long = "audience")]
    pub(super) audience: Vec<String>,
    /// An earlier bulletin id this one refers to (repeatable).
    #[arg(long = "reference")]
    pub(super) references: Vec<String>,
    /// File holding the body (e.g. a STIX 2.1 bundle).
    #[arg(long)]
    pub(super) body_file: Option<PathBuf>,
    /// MIME type of the body; guessed from the body when absent.
    #[arg(long)]
    pub(super) content_type: Option<String>,
    /// Bulletin id (canonical UUID); a fresh UUID v7 when absent.
    #[arg(long)]
    pub(super) id: Option<String>,
    /// Creation time (RFC 3339); now when absent.
    #[arg(long)]
    pub(super) created: Option<crate::timestamp::Timestamp>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub(super) enum BulletinCommand {
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
