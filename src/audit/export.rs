//! The export file (`renkei audit export`) and its offline check (`renkei audit verify`):
//! a header naming the log and its key, every record, every checkpoint, each as a
//! varint-length-prefixed `ExportItem` (see `proto/renkei/v1/audit.proto`).
//!
//! Pure: bytes in, a verdict out. The verdict names the first record or checkpoint that
//! does not match, or a rollback or fork against a checkpoint the auditor kept.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use prost::Message as _;

use super::checkpoint::{self, CheckpointError};
use super::merkle::{Frontier, TreeHash};
use super::rotation::KeyChain;
use crate::proto::{self, export_item::Item};

mod read;
pub use read::{outline, parse, records, Export, Outline};

/// The format name in every export header.
pub const FORMAT: &str = "renkei-audit-export/1";

/// Appends one item, length-prefixed, to `out`.
pub fn write_item(out: &mut Vec<u8>, item: Item) {
    proto::ExportItem { item: Some(item) }
        .encode_length_delimited(out)
        .ok();
}

/// Why an export does not verify. Each names where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file is not an export, or is cut short.
    #[error("not a renkei audit export: {0}")]
    Format(String),
    /// A key rotation record that does not hold.
    #[error(transparent)]
    Rotation(#[from] super::rotation::RotationError),
    /// The chain of keys from the key trusted does not end at the key the export names.
    #[error("the export is signed by another key than --key: the chain of checkpoint keys from the key given ends at {ends}, the export names {named}; it is not this node's log")]
    KeyChain {
        /// Where the chain ends.
        ends: String,
        /// The key the header names.
        named: String,
    },
    /// The records could not be read from where they are kept.
    #[error("the records could not be read: {0}")]
    Unreadable(String),
    /// A record does not decode.
    #[error("record at position {position} does not decode: {why}")]
    Undecodable {
        /// Its position in the file (0-based), which is the seq it should have.
        position: u64,
        /// What the decoder said.
        why: String,
    },
    /// A record is not where its seq says: one was removed, inserted or moved.
    #[error("record at position {position} says it is record {seq}: a record is missing, added or out of order there")]
    OutOfSequence {
        /// Its position.
        position: u64,
        /// The seq it carries.
        seq: u64,
    },
    /// A record is older than the one before it.
    #[error("record {seq} is older than record {}: records were reordered or rewritten", seq - 1)]
    TimeReversed {
        /// The record.
        seq: u64,
    },
    /// The header says how many records follow, and the file holds another number.
    #[error("the header announces {announced} records but the file holds {found}: the log was truncated or extended")]
    Count {
        /// In the header.
        announced: u64,
        /// In the file.
        found: u64,
    },
    /// A checkpoint's signature or form is wrong.
    #[error("checkpoint {index} is not valid: {why}")]
    BadCheckpoint {
        /// Its position among the checkpoints (0-based).
        index: usize,
        /// Why.
        why: CheckpointError,
    },
    /// The checkpoint the auditor kept is not valid for this log.
    #[error("the trusted checkpoint is not valid for this log: {why}")]
    BadTrusted {
        /// Why.
        why: CheckpointError,
    },
    /// The header names a node whose log this is not.
    #[error("the header says node {node_id:?}, but the log is {origin:?}")]
    WrongNode {
        /// In the header.
        node_id: String,
        /// The log's origin in the header (and in every checkpoint).
        origin: String,
    },
    /// Records no signed checkpoint covers: nothing shows they were not altered.
    #[error("records {from}..{records} are not covered by any signed checkpoint, so they cannot be verified; export from the running node (which signs a fresh checkpoint) or after a clean stop")]
    Unsigned {
        /// First record not covered.
        from: u64,
        /// Records in the log.
        records: u64,
    },
    /// A checkpoint covers more records than the file holds.
    #[error("checkpoint {index} covers {size} records but the log holds only {records}: records after {records} were removed")]
    Truncated {
        /// Which checkpoint.
        index: usize,
        /// Its size.
        size: u64,
        /// Records in the file.
        records: u64,
    },
    /// The records do not hash to what a checkpoint signed.
    #[error("checkpoint {index} (size {size}) does not match the records: one of records {from}..{size} was changed, removed, inserted or reordered")]
    RootMismatch {
        /// Which checkpoint.
        index: usize,
        /// Its size.
        size: u64,
        /// The first record not covered by an earlier matching checkpoint.
        from: u64,
    },
    /// The auditor's trusted checkpoint covers more than the log: a rollback.
    #[error("rollback: the trusted checkpoint covers {trusted} records but the log holds only {records}")]
    Rollback {
        /// Size of the trusted checkpoint.
        trusted: u64,
        /// Records in the log.
        records: u64,
    },
    /// The log's first records hash to another root than the trusted checkpoint: a fork.
    #[error("fork: the log's first {size} records have root {found}, the trusted checkpoint has {trusted}")]
    Fork {
        /// Size of the trusted checkpoint.
        size: u64,
        /// Root the log gives.
        found: String,
        /// Root the auditor kept.
        trusted: String,
    },
}

/// What a successful check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The node that kept the log.
    pub node_id: String,
    /// The log's origin line.
    pub origin: String,
    /// Records checked.
    pub records: u64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Records covered by the largest checkpoint.
    pub covered: u64,
    /// Root of all the records.
    pub root: String,
    /// Size of the trusted checkpoint the log was checked against, if any.
    pub trusted: Option<u64>,
}

/// The signing key an export names.
pub fn header_key(header: &proto::ExportHeader) -> Result<VerifyingKey, VerifyError> {
    let bytes: [u8; 32] = header
        .public_key
        .as_ref()
        .try_into()
        .map_err(|_| VerifyError::Format("the header's public key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| VerifyError::Format(format!("the header's public key: {e}")))
}

/// Recomputes the whole tree from the records alone and checks every checkpoint with
/// the key in force at its size, following the log's key rotations from `key` (the
/// chain must end at the key the header names), that together they cover every
/// record, then (if given) consistency with a checkpoint the auditor kept.
pub fn verify(
    export: &Export,
    key: &VerifyingKey,
    trusted: Option<&str>,
) -> Result<Summary, VerifyError> {
    verify_against(export, key, trusted.as_slice())
}

/// [`verify`] against every checkpoint in `trusted` (ones auditors kept): each must be
/// signed by the key in force at its size and be a prefix of the log.
/// `Summary::trusted` is the largest.
pub fn verify_against(
    export: &Export,
    key: &VerifyingKey,
    trusted: &[&str],
) -> Result<Summary, VerifyError> {
    let records = export.records.iter().cloned().map(Ok);
    verify_records(&export.header, records, &export.checkpoints, key, trusted)
}

/// [`verify_against`] for records that come one at a time (read from a file as they
/// are checked): memory does not grow with the log. `records` are in file order.
pub fn verify_records(
    h: &proto::ExportHeader,
    records: impl Iterator<Item = Result<Bytes, VerifyError>>,
    checkpoints: &[String],
    key: &VerifyingKey,
    trusted: &[&str],
) -> Result<Summary, VerifyError> {
    if h.origin != checkpoint::log_origin(&h.node_id) {
        return Err(VerifyError::WrongNode {
            node_id: h.node_id.clone(),
            origin: h.origin.clone(),
        });
    }
    let notes = checkpoints
        .iter()
        .map(String::as_str)
        .chain(trusted.iter().copied());
    let (roots, chain) = replay(h, records, key, wanted_sizes(notes))?;
    let records = roots.size;
    let covered = check_checkpoints(&h.origin, checkpoints, &roots, &chain)?;
    // Checked after the checkpoints, which say where a wrong key first fails.
    let named = header_key(h)?;
    if *chain.current() != named {
        return Err(VerifyError::KeyChain {
            ends: hex::encode(chain.current().as_bytes()),
            named: hex::encode(named.as_bytes()),
        });
    }
    if covered < records {
        return Err(VerifyError::Unsigned {
            from: covered,
            records,
        });
    }
    let largest = check_trusted(&h.origin, &roots, &chain, trusted)?;
    Ok(Summary {
        node_id: h.node_id.clone(),
        origin: h.origin.clone(),
        records,
        checkpoints: checkpoints.len(),
        covered,
        root: roots.root(records)?.to_string(),
        trusted: largest,
    })
}

/// The tree sizes the checkpoint `notes` state (those that do not parse are reported
/// where they are checked).
fn wanted_sizes<'a>(notes: impl Iterator<Item = &'a str>) -> BTreeSet<u64> {
    notes
        .filter_map(|note| checkpoint::stated(note).ok())
        .map(|stated| stated.size)
        .collect()
}

/// The roots of the replayed tree at the sizes asked for and at its full size.
struct Roots {
    size: u64,
    at: BTreeMap<u64, TreeHash>,
}

impl Roots {
    fn root(&self, size: u64) -> Result<TreeHash, VerifyError> {
        self.at
            .get(&size)
            .copied()
            .ok_or_else(|| VerifyError::Format(format!("no root was kept at size {size}")))
    }
}

/// The tree of the export's records, rebuilt from them alone (in sequence, time never
/// going back, as many as announced) with its roots at the `wanted` sizes, and the
/// chain of checkpoint keys from `key` that their rotation records make.
fn replay(
    h: &proto::ExportHeader,
    records: impl Iterator<Item = Result<Bytes, VerifyError>>,
    key: &VerifyingKey,
    wanted: BTreeSet<u64>,
) -> Result<(Roots, KeyChain), VerifyError> {
    let mut tree = Frontier::default();
    let mut at = BTreeMap::new();
    if wanted.contains(&0) {
        at.insert(0, tree.root());
    }
    let mut chain = KeyChain::new(&h.origin, *key);
    let mut last_time = 0;
    for (position, bytes) in (0u64..).zip(records) {
        let bytes = bytes?;
        let r =
            proto::AuditRecord::decode(bytes.clone()).map_err(|e| VerifyError::Undecodable {
                position,
                why: e.to_string(),
            })?;
        if r.seq != position {
            return Err(VerifyError::OutOfSequence {
                position,
                seq: r.seq,
            });
        }
        if r.time_unix_ms < last_time {
            return Err(VerifyError::TimeReversed { seq: r.seq });
        }
        last_time = r.time_unix_ms;
        if let Some(rotation) = &r.key_rotation {
            chain.follow(r.seq, rotation)?;
        }
        tree.push(&bytes);
        if wanted.contains(&tree.size()) {
            at.insert(tree.size(), tree.root());
        }
    }
    let records = tree.size();
    at.insert(records, tree.root());
    if records == 0 {
        return Err(VerifyError::Format(
            "the export holds no records (a node's log starts with its configuration)".into(),
        ));
    }
    if h.records != records {
        return Err(VerifyError::Count {
            announced: h.records,
            found: records,
        });
    }
    Ok((Roots { size: records, at }, chain))
}

/// Checks every checkpoint with the key in force at its size and against the tree;
/// returns the records the largest covers.
fn check_checkpoints(
    origin: &str,
    checkpoints: &[String],
    tree: &Roots,
    chain: &KeyChain,
) -> Result<u64, VerifyError> {
    let records = tree.size;
    let mut covered = 0;
    for (index, note) in checkpoints.iter().enumerate() {
        let bad = |why| VerifyError::BadCheckpoint { index, why };
        let stated = checkpoint::stated(note).map_err(bad)?;
        let c = checkpoint::verify(note, origin, chain.for_size(stated.size)).map_err(bad)?;
        if c.size > records {
            return Err(VerifyError::Truncated {
                index,
                size: c.size,
                records,
            });
        }
        if tree.root(c.size)? != c.root {
            return Err(VerifyError::RootMismatch {
                index,
                size: c.size,
                from: covered.min(c.size),
            });
        }
        covered = covered.max(c.size);
    }
    Ok(covered)
}

/// Checks the log extends every checkpoint the auditor kept; the largest one's size.
fn check_trusted(
    origin: &str,
    tree: &Roots,
    chain: &KeyChain,
    trusted: &[&str],
) -> Result<Option<u64>, VerifyError> {
    let records = tree.size;
    let mut largest = None;
    for note in trusted {
        let bad = |why| VerifyError::BadTrusted { why };
        let stated = checkpoint::stated(note).map_err(bad)?;
        let t = checkpoint::verify(note, origin, chain.for_size(stated.size)).map_err(bad)?;
        if t.size > records {
            return Err(VerifyError::Rollback {
                trusted: t.size,
                records,
            });
        }
        let found = tree.root(t.size)?;
        if found != t.root {
            return Err(VerifyError::Fork {
                size: t.size,
                found: found.to_string(),
                trusted: t.root.to_string(),
            });
        }
        largest = largest.max(Some(t.size));
    }
    Ok(largest)
}
