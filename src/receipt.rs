//! Signed delivery receipts (proto/README.md §4.7): a receiver's statement, signed with
//! its Ed25519 signing key, that it received one bulletin (origin, id and digest) at
//! one node at a time it names. The receiver makes one when it acknowledges a delivery
//! ([`Receipt::sign`]); the node it acknowledges to verifies it against the receiver's
//! key and the delivery it acknowledges ([`VerifiedReceipt::verify`], then
//! [`VerifiedReceipt::is_of`]) before recording it, and anyone can verify it again from
//! an export.
//!
//! Pure: bytes, keys and what is expected go in; no clock is read.

use std::collections::HashMap;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use prost::Message as _;

use crate::bulletin::{signature, BulletinId, Digest, VerifiedBulletin};
use crate::identity::{KeyId, KeyLookupError, Keyring, PartnerId, PublicKey};
use crate::proto;
use crate::timestamp::Timestamp;

/// The domain tag a receipt's signed message starts with: 17 ASCII bytes and a zero.
pub const RECEIPT_DOMAIN: &[u8] = b"renkei/receipt/v1\0";

mod batch;
pub use batch::BATCH_DOMAIN;

/// What a receipt states: `receiver`, at `node`, received the bulletin `(origin, id)`
/// with `digest`, at `received` on its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Who received it, and signs.
    pub receiver: PartnerId,
    /// The node it acknowledged the delivery to.
    pub node: PartnerId,
    /// The bulletin's origin.
    pub origin: PartnerId,
    /// The bulletin's id.
    pub bulletin_id: BulletinId,
    /// The bulletin's digest (SHA-256 of its signed bytes).
    pub digest: Digest,
    /// When the receiver handled it.
    pub received: Timestamp,
}

/// Why a receipt is not a valid receipt of the delivery it is given for.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReceiptError {
    /// The bytes are not a receipt.
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    /// The body is not in its canonical encoding, so its bytes have two readings.
    #[error("the receipt's body is not canonically encoded (proto/README.md §4.1)")]
    NotCanonical,
    /// No key of the receiver's verifies it.
    #[error("the receipt's key: {0}")]
    Key(#[from] KeyLookupError),
    /// The signature does not verify.
    #[error("the receipt's signature does not verify with {receiver}'s key {key_id}")]
    BadSignature {
        /// Who the receipt claims signed it.
        receiver: PartnerId,
        /// The key it names.
        key_id: KeyId,
    },
    /// A good receipt, of something else than the delivery it was given for.
    #[error("the receipt is {found}, not {expected}")]
    Mismatch {
        /// What the receipt says.
        found: String,
        /// What the delivery it was given for is.
        expected: String,
    },
}

impl Receipt {
    /// The receipt `receiver` gives, at `node`, for the verified bulletin `b`.
    pub fn of(
        receiver: &PartnerId,
        node: &PartnerId,
        b: &VerifiedBulletin,
        received: Timestamp,
    ) -> Receipt {
        let h = b.header();
        Receipt {
            receiver: receiver.clone(),
            node: node.clone(),
            origin: h.origin.clone(),
            bulletin_id: h.id,
            digest: b.digest(),
            received,
        }
    }

    /// The receipt signed with the receiver's `key`.
    pub fn sign(&self, key: &SigningKey) -> proto::SignedReceipt {
        let body = self.to_proto().encode_to_vec();
        let signature = key.sign(&[RECEIPT_DOMAIN, &body].concat());
        proto::SignedReceipt {
            body: Bytes::from(body),
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
            key_id: Bytes::copy_from_slice(KeyId::of_signing(key).as_bytes()),
            proof: None,
        }
    }

    /// `receipts` signed with the receiver's `key`: with one signature for them all (a
    /// batch receipt, §4.7) when there are two or more of one receiver at one node at
    /// one time, each alone otherwise. Only for a node that takes batch receipts
    /// (`Welcome.takes_batch_receipts`); for any other, [`Receipt::sign`] each.
    pub fn sign_all(receipts: &[Receipt], key: &SigningKey) -> Vec<proto::SignedReceipt> {
        batch::sign_all(receipts, key)
    }

    /// The receipts of deliveries acknowledged together, each with its seq, signed as
    /// an Ack carries them: as one batch when the node acknowledged to takes batch
    /// receipts (`batch`), each alone otherwise.
    pub fn sign_for_ack(
        receipts: Vec<(u64, Receipt)>,
        key: &SigningKey,
        batch: bool,
    ) -> Vec<proto::Receipted> {
        let (seqs, receipts): (Vec<u64>, Vec<Receipt>) = receipts.into_iter().unzip();
        let signed = match batch {
            true => Receipt::sign_all(&receipts, key),
            false => receipts.iter().map(|r| r.sign(key)).collect(),
        };
        let receipted = seqs.into_iter().zip(signed);
        receipted
            .map(|(seq, s)| proto::Receipted {
                seq,
                receipt: Some(s),
            })
            .collect()
    }

    fn to_proto(&self) -> proto::ReceiptBody {
        proto::ReceiptBody {
            receiver: self.receiver.to_string(),
            node: self.node.to_string(),
            origin: self.origin.to_string(),
            bulletin_id: self.bulletin_id.to_string(),
            digest: Bytes::copy_from_slice(&self.digest.0),
            received_unix_ms: self.received.unix_ms(),
        }
    }

    fn from_proto(b: &proto::ReceiptBody) -> Result<Receipt, ReceiptError> {
        let id = |what: &str, text: &str| {
            text.parse::<PartnerId>()
                .map_err(|e| ReceiptError::Malformed(format!("{what}: {e}")))
        };
        let digest = <[u8; 32]>::try_from(&b.digest[..])
            .map_err(|_| ReceiptError::Malformed("the digest is not 32 bytes".into()))?;
        Ok(Receipt {
            receiver: id("receiver", &b.receiver)?,
            node: id("node", &b.node)?,
            origin: id("origin", &b.origin)?,
            bulletin_id: BulletinId::parse_canonical(&b.bulletin_id).ok_or_else(|| {
                ReceiptError::Malformed("the bulletin id is not a canonical UUID".into())
            })?,
            digest: Digest(digest),
            received: Timestamp::from_unix_ms(b.received_unix_ms),
        })
    }

    /// In words: "jp-cdc's receipt at jp-mod of us-dod/ID (digest …)".
    fn describe(&self) -> String {
        format!(
            "{}'s receipt at {} of {}/{} (digest {})",
            self.receiver, self.node, self.origin, self.bulletin_id, self.digest
        )
    }
}

/// The message a receipt's signature covers: its body under the domain of its form.
fn signed_message(signed: &proto::SignedReceipt) -> Vec<u8> {
    let domain = match signed.proof {
        Some(_) => BATCH_DOMAIN,
        None => RECEIPT_DOMAIN,
    };
    [domain, &signed.body].concat()
}

/// What a receipt says, as a single receipt's body, whichever form it travels in; read
/// without checking anything (for showing and indexing what a record keeps).
pub fn stated(signed: &proto::SignedReceipt) -> Option<proto::ReceiptBody> {
    match &signed.proof {
        Some(proof) => batch::stated(signed, proof),
        None => proto::ReceiptBody::decode(signed.body.clone()).ok(),
    }
}

/// A receipt read and its key found, before its signature is checked: what it states,
/// the key, the key id it names and the signature.
type Read = (Receipt, PublicKey, KeyId, Signature);

/// What a signature check is of: a body, a signature, a key, and whether the body is a
/// batch's (signed under another domain).
type Signed<'a> = (&'a [u8], &'a [u8], [u8; 32], bool);

/// A receipt whose signature verified with a key of its receiver's.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReceipt {
    receipt: Receipt,
    key: PublicKey,
    signed: proto::SignedReceipt,
}

impl VerifiedReceipt {
    /// Verifies `signed` with the receiver's key in `keys` valid when it says it
    /// received the bulletin (the signature rule of bulletins, §4.2).
    pub fn verify(
        signed: &proto::SignedReceipt,
        keys: &Keyring,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let mut all = Self::verify_all(std::slice::from_ref(signed), keys);
        all.pop()
            .unwrap_or_else(|| Err(ReceiptError::Malformed("no receipt".into())))
    }

    /// Verifies many receipts, their signatures as one batch (a batch receipt's
    /// signature once, however many of its bulletins are here): each result is what
    /// [`VerifiedReceipt::verify`] would say of it alone (the bulletins' rule, §4.2).
    pub fn verify_all(
        signed: &[proto::SignedReceipt],
        keys: &Keyring,
    ) -> Vec<Result<VerifiedReceipt, ReceiptError>> {
        let read: Vec<_> = signed.iter().map(|s| Self::read(s, keys)).collect();
        let valid = Self::signatures_valid(signed, &read);
        read.into_iter()
            .zip(signed)
            .zip(valid)
            .map(|((r, s), valid)| {
                let (receipt, key, key_id, _) = r?;
                match valid {
                    true => Ok(VerifiedReceipt {
                        receipt,
                        key,
                        signed: s.clone(),
                    }),
                    false => Err(ReceiptError::BadSignature {
                        receiver: receipt.receiver,
                        key_id,
                    }),
                }
            })
            .collect()
    }

    /// Whether each read receipt's signature verifies; each distinct (body, signature,
    /// key, form) is checked once.
    fn signatures_valid(
        signed: &[proto::SignedReceipt],
        read: &[Result<Read, ReceiptError>],
    ) -> Vec<bool> {
        // A batch receipt's shares have the same.
        let mut unique: HashMap<Signed<'_>, usize> = HashMap::new();
        let mut items = Vec::new();
        let mut slot = Vec::with_capacity(signed.len());
        for (s, r) in signed.iter().zip(read) {
            let Ok((_, key, _, sig)) = r else {
                slot.push(None);
                continue;
            };
            let which = (
                &s.body[..],
                &s.signature[..],
                key.verifying_key().to_bytes(),
                s.proof.is_some(),
            );
            let at = *unique.entry(which).or_insert_with(|| {
                items.push((key, signed_message(s), sig));
                items.len() - 1
            });
            slot.push(Some(at));
        }
        let refs: Vec<_> = items.iter().map(|(k, m, s)| (*k, &m[..], *s)).collect();
        let valid = signature::verify_many(&refs);
        slot.into_iter()
            .map(|at| at.and_then(|i| valid.get(i).copied()).unwrap_or(false))
            .collect()
    }

    /// A receipt read and its key found, before its signature is checked.
    fn read(signed: &proto::SignedReceipt, keys: &Keyring) -> Result<Read, ReceiptError> {
        let receipt = match &signed.proof {
            Some(proof) => batch::read(signed, proof)?,
            None => Self::read_single(signed)?,
        };
        let key_id = KeyId(
            <[u8; 8]>::try_from(&signed.key_id[..])
                .map_err(|_| ReceiptError::Malformed("the key id is not 8 bytes".into()))?,
        );
        let sig = Signature::from_slice(&signed.signature)
            .map_err(|_| ReceiptError::Malformed("the signature is not 64 bytes".into()))?;
        let key = *keys.lookup(&receipt.receiver, &key_id, receipt.received)?;
        Ok((receipt, key, key_id, sig))
    }

    /// A single receipt's statement, once its body is canonical.
    fn read_single(signed: &proto::SignedReceipt) -> Result<Receipt, ReceiptError> {
        let body = proto::ReceiptBody::decode(signed.body.clone())
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if body.encode_to_vec() != signed.body {
            return Err(ReceiptError::NotCanonical);
        }
        Receipt::from_proto(&body)
    }

    /// What it states.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The key it verified with.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// It as it travels.
    pub fn signed(&self) -> &proto::SignedReceipt {
        &self.signed
    }

    /// Whether it is the receipt of `expected` (receiver, node, bulletin and digest;
    /// the time is the receiver's to state): a receipt of another bulletin, or another
    /// receiver's, is no receipt of this delivery.
    pub fn is_of(&self, expected: &Expected) -> Result<(), ReceiptError> {
        let r = &self.receipt;
        let same = r.receiver == *expected.receiver
            && r.node == *expected.node
            && r.origin.as_str() == expected.origin
            && r.bulletin_id.to_string() == expected.bulletin_id
            && r.digest.0[..] == *expected.digest;
        match same {
            true => Ok(()),
            false => Err(ReceiptError::Mismatch {
                found: r.describe(),
                expected: expected.describe(),
            }),
        }
    }
}

/// The delivery a receipt must be the receipt of.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The partner that acknowledged it.
    pub receiver: &'a PartnerId,
    /// This node.
    pub node: &'a PartnerId,
    /// The stored bulletin's origin, id and digest.
    pub origin: &'a str,
    /// Its id, as stored.
    pub bulletin_id: &'a str,
    /// Its digest, as stored.
    pub digest: &'a [u8],
}

impl Expected<'_> {
    fn describe(&self) -> String {
        format!(
            "{}'s receipt at {} of {}/{} (digest {})",
            self.receiver,
            self.node,
            self.origin,
            self.bulletin_id,
            hex::encode(self.digest)
        )
    }
}

#[cfg(test)]
mod tests;
