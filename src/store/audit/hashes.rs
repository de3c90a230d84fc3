//! The audit log's stored Merkle hashes: full chunks of 256, each written once into the
//! value files with its pointer in the database, and the hashes past the last full
//! chunk in memory (a [`HashRun`]), rebuilt from the records that made them when the
//! store opens.
//!
//! Why not store the partial chunk: rewriting it at every commit made the database
//! rewrite the page that held it too, and the database grew several times faster than
//! the data. Why the value files: the hashes are two thirds of what the audit log adds
//! to the database per record (about two 32-byte hashes a record), and a database
//! holding only small keys writes and rewrites less (layouts up to 3 held the chunks
//! inline; those are still read).
//!
//! It decides nothing about what the hashes mean (that is `audit::merkle`).

use crate::store::kv;
use std::sync::{Arc, RwLock};

use super::read::{self, ReadHashes};
use super::{corrupt, seq_key, StoreError, ValueLog, HASHES};
use crate::audit::merkle::{self, HashStore, MerkleError, TreeHash};
use crate::store::values::ValuePtr;

/// Stored hashes per `h/` value.
pub(super) const CHUNK: u64 = 256;

/// Stored hashes from index `first` on, none of them in a full chunk yet: they are in
/// memory only.
#[derive(Debug, Default)]
pub(in crate::store) struct HashRun {
    pub first: u64,
    pub hashes: Vec<TreeHash>,
}

impl HashRun {
    /// Stored hash `i`, if the run holds it.
    pub fn get(&self, i: u64) -> Option<TreeHash> {
        let at = usize::try_from(i.checked_sub(self.first)?).ok()?;
        self.hashes.get(at).copied()
    }
}

/// The run readers see. The writer publishes a commit's hashes before the engine applies
/// its batch (a reader may see the new size at once), and trims them to the new
/// partial chunk after; a reader never asks for a hash past its size.
pub(in crate::store) type SharedRun = RwLock<Arc<HashRun>>;

fn decode_chunk(key: &[u8], v: &[u8]) -> Result<Vec<TreeHash>, StoreError> {
    if !v.len().is_multiple_of(32) || v.len() as u64 > CHUNK * 32 {
        return Err(corrupt(key, "hash chunk is not a whole number of hashes"));
    }
    Ok(v.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            TreeHash(h)
        })
        .collect())
}

/// The hashes of `h/` chunk `chunk` (none if it was never written): through its
/// pointer into the value files, or inline as layouts up to 3 wrote them (a pointer's
/// length is not a whole number of hashes, so the two never look alike).
pub(super) fn read_chunk(
    tree: &kv::Tree,
    values: &ValueLog,
    chunk: u64,
) -> Result<Vec<TreeHash>, StoreError> {
    let key = seq_key(HASHES, chunk);
    match tree.get(&key)? {
        Some(v) if v.len() == ValuePtr::LEN => decode_chunk(&key, &values.resolve(&key, &v)?),
        Some(v) => decode_chunk(&key, &v),
        None => Ok(Vec::new()),
    }
}

/// A tree being extended: the hashes below `base` from `committed`, then `new`.
pub(super) struct Extending<F> {
    committed: F,
    base: u64,
    pub new: Vec<TreeHash>,
}

impl<F: Fn(u64) -> Result<TreeHash, MerkleError>> Extending<F> {
    /// Nothing new yet past `base`.
    pub fn new(base: u64, committed: F) -> Self {
        Extending {
            committed,
            base,
            new: Vec::new(),
        }
    }
}

impl<F: Fn(u64) -> Result<TreeHash, MerkleError>> HashStore for Extending<F> {
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| match i.checked_sub(self.base) {
                Some(j) => self
                    .new
                    .get(j as usize)
                    .copied()
                    .ok_or_else(|| MerkleError::Store(format!("no stored hash {i}").into())),
                None => (self.committed)(i),
            })
            .collect()
    }
}

/// Rebuilds the hashes past the last full chunk of a log of `size` records from the
/// records that made them (fewer than 256 hashes, so at most the last 256 records).
pub(super) fn rebuild_tail(
    tree: &kv::Tree,
    values: &ValueLog,
    size: u64,
) -> Result<HashRun, StoreError> {
    let count = merkle::stored_count(size);
    let first = count - count % CHUNK;
    let from = first_record_reaching(first, size);
    let reader = read::AuditReader {
        tree,
        values,
        run: &SharedRun::default(),
    };
    let committed: ReadHashes<'_> = reader.hashes();
    let base = merkle::stored_count(from);
    let mut view = Extending::new(base, |i| committed.one(i));
    let records = reader.records_from(from).take((size - from) as usize);
    for (n, record) in (from..).zip(records) {
        let hashes =
            merkle::hashes_to_append(n, &record?, &view).map_err(|e| corrupt(HASHES, e))?;
        view.new.extend(hashes);
    }
    let key = seq_key(HASHES, first / CHUNK);
    if base + view.new.len() as u64 != count {
        return Err(corrupt(
            &key,
            format!(
                "the records after hash {first} make {} hashes, not {}",
                view.new.len(),
                count - base
            ),
        ));
    }
    let hashes = view.new.split_off((first - base) as usize);
    // A partial chunk a layout-2 store wrote must agree with its records.
    if !hashes.starts_with(&read_chunk(tree, values, first / CHUNK)?) {
        return Err(corrupt(
            &key,
            "the stored hashes disagree with the records they hash",
        ));
    }
    Ok(HashRun { first, hashes })
}

/// The first of `size` records whose hashes reach stored index `first` (`size` if none do).
fn first_record_reaching(first: u64, size: u64) -> u64 {
    let (mut lo, mut hi) = (0, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if merkle::stored_count(mid + 1) > first {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}
