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
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::{ConfigError, NodeConfig, NodeSection};
use crate::identity::partner_from_cert;
use crate::identity::{self, Role};
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

/// The shell for a whole file: reads the configuration at `path`, then the files it
/// names, and checks everything. Returns the configuration when it parsed.
pub fn check_file(path: &Path, now: Timestamp) -> (Option<NodeConfig>, Vec<Finding>) {
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
    match NodeConfig::parse_at(&text, path) {
        Ok(cfg) => {
            let findings = check(&cfg, &gather(&cfg.node), now);
            (Some(cfg), findings)
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
    let ca_text = contents("node.ca_cert", &node.ca_cert, &files.ca_cert, &mut out);
    let cert_text = contents("node.tls_cert", &node.tls_cert, &files.tls_cert, &mut out);
    let key_text = contents("node.tls_key", &node.tls_key, &files.tls_key, &mut out);
    let signing_text = contents(
        "node.signing_key",
        &node.signing_key,
        &files.signing_key,
        &mut out,
    );
    private_mode("node.tls_key", &node.tls_key, &files.tls_key, &mut out);
    private_mode(
        "node.signing_key",
        &node.signing_key,
        &files.signing_key,
        &mut out,
    );

    let roots = ca_text.and_then(|b| check_ca(&node.ca_cert, b, now, &mut out));
    let key = key_text.and_then(|b| tls_key(&node.tls_key, b, &mut out));
    if let Some(bytes) = cert_text {
        check_tls_cert(cfg, bytes, roots.as_deref(), key.as_deref(), now, &mut out);
    }
    if let Some(bytes) = signing_text {
        let ok = std::str::from_utf8(bytes)
            .map_err(|_| identity::IdentityError::PrivateKeyPem("not UTF-8 text".into()))
            .and_then(identity::signing_key_from_pem);
        if let Err(e) = ok {
            out.push(Finding::error(
                "node.signing_key",
                format!("{}: {e}", node.signing_key.display()),
            ));
        }
    }
    partner_checks(cfg, &mut out);
    room(cfg, files.data_free, &mut out);
    out
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

fn contents<'a>(
    field: &str,
    path: &Path,
    read: &'a FileRead,
    out: &mut Vec<Finding>,
) -> Option<&'a [u8]> {
    match read {
        FileRead::Read { bytes, .. } => Some(bytes),
        FileRead::Missing => {
            out.push(Finding::error(
                field,
                format!("{} does not exist", path.display()),
            ));
            None
        }
        FileRead::Unreadable(why) => {
            out.push(Finding::error(
                field,
                format!("{} cannot be read: {why}", path.display()),
            ));
            None
        }
    }
}

/// Private keys: anything for others or group write is an error; group read only is a
/// warning, because a Kubernetes Secret mounted with `fsGroup` is exactly that.
fn private_mode(field: &str, path: &Path, read: &FileRead, out: &mut Vec<Finding>) {
    let FileRead::Read {
        mode: Some(mode), ..
    } = read
    else {
        return;
    };
    let path = path.display();
    if mode & 0o027 != 0 {
        out.push(Finding::error(
            field,
            format!(
                "{path} is mode {mode:04o}: a private key must be 0600, readable by the service's user only (chmod 600 {path})"
            ),
        ));
    } else if mode & 0o050 != 0 {
        out.push(Finding::warning(
            field,
            format!(
                "{path} is mode {mode:04o}: 0600 is expected; group read is fine only if the group is the service's own (as with a Kubernetes Secret mounted with fsGroup)"
            ),
        ));
    }
}

fn pem_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

fn parse_cert<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| format!("a certificate does not parse: {e}"))
}

fn time_text(secs: i64) -> String {
    Timestamp::from_unix_ms(u64::try_from(secs).unwrap_or(0).saturating_mul(1000)).to_string()
}

/// Not yet valid or expired: error; expiring within [`RENEW_WITHIN`]: warning.
fn validity(
    field: &str,
    what: &str,
    cert: &X509Certificate<'_>,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let now_s = i64::try_from(now.unix_ms() / 1000).unwrap_or(i64::MAX);
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now_s < not_before {
        out.push(Finding::error(
            field,
            format!(
                "{what} is not valid before {} (check this machine's clock)",
                time_text(not_before)
            ),
        ));
    } else if now_s >= not_after {
        out.push(Finding::error(
            field,
            format!("{what} expired on {}: renew it", time_text(not_after)),
        ));
    } else if not_after - now_s < RENEW_WITHIN.as_secs() as i64 {
        let days = (not_after - now_s) / 86_400;
        out.push(Finding::warning(
            field,
            format!(
                "{what} expires on {}, in {days} days: renew it before then",
                time_text(not_after)
            ),
        ));
    }
}

/// Parses the CA file and checks each certificate is a valid CA; returns them.
fn check_ca(
    path: &Path,
    bytes: &[u8],
    now: Timestamp,
    out: &mut Vec<Finding>,
) -> Option<Vec<CertificateDer<'static>>> {
    let field = "node.ca_cert";
    let certs = match pem_certs(bytes) {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::error(field, format!("{}: {e}", path.display())));
            return None;
        }
    };
    for der in &certs {
        match parse_cert(der) {
            Err(e) => {
                out.push(Finding::error(field, format!("{}: {e}", path.display())));
                return None;
            }
            Ok(cert) => {
                if !cert.is_ca() {
                    out.push(Finding::error(
                        field,
                        format!(
                            "{}: {} is not a CA certificate",
                            path.display(),
                            cert.subject()
                        ),
                    ));
                }
                let what = format!("the CA certificate in {}", path.display());
                validity(field, &what, &cert, now, out);
            }
        }
    }
    Some(certs)
}

/// Parses the TLS key; returns its SubjectPublicKeyInfo (DER) when rustls can use it.
fn tls_key(path: &Path, bytes: &[u8], out: &mut Vec<Finding>) -> Option<Vec<u8>> {
    let field = "node.tls_key";
    let der = match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(d) => d,
        Err(e) => {
            out.push(Finding::error(
                field,
                format!(
                    "{}: not a PEM private key (PKCS#8 expected): {e}",
                    path.display()
                ),
            ));
            return None;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    match provider.key_provider.load_private_key(der) {
        Ok(key) => key.public_key().map(|spki| spki.as_ref().to_vec()),
        Err(e) => {
            out.push(Finding::error(
                field,
                format!("{}: TLS cannot use this key: {e}", path.display()),
            ));
            None
        }
    }
}

/// Is `child` signed by `parent`?
fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer() == parent.subject() && child.verify_signature(Some(parent.public_key())).is_ok()
}

/// Does `chain` (leaf first, then intermediates in any order) lead to one of `roots`?
fn chains_to(chain: &[X509Certificate<'_>], roots: &[X509Certificate<'_>]) -> bool {
    let Some(mut current) = chain.first() else {
        return false;
    };
    for _ in 0..chain.len() {
        if roots.iter().any(|r| issued_by(current, r)) {
            return true;
        }
        match chain[1..].iter().find(|c| issued_by(current, c)) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

fn check_tls_cert(
    cfg: &NodeConfig,
    bytes: &[u8],
    roots: Option<&[CertificateDer<'static>]>,
    key_spki: Option<&[u8]>,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let field = "node.tls_cert";
    let node = &cfg.node;
    let path = node.tls_cert.display();
    let ders = match pem_certs(bytes) {
        Ok(c) => c,
        Err(e) => return out.push(Finding::error(field, format!("{path}: {e}"))),
    };
    let chain = match ders.iter().map(parse_cert).collect::<Result<Vec<_>, _>>() {
        Ok(c) => c,
        Err(e) => return out.push(Finding::error(field, format!("{path}: {e}"))),
    };
    let leaf = &chain[0];
    validity(field, &format!("the certificate in {path}"), leaf, now, out);
    match partner_from_cert(ders[0].as_ref()) {
        Ok(id) if id == node.id => {}
        Ok(id) => out.push(Finding::error(
            field,
            format!(
                "{path} names {id}, not node.id {}: partners would take this node for {id}",
                node.id
            ),
        )),
        Err(e) => out.push(Finding::error(field, format!("{path}: {e}"))),
    }
    if let Some(spki) = key_spki {
        if leaf.public_key().raw != spki {
            out.push(Finding::error(
                "node.tls_key",
                format!(
                    "{} is not the key of the certificate in {path}",
                    node.tls_key.display()
                ),
            ));
        }
    }
    let Some(root_ders) = roots else { return };
    let Ok(root_certs) = root_ders
        .iter()
        .map(parse_cert)
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    if !chains_to(&chain, &root_certs) {
        out.push(Finding::error(
            field,
            format!(
                "{path} is not issued by the CA in node.ca_cert ({}): it comes from another CA (issuer {}), and partners would refuse it",
                node.ca_cert.display(),
                leaf.issuer()
            ),
        ));
    }
    // The exact verification a partner runs, for anything the checks above missed
    // (key usage, constraints); only when they found nothing, so each cause is named once.
    let named_already = out.iter().any(|f| {
        f.severity == Severity::Error
            && matches!(f.field.as_str(), "node.ca_cert" | "node.tls_cert")
    });
    if !named_already {
        if let Err(e) = verify_as_partner(cfg, &ders, root_ders, now) {
            out.push(Finding::error(
                field,
                format!("{path}: a partner would refuse it: {e}"),
            ));
        }
    }
}

/// Verifies the node's chain as a partner connecting to it would (rustls, webpki).
fn verify_as_partner(
    cfg: &NodeConfig,
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    now: Timestamp,
) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(cfg.node.id.as_str().to_owned()).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(Duration::from_millis(now.unix_ms()));
    use rustls::client::danger::ServerCertVerifier as _;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
        .map(|_| ())
        .map_err(|e| e.to_string())
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

mod locate;

pub use locate::field_at;

#[cfg(test)]
mod tests;
