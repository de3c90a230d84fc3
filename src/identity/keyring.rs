//! The keyring: which Ed25519 keys may sign for which origin and when, and which keys
//! are revoked. Pure lookups with the time passed in; it reads no files and no clock.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{KeyId, PartnerId, PublicKey};
use crate::timestamp::Timestamp;

/// When a key may sign: from `not_before` (inclusive) until `not_after` (exclusive).
/// Either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validity {
    /// First instant the key may sign, if bounded.
    pub not_before: Option<Timestamp>,
    /// First instant the key may no longer sign, if bounded.
    pub not_after: Option<Timestamp>,
}

impl Validity {
    /// Does the window contain `t`?
    pub fn contains(&self, t: Timestamp) -> bool {
        self.not_before.is_none_or(|nb| t >= nb) && self.not_after.is_none_or(|na| t < na)
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.not_before, self.not_after) {
            (None, None) => f.write_str("always"),
            (Some(a), None) => write!(f, "from {a}"),
            (None, Some(b)) => write!(f, "until {b}"),
            (Some(a), Some(b)) => write!(f, "from {a} until {b}"),
        }
    }
}

/// Why the keyring refuses a (origin, key id) pair at a given time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyLookupError {
    /// No key with this id is configured for the origin.
    #[error("no signing key with id {key_id} is configured for origin {origin}")]
    Unknown {
        /// The claimed origin.
        origin: PartnerId,
        /// The key id the signer named.
        key_id: KeyId,
    },
    /// The key is on the revocation list.
    #[error("signing key {key_id} of origin {origin} is revoked")]
    Revoked {
        /// The claimed origin.
        origin: PartnerId,
        /// The revoked key's id.
        key_id: KeyId,
    },
    /// The key exists but was not valid at the given time.
    #[error("signing key {key_id} of origin {origin} is valid {validity}, not at {at}")]
    NotValidAt {
        /// The claimed origin.
        origin: PartnerId,
        /// The key's id.
        key_id: KeyId,
        /// Its validity window.
        validity: Validity,
        /// The time it was used for.
        at: Timestamp,
    },
    /// The key was valid when the bulletin claims it was signed, but had expired when
    /// it was received.
    #[error("signing key {key_id} of origin {origin} is valid {validity}; it had expired when the bulletin arrived ({at}), whatever creation time the bulletin claims")]
    ExpiredOnReceipt {
        /// The claimed origin.
        origin: PartnerId,
        /// The key's id.
        key_id: KeyId,
        /// Its validity window.
        validity: Validity,
        /// When the bulletin was received.
        at: Timestamp,
    },
}

/// A key registered for one origin.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RegisteredKey {
    key: PublicKey,
    validity: Validity,
}

/// Which public keys may sign for which origin, and which keys are revoked.
///
/// A revoked key is refused for every bulletin, whatever its creation time: the
/// creation time is asserted by the same key, so a thief could backdate it.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: HashMap<(PartnerId, KeyId), RegisteredKey>,
    revoked: HashSet<PublicKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `key` as a signing key of `origin` within `validity`. Returns false
    /// (and changes nothing) when the origin already has a key with the same key id.
    pub fn insert(&mut self, origin: PartnerId, key: PublicKey, validity: Validity) -> bool {
        use std::collections::hash_map::Entry;
        match self.keys.entry((origin, key.key_id())) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(RegisteredKey { key, validity });
                true
            }
        }
    }

    /// Puts `key` on the revocation list.
    pub fn revoke(&mut self, key: PublicKey) {
        self.revoked.insert(key);
    }

    /// Is `key` revoked?
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.contains(key)
    }

    /// The keys of `partner` not revoked (valid at some time or other).
    pub fn keys_of(&self, partner: &PartnerId) -> Vec<PublicKey> {
        let keys = self.keys.iter().filter(|((p, _), _)| p == partner);
        keys.map(|(_, reg)| reg.key)
            .filter(|k| !self.revoked.contains(k))
            .collect()
    }

    /// Whether any key of `partner` is configured (revoked or not, valid or not).
    pub fn knows(&self, partner: &PartnerId) -> bool {
        self.keys.keys().any(|(p, _)| p == partner)
    }

    /// Whether `origin` holds a key that may sign at `at`: registered, valid then and
    /// not revoked. A desk without one cannot publish, so no one may sign for it either.
    pub fn can_sign(&self, origin: &PartnerId, at: Timestamp) -> bool {
        self.keys.iter().any(|((o, _), reg)| {
            o == origin && !self.revoked.contains(&reg.key) && reg.validity.contains(at)
        })
    }

    /// [`Keyring::lookup`], and when `received` is given, the key must not have
    /// expired by then either: a key past `not_after` cannot sign by backdating.
    pub fn lookup_received(
        &self,
        origin: &PartnerId,
        key_id: &KeyId,
        created: Timestamp,
        received: Option<Timestamp>,
    ) -> Result<&PublicKey, KeyLookupError> {
        let key = self.lookup(origin, key_id, created)?;
        let validity = self
            .keys
            .get(&(origin.clone(), *key_id))
            .map(|r| r.validity);
        if let (Some(at), Some(validity)) = (received, validity) {
            if validity.not_after.is_some_and(|end| at >= end) {
                return Err(KeyLookupError::ExpiredOnReceipt {
                    origin: origin.clone(),
                    key_id: *key_id,
                    validity,
                    at,
                });
            }
        }
        Ok(key)
    }

    /// The key that may verify a signature of `origin` made with `key_id` at time `at`.
    pub fn lookup(
        &self,
        origin: &PartnerId,
        key_id: &KeyId,
        at: Timestamp,
    ) -> Result<&PublicKey, KeyLookupError> {
        let reg =
            self.keys
                .get(&(origin.clone(), *key_id))
                .ok_or_else(|| KeyLookupError::Unknown {
                    origin: origin.clone(),
                    key_id: *key_id,
                })?;
        if self.revoked.contains(&reg.key) {
            return Err(KeyLookupError::Revoked {
                origin: origin.clone(),
                key_id: *key_id,
            });
        }
        if !reg.validity.contains(at) {
            return Err(KeyLookupError::NotValidAt {
                origin: origin.clone(),
                key_id: *key_id,
                validity: reg.validity,
                at,
            });
        }
        Ok(&reg.key)
    }
}
