//! Audit-key rotation: the statement, in the log itself, that its checkpoint key
//! changes after one record, signed by the old key and the new, and the chain of keys
//! a verifier follows from a key it trusts ([`KeyChain`]). Pure: keys, records and
//! sizes go in.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::proto;

/// The domain of a rotation statement's signatures.
pub const ROTATION_DOMAIN: &[u8] = b"renkei/audit-key-rotation/v1\0";

/// Why a rotation statement does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    /// A key or signature of the wrong size.
    #[error("the key rotation is malformed: {0}")]
    Malformed(&'static str),
    /// It rotates from another key than the one in force.
    #[error("the key rotation at record {at} starts from another key than the one in force")]
    NotFromKeyInForce {
        /// The record's seq.
        at: u64,
    },
    /// A signature does not verify.
    #[error("the key rotation at record {at} is not signed by the {which} key")]
    BadSignature {
        /// The record's seq.
        at: u64,
        /// "old" or "new".
        which: &'static str,
    },
    /// Its `at` is not the seq of the record that holds it.
    #[error("the key rotation in record {seq} says it takes effect after record {at}")]
    Misplaced {
        /// The record's seq.
        seq: u64,
        /// What it says.
        at: u64,
    },
}

fn message(origin: &str, at: u64, old: &VerifyingKey, new: &VerifyingKey) -> Vec<u8> {
    let mut m = ROTATION_DOMAIN.to_vec();
    m.extend_from_slice(origin.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&at.to_be_bytes());
    m.extend_from_slice(old.as_bytes());
    m.extend_from_slice(new.as_bytes());
    m
}

/// The statement that the log `origin`'s key changes from `old` to `new` after record
/// `at`, signed by both.
pub fn rotate(origin: &str, at: u64, old: &SigningKey, new: &SigningKey) -> proto::KeyRotation {
    let m = message(origin, at, &old.verifying_key(), &new.verifying_key());
    proto::KeyRotation {
        old_key: old.verifying_key().as_bytes().to_vec().into(),
        new_key: new.verifying_key().as_bytes().to_vec().into(),
        at,
        old_signature: old.sign(&m).to_bytes().to_vec().into(),
        new_signature: new.sign(&m).to_bytes().to_vec().into(),
    }
}

fn key(bytes: &[u8]) -> Result<VerifyingKey, RotationError> {
    let b: [u8; 32] = bytes
        .try_into()
        .map_err(|_| RotationError::Malformed("a key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&b).map_err(|_| RotationError::Malformed("a key is not a point"))
}

/// The checkpoint keys of one log, from a key a verifier trusts: which key signs a
/// checkpoint of a given size, as the log's rotation records say.
#[derive(Clone, Debug)]
pub struct KeyChain {
    origin: String,
    /// (first size it signs, key), ascending.
    keys: Vec<(u64, VerifyingKey)>,
}

impl KeyChain {
    /// A chain starting at `trusted` for the log `origin`.
    pub fn new(origin: &str, trusted: VerifyingKey) -> KeyChain {
        KeyChain {
            origin: origin.to_owned(),
            keys: vec![(0, trusted)],
        }
    }

    /// The key in force now (the last of the chain).
    pub fn current(&self) -> &VerifyingKey {
        &self.keys[self.keys.len() - 1].1
    }

    /// The key that signs a checkpoint of `size` records.
    pub fn for_size(&self, size: u64) -> &VerifyingKey {
        let at = self.keys.iter().rposition(|(from, _)| *from <= size);
        &self.keys[at.unwrap_or(0)].1
    }

    /// Follows the rotation in record `seq`: from the key in force, signed by it and
    /// by the new key; checkpoints of more than `seq` records are then the new key's.
    pub fn follow(&mut self, seq: u64, r: &proto::KeyRotation) -> Result<(), RotationError> {
        if r.at != seq {
            return Err(RotationError::Misplaced { seq, at: r.at });
        }
        let (old, new) = (key(&r.old_key)?, key(&r.new_key)?);
        if old != *self.current() {
            return Err(RotationError::NotFromKeyInForce { at: seq });
        }
        let m = message(&self.origin, seq, &old, &new);
        let sig = |b: &[u8], which| {
            Signature::from_slice(b).map_err(|_| RotationError::BadSignature { at: seq, which })
        };
        old.verify_strict(&m, &sig(&r.old_signature, "old")?)
            .map_err(|_| RotationError::BadSignature {
                at: seq,
                which: "old",
            })?;
        new.verify_strict(&m, &sig(&r.new_signature, "new")?)
            .map_err(|_| RotationError::BadSignature {
                at: seq,
                which: "new",
            })?;
        self.keys.push((seq + 1, new));
        Ok(())
    }
}

/// The key a log's first rotation record rotates from: where a verifier given no key
/// starts (and must then say it trusts only what the log says of itself).
pub fn first_key(records: &[proto::AuditRecord]) -> Option<VerifyingKey> {
    let r = records.iter().find_map(|r| r.key_rotation.as_ref())?;
    key(&r.old_key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_chain_follows_a_rotation_signed_by_both_keys() {
        let mut chain = KeyChain::new("renkei/jp-mod/audit", k(1).verifying_key());
        let r = rotate("renkei/jp-mod/audit", 9, &k(1), &k(2));
        chain.follow(9, &r).expect("followed");
        assert_eq!(
            chain.for_size(9),
            &k(1).verifying_key(),
            "up to the rotation"
        );
        assert_eq!(chain.for_size(10), &k(2).verifying_key(), "after it");
        assert_eq!(chain.current(), &k(2).verifying_key());
    }

    #[test]
    fn a_forged_or_misplaced_rotation_is_refused() {
        let origin = "renkei/jp-mod/audit";
        let chain = KeyChain::new(origin, k(1).verifying_key());
        // Someone holding only a new key: the old key's signature is its own.
        let mut forged = rotate(origin, 9, &k(3), &k(2));
        forged.old_key = k(1).verifying_key().as_bytes().to_vec().into();
        let e = chain.clone().follow(9, &forged).expect_err("forged");
        assert_eq!(
            e,
            RotationError::BadSignature {
                at: 9,
                which: "old"
            }
        );
        let from_other = rotate(origin, 9, &k(3), &k(2));
        assert!(matches!(
            chain.clone().follow(9, &from_other),
            Err(RotationError::NotFromKeyInForce { .. })
        ));
        let r = rotate(origin, 9, &k(1), &k(2));
        assert!(matches!(
            chain.clone().follow(10, &r),
            Err(RotationError::Misplaced { .. })
        ));
        let other_log = rotate("renkei/us-dod/audit", 9, &k(1), &k(2));
        assert!(
            chain.clone().follow(9, &other_log).is_err(),
            "another log's rotation"
        );
    }
}
