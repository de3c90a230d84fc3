//! The audit log on disk: records, their Merkle hashes, the secondary indexes, the
//! signed checkpoints and the metric counters, all written into the group commit's
//! `kv::Batch` so a record can never exist without the state change it describes.
//!
//! | key | value |
//! | --- | --- |
//! | `m/audit` | number of records (u64 BE) |
//! | `a/` first seq | pointer to an `AuditBatch` in the value files: the records of one commit |
//! | `h/` chunk | pointer to 256 stored Merkle hashes (32 bytes each) in the value files, written once, when full (layouts up to 3: the hashes inline) |
//! | `m/index` | the version of the indexes (u64 BE), [`INDEX_VERSION`] |
//! | `x/p/` partner `\0` first seq | seqs (`postings`: gaps, about a byte each) of the batch's records concerning the partner (its own, and every bulletin decided for it, shared or withheld) |
//! | `x/b/` bulletin id (16) first seq | seqs of the batch's other records about the bulletin (its acceptance is in its `d/` entry) |
//! | `x/e/` event (1) first seq | seqs of the batch's records of that event |
//! | `x/t/` time (u64 BE) first seq | empty: the batch's records carry this time |
//! | `p/` size | signed checkpoint of the first `size` records |
//! | `k/` day (u32 BE) partner `\0` name | counter (u64 BE), as of `m/counted` |
//! | `m/counted` | the log size the saved counters count (u64 BE); see `counters` |
//!
//! Index entries are written once per batch and term, not once per record, which keeps
//! a commit at a few dozen keys however many records it holds; counters are saved with
//! checkpoints (`counters`). Record times never go backwards (a clock step back is
//! clamped), so the time index is a seq range.
//!
//! The hashes past the last full chunk are not stored but kept in memory (`hashes`).
//! (Layout 2 wrote the partial chunk; such a chunk is checked against the records and
//! then left to be overwritten.)

use crate::store::kv;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use prost::Message as _;

use super::values::ValueLog;
use super::{be_u64, corrupt, seq_key, StoreError};
use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::merkle::{self, MerkleError, TreeHash};
use crate::audit::record::Event;
use crate::bulletin::BulletinId;
use crate::proto;
use crate::timestamp::Timestamp;

mod counters;
mod hashes;
mod postings;
mod read;

pub(super) use counters::mark_counted;
use counters::DayCounters;
pub(super) use hashes::SharedRun;
use hashes::{read_chunk, rebuild_tail, Extending, HashRun, CHUNK};
use postings::Posting;
pub use read::{AuditPage, AuditReader, Counted};

pub(super) const SIZE: &[u8] = b"m/audit";
const RECORDS: &[u8] = b"a/";
const HASHES: &[u8] = b"h/";
const BY_PARTNER: &[u8] = b"x/p/";
const BY_BULLETIN: &[u8] = b"x/b/";
const BY_EVENT: &[u8] = b"x/e/";
const BY_TIME: &[u8] = b"x/t/";
const CHECKPOINTS: &[u8] = b"p/";
const COUNTERS: &[u8] = b"k/";
const INDEX_KEY: &[u8] = b"m/index";
/// Version 2 files an accepted bulletin under every partner it was decided for, not
/// only those it was shared with, so that `--partner` shows what a partner did not get.
pub const INDEX_VERSION: u64 = 2;

/// Full chunks the writer keeps decoded (the right edge of the tree is read on every
/// append; these hold it).
const CACHED_CHUNKS: usize = 256;

/// The writer's view of the log between commits.
pub(super) struct AuditState {
    /// Records in the log.
    pub size: u64,
    /// Hashes past the last full chunk.
    tail: Arc<HashRun>,
    /// The same, as readers see it.
    shared: Arc<SharedRun>,
    cache: RefCell<HashMap<u64, Arc<Vec<TreeHash>>>>,
    /// Time of the last record: no record is older than the one before.
    pub last_time: u64,
    /// Size of the last signed checkpoint.
    pub checkpointed: u64,
    /// The root the node signed for `checkpointed` records, checked before every new
    /// signature: the tree must still extend what was signed.
    pub signed_root: Option<TreeHash>,
    /// Every counter summed over all days: (partner, name) → total, for monitoring.
    pub totals: counters::Totals,
    /// The day counters, saved and not.
    counters: DayCounters,
}

fn size(tree: &kv::Tree) -> Result<u64, StoreError> {
    match tree.get(SIZE)? {
        Some(v) => be_u64(SIZE, &v),
        None => Ok(0),
    }
}

/// The seq after the last stored record and that record's time (both 0 for an empty
/// log).
fn last_record(tree: &kv::Tree, values: &ValueLog) -> Result<(u64, u64), StoreError> {
    let (mut last_seq_end, mut last_time) = (0, 0);
    if let Some(kv) = tree.scan_prefix(RECORDS).next_back() {
        let (k, v) = kv?;
        let batch =
            proto::AuditBatch::decode(&*values.resolve(&k, &v)?).map_err(|e| corrupt(&k, e))?;
        last_seq_end = batch
            .first_seq
            .checked_add(batch.records.len() as u64)
            .ok_or_else(|| corrupt(&k, "audit batch beyond the largest seq"))?;
        let last = batch
            .records
            .last()
            .ok_or_else(|| corrupt(&k, "empty audit batch"))?;
        last_time = proto::AuditRecord::decode(last.clone())
            .map_err(|e| corrupt(&k, e))?
            .time_unix_ms;
    }
    Ok((last_seq_end, last_time))
}

/// The size and root of the last signed checkpoint, checked against its key (0 and
/// none when nothing was signed yet).
fn last_checkpoint(tree: &kv::Tree) -> Result<(u64, Option<TreeHash>), StoreError> {
    let (checkpointed, signed_root) = match tree.scan_prefix(CHECKPOINTS).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            let size = be_u64(&k, &k[CHECKPOINTS.len()..])?;
            let note = std::str::from_utf8(&v).map_err(|e| corrupt(&k, e))?;
            let stated = crate::audit::checkpoint::stated(note).map_err(|e| corrupt(&k, e))?;
            if stated.size != size {
                return Err(corrupt(
                    &k,
                    format!("holds a checkpoint of {}", stated.size),
                ));
            }
            (size, Some(stated.root))
        }
        None => (0, None),
    };
    Ok((checkpointed, signed_root))
}

impl AuditState {
    /// Loads the writer's state and checks the records against the recorded size.
    pub fn load(tree: &kv::Tree, values: &ValueLog) -> Result<AuditState, StoreError> {
        let size = size(tree)?;
        let (last_seq_end, last_time) = last_record(tree, values)?;
        if last_seq_end != size {
            return Err(corrupt(
                SIZE,
                format!("the log should hold {size} records but holds {last_seq_end}"),
            ));
        }
        let tail = Arc::new(rebuild_tail(tree, values, size)?);
        let (checkpointed, signed_root) = last_checkpoint(tree)?;
        if checkpointed > size {
            return Err(corrupt(
                &seq_key(CHECKPOINTS, checkpointed),
                format!("a checkpoint covers {checkpointed} records but the log holds {size}: records were lost"),
            ));
        }
        let reader = read::AuditReader {
            tree,
            values,
            run: &SharedRun::default(),
        };
        let (counters, totals) = DayCounters::load(tree, &reader, size)?;
        let state = AuditState {
            size,
            shared: Arc::new(RwLock::new(tail.clone())),
            tail,
            cache: RefCell::new(HashMap::new()),
            counters,
            last_time,
            checkpointed,
            signed_root,
            totals,
        };
        // Never go on from a tree that does not extend what was signed (whether the
        // signature itself is the node's is checked by the node, which holds the key).
        if let Some(signed) = signed_root {
            let found = state.root(tree, values, checkpointed)?;
            if found != signed {
                return Err(corrupt(
                    format!("p/{checkpointed}").as_bytes(),
                    format!("the log's first {checkpointed} records hash to {found}, but the node signed {signed}"),
                ));
            }
        }
        Ok(state)
    }

    /// The hashes past the last full chunk, for readers.
    pub fn shared(&self) -> Arc<SharedRun> {
        self.shared.clone()
    }

    /// Stored hash `i`, for an index below the tail.
    fn stored(&self, tree: &kv::Tree, values: &ValueLog, i: u64) -> Result<TreeHash, MerkleError> {
        let (chunk, at) = (i / CHUNK, (i % CHUNK) as usize);
        let miss = || MerkleError::Store(format!("no stored hash {i}").into());
        if i >= self.tail.first {
            return self.tail.get(i).ok_or_else(miss);
        }
        if let Some(c) = self.cache.borrow().get(&chunk) {
            return c.get(at).copied().ok_or_else(miss);
        }
        let hashes =
            read_chunk(tree, values, chunk).map_err(|e| MerkleError::Store(Box::new(e)))?;
        let h = hashes.get(at).copied().ok_or_else(miss)?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHED_CHUNKS {
            cache.clear();
        }
        cache.insert(chunk, Arc::new(hashes));
        Ok(h)
    }
}

/// Chunks a commit filled, by number, with their hashes.
type FilledChunks = Vec<(u64, Vec<TreeHash>)>;

/// What a successful commit changes in the writer's state.
pub(super) struct Appended {
    size: u64,
    counters: counters::Moved,
    tail: HashRun,
    full: FilledChunks,
    last_time: u64,
}

impl AuditState {
    /// The time to give the next batch's records: `now`, unless the clock went back.
    pub fn clock(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_ms(now.unix_ms().max(self.last_time))
    }

    /// Seals `events` as the next records and adds them, their hashes, index entries and
    /// counters to `writes`. The writer's state does not change until
    /// [`AuditState::applied`]; readers are handed the new hashes at once, which is
    /// harmless, since none asks for a hash past the size it read.
    pub fn append(
        &self,
        tree: &kv::Tree,
        values: &ValueLog,
        writes: &mut kv::Batch,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let first = self.size;
        let sealed = self.seal(tree, values, events, now)?;
        let size = first + sealed.records.len() as u64;
        let ptr = values.append(&sealed.batch)?;
        writes.insert(seq_key(RECORDS, first), &ptr.encode()[..]);
        writes.insert(SIZE, &size.to_be_bytes()[..]);
        for (mut key, posting) in sealed.index {
            key.extend_from_slice(&first.to_be_bytes());
            writes.insert(key, posting.into_bytes());
        }
        let mut time_key = seq_key(BY_TIME, now.unix_ms());
        time_key.extend_from_slice(&first.to_be_bytes());
        writes.insert(time_key, &[][..]);
        let counters = self.counters.moved(tree, &sealed.records, size)?;
        self.counters.write(&counters, size, writes);
        let (tail, full) = self.write_hashes(values, writes, sealed.hashes)?;
        Ok(Some(Appended {
            size,
            counters,
            tail,
            full,
            last_time: now.unix_ms(),
        }))
    }

    /// Seals `events` as records from seq [`AuditState::size`] on: the batch value
    /// (prost's encoding of `AuditBatch`, each record encoded straight into it), the
    /// Merkle hashes they add, and their index postings.
    fn seal(
        &self,
        tree: &kv::Tree,
        values: &ValueLog,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<Sealed, StoreError> {
        let first = self.size;
        let mut tree_view = Extending::new(merkle::stored_count(first), |i| {
            self.stored(tree, values, i)
        });
        tree_view.new.reserve(events.len() * 2);
        let mut batch = Vec::with_capacity(64 + events.len() * 512);
        crate::wire::audit_batch_start(&mut batch, first);
        let mut index: BTreeMap<Vec<u8>, Posting> = BTreeMap::new();
        let mut term = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for (n, event) in (first..).zip(events) {
            let record = event.seal(n, now);
            let at = crate::wire::audit_batch_record(&mut batch, &record);
            let bytes = batch.get(at).unwrap_or_default();
            let hashes =
                merkle::hashes_to_append(n, bytes, &tree_view).map_err(|e| corrupt(HASHES, e))?;
            tree_view.new.extend(hashes);
            each_index_term(&record, &mut term, |term| match index.get_mut(term) {
                Some(posting) => posting.push(n),
                None => {
                    let mut posting = Posting::new(first);
                    posting.push(n);
                    index.insert(term.to_vec(), posting);
                }
            });
            records.push(record);
        }
        Ok(Sealed {
            batch,
            records,
            index,
            hashes: tree_view.new,
        })
    }

    /// Writes each chunk that `new` fills, once, into the value files; publishes the
    /// tail with `new` to readers; returns the new partial chunk and the chunks filled.
    fn write_hashes(
        &self,
        values: &ValueLog,
        writes: &mut kv::Batch,
        new: Vec<TreeHash>,
    ) -> Result<(HashRun, FilledChunks), StoreError> {
        let first = self.tail.first;
        let mut pending = Vec::with_capacity(self.tail.hashes.len() + new.len());
        pending.extend_from_slice(&self.tail.hashes);
        pending.extend(new);
        let mut full = Vec::new();
        for (chunk, this) in (first / CHUNK..).zip(pending.chunks_exact(CHUNK as usize)) {
            let value: Vec<u8> = this.iter().flat_map(|h| h.0).collect();
            let ptr = values.append(&value)?;
            writes.insert(seq_key(HASHES, chunk), &ptr.encode()[..]);
            full.push((chunk, this.to_vec()));
        }
        let filled = full.len() * CHUNK as usize;
        let tail = HashRun {
            first: first + filled as u64,
            hashes: pending[filled..].to_vec(),
        };
        let published = Arc::new(HashRun {
            first,
            hashes: pending,
        });
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = published;
        Ok((tail, full))
    }

    /// The batch is in the database: move on to it.
    pub fn applied(&mut self, a: Appended) {
        self.size = a.size;
        self.tail = Arc::new(a.tail);
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = self.tail.clone();
        for (key, by) in &a.counters.totals {
            *self.totals.entry(key.clone()).or_default() += by;
        }
        self.counters.applied(a.counters, a.size);
        self.last_time = a.last_time;
        let mut cache = self.cache.borrow_mut();
        for (chunk, hashes) in a.full {
            if cache.len() >= CACHED_CHUNKS {
                cache.clear();
            }
            cache.insert(chunk, Arc::new(hashes));
        }
    }

    /// The root of the first `size` committed records.
    fn root(&self, tree: &kv::Tree, values: &ValueLog, size: u64) -> Result<TreeHash, StoreError> {
        let view = Extending::new(merkle::stored_count(self.size), |i| {
            self.stored(tree, values, i)
        });
        merkle::root(size, &view).map_err(|e| corrupt(HASHES, e))
    }

    /// Signs a checkpoint of the whole log, if it grew since the last, into `writes`
    /// with every unsaved counter, after checking that the tree still extends the last
    /// one signed. Returns the size and root signed.
    pub fn checkpoint(
        &self,
        tree: &kv::Tree,
        values: &ValueLog,
        signers: &[&CheckpointSigner],
        writes: &mut kv::Batch,
    ) -> Result<Option<(u64, TreeHash)>, StoreError> {
        if self.size == 0 || self.size == self.checkpointed {
            return Ok(None);
        }
        if let Some(signed) = self.signed_root {
            let now = self.root(tree, values, self.checkpointed)?;
            if now != signed {
                return Err(corrupt(
                    HASHES,
                    format!(
                        "the first {} records now hash to {now}, but the node signed {signed}: refusing to sign a fork",
                        self.checkpointed
                    ),
                ));
            }
        }
        let root = self.root(tree, values, self.size)?;
        let note = crate::audit::checkpoint::sign_by(signers, self.size, root)
            .map_err(|e| corrupt(CHECKPOINTS, e))?;
        writes.insert(seq_key(CHECKPOINTS, self.size), note.as_bytes());
        self.counters.write_all(self.size, writes);
        Ok(Some((self.size, root)))
    }

    /// The batch of [`AuditState::checkpoint`] is in the database.
    pub fn signed(&mut self, size: u64, root: TreeHash) {
        self.checkpointed = size;
        self.signed_root = Some(root);
        self.counters.saved(size);
    }
}

/// Records sealed for a batch, before anything is written.
struct Sealed {
    /// The `AuditBatch` value.
    batch: Vec<u8>,
    records: Vec<proto::AuditRecord>,
    /// Index term → the seqs (u64 BE) filed under it.
    index: BTreeMap<Vec<u8>, Posting>,
    /// The Merkle hashes the records add.
    hashes: Vec<TreeHash>,
}

fn partner_prefix(partner: &str) -> Vec<u8> {
    [BY_PARTNER, partner.as_bytes(), b"\0"].concat()
}

/// Adds the cosignature `line` to the signed checkpoint of size `size` in `tree` (a
/// witness's, replacing its earlier one); false if there is no checkpoint at that size.
pub(super) fn add_cosignature(tree: &kv::Tree, size: u64, line: &str) -> Result<bool, StoreError> {
    let key = seq_key(CHECKPOINTS, size);
    let Some(note) = tree.get(&key)? else {
        return Ok(false);
    };
    let note = std::str::from_utf8(&note).map_err(|e| corrupt(&key, e))?;
    let cosigned = crate::audit::witness::with_cosignature(note, line);
    tree.insert(key, cosigned.as_bytes())?;
    Ok(true)
}

/// Calls `post` with each index term (key prefix) a record is filed under: its partner,
/// every partner an accepted bulletin was decided for, its bulletin id (an ack's, those
/// of its receipts) and its event.
/// The terms are built in `term`, one after another.
fn each_index_term(r: &proto::AuditRecord, term: &mut Vec<u8>, mut post: impl FnMut(&[u8])) {
    let mut partner = |p: &str, term: &mut Vec<u8>| {
        term.clear();
        term.extend_from_slice(BY_PARTNER);
        term.extend_from_slice(p.as_bytes());
        term.push(0);
        post(term);
    };
    if !r.partner.is_empty() {
        partner(&r.partner, term);
    }
    for d in r.decisions.iter().filter(|d| d.partner != r.partner) {
        partner(&d.partner, term);
    }
    // An accepted bulletin's record is found through its `d/` entry, which holds the
    // record's seq: no second key per bulletin. Other records about it are posted here.
    if r.event != proto::AuditEvent::BulletinAccepted as i32 {
        if let Some(id) = BulletinId::parse_canonical(&r.bulletin_id) {
            term.clear();
            term.extend_from_slice(BY_BULLETIN);
            term.extend_from_slice(id.as_bytes());
            post(term);
        }
    }
    // An ack's receipts name their bulletins: `audit receipts --bulletin` finds them.
    for id in crate::audit::record::receipted_bulletins(r) {
        term.clear();
        term.extend_from_slice(BY_BULLETIN);
        term.extend_from_slice(id.as_bytes());
        post(term);
    }
    term.clear();
    term.extend_from_slice(BY_EVENT);
    term.push(r.event as u8);
    post(term);
}

/// Brings the partner index of a log written before [`INDEX_VERSION`] up to it: every
/// batch's partner postings are written again (the same keys, more seqs).
pub(super) fn upgrade_index(tree: &kv::Tree, values: &ValueLog) -> Result<(), StoreError> {
    if let Some(v) = tree.get(INDEX_KEY)? {
        if be_u64(INDEX_KEY, &v)? >= INDEX_VERSION {
            return Ok(());
        }
    }
    let mut term = Vec::new();
    for kv in tree.scan_prefix(RECORDS) {
        let (k, v) = kv?;
        let batch =
            proto::AuditBatch::decode(&*values.resolve(&k, &v)?).map_err(|e| corrupt(&k, e))?;
        let mut index: BTreeMap<Vec<u8>, Posting> = BTreeMap::new();
        for (n, bytes) in (batch.first_seq..).zip(&batch.records) {
            let record = proto::AuditRecord::decode(bytes.clone()).map_err(|e| corrupt(&k, e))?;
            each_index_term(&record, &mut term, |term| {
                if term.starts_with(BY_PARTNER) {
                    index
                        .entry(term.to_vec())
                        .or_insert_with(|| Posting::new(batch.first_seq))
                        .push(n);
                }
            });
        }
        let mut writes = kv::Batch::default();
        for (mut key, posting) in index {
            key.extend_from_slice(&batch.first_seq.to_be_bytes());
            writes.insert(key, posting.into_bytes());
        }
        tree.apply_batch(writes)?;
    }
    tree.insert(INDEX_KEY, &INDEX_VERSION.to_be_bytes()[..])?;
    tree.persist()?;
    Ok(())
}

#[cfg(test)]
mod tests;
