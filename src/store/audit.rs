//! The audit log on disk: records, their Merkle hashes, the secondary indexes, the
//! signed checkpoints and the metric counters, all written into the group commit's
//! `sled::Batch` so a record can never exist without the state change it describes.
//!
//! | key | value |
//! | --- | --- |
//! | `m/audit` | number of records (u64 BE) |
//! | `a/` first seq | `AuditBatch`: the records of one commit |
//! | `h/` chunk | 256 stored Merkle hashes (32 bytes each; the last chunk may be partial) |
//! | `x/p/` partner `\0` first seq | seqs (u64 BE each) of the batch's records concerning the partner |
//! | `x/b/` bulletin id (16) first seq | seqs of the batch's records about the bulletin |
//! | `x/e/` event (1) first seq | seqs of the batch's records of that event |
//! | `x/t/` time (u64 BE) first seq | empty: the batch's records carry this time |
//! | `p/` size | signed checkpoint of the first `size` records |
//! | `k/` day (u32 BE) partner `\0` name | counter (u64 BE) |
//!
//! Index entries and counters are written once per batch and term, not once per record,
//! which keeps a commit at a few dozen keys however many records it holds. Record times
//! never go backwards (a clock step back is clamped), so the time index is a seq range.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

use super::{be_u64, corrupt, seq_key, StoreError};
use crate::audit::checkpoint::{self, CheckpointSigner};
use crate::audit::merkle::{self, HashStore, MerkleError, TreeHash};
use crate::audit::record::Event;
use crate::bulletin::BulletinId;
use crate::identity::PartnerId;
use crate::metrics;
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

pub(super) const SIZE: &[u8] = b"m/audit";
const RECORDS: &[u8] = b"a/";
const HASHES: &[u8] = b"h/";
const BY_PARTNER: &[u8] = b"x/p/";
const BY_BULLETIN: &[u8] = b"x/b/";
const BY_EVENT: &[u8] = b"x/e/";
const BY_TIME: &[u8] = b"x/t/";
const CHECKPOINTS: &[u8] = b"p/";
const COUNTERS: &[u8] = b"k/";

/// Stored hashes per `h/` value.
const CHUNK: u64 = 256;
/// Full chunks the writer keeps decoded (the right edge of the tree is read on every
/// append; these hold it).
const CACHED_CHUNKS: usize = 256;

/// The writer's view of the log between commits.
pub(super) struct AuditState {
    /// Records in the log.
    pub size: u64,
    /// Hashes of the last, partial chunk.
    tail: Vec<TreeHash>,
    cache: RefCell<HashMap<u64, Arc<Vec<TreeHash>>>>,
    /// Time of the last record: no record is older than the one before.
    pub last_time: u64,
    /// Size of the last signed checkpoint.
    pub checkpointed: u64,
}

fn decode_chunk(key: &[u8], v: &[u8]) -> Result<Vec<TreeHash>, StoreError> {
    if v.len() % 32 != 0 || v.len() as u64 > CHUNK * 32 {
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

fn read_chunk(tree: &sled::Tree, chunk: u64) -> Result<Vec<TreeHash>, StoreError> {
    let key = seq_key(HASHES, chunk);
    match tree.get(&key)? {
        Some(v) => decode_chunk(&key, &v),
        None => Ok(Vec::new()),
    }
}

fn size(tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.get(SIZE)? {
        Some(v) => be_u64(SIZE, &v),
        None => Ok(0),
    }
}

impl AuditState {
    /// Loads the writer's state and checks the records against the recorded size.
    pub fn load(tree: &sled::Tree) -> Result<AuditState, StoreError> {
        let size = size(tree)?;
        let (mut last_seq_end, mut last_time) = (0, 0);
        if let Some(kv) = tree.scan_prefix(RECORDS).next_back() {
            let (k, v) = kv?;
            let batch = proto::AuditBatch::decode(&*v).map_err(|e| corrupt(&k, e.to_string()))?;
            last_seq_end = batch.first_seq + batch.records.len() as u64;
            let last = batch
                .records
                .last()
                .ok_or_else(|| corrupt(&k, "empty audit batch"))?;
            last_time = proto::AuditRecord::decode(last.clone())
                .map_err(|e| corrupt(&k, e.to_string()))?
                .time_unix_ms;
        }
        if last_seq_end != size {
            return Err(corrupt(
                SIZE,
                format!("the log should hold {size} records but holds {last_seq_end}"),
            ));
        }
        let count = merkle::stored_count(size);
        let tail = read_chunk(tree, count / CHUNK)?;
        if tail.len() as u64 != count % CHUNK {
            return Err(corrupt(
                &seq_key(HASHES, count / CHUNK),
                format!("expected {} hashes, found {}", count % CHUNK, tail.len()),
            ));
        }
        let checkpointed = match tree.scan_prefix(CHECKPOINTS).next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                be_u64(&k, &k[CHECKPOINTS.len()..])?
            }
            None => 0,
        };
        if checkpointed > size {
            return Err(corrupt(
                &seq_key(CHECKPOINTS, checkpointed),
                format!("a checkpoint covers {checkpointed} records but the log holds {size}: records were lost"),
            ));
        }
        Ok(AuditState {
            size,
            tail,
            cache: RefCell::new(HashMap::new()),
            last_time,
            checkpointed,
        })
    }

    /// Stored hash `i`, for an index below the tail.
    fn stored(&self, tree: &sled::Tree, i: u64) -> Result<TreeHash, MerkleError> {
        let (chunk, at) = (i / CHUNK, (i % CHUNK) as usize);
        let tail_chunk = merkle::stored_count(self.size) / CHUNK;
        let miss = || MerkleError::Store(format!("no stored hash {i}"));
        if chunk == tail_chunk {
            return self.tail.get(at).copied().ok_or_else(miss);
        }
        if let Some(c) = self.cache.borrow().get(&chunk) {
            return c.get(at).copied().ok_or_else(miss);
        }
        let hashes = read_chunk(tree, chunk).map_err(|e| MerkleError::Store(e.to_string()))?;
        let h = hashes.get(at).copied().ok_or_else(miss)?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHED_CHUNKS {
            cache.clear();
        }
        cache.insert(chunk, Arc::new(hashes));
        Ok(h)
    }
}

/// The tree while a batch is appended: committed hashes plus the batch's new ones.
struct Appending<'a> {
    tree: &'a sled::Tree,
    state: &'a AuditState,
    base: u64,
    new: Vec<TreeHash>,
}

impl HashStore for Appending<'_> {
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| match i.checked_sub(self.base) {
                Some(j) => self
                    .new
                    .get(j as usize)
                    .copied()
                    .ok_or_else(|| MerkleError::Store(format!("no stored hash {i}"))),
                None => self.state.stored(self.tree, i),
            })
            .collect()
    }
}

/// What a successful commit changes in the writer's state.
pub(super) struct Appended {
    size: u64,
    tail: Vec<TreeHash>,
    full: Vec<(u64, Vec<TreeHash>)>,
    last_time: u64,
}

impl AuditState {
    /// The time to give the next batch's records: `now`, unless the clock went back.
    pub fn clock(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_unix_ms(now.unix_ms().max(self.last_time))
    }

    /// Seals `events` as the next records and adds them, their hashes, index entries and
    /// counters to `writes`. Nothing changes until [`AuditState::applied`].
    pub fn append(
        &self,
        tree: &sled::Tree,
        writes: &mut sled::Batch,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<Option<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let first = self.size;
        let base = merkle::stored_count(first);
        let mut tree_view = Appending {
            tree,
            state: self,
            base,
            new: Vec::with_capacity(events.len() * 2),
        };
        let mut batch = proto::AuditBatch {
            first_seq: first,
            records: Vec::with_capacity(events.len()),
        };
        let mut index: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut counts: BTreeMap<(u32, String, String), u64> = BTreeMap::new();
        for (n, event) in (first..).zip(events) {
            let record = event.seal(n, now);
            let bytes = Bytes::from(record.encode_to_vec());
            let hashes = merkle::hashes_to_append(n, &bytes, &tree_view)
                .map_err(|e| corrupt(HASHES, e.to_string()))?;
            tree_view.new.extend(hashes);
            for term in index_terms(&record) {
                index
                    .entry(term)
                    .or_default()
                    .extend_from_slice(&n.to_be_bytes());
            }
            for c in metrics::count(&record) {
                *counts.entry((c.day, c.partner, c.name)).or_default() += c.by;
            }
            batch.records.push(bytes);
        }
        let size = first + batch.records.len() as u64;
        writes.insert(seq_key(RECORDS, first), batch.encode_to_vec());
        writes.insert(SIZE, &size.to_be_bytes()[..]);
        for (mut key, seqs) in index {
            key.extend_from_slice(&first.to_be_bytes());
            writes.insert(key, seqs);
        }
        let mut time_key = seq_key(BY_TIME, now.unix_ms());
        time_key.extend_from_slice(&first.to_be_bytes());
        writes.insert(time_key, &[][..]);
        for ((day, partner, name), by) in counts {
            let key = counter_key(day, &partner, &name);
            let old = match tree.get(&key)? {
                Some(v) => be_u64(&key, &v)?,
                None => 0,
            };
            writes.insert(key, &(old + by).to_be_bytes()[..]);
        }
        // Hashes: rewrite the partial chunk and add the new ones, chunk by chunk.
        let mut pending: Vec<TreeHash> = self.tail.clone();
        pending.extend(tree_view.new);
        let mut chunk = base / CHUNK;
        let mut full = Vec::new();
        let mut rest = pending.as_slice();
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK as usize);
            let (this, next) = rest.split_at(take);
            let value: Vec<u8> = this.iter().flat_map(|h| h.0).collect();
            writes.insert(seq_key(HASHES, chunk), value);
            if take == CHUNK as usize {
                full.push((chunk, this.to_vec()));
            }
            rest = next;
            chunk += 1;
        }
        let tail = if pending.len() as u64 % CHUNK == 0 {
            Vec::new()
        } else {
            pending[pending.len() - (pending.len() % CHUNK as usize)..].to_vec()
        };
        Ok(Some(Appended {
            size,
            tail,
            full,
            last_time: now.unix_ms(),
        }))
    }

    /// The batch is in the database: move on to it.
    pub fn applied(&mut self, a: Appended) {
        self.size = a.size;
        self.tail = a.tail;
        self.last_time = a.last_time;
        let mut cache = self.cache.borrow_mut();
        for (chunk, hashes) in a.full {
            if cache.len() >= CACHED_CHUNKS {
                cache.clear();
            }
            cache.insert(chunk, Arc::new(hashes));
        }
    }

    /// Signs a checkpoint of the whole log, if it grew since the last, into `writes`.
    pub fn checkpoint(
        &self,
        tree: &sled::Tree,
        signer: &CheckpointSigner,
        writes: &mut sled::Batch,
    ) -> Result<Option<u64>, StoreError> {
        if self.size == 0 || self.size == self.checkpointed {
            return Ok(None);
        }
        let view = Appending {
            tree,
            state: self,
            base: merkle::stored_count(self.size),
            new: Vec::new(),
        };
        let root = merkle::root(self.size, &view).map_err(|e| corrupt(HASHES, e.to_string()))?;
        let note = signer
            .sign(self.size, root)
            .map_err(|e| corrupt(CHECKPOINTS, e.to_string()))?;
        writes.insert(seq_key(CHECKPOINTS, self.size), note.as_bytes());
        Ok(Some(self.size))
    }
}

fn counter_key(day: u32, partner: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(COUNTERS.len() + 4 + partner.len() + 1 + name.len());
    k.extend_from_slice(COUNTERS);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(partner.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn partner_prefix(partner: &str) -> Vec<u8> {
    [BY_PARTNER, partner.as_bytes(), b"\0"].concat()
}

/// The index terms (key prefixes) a record is filed under: its partner, every partner
/// an accepted bulletin was shared with, its bulletin id and its event.
fn index_terms(r: &proto::AuditRecord) -> Vec<Vec<u8>> {
    let mut terms = Vec::with_capacity(2 + r.decisions.len());
    if !r.partner.is_empty() {
        terms.push(partner_prefix(&r.partner));
    }
    for d in r
        .decisions
        .iter()
        .filter(|d| d.shared && d.partner != r.partner)
    {
        terms.push(partner_prefix(&d.partner));
    }
    if let Some(id) = BulletinId::parse_canonical(&r.bulletin_id) {
        terms.push([BY_BULLETIN, &id.as_bytes()[..]].concat());
    }
    terms.push([BY_EVENT, &[r.event as u8][..]].concat());
    terms
}

/// Reads the committed log: records, hashes, checkpoints, indexes and counters. Any
/// thread may read while the writer appends; it sees whole commits only.
pub struct AuditReader<'a> {
    pub(super) tree: &'a sled::Tree,
}

/// A query of the log: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Records concerning this partner.
    pub partner: Option<PartnerId>,
    /// Records about this bulletin.
    pub bulletin: Option<BulletinId>,
    /// Records of this event.
    pub event: Option<AuditEvent>,
    /// Node time at or after this.
    pub since: Option<Timestamp>,
    /// Node time at or before this.
    pub until: Option<Timestamp>,
    /// Only seqs above this (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Page size.
    pub limit: usize,
}

/// One page of query results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditPage {
    /// Encoded records, ascending seq.
    pub records: Vec<Bytes>,
    /// Pass as [`Query::after`] for the next page; `None` when there is no more.
    pub next_after: Option<u64>,
    /// Records in the log when the page was read.
    pub log_size: u64,
    /// Records decoded to answer (the cost of the query).
    pub records_read: u64,
}

impl Query {
    /// Does `r` pass every filter except the time range (which selects seqs)?
    fn matches(&self, r: &proto::AuditRecord) -> bool {
        if let Some(p) = &self.partner {
            let p = p.as_str();
            let concerns = r.partner == p || r.decisions.iter().any(|d| d.shared && d.partner == p);
            if !concerns {
                return false;
            }
        }
        if let Some(b) = &self.bulletin {
            if r.bulletin_id != b.to_string() {
                return false;
            }
        }
        if let Some(e) = self.event {
            if r.event != e as i32 {
                return false;
            }
        }
        true
    }

    /// The index whose postings to walk: the most selective filter set.
    fn posting_prefix(&self) -> Option<Vec<u8>> {
        if let Some(b) = &self.bulletin {
            return Some([BY_BULLETIN, &b.as_bytes()[..]].concat());
        }
        if let Some(p) = &self.partner {
            return Some(partner_prefix(p.as_str()));
        }
        self.event.map(|e| [BY_EVENT, &[e as u8][..]].concat())
    }
}

/// Decodes records out of batches, keeping the last batch for neighbouring seqs.
struct RecordCursor<'a> {
    tree: &'a sled::Tree,
    batch: Option<proto::AuditBatch>,
    read: u64,
}

impl RecordCursor<'_> {
    fn get(&mut self, seq: u64) -> Result<Option<(Bytes, proto::AuditRecord)>, StoreError> {
        let holds = |b: &proto::AuditBatch| {
            seq >= b.first_seq && seq < b.first_seq + b.records.len() as u64
        };
        if !self.batch.as_ref().is_some_and(holds) {
            let found = self
                .tree
                .range(RECORDS.to_vec()..=seq_key(RECORDS, seq))
                .next_back()
                .transpose()?;
            let Some((k, v)) = found else { return Ok(None) };
            if !k.starts_with(RECORDS) {
                return Ok(None);
            }
            let b = proto::AuditBatch::decode(Bytes::copy_from_slice(&v))
                .map_err(|e| corrupt(&k, e.to_string()))?;
            if !holds(&b) {
                return Ok(None);
            }
            self.batch = Some(b);
        }
        let Some(b) = &self.batch else {
            return Ok(None);
        };
        let bytes = b.records[(seq - b.first_seq) as usize].clone();
        let key = format!("audit record {seq}");
        let record = proto::AuditRecord::decode(bytes.clone())
            .map_err(|e| corrupt(key.as_bytes(), e.to_string()))?;
        self.read += 1;
        if record.seq != seq {
            return Err(corrupt(
                key.as_bytes(),
                format!("says it is record {}", record.seq),
            ));
        }
        Ok(Some((bytes, record)))
    }
}

impl AuditReader<'_> {
    /// Number of records in the log.
    pub fn size(&self) -> Result<u64, StoreError> {
        size(self.tree)
    }

    /// Record `seq`, encoded, as hashed into the tree.
    pub fn record(&self, seq: u64) -> Result<Option<Bytes>, StoreError> {
        let mut c = RecordCursor {
            tree: self.tree,
            batch: None,
            read: 0,
        };
        Ok(c.get(seq)?.map(|(bytes, _)| bytes))
    }

    /// Every record from `from`, in order, batch by batch (for export and recounts).
    pub fn records_from(&self, from: u64) -> impl Iterator<Item = Result<Bytes, StoreError>> + '_ {
        let start = self
            .tree
            .range(RECORDS.to_vec()..=seq_key(RECORDS, from))
            .next_back()
            .and_then(|kv| kv.ok())
            .map(|(k, _)| k.to_vec())
            .unwrap_or_else(|| RECORDS.to_vec());
        self.tree
            .range(start..)
            .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(RECORDS)))
            .flat_map(move |kv| {
                let batch = kv.map_err(StoreError::from).and_then(|(k, v)| {
                    proto::AuditBatch::decode(Bytes::copy_from_slice(&v))
                        .map_err(|e| corrupt(&k, e.to_string()))
                });
                let items: Vec<Result<Bytes, StoreError>> = match batch {
                    Ok(b) => (b.first_seq..)
                        .zip(b.records)
                        .filter(|(seq, _)| *seq >= from)
                        .map(|(_, r)| Ok(r))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                items
            })
    }

    /// The first seq whose time is at or after `t` (the log size if none).
    fn seq_at(&self, t: u64, size: u64) -> Result<u64, StoreError> {
        match self.tree.range(seq_key(BY_TIME, t)..).next().transpose()? {
            Some((k, _)) if k.starts_with(BY_TIME) && k.len() == BY_TIME.len() + 16 => {
                be_u64(&k, &k[BY_TIME.len() + 8..])
            }
            _ => Ok(size),
        }
    }

    /// Answers a query, reading only the records its most selective index points at.
    pub fn query(&self, q: &Query) -> Result<AuditPage, StoreError> {
        let size = self.size()?;
        let mut lo = q.after.map_or(0, |a| a.saturating_add(1));
        if let Some(since) = q.since {
            lo = lo.max(self.seq_at(since.unix_ms(), size)?);
        }
        let hi = match q.until {
            Some(until) => self.seq_at(until.unix_ms().saturating_add(1), size)?,
            None => size,
        };
        let limit = q.limit.max(1);
        let mut page = AuditPage {
            log_size: size,
            ..Default::default()
        };
        let mut cursor = RecordCursor {
            tree: self.tree,
            batch: None,
            read: 0,
        };
        let mut take = |seq: u64, page: &mut AuditPage| -> Result<bool, StoreError> {
            if page.records.len() == limit {
                page.next_after = Some(seq - 1);
                return Ok(false);
            }
            if let Some((bytes, record)) = cursor.get(seq)? {
                if q.matches(&record) {
                    page.records.push(bytes);
                }
            }
            Ok(true)
        };
        if lo < hi {
            match q.posting_prefix() {
                None => {
                    for seq in lo..hi {
                        if !take(seq, &mut page)? {
                            break;
                        }
                    }
                }
                Some(prefix) => {
                    // The posting of the batch holding `lo` starts at or before it.
                    let start = self
                        .tree
                        .range(prefix.clone()..=[prefix.as_slice(), &lo.to_be_bytes()].concat())
                        .next_back()
                        .transpose()?
                        .map_or_else(|| prefix.clone(), |(k, _)| k.to_vec());
                    'postings: for kv in self.tree.range(start..) {
                        let (k, v) = kv?;
                        if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                            break;
                        }
                        if v.len() % 8 != 0 {
                            return Err(corrupt(&k, "index entry is not a list of seqs"));
                        }
                        for s in v.chunks_exact(8) {
                            let seq = be_u64(&k, s)?;
                            if seq < lo {
                                continue;
                            }
                            if seq >= hi || !take(seq, &mut page)? {
                                break 'postings;
                            }
                        }
                    }
                }
            }
        }
        page.records_read = cursor.read;
        Ok(page)
    }

    /// The hashes committed so far, for proofs.
    fn hashes(&self) -> ReadHashes<'_> {
        ReadHashes {
            tree: self.tree,
            chunks: RefCell::new(HashMap::new()),
        }
    }

    /// Root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<TreeHash, StoreError> {
        merkle::root(size, &self.hashes()).map_err(|e| corrupt(HASHES, e.to_string()))
    }

    /// Inclusion proof of record `seq` in the tree of `size` records.
    pub fn prove_inclusion(&self, size: u64, seq: u64) -> Result<Vec<TreeHash>, MerkleError> {
        merkle::prove_inclusion(size, seq, &self.hashes())
    }

    /// Consistency proof from `old` to `new` records.
    pub fn prove_consistency(&self, new: u64, old: u64) -> Result<Vec<TreeHash>, MerkleError> {
        merkle::prove_consistency(new, old, &self.hashes())
    }

    /// The latest signed checkpoint: (size, note).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.checkpoints().next_back().transpose()
    }

    /// Every signed checkpoint, by size.
    pub fn checkpoints(
        &self,
    ) -> impl DoubleEndedIterator<Item = Result<(u64, String), StoreError>> + '_ {
        self.tree.scan_prefix(CHECKPOINTS).map(|kv| {
            let (k, v) = kv?;
            let size = be_u64(&k, &k[CHECKPOINTS.len()..])?;
            let note = String::from_utf8(v.to_vec()).map_err(|e| corrupt(&k, e.to_string()))?;
            Ok((size, note))
        })
    }

    /// Checks the latest checkpoint's signature and that its root is the stored tree's:
    /// a node must never go on from a log that does not match what it signed.
    pub fn check_checkpoint(
        &self,
        origin: &str,
        key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), StoreError> {
        let Some((size, note)) = self.latest_checkpoint()? else {
            return Ok(());
        };
        let key_name = seq_key(CHECKPOINTS, size);
        let v = checkpoint::verify(&note, origin, key)
            .map_err(|e| corrupt(&key_name, e.to_string()))?;
        let root = self.root(size)?;
        if v.size != size || v.root != root {
            return Err(corrupt(
                &key_name,
                format!("the log's tree of {size} records has root {root}, but the node signed {} for {}", v.root, v.size),
            ));
        }
        Ok(())
    }

    /// Every counter row from day 0 up to (not including) `until_day`.
    pub fn counters(&self, until_day: u32) -> Result<Vec<metrics::Row>, StoreError> {
        let mut rows = Vec::new();
        let end = [COUNTERS, &until_day.to_be_bytes()[..]].concat();
        for kv in self.tree.range(COUNTERS.to_vec()..end) {
            let (k, v) = kv?;
            let rest = &k[COUNTERS.len()..];
            let parsed = rest.get(..4).and_then(|d| {
                let day = u32::from_be_bytes(d.try_into().ok()?);
                let tail = std::str::from_utf8(&rest[4..]).ok()?;
                let (partner, name) = tail.split_once('\0')?;
                Some((day, partner.to_owned(), name.to_owned()))
            });
            let (day, partner, name) = parsed.ok_or_else(|| corrupt(&k, "bad counter key"))?;
            rows.push((day, partner, name, be_u64(&k, &v)?));
        }
        Ok(rows)
    }
}

/// Stored hashes read straight from the database, a chunk at a time.
struct ReadHashes<'a> {
    tree: &'a sled::Tree,
    chunks: RefCell<HashMap<u64, Vec<TreeHash>>>,
}

impl HashStore for ReadHashes<'_> {
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError> {
        let mut chunks = self.chunks.borrow_mut();
        indexes
            .iter()
            .map(|&i| {
                let chunk = i / CHUNK;
                if !chunks.contains_key(&chunk) {
                    let c = read_chunk(self.tree, chunk)
                        .map_err(|e| MerkleError::Store(e.to_string()))?;
                    chunks.insert(chunk, c);
                }
                chunks
                    .get(&chunk)
                    .and_then(|c| c.get((i % CHUNK) as usize))
                    .copied()
                    .ok_or_else(|| MerkleError::Store(format!("no stored hash {i}")))
            })
            .collect()
    }
}

/// Most records one query page may hold.
pub const MAX_PAGE: usize = 1000;
/// Page size when the query names none.
pub const DEFAULT_PAGE: usize = 100;

impl Query {
    /// The query an auditor sent over the wire, checked.
    pub fn from_wire(q: &proto::AuditQuery) -> Result<Query, String> {
        let partner = match q.partner.as_str() {
            "" => None,
            p => Some(
                p.parse::<PartnerId>()
                    .map_err(|e| format!("partner: {e}"))?,
            ),
        };
        let bulletin = match q.bulletin_id.as_str() {
            "" => None,
            b => Some(BulletinId::parse_canonical(b).ok_or_else(|| {
                format!("bulletin_id {b:?} is not a canonical UUID (lowercase, hyphenated)")
            })?),
        };
        let event = match q.event {
            0 => None,
            n => Some(
                i32::try_from(n)
                    .ok()
                    .and_then(|n| AuditEvent::try_from(n).ok())
                    .ok_or_else(|| format!("event {n} is not an audit event"))?,
            ),
        };
        let time = |ms: u64| (ms != 0).then(|| Timestamp::from_unix_ms(ms));
        let limit = match q.limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        Ok(Query {
            partner,
            bulletin,
            event,
            since: time(q.since_unix_ms),
            until: time(q.until_unix_ms),
            after: q.after,
            limit,
        })
    }

    /// The wire form of this query.
    pub fn to_wire(&self) -> proto::AuditQuery {
        proto::AuditQuery {
            partner: self
                .partner
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            bulletin_id: self.bulletin.map(|b| b.to_string()).unwrap_or_default(),
            event: self.event.map_or(0, |e| e as u32),
            since_unix_ms: self.since.map_or(0, |t| t.unix_ms()),
            until_unix_ms: self.until.map_or(0, |t| t.unix_ms()),
            after: self.after,
            limit: self.limit as u32,
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit query")?;
        if let Some(p) = &self.partner {
            write!(f, " partner={p}")?;
        }
        if let Some(b) = &self.bulletin {
            write!(f, " bulletin={b}")?;
        }
        if let Some(e) = self.event {
            write!(f, " event={}", e.as_str_name())?;
        }
        if let Some(t) = self.since {
            write!(f, " since={t}")?;
        }
        if let Some(t) = self.until {
            write!(f, " until={t}")?;
        }
        if let Some(a) = self.after {
            write!(f, " after={a}")?;
        }
        write!(f, " limit={}", self.limit)
    }
}
