//! Signed checkpoints: the C2SP tlog-checkpoint body (origin, tree size, root hash)
//! wrapped in a C2SP signed note with the node's Ed25519 key.

use ed25519_dalek::{SigningKey, VerifyingKey};
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::merkle::TreeHash;

/// Why a checkpoint could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The origin cannot be a checkpoint origin or key name.
    #[error("{0:?} cannot name a checkpoint (no spaces or '+')")]
    BadOrigin(String),
    /// The text is not a signed note holding a checkpoint.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// The signature is missing, from another key, or wrong.
    #[error("the checkpoint is not signed by {origin}'s key: {why}")]
    Signature {
        /// Expected signer.
        origin: String,
        /// What the note library said.
        why: String,
    },
    /// Signed by the right key, for another log.
    #[error("the checkpoint is for log {found:?}, not {expected:?}")]
    WrongOrigin {
        /// The origin in the checkpoint.
        found: String,
        /// The one expected.
        expected: String,
    },
}

/// The origin line (and key name) of a node's audit log: `renkei/<node-id>/audit`.
pub fn log_origin(node_id: &str) -> String {
    format!("renkei/{node_id}/audit")
}

/// A verified checkpoint: this log had `size` records with this `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Number of records.
    pub size: u64,
    /// Root hash of those records.
    pub root: TreeHash,
}

/// The note key id byte for Ed25519 (C2SP signed-note).
const ALG_ED25519: u8 = 1;

fn note_key_id(origin: &str, key: &VerifyingKey) -> u32 {
    let mut public = vec![ALG_ED25519];
    public.extend_from_slice(key.as_bytes());
    signed_note::key_id(origin, &public)
}

/// Signs checkpoints of one log with the node's key; the key name is the log's origin.
pub struct CheckpointSigner {
    origin: String,
    id: u32,
    key: SigningKey,
}

impl CheckpointSigner {
    /// A signer for the log named `origin` (e.g. `renkei/jp-mod/audit`).
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::BadOrigin(origin.to_owned()));
        }
        Ok(CheckpointSigner {
            origin: origin.to_owned(),
            id: note_key_id(origin, &key.verifying_key()),
            key,
        })
    }

    /// The key that signs the checkpoints: the node's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The public half of the key that signs the checkpoints.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// The node's signature of `message` (which names its own purpose, as the backup
    /// manifest's domain tag does), by the key that signs the checkpoints.
    pub fn sign_message(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.key.sign(message)
    }

    /// The signed checkpoint text for a tree of `size` records with `root`.
    pub fn sign(&self, size: u64, root: TreeHash) -> Result<String, CheckpointError> {
        sign_by(&[self], size, root)
    }
}

/// The checkpoint of `size` records with `root` signed by every one of `signers` (all
/// of one log): at a key rotation, the old key and the new sign the same checkpoint.
pub fn sign_by(
    signers: &[&CheckpointSigner],
    size: u64,
    root: TreeHash,
) -> Result<String, CheckpointError> {
    let origin = signers.first().map_or("", |s| s.origin.as_str());
    let body = Checkpoint::new(origin, size, root.into(), "")
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let mut note =
        Note::new(&body.to_bytes(), &[]).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let signers: Vec<&dyn Signer> = signers.iter().map(|s| *s as &dyn Signer).collect();
    note.add_sigs(&signers)
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))
}

impl CheckpointSigner {}

impl Signer for CheckpointSigner {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        use ed25519_dalek::Signer as _;
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// The size and root a signed checkpoint states, without checking its signature: for a
/// node re-reading its own checkpoints (whose signatures it checks separately).
pub fn stated(text: &str) -> Result<Verified, CheckpointError> {
    let note =
        Note::from_bytes(text.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let body = Checkpoint::from_bytes(note.text())
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    Ok(Verified {
        size: body.size(),
        root: TreeHash(body.hash().0),
    })
}

/// Verifies a signed checkpoint of the log `origin` against the node's public key.
pub fn verify(text: &str, origin: &str, key: &VerifyingKey) -> Result<Verified, CheckpointError> {
    let vkey = signed_note::new_ed25519_verifier_key(origin, key);
    let verifier = StandardVerifier::new(&vkey)
        .map_err(|e| CheckpointError::BadOrigin(format!("{origin}: {e}")))?;
    let note =
        Note::from_bytes(text.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::Signature {
            origin: origin.to_owned(),
            why: e.to_string(),
        })?;
    let body = Checkpoint::from_bytes(note.text())
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    if body.origin() != origin {
        return Err(CheckpointError::WrongOrigin {
            found: body.origin().to_owned(),
            expected: origin.to_owned(),
        });
    }
    Ok(Verified {
        size: body.size(),
        root: TreeHash(body.hash().0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_checkpoint_round_trips_in_c2sp_form() {
        let signer = CheckpointSigner::new("renkei/jp-mod/audit", key(1)).unwrap();
        let root = TreeHash([7; 32]);
        let text = signer.sign(42, root).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("renkei/jp-mod/audit"));
        assert_eq!(lines.next(), Some("42"));
        assert_eq!(
            lines.next(),
            Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")
        );
        assert_eq!(lines.next(), Some(""));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("\u{2014} renkei/jp-mod/audit "));
        let v = verify(&text, "renkei/jp-mod/audit", &key(1).verifying_key()).unwrap();
        assert_eq!(v, Verified { size: 42, root });
    }

    #[test]
    fn edited_or_foreign_checkpoints_fail() {
        let signer = CheckpointSigner::new("renkei/jp-mod/audit", key(1)).unwrap();
        let text = signer.sign(42, TreeHash([7; 32])).unwrap();
        let edited = text.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            verify(&edited, "renkei/jp-mod/audit", &key(1).verifying_key()),
            Err(CheckpointError::Signature { .. })
        ));
        assert!(
            verify(&text, "renkei/jp-mod/audit", &key(2).verifying_key()).is_err(),
            "another key"
        );
        let other = CheckpointSigner::new("renkei/us-dod/audit", key(1))
            .unwrap()
            .sign(42, TreeHash([7; 32]))
            .unwrap();
        assert!(
            verify(&other, "renkei/jp-mod/audit", &key(1).verifying_key()).is_err(),
            "another log"
        );
        assert!(verify("garbage", "renkei/jp-mod/audit", &key(1).verifying_key()).is_err());
        assert!(CheckpointSigner::new("has space", key(1)).is_err());
    }
}
