//! A node's configuration file (TOML): its own identity and files, its limits, its
//! partners with their roles, keys and sharing rules, and the revoked keys.
//!
//! Parsing and validation are pure ([`NodeConfig::parse`]); [`NodeConfig::load`] only
//! reads the file first. Every error names the file, the field and what is wrong.
//! This module does not open the key and certificate files it names (that is the
//! shell's job when it starts) and makes no sharing decisions (that is `policy`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bulletin::{Kind, Tlp};
use crate::identity::{
    Affiliation, CertFingerprint, Country, GroupName, Keyring, Organisation, PartnerId, PublicKey,
    Role, Validity,
};
use crate::timestamp::Timestamp;

pub mod card;
mod change;
pub mod check;
mod digest;
pub(crate) mod edit;
pub mod federation;
mod revocation;
mod sections;
pub mod template;
mod validate;

pub use change::ConfigChange;
pub use federation::{FederationSection, OriginConfig, PeerAddress};
pub use revocation::{Revocation, RevocationEntryError, Revoked};

pub use sections::{
    AdminSection, AuditSection, DisclosureSection, LimitsSection, MetricsSection, StorageSection,
    TaxiiSection, TransportSection, FRAME_OVERHEAD,
};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown field, a missing field or a malformed value.
    #[error("{file}:{line}:{column}: {message}{}", snippet.as_deref().map(|s| format!("\n    {s}")).unwrap_or_default())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
        /// The offending line, trimmed.
        snippet: Option<String>,
    },
    /// Well-formed, but a value breaks a rule.
    #[error("{file}: {field}: {problem}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Dotted path of the field, e.g. `partner[2].keys[0].public`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// The `[node]` table: who this node is and where its files are.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's partner id (the DNS SAN of its TLS certificate).
    pub id: PartnerId,
    /// UDP address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Directory of the node's sled database and value files.
    pub data_dir: PathBuf,
    /// The federation CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's TLS certificate (PEM), signed by the federation CA.
    pub tls_cert: PathBuf,
    /// Its private key (PKCS#8 PEM, mode 0600).
    pub tls_key: PathBuf,
    /// The node's Ed25519 signing key (PKCS#8 PEM, mode 0600), for audit checkpoints.
    pub signing_key: PathBuf,
    /// The country (ISO 3166-1 alpha-2) whose node this is: its partners of that
    /// country are domestic in the cooperation figures.
    pub country: Option<Country>,
    /// Or the international organisation whose node this is.
    pub organisation: Option<Organisation>,
}

/// One signing key of a partner, with its optional validity window.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `ed25519:<base64>`.
    pub public: PublicKey,
    /// First instant the key may sign.
    pub not_before: Option<Timestamp>,
    /// First instant it may no longer sign.
    pub not_after: Option<Timestamp>,
}

impl KeyConfig {
    /// The validity window.
    pub fn validity(&self) -> Validity {
        Validity {
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

/// One `[[partner]]`: a party this node exchanges with, and the rules for sharing with it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// The partner id (the DNS SAN of its TLS certificate).
    pub id: PartnerId,
    /// What it may do here.
    pub role: Role,
    /// The highest TLP it is cleared to receive (required unless an auditor).
    pub clearance: Option<Tlp>,
    /// Kinds shared with it; all kinds when absent.
    pub kinds: Option<Vec<Kind>>,
    /// Bulletins carrying any of these tags are never shared with it (case-insensitive).
    #[serde(default)]
    pub deny_tags: Vec<String>,
    /// Groups it belongs to, for `group:NAME` audiences.
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// Ed25519 keys that sign for it as an origin.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Pins the partner's TLS certificate (`sha256:<hex>` of its DER): when present,
    /// only that exact certificate is accepted for this partner, not any the CA issued.
    pub tls_fingerprint: Option<CertFingerprint>,
    /// Where the partner's own node listens: a relay with an address is a peer node,
    /// and this node keeps a link with it.
    pub address: Option<PeerAddress>,
    /// Its country (ISO 3166-1 alpha-2), for the cooperation figures.
    pub country: Option<Country>,
    /// Or the international organisation it belongs to (e.g. `NATO-CCDCOE`).
    pub organisation: Option<Organisation>,
}

impl PartnerConfig {
    /// The partner's address when it is a peer node (a relay with an address).
    pub fn peer_address(&self) -> Option<&PeerAddress> {
        self.address.as_ref().filter(|_| self.role == Role::Relay)
    }

    /// Whose desk or node it is, when the configuration says.
    pub fn affiliation(&self) -> Option<Affiliation> {
        Affiliation::of(self.country, self.organisation.as_ref())
    }

    /// Is bulletin kind `k` shared with this partner?
    pub fn shares_kind(&self, k: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|ks| ks.contains(&k))
    }
}

/// A node's whole configuration, validated.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[transport]`.
    #[serde(default)]
    pub transport: TransportSection,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[admin]`.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[disclosure]`.
    #[serde(default)]
    pub disclosure: DisclosureSection,
    /// `[federation]`.
    #[serde(default)]
    pub federation: FederationSection,
    /// `[taxii]`.
    #[serde(default)]
    pub taxii: TaxiiSection,
    /// `[[partner]]` entries.
    #[serde(default, rename = "partner")]
    pub partners: Vec<PartnerConfig>,
    /// `[[origin]]` entries: organisations reached only through a peer node.
    #[serde(default, rename = "origin")]
    pub origins: Vec<OriginConfig>,
    /// `[[target]]`: what the cooperation programme aims at, per fiscal year.
    #[serde(default, rename = "target")]
    pub targets: Vec<crate::metrics::YearTargets>,
    /// `[[revoked]]` entries.
    #[serde(default)]
    pub revoked: Vec<Revocation>,
    /// The file it was loaded from, which a reload reads again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Makes relative paths relative to the directory of the file that names them.
fn resolve_paths<'a>(file: &Path, paths: impl IntoIterator<Item = &'a mut PathBuf>) {
    let base = file.parent().unwrap_or(Path::new(""));
    for p in paths {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

/// Turns a toml error into one that names the file, line and column.
pub(crate) fn syntax_error(file: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let (line, column, snippet) = match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let snippet = text.lines().nth(line - 1).map(|l| l.trim().to_owned());
            (line, column, snippet)
        }
        None => (1, 1, None),
    };
    ConfigError::Syntax {
        file: file.to_owned(),
        line,
        column,
        message: err.message().trim().to_owned(),
        snippet,
    }
}

impl NodeConfig {
    /// Reads and validates the file at `path`; relative paths in it are taken from
    /// the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read(path)?;
        Self::parse_at(&text, path)
    }

    /// Parses and validates the text of the file at `path` (already read), taking
    /// relative paths from the file's directory as [`NodeConfig::load`] does.
    pub fn parse_at(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut cfg = Self::parse(text, path)?;
        cfg.source = Some(path.to_owned());
        let n = &mut cfg.node;
        resolve_paths(
            path,
            [
                &mut n.data_dir,
                &mut n.ca_cert,
                &mut n.tls_cert,
                &mut n.tls_key,
                &mut n.signing_key,
            ],
        );
        Ok(cfg)
    }

    /// Parses and validates configuration text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<NodeConfig, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        cfg.validate()
            .map_err(|(field, problem)| ConfigError::Invalid {
                file: file.to_owned(),
                field,
                problem,
            })?;
        Ok(cfg)
    }

    /// SHA-256 of the sharing policy in force: every partner's rules and keys, every
    /// origin, every revocation, the hop limit and disclosure, in a canonical text form
    /// (sorted, one line each), for the audit log.
    pub fn policy_digest(&self) -> [u8; 32] {
        digest::policy_digest(self)
    }

    /// The `[[origin]]` with this id, if configured.
    pub fn origin(&self, id: &PartnerId) -> Option<&OriginConfig> {
        self.origins.iter().find(|o| &o.id == id)
    }

    /// The partners that are peer nodes, with their addresses.
    pub fn peers(&self) -> impl Iterator<Item = (&PartnerId, &PeerAddress)> {
        self.partners
            .iter()
            .filter_map(|p| p.peer_address().map(|a| (&p.id, a)))
    }

    /// The partner with this id, if configured.
    pub fn partner(&self, id: &PartnerId) -> Option<&PartnerConfig> {
        self.partners.iter().find(|p| &p.id == id)
    }

    /// The `[[revoked]]` entry of this TLS certificate, if it is revoked.
    pub fn certificate_revoked(&self, cert: &CertFingerprint) -> Option<&Revocation> {
        self.revoked
            .iter()
            .find(|r| r.what == Revoked::Certificate(*cert))
    }

    /// Every partner key with its validity, and every revoked key.
    pub fn keyring(&self) -> Keyring {
        let mut ring = Keyring::new();
        for p in &self.partners {
            for k in &p.keys {
                // Duplicates were refused by validation, so insert cannot fail here.
                ring.insert(p.id.clone(), k.public, k.validity());
            }
        }
        for o in &self.origins {
            for k in &o.keys {
                ring.insert(o.id.clone(), k.public, k.validity());
            }
        }
        for key in self.revoked.iter().filter_map(Revocation::key) {
            ring.revoke(key);
        }
        ring
    }
}

/// The `[client]` table of a client configuration: who the client is, which node it
/// talks to, and its keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The client's partner id (the DNS SAN of its TLS certificate).
    pub id: PartnerId,
    /// The node's UDP address.
    pub server: SocketAddr,
    /// The node's partner id, checked against its certificate.
    pub server_name: PartnerId,
    /// The federation CA certificate.
    pub ca_cert: PathBuf,
    /// The client's TLS certificate.
    pub tls_cert: PathBuf,
    /// Its private key.
    pub tls_key: PathBuf,
    /// The Ed25519 key the client signs its bulletins with (needed to publish).
    pub signing_key: Option<PathBuf>,
}

/// An origin whose bulletins a client verifies, with its keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginKeys {
    /// The origin's partner id.
    pub id: PartnerId,
    /// Its signing keys.
    pub keys: Vec<KeyConfig>,
}

/// A client's configuration file: `[client]` and the `[[partner]]` origins it trusts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `[client]`.
    pub client: ClientSection,
    /// `[[partner]]`: keys of the origins whose deliveries it verifies.
    #[serde(default, rename = "partner")]
    pub partners: Vec<OriginKeys>,
    /// `[limits]`: the bulletin limits the client applies to what it receives.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[transport]`: keep-alive and idle timeout.
    #[serde(default)]
    pub transport: TransportSection,
}

impl ClientConfig {
    /// Reads a client configuration; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        ClientConfig::parse(&read(path)?, path)
    }

    /// Reads client configuration text from `path` (which relative paths follow).
    pub fn parse(text: &str, path: &Path) -> Result<ClientConfig, ConfigError> {
        let mut cfg: ClientConfig =
            toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let c = &mut cfg.client;
        resolve_paths(
            path,
            [&mut c.ca_cert, &mut c.tls_cert, &mut c.tls_key]
                .into_iter()
                .chain(c.signing_key.as_mut()),
        );
        let mut ring = Keyring::new();
        for (i, p) in cfg.partners.iter().enumerate() {
            for (k, key) in p.keys.iter().enumerate() {
                if !ring.insert(p.id.clone(), key.public, key.validity()) {
                    return Err(ConfigError::Invalid {
                        file: path.to_owned(),
                        field: format!("partner[{i}].keys[{k}].public"),
                        problem: format!("{} is listed twice for {}", key.public, p.id),
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// The keys of every trusted origin.
    pub fn keyring(&self) -> Keyring {
        let mut ring = Keyring::new();
        for p in &self.partners {
            for k in &p.keys {
                ring.insert(p.id.clone(), k.public, k.validity());
            }
        }
        ring
    }
}

#[cfg(test)]
mod tests;
