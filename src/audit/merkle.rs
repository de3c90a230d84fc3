//! The Merkle tree over audit records: leaf and node hashing (RFC 6962), the hashes to
//! store when a record is appended (about two per record, in `tlog_tiles`' stored-hash
//! layout), tree roots, and inclusion and consistency proofs with their checks.

use std::fmt;

use tlog_tiles::HashReader;

/// A SHA-256 tree hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHash(pub [u8; 32]);

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({self})")
    }
}

impl From<tlog_tiles::Hash> for TreeHash {
    fn from(h: tlog_tiles::Hash) -> Self {
        TreeHash(h.0)
    }
}

impl From<TreeHash> for tlog_tiles::Hash {
    fn from(h: TreeHash) -> Self {
        tlog_tiles::Hash(h.0)
    }
}

/// Why a tree operation or a proof failed.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// The proof does not show what it claims.
    #[error("the proof does not verify")]
    ProofFailed,
    /// Sizes or indexes that cannot go together (e.g. a leaf beyond the tree).
    #[error("impossible request: {0}")]
    Invalid(String),
    /// The hash store could not supply a hash: its own error, kept typed.
    #[error("hash store: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

fn from_tlog(e: tlog_tiles::Error) -> MerkleError {
    match e {
        tlog_tiles::Error::InvalidProof => MerkleError::ProofFailed,
        tlog_tiles::Error::InvalidInput(what) => MerkleError::Invalid(what),
        other => MerkleError::Store(Box::new(other)),
    }
}

/// Where the stored hashes live: index `i` is the `i`-th hash ever appended.
pub trait HashStore {
    /// The hashes at these stored-hash indexes, in the same order.
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError>;
}

struct Reader<'a, S: ?Sized>(&'a S);

impl<S: HashStore + ?Sized> HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        self.0
            .hashes(indexes)
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))
    }
}

/// The leaf hash of a record: SHA-256(0x00 ‖ record).
pub fn leaf_hash(record: &[u8]) -> TreeHash {
    tlog_tiles::record_hash(record).into()
}

/// The stored-hash index of record `n`'s leaf hash; the hashes to append for record `n`
/// start here.
pub fn first_stored_index(n: u64) -> u64 {
    tlog_tiles::stored_hash_index(0, n)
}

/// Number of hashes stored for a tree of `size` records.
pub fn stored_count(size: u64) -> u64 {
    tlog_tiles::stored_hash_count(size)
}

/// The hashes to store, in order from [`first_stored_index`]`(n)`, when record `n`
/// (0-based; the tree has `n` records before it) is appended.
pub fn hashes_to_append(
    n: u64,
    record: &[u8],
    store: &(impl HashStore + ?Sized),
) -> Result<Vec<TreeHash>, MerkleError> {
    tlog_tiles::stored_hashes(n, record, &Reader(store))
        .map(|v| v.into_iter().map(Into::into).collect())
        .map_err(from_tlog)
}

/// The root of the tree of the first `size` records.
pub fn root(size: u64, store: &(impl HashStore + ?Sized)) -> Result<TreeHash, MerkleError> {
    tlog_tiles::tree_hash(size, &Reader(store))
        .map(Into::into)
        .map_err(from_tlog)
}

/// Proof that record `index` is in the tree of `size` records.
pub fn prove_inclusion(
    size: u64,
    index: u64,
    store: &(impl HashStore + ?Sized),
) -> Result<Vec<TreeHash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::Invalid(format!(
            "record {index} is not in a tree of {size}"
        )));
    }
    tlog_tiles::prove_record(size, index, &Reader(store))
        .map(|v| v.into_iter().map(Into::into).collect())
        .map_err(from_tlog)
}

/// Checks that `leaf` is record `index` of the tree of `size` records with `root`.
pub fn check_inclusion(
    proof: &[TreeHash],
    size: u64,
    root: TreeHash,
    index: u64,
    leaf: TreeHash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::Invalid(format!(
            "record {index} is not in a tree of {size}"
        )));
    }
    let proof: Vec<tlog_tiles::Hash> = proof.iter().copied().map(Into::into).collect();
    tlog_tiles::check_record(&proof, size, root.into(), index, leaf.into()).map_err(from_tlog)
}

/// Proof that the tree of `old_size` records is a prefix of the tree of `new_size`.
pub fn prove_consistency(
    new_size: u64,
    old_size: u64,
    store: &(impl HashStore + ?Sized),
) -> Result<Vec<TreeHash>, MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::Invalid(format!(
            "no consistency proof from size {old_size} to {new_size}: need 1 <= old <= new"
        )));
    }
    tlog_tiles::prove_tree(new_size, old_size, &Reader(store))
        .map(|v| v.into_iter().map(Into::into).collect())
        .map_err(from_tlog)
}

/// Checks that the tree of `old_size` with `old_root` is a prefix of the tree of
/// `new_size` with `new_root`.
pub fn check_consistency(
    proof: &[TreeHash],
    new_size: u64,
    new_root: TreeHash,
    old_size: u64,
    old_root: TreeHash,
) -> Result<(), MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::Invalid(format!(
            "no consistency proof from size {old_size} to {new_size}: need 1 <= old <= new"
        )));
    }
    let proof: Vec<tlog_tiles::Hash> = proof.iter().copied().map(Into::into).collect();
    tlog_tiles::check_tree(&proof, new_size, new_root.into(), old_size, old_root.into())
        .map_err(from_tlog)
}

/// A whole tree's stored hashes in memory, for tests and proofs (an exported log is
/// verified with a [`Frontier`], which holds only its right edge).
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    stored: Vec<TreeHash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record.
    pub fn push(&mut self, record: &[u8]) -> Result<(), MerkleError> {
        let new = hashes_to_append(self.size, record, self)?;
        self.stored.extend(new);
        self.size += 1;
        Ok(())
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<TreeHash, MerkleError> {
        root(size, self)
    }
}

impl HashStore for MemoryTree {
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.stored.get(i).copied())
                    .ok_or_else(|| MerkleError::Store(format!("no stored hash {i}").into()))
            })
            .collect()
    }
}

use sha2::Digest as _;

/// The right edge of a growing tree: the root of each perfect subtree the records so far
/// split into, largest first (at most 64). Enough to give the root at the current size
/// in memory that does not grow with the log; no proofs.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// (height, hash) of each perfect subtree, left to right.
    subtrees: Vec<(u32, TreeHash)>,
    size: u64,
}

impl Frontier {
    /// Appends a record.
    pub fn push(&mut self, record: &[u8]) {
        let (mut height, mut hash) = (0, leaf_hash(record));
        while let Some(&(h, left)) = self.subtrees.last() {
            if h != height {
                break;
            }
            self.subtrees.pop();
            hash = tlog_tiles::node_hash(left.into(), hash.into()).into();
            height += 1;
        }
        self.subtrees.push((height, hash));
        self.size += 1;
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the records so far (RFC 6962: the smaller subtrees hang off the right).
    pub fn root(&self) -> TreeHash {
        let mut right = self.subtrees.iter().rev().map(|(_, hash)| *hash);
        match right.next() {
            // The empty tree's root is the hash of nothing (RFC 6962 §2.1).
            None => TreeHash(sha2::Sha256::digest([]).into()),
            Some(last) => right.fold(last, |acc, left| {
                tlog_tiles::node_hash(left.into(), acc.into()).into()
            }),
        }
    }
}

#[cfg(test)]
mod tests;
