//! `[[revoked]]` entries: signing keys and TLS certificates a node must never trust
//! again, each with the reason an operator gave. Parsing only; the keyring and
//! admission act on them.

use serde::Deserialize;

use crate::identity::{CertFingerprint, PublicKey};

/// One `[[revoked]]` entry: a signing key or a TLS certificate that must never be
/// trusted again (a lost laptop, a stolen server).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RevocationEntry")]
pub struct Revocation {
    /// What is revoked.
    pub what: Revoked,
    /// Why, for the audit log and operators.
    pub reason: String,
}

/// What a `[[revoked]]` entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a handful per configuration; boxing buys nothing
pub enum Revoked {
    /// A signing key: no bulletin it signed is accepted, whatever its creation time.
    Key(PublicKey),
    /// A TLS certificate, by its SHA-256 fingerprint: it cannot connect.
    Certificate(CertFingerprint),
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revoked::Key(k) => write!(f, "signing key {k}"),
            Revoked::Certificate(c) => write!(f, "TLS certificate {c}"),
        }
    }
}

/// A `[[revoked]]` table as written: exactly one of `key` and `certificate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationEntry {
    key: Option<PublicKey>,
    certificate: Option<CertFingerprint>,
    #[serde(default)]
    reason: String,
}

/// Why a `[[revoked]]` entry says nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum RevocationEntryError {
    /// It names a key and a certificate at once.
    #[error(
        "a [[revoked]] entry names either a `key` or a `certificate`, not both: write two entries"
    )]
    Both,
    /// It names neither.
    #[error("a [[revoked]] entry needs `key = \"ed25519:...\"` (a signing key) or `certificate = \"sha256:...\"` (a TLS certificate's fingerprint, from `renkei partner card`)")]
    Neither,
}

impl TryFrom<RevocationEntry> for Revocation {
    type Error = RevocationEntryError;

    fn try_from(e: RevocationEntry) -> Result<Self, RevocationEntryError> {
        let what = match (e.key, e.certificate) {
            (Some(k), None) => Revoked::Key(k),
            (None, Some(c)) => Revoked::Certificate(c),
            (Some(_), Some(_)) => return Err(RevocationEntryError::Both),
            (None, None) => return Err(RevocationEntryError::Neither),
        };
        Ok(Revocation {
            what,
            reason: e.reason,
        })
    }
}

impl Revocation {
    /// The revoked signing key, if this entry names one.
    pub fn key(&self) -> Option<PublicKey> {
        match self.what {
            Revoked::Key(k) => Some(k),
            Revoked::Certificate(_) => None,
        }
    }
}
