//! Who is who: partner ids, groups, roles, Ed25519 signing keys and the keyring that
//! says which key may sign for which origin, when, and which keys are revoked.
//!
//! Pure: no clock reads (times are passed in) and no I/O except decoding key text
//! the caller has already read. It does not decide sharing (that is `policy`) and
//! does not touch TLS identities (that is `transport`).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

mod affiliation;
mod keyring;

pub use affiliation::{Affiliation, AffiliationError, Country, Organisation};
pub use keyring::{KeyLookupError, Keyring, Validity};

use crate::text::excerpt;

/// Errors in identity text: ids, groups, roles and keys. The text they quote is an
/// escaped, bounded excerpt (`text::excerpt`), and key text is never quoted
/// when it looks like PEM: a private key given where a public one belongs must not be
/// echoed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Partner id grammar violated.
    #[error("{0} is not a valid partner id: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit")]
    BadPartnerId(String),
    /// Group name grammar violated.
    #[error("{0} is not a valid group name: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit")]
    BadGroupName(String),
    /// Audience entry is neither a partner id nor `group:NAME`.
    #[error("{0} is not an audience entry: use a partner id or group:NAME")]
    BadAudience(String),
    /// Role text unknown.
    #[error("{0} is not a role: use liaison, relay or auditor")]
    BadRole(String),
    /// Public key text does not start with `ed25519:`.
    #[error("public key {0} must be written ed25519:<base64 of the 32 key bytes> (a signing key's .pub file holds that form)")]
    PublicKeyFormat(String),
    /// Public key text decodes to the wrong number of bytes.
    #[error("public key must be 32 bytes, {0} decodes to {1} bytes")]
    PublicKeyLength(String, usize),
    /// Not a point on the curve, or a weak (small-order) key that anyone could sign for.
    #[error("public key {0} is not a usable Ed25519 key (not a canonical point, or a weak one)")]
    PublicKeyInvalid(String),
    /// Private key PEM could not be decoded.
    #[error("not an Ed25519 private key in PKCS#8 PEM form: {0}")]
    PrivateKeyPem(String),
    /// A certificate does not name exactly one partner id.
    #[error("the certificate names no partner id: {0}")]
    NoPartnerId(String),
    /// Certificate fingerprint text malformed.
    #[error("{0} is not a certificate fingerprint: use sha256:<64 hex digits> (or the 32 colon-separated hex bytes `renkei certs init` prints)")]
    BadFingerprint(String),
}

/// Is `s` 1–63 characters of `[a-z0-9-]`, starting with a letter or digit?
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $name:ident, $err:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if is_label(s) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(IdentityError::$err(excerpt(s)))
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdentityError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                if is_label(&s) {
                    Ok($name(s))
                } else {
                    Err(IdentityError::$err(excerpt(&s)))
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        // Maps keyed by id are looked up with the text a record holds.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        // Conversions to text that skip the formatter: ids are copied into records and
        // answers for every bulletin.
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .try_into()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

label_newtype!(
    /// A partner's id: `[a-z0-9][a-z0-9-]{0,62}`, also the DNS name in its TLS certificate.
    PartnerId,
    BadPartnerId
);
label_newtype!(
    /// A named set of partners an operator defines, addressed as `group:NAME`.
    GroupName,
    BadGroupName
);

/// One entry of a bulletin's audience: a partner, or every member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AudienceEntry {
    /// A partner named directly.
    Partner(PartnerId),
    /// `group:NAME`: the partners the receiving node's operator put in that group.
    Group(GroupName),
}

impl FromStr for AudienceEntry {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |_| IdentityError::BadAudience(excerpt(s));
        match s.strip_prefix("group:") {
            Some(name) => name.parse().map(AudienceEntry::Group).map_err(bad),
            None => s.parse().map(AudienceEntry::Partner).map_err(bad),
        }
    }
}

impl fmt::Display for AudienceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudienceEntry::Partner(p) => write!(f, "{p}"),
            AudienceEntry::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// What a partner may do on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes bulletins of its own origin and receives what policy shares with it.
    Liaison,
    /// A peer broker: may forward bulletins of other origins, whose signatures still verify.
    Relay,
    /// Reads the audit log and metrics; never publishes or receives bulletins.
    Auditor,
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "liaison" => Ok(Role::Liaison),
            "relay" => Ok(Role::Relay),
            "auditor" => Ok(Role::Auditor),
            _ => Err(IdentityError::BadRole(excerpt(s))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Liaison => "liaison",
            Role::Relay => "relay",
            Role::Auditor => "auditor",
        })
    }
}

/// A partner as a node admitted it: who, and in what role its configuration gives it.
/// The two travel together from admission to every decision about what it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// Its id, as its certificate names it.
    pub id: PartnerId,
    /// What it may do here.
    pub role: Role,
}

impl Partner {
    /// `id` in `role`.
    pub fn new(id: PartnerId, role: Role) -> Partner {
        Partner { id, role }
    }
}

/// The first 8 bytes of SHA-256 of a 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `signing`'s public half, without decompressing the point as
    /// `PublicKey::of` does (a twentieth of a relay's work when every receipt did).
    pub fn of_signing(signing: &SigningKey) -> KeyId {
        KeyId::of_bytes(signing.verifying_key().as_bytes())
    }

    fn of_bytes(key: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// The key id as bytes, as carried in `SignedBulletin.key_id`.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An Ed25519 public key that is a valid, non-weak curve point.
/// Its text form is `ed25519:<standard base64 of the 32 bytes>`.
#[derive(Clone, Copy)]
pub struct PublicKey(VerifyingKey, ed25519_zebra::VerificationKey);

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PublicKey {
    /// Wraps a verifying key, refusing weak (small-order) points: under the cofactored
    /// rule bulletins are verified with, anyone could sign for such a key.
    pub fn new(key: VerifyingKey) -> Option<Self> {
        if key.is_weak() {
            return None;
        }
        // The same point, decompressed once here rather than at every verification.
        let zip215 = ed25519_zebra::VerificationKey::try_from(key.to_bytes()).ok()?;
        Some(PublicKey(key, zip215))
    }

    /// The public half of a signing key.
    pub fn of(signing: &SigningKey) -> Self {
        let key = signing.verifying_key();
        match ed25519_zebra::VerificationKey::try_from(key.to_bytes()) {
            Ok(zip215) => PublicKey(key, zip215),
            // A signing key's public half is always a valid point.
            Err(_) => unreachable!("the public half of a signing key is a curve point"),
        }
    }

    /// The key id: first 8 bytes of SHA-256 of the 32 key bytes.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_bytes(self.0.as_bytes())
    }

    /// The dalek key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The same key for ZIP-215 verification (see `bulletin::signature`).
    pub(crate) fn zip215(&self) -> &ed25519_zebra::VerificationKey {
        &self.1
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// Key text as an error may quote it: never the content of a PEM file (it may be a
/// private key given by mistake).
fn key_text(text: &str) -> String {
    if text.contains("PRIVATE KEY") {
        "(a private key in PEM form, not shown: give the public key)".into()
    } else if text.contains("-----BEGIN") {
        "(PEM text, not shown)".into()
    } else {
        excerpt(text)
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let b64 = text
            .strip_prefix("ed25519:")
            .ok_or_else(|| IdentityError::PublicKeyFormat(key_text(text)))?;
        let bytes = B64
            .decode(b64)
            .map_err(|_| IdentityError::PublicKeyFormat(key_text(text)))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::PublicKeyLength(key_text(text), bytes.len()))?;
        VerifyingKey::from_bytes(&arr)
            .ok()
            // Refuse non-canonical point encodings (y >= p): one key, one text form.
            .filter(|vk| vk.to_edwards().compress().to_bytes() == arr)
            .and_then(PublicKey::new)
            .ok_or_else(|| IdentityError::PublicKeyInvalid(key_text(text)))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The SHA-256 of a certificate's DER encoding, which pins one exact certificate.
/// Its text form is `sha256:<64 lowercase hex digits>`; the colon-separated hex bytes
/// that `renkei certs init` prints are accepted too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

/// The partner id a certificate (DER) names: its single DNS subject alternative name.
pub fn partner_from_cert(der: &[u8]) -> Result<PartnerId, IdentityError> {
    use x509_parser::prelude::*;
    let bad = |why: String| IdentityError::NoPartnerId(why);
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no subject alternative name".into()))?;
    let names: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [one] => one.parse().map_err(|e: IdentityError| bad(e.to_string())),
        _ => Err(bad(format!("expected one DNS name, found {}", names.len()))),
    }
}

impl CertFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = IdentityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || IdentityError::BadFingerprint(excerpt(text));
        let hex_text = match text.strip_prefix("sha256:") {
            Some(h) if h.len() == 64 => h.to_owned(),
            Some(_) => return Err(bad()),
            // Colon-separated: exactly 32 two-digit groups, so a typo cannot shift bytes.
            None => {
                let groups: Vec<&str> = text.split(':').collect();
                if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
                    return Err(bad());
                }
                groups.concat()
            }
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&hex_text, &mut bytes).map_err(|_| bad())?;
        Ok(CertFingerprint(bytes))
    }
}

impl serde::Serialize for CertFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CertFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Generates a new random Ed25519 signing key from the operating system's RNG.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// Decodes an Ed25519 private key from PKCS#8 PEM text.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, IdentityError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| IdentityError::PrivateKeyPem(e.to_string()))
}

/// Encodes an Ed25519 private key as PKCS#8 PEM text in the form of RFC 8410 §7: a
/// version 1 `PrivateKeyInfo` holding the seed, without the optional public key. That
/// is what OpenSSL writes and what OpenSSL 3, Python's `cryptography` and Go read; the
/// version 2 form with the public key attached (what `SigningKey::to_pkcs8_pem`
/// writes) is refused by the first two. Both forms are read.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, IdentityError> {
    let seed = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    seed.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| IdentityError::PrivateKeyPem(e.to_string()))
}

#[cfg(test)]
mod tests;
