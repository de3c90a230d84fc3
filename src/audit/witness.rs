//! Witnessing: peer nodes cosign each other's audit checkpoints, so that a node cannot
//! show one history to its auditor and another to a partner. A cosignature is a C2SP
//! tlog-cosignature v1 note signature (Ed25519, key id algorithm byte 0x04) added to the
//! log's signed checkpoint; the witness gives one only for a checkpoint consistent with
//! the last one it cosigned for that log ([`judge`]), and a log that forks or rolls
//! back is refused from then on.
//!
//! Pure: checkpoint text, keys, proofs and the time go in; no clock is read.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use signed_note::{Note, StandardVerifier, VerifierList};

use super::checkpoint::Verified;
use super::merkle::{self, TreeHash};

/// The key id algorithm byte of an Ed25519 cosignature (C2SP tlog-cosignature).
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The name a node witnesses under: `renkei/<node-id>/witness`.
pub fn witness_name(node_id: &str) -> String {
    format!("renkei/{node_id}/witness")
}

/// Why a cosignature or a witness key is not what it should be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    /// The checkpoint text is not a signed note.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// A witness key that cannot be read.
    #[error("{0:?} is not a witness key: give NAME+KEYID+BASE64 (a C2SP vkey of type 0x04) or ID=ed25519:BASE64")]
    BadKey(String),
    /// The checkpoint carries no cosignature of this witness.
    #[error("no cosignature of {0}")]
    Missing(String),
    /// A cosignature of this witness's name and key id that does not verify.
    #[error("the cosignature of {0} does not verify")]
    Invalid(String),
}

/// A witness's public key, under its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessKey {
    /// The cosigner name (`renkei/<node-id>/witness`).
    pub name: String,
    /// Its Ed25519 key.
    pub key: VerifyingKey,
}

impl WitnessKey {
    /// Reads `NAME+KEYID+BASE64(0x04 ‖ key)` (a C2SP vkey) or `ID=ed25519:BASE64` (a
    /// node's id and its signing key, witnessing as `renkei/ID/witness`).
    pub fn parse(text: &str) -> Result<WitnessKey, WitnessError> {
        let bad = || WitnessError::BadKey(text.to_owned());
        if let Some((id, key)) = text.split_once('=') {
            let key: crate::identity::PublicKey = key.parse().map_err(|_| bad())?;
            return Ok(WitnessKey {
                name: witness_name(id),
                key: *key.verifying_key(),
            });
        }
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        let (Some(&ALG_COSIGNATURE_V1), Ok(bytes)) = (
            raw.first(),
            <[u8; 32]>::try_from(raw.get(1..).unwrap_or_default()),
        ) else {
            return Err(bad());
        };
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        let w = WitnessKey {
            name: name.to_owned(),
            key,
        };
        match format!("{:08x}", w.key_id()) == id {
            true => Ok(w),
            false => Err(bad()),
        }
    }

    /// The C2SP vkey of this witness key.
    pub fn vkey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        format!("{}+{:08x}+{b64}", self.name, self.key_id())
    }

    /// The first 4 bytes, big-endian, of SHA-256(name ‖ "\n" ‖ 0x04 ‖ key).
    pub fn key_id(&self) -> u32 {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update(b"\n");
        h.update([ALG_COSIGNATURE_V1]);
        h.update(self.key.as_bytes());
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }
}

/// The message a cosignature at `time` (seconds) signs over the checkpoint `body`.
fn cosigned_message(body: &[u8], time: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// The checkpoint's note text (its body, with the final newline).
fn body(checkpoint: &str) -> Result<Vec<u8>, WitnessError> {
    let note = Note::from_bytes(checkpoint.as_bytes())
        .map_err(|e| WitnessError::Malformed(e.to_string()))?;
    Ok(note.text().to_vec())
}

/// The witness `name`'s cosignature, at `time` (seconds since the epoch), of the signed
/// checkpoint `checkpoint`: one note signature line, with its newline.
pub fn cosign(
    checkpoint: &str,
    name: &str,
    key: &SigningKey,
    time: u64,
) -> Result<String, WitnessError> {
    let body = body(checkpoint)?;
    let sig = key.sign(&cosigned_message(&body, time));
    let w = WitnessKey {
        name: name.to_owned(),
        key: key.verifying_key(),
    };
    let mut raw = w.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&time.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    Ok(format!("\u{2014} {name} {b64}\n"))
}

/// The checkpoint with the cosignature line `line` added (replacing an earlier one by
/// the same witness name).
pub fn with_cosignature(checkpoint: &str, line: &str) -> String {
    let name = line.split(' ').nth(1).unwrap_or_default();
    let mut out = String::with_capacity(checkpoint.len() + line.len());
    for l in checkpoint.split_inclusive('\n') {
        let same = l.starts_with('\u{2014}') && l.split(' ').nth(1) == Some(name);
        if !same {
            out.push_str(l);
        }
    }
    out.push_str(line);
    out
}

/// Verifies `witness`'s cosignature on the checkpoint (already verified as the log's
/// by `log_origin` and `log_key`); the time it states.
pub fn verify_cosignature(
    checkpoint: &str,
    (log_origin, log_key): (&str, &VerifyingKey),
    witness: &WitnessKey,
) -> Result<u64, WitnessError> {
    let note = Note::from_bytes(checkpoint.as_bytes())
        .map_err(|e| WitnessError::Malformed(e.to_string()))?;
    let vkey = signed_note::new_ed25519_verifier_key(log_origin, log_key);
    let log = StandardVerifier::new(&vkey).map_err(|e| WitnessError::Malformed(e.to_string()))?;
    let (_, others) = note
        .verify(&VerifierList::new(vec![Box::new(log)]))
        .map_err(|e| WitnessError::Malformed(e.to_string()))?;
    let sig = others
        .iter()
        .find(|s| s.name() == witness.name && s.id() == witness.key_id())
        .ok_or_else(|| WitnessError::Missing(witness.name.clone()))?;
    let raw = sig.signature();
    let invalid = || WitnessError::Invalid(witness.name.clone());
    let (time, sig) = raw.split_at_checked(8).ok_or_else(invalid)?;
    let time = u64::from_be_bytes(time.try_into().map_err(|_| invalid())?);
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| invalid())?;
    let message = cosigned_message(note.text(), time);
    witness
        .key
        .verify_strict(&message, &sig)
        .map_err(|_| invalid())?;
    Ok(time)
}

/// The cosignatures a checkpoint carries, as its lines state them (name and time), not
/// verified: signature lines of a cosignature's shape (key id, time, signature).
pub fn cosignatures(checkpoint: &str) -> Vec<(String, u64)> {
    let Some((_, sigs)) = checkpoint.split_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("\u{2014} ")?.split(' ');
            let (name, b64) = (parts.next()?, parts.next()?);
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            let time = raw.get(4..12)?.try_into().ok().map(u64::from_be_bytes)?;
            (raw.len() == 4 + 8 + 64).then(|| (name.to_owned(), time))
        })
        .collect()
}

/// What a witness does with a log's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Consistent with what it cosigned before: cosign it.
    Cosign,
    /// The log named another size as the last one cosigned: this is the witness's.
    Conflict(u64),
    /// Inconsistent with a checkpoint it cosigned: a fork or a rollback, in words.
    Fork(String),
}

/// Whether a witness that last cosigned `latest` (size and root; none for a log it
/// has not witnessed) cosigns `new`, which the log says extends `claimed_old` by
/// `proof`. As C2SP tlog-witness: the log must name the witness's size, a first
/// checkpoint is trusted on first use, and a smaller size or another root at the same
/// size is a fork.
pub fn judge(
    latest: Option<Verified>,
    claimed_old: u64,
    new: Verified,
    proof: &[TreeHash],
) -> Judgement {
    let Some(old) = latest else {
        return match claimed_old {
            0 => Judgement::Cosign,
            _ => Judgement::Conflict(0),
        };
    };
    if claimed_old != old.size {
        return Judgement::Conflict(old.size);
    }
    if new.size < old.size {
        return Judgement::Fork(format!(
            "rolled back: size {} after a cosigned size {}",
            new.size, old.size
        ));
    }
    if new.size == old.size {
        return match new.root == old.root {
            true => Judgement::Cosign,
            false => Judgement::Fork(format!("two roots at size {}", old.size)),
        };
    }
    match merkle::check_consistency(proof, new.size, new.root, old.size, old.root) {
        Ok(()) => Judgement::Cosign,
        Err(e) => Judgement::Fork(format!(
            "size {} does not extend the cosigned size {}: {e}",
            new.size, old.size
        )),
    }
}

#[cfg(test)]
mod tests;
