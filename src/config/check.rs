//! What `renkei check-config` (and `renkei serve` before it starts) finds wrong with a
//! node's configuration and the key and certificate files it names, each finding
//! naming the config field that causes it (`node.tls_key`, `partner[2].keys`).
//!
//! The checks are pure: [`check`] takes the parsed configuration, what [`gather`] read
//! from disk and the time, and returns findings. Only [`gather`] and [`check_file`]
//! touch the file system. This module must not read the clock (the caller passes the
//! time in), print or log (the CLI does), or decide anything at connection time.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::{ClientConfig, ConfigError, NodeConfig, NodeSection};
use crate::identity::{PartnerId, Role};
use crate::timestamp::Timestamp;

/// A certificate expiring sooner than this is a warning: time to renew it.
pub const RENEW_WITHIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The node must not start with this.
    Error,
    /// The node can start; an operator should look.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, with the config field that causes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted path of the field, e.g. `node.tls_key` or `partner[2].keys`.
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub problem: String,
}

impl Finding {
    fn error(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn warning(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.field, self.problem)
    }
}

/// Does any finding stop the node from starting?
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// What the reader found at one path.
#[derive(Clone, Debug)]
pub enum FileRead {
    /// Nothing there.
    Missing,
    /// There, but reading failed (permissions, a directory, …).
    Unreadable(String),
    /// Its contents, and its Unix permission bits when the platform has them.
    Read {
        /// The whole file.
        bytes: Vec<u8>,
        /// `st_mode & 0o777`.
        mode: Option<u32>,
    },
}

/// The four files `[node]` names, as read from disk.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// `node.ca_cert`.
    pub ca_cert: FileRead,
    /// `node.tls_cert`.
    pub tls_cert: FileRead,
    /// `node.tls_key`.
    pub tls_key: FileRead,
    /// `node.signing_key`.
    pub signing_key: FileRead,
    /// Free bytes in the filesystem that holds (or will hold) `node.data_dir`, if
    /// they could be measured.
    pub data_free: Option<u64>,
}

/// The shell: reads the files `[node]` names, and measures the data directory's room.
pub fn gather(node: &NodeSection) -> NodeFiles {
    // A data directory not made yet lives on its nearest existing ancestor's filesystem.
    let data_free = node
        .data_dir
        .ancestors()
        .find(|p| p.exists())
        .and_then(|p| fs2::available_space(p).ok());
    NodeFiles {
        ca_cert: read_one(&node.ca_cert),
        tls_cert: read_one(&node.tls_cert),
        tls_key: read_one(&node.tls_key),
        signing_key: read_one(&node.signing_key),
        data_free,
    }
}

fn read_one(path: &Path) -> FileRead {
    match std::fs::read(path) {
        Ok(bytes) => {
            #[cfg(unix)]
            let mode = {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::metadata(path)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o777)
            };
            #[cfg(not(unix))]
            let mode = None;
            FileRead::Read { bytes, mode }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Missing,
        Err(e) => FileRead::Unreadable(e.to_string()),
    }
}

/// What a configuration file was taken for, once it parsed.
pub enum Checked {
    /// A node's (`[node]`).
    Node(Box<NodeConfig>),
    /// A desk's or an auditor's (`[client]`).
    Client(Box<ClientConfig>),
}

/// The shell for a whole file: reads the configuration at `path` (a node's, or a desk's
/// or auditor's if it has a `[client]` table), then the files it names, and checks
/// everything. Returns the configuration when it parsed.
pub fn check_file(path: &Path, now: Timestamp) -> (Option<Checked>, Vec<Finding>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let field = path.display().to_string();
            return (
                None,
                vec![Finding::error(field, format!("cannot read: {e}"))],
            );
        }
    };
    if client::is_client(&text) {
        return match ClientConfig::load(path) {
            Ok(cfg) => {
                let findings = check_client(&cfg, &client::gather(&cfg), now);
                (Some(Checked::Client(Box::new(cfg))), findings)
            }
            Err(e) => (None, vec![config_error(&e, &text)]),
        };
    }
    match NodeConfig::parse_at(&text, path) {
        Ok(cfg) => {
            let findings = check(&cfg, &gather(&cfg.node), now);
            (Some(Checked::Node(Box::new(cfg))), findings)
        }
        Err(e) => (None, vec![config_error(&e, &text)]),
    }
}

/// A configuration error as a finding: validation errors carry their field; for syntax
/// errors (an unknown field, a malformed value) the field is found at the error's place
/// in `text`.
pub fn config_error(err: &ConfigError, text: &str) -> Finding {
    match err {
        ConfigError::Read { file, source } => {
            Finding::error(file.display().to_string(), format!("cannot read: {source}"))
        }
        ConfigError::Invalid { field, problem, .. } => Finding::error(field.clone(), problem),
        ConfigError::Syntax {
            line,
            column,
            message,
            ..
        } => {
            let field = field_at(text, *line, *column).unwrap_or_else(|| format!("line {line}"));
            Finding::error(field, format!("{message} (line {line}, column {column})"))
        }
    }
}

/// Every check of a parsed configuration against the files read for it, at `now`.
pub fn check(cfg: &NodeConfig, files: &NodeFiles, now: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    let node = &cfg.node;
    let holder = Holder {
        table: "node",
        id: &node.id,
        ca_cert: &node.ca_cert,
        tls_cert: &node.tls_cert,
        tls_key: &node.tls_key,
        signing_key: Some(&node.signing_key),
    };
    files::check(&holder, files, now, &mut out);
    partner_checks(cfg, &mut out);
    affiliation_checks(cfg, &mut out);
    room(cfg, files.data_free, &mut out);
    out
}

/// Whose key and certificate files are checked: the table that names them (`node`,
/// `client`), the id their certificate must name, and the paths.
pub(crate) struct Holder<'a> {
    pub table: &'static str,
    pub id: &'a PartnerId,
    pub ca_cert: &'a Path,
    pub tls_cert: &'a Path,
    pub tls_key: &'a Path,
    pub signing_key: Option<&'a Path>,
}

impl Holder<'_> {
    /// The config field `name` of this holder's table: `node.tls_key`.
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.table)
    }
}

/// A data directory with less free space than the reserve: the node would start and
/// refuse every bulletin.
fn room(cfg: &NodeConfig, free: Option<u64>, out: &mut Vec<Finding>) {
    let reserve = cfg.storage.reserve_mib.saturating_mul(1 << 20);
    if let Some(free) = free.filter(|f| *f < reserve) {
        out.push(Finding::warning(
            "storage.reserve_mib",
            format!(
                "{} has {} MiB free, below the reserve of {} MiB: the node would refuse every bulletin with STORAGE_FULL until space is freed",
                cfg.node.data_dir.display(),
                free >> 20,
                cfg.storage.reserve_mib
            ),
        ));
    }
}

fn partner_checks(cfg: &NodeConfig, out: &mut Vec<Finding>) {
    for (i, p) in cfg.partners.iter().enumerate() {
        if p.keys.is_empty() && p.role != Role::Auditor {
            let consequence = match p.role {
                Role::Relay => {
                    "it can forward other origins' bulletins but could not publish any of its own"
                }
                _ => "it could not publish bulletins of its own origin",
            };
            out.push(Finding::warning(
                format!("partner[{i}].keys"),
                format!("{} {} has no signing keys: {consequence}", p.role, p.id),
            ));
        }
        if p.role == Role::Relay && p.address.is_none() {
            out.push(Finding::warning(
                format!("partner[{i}].address"),
                format!(
                    "relay {} has no address, so it is not a peer node: this node never dials it \
                     nor opens streams to it, and nothing queued here reaches it unless it \
                     connects and subscribes (give its node's HOST:PORT to peer with it)",
                    p.id
                ),
            ));
        }
    }
}

/// Whose each party is, for the cooperation figures: the node, each partner that
/// exchanges bulletins, each origin.
fn affiliation_checks(cfg: &NodeConfig, out: &mut Vec<Finding>) {
    let n = &cfg.node;
    if n.country.is_none() && n.organisation.is_none() {
        out.push(Finding::warning(
            "node.country",
            format!(
                "node {} names no country (ISO 3166-1 alpha-2, e.g. JP) or organisation: the \
                 cooperation figures cannot tell its domestic partners from foreign ones",
                n.id
            ),
        ));
    }
    let unnamed = |what: &str, id: &PartnerId| {
        format!(
            "{what} {id} names no country or organisation: its exchanges count as \
             \"unknown\" in the cooperation figures"
        )
    };
    for (i, p) in cfg.partners.iter().enumerate() {
        if p.role != Role::Auditor && p.affiliation().is_none() {
            let what = p.role.to_string();
            out.push(Finding::warning(
                format!("partner[{i}].country"),
                unnamed(&what, &p.id),
            ));
        }
    }
    for (i, o) in cfg.origins.iter().enumerate() {
        if o.affiliation().is_none() {
            out.push(Finding::warning(
                format!("origin[{i}].country"),
                unnamed("origin", &o.id),
            ));
        }
    }
}

mod client;
mod files;
mod locate;

pub use client::{check_client, is_client};
pub use locate::field_at;

#[cfg(test)]
mod tests;
