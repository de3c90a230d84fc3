//! Reading the committed log: records, queries over the indexes, proofs, checkpoints
//! and counters. Any thread may read while the writer appends; it sees whole commits.

use crate::store::kv;
use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use prost::Message as _;

use super::{
    partner_prefix, postings, read_chunk, size, SharedRun, BY_BULLETIN, BY_EVENT, BY_TIME,
    CHECKPOINTS, CHUNK, HASHES, RECORDS,
};
use crate::audit::checkpoint;
use crate::audit::merkle::{self, HashStore, MerkleError, TreeHash};
use crate::audit::Query;
use crate::bulletin::BulletinId;
use crate::metrics;
use crate::proto;
use crate::store::values::ValueLog;
use crate::store::{be_u64, corrupt, seq_key, StoreError};

/// Reads the committed log: records, hashes, checkpoints, indexes and counters. Any
/// thread may read while the writer appends; it sees whole commits only.
pub struct AuditReader<'a> {
    pub(crate) tree: &'a kv::Tree,
    pub(in crate::store) values: &'a ValueLog,
    /// The hashes past the last full chunk, which the engine does not hold.
    pub(in crate::store) run: &'a SharedRun,
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

/// The index whose postings to walk for `q`: the most selective filter set (a
/// bulletin's records are gathered whole instead, see [`AuditReader::bulletin_seqs`]).
fn posting_prefix(q: &Query) -> Option<Vec<u8>> {
    if let Some(p) = &q.partner {
        return Some(partner_prefix(p.as_str()));
    }
    q.event.map(|e| [BY_EVENT, &[e as u8][..]].concat())
}

/// Decodes records out of batches, keeping the last batch for neighbouring seqs.
struct RecordCursor<'a> {
    tree: &'a kv::Tree,
    values: &'a ValueLog,
    batch: Option<proto::AuditBatch>,
    read: u64,
}

impl RecordCursor<'_> {
    fn get(&mut self, seq: u64) -> Result<Option<(Bytes, proto::AuditRecord)>, StoreError> {
        let holds = |b: &proto::AuditBatch| {
            seq >= b.first_seq && seq - b.first_seq < b.records.len() as u64
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
            let b = proto::AuditBatch::decode(Bytes::from(self.values.resolve(&k, &v)?))
                .map_err(|e| corrupt(&k, e))?;
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
        let record =
            proto::AuditRecord::decode(bytes.clone()).map_err(|e| corrupt(key.as_bytes(), e))?;
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
            values: self.values,
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
                let batch = kv.and_then(|(k, v)| {
                    proto::AuditBatch::decode(Bytes::from(self.values.resolve(&k, &v)?))
                        .map_err(|e| corrupt(&k, e))
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

    /// Every record about bulletin `id`, ascending: its acceptance (from the `d/` entry of
    /// each origin that used the id) and the others (from the `x/b/` postings).
    fn bulletin_seqs(&self, id: &BulletinId) -> Result<Vec<u64>, StoreError> {
        let mut seqs = Vec::new();
        for kv in self
            .tree
            .scan_prefix([crate::store::DEDUPE, &id.as_bytes()[..]].concat())
        {
            let (k, v) = kv?;
            if v.len() != crate::store::DEDUPE_VALUE {
                return Err(corrupt(&k, "index entry is not 48 bytes"));
            }
            seqs.push(be_u64(&k, &v[40..])?);
        }
        for kv in self
            .tree
            .scan_prefix([BY_BULLETIN, &id.as_bytes()[..]].concat())
        {
            let (k, v) = kv?;
            let first = be_u64(&k, k.get(BY_BULLETIN.len() + 16..).unwrap_or_default())?;
            seqs.extend(postings::seqs(&k, first, &v)?);
        }
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
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

    /// The node's own country or organisation as its latest CONFIG_LOADED record says
    /// (empty when it named none), for reports read from a stopped node's database.
    pub fn latest_affiliation(&self) -> Result<String, StoreError> {
        let mut q = Query {
            partner: None,
            bulletin: None,
            event: Some(proto::AuditEvent::ConfigLoaded),
            since: None,
            until: None,
            after: None,
            limit: 1000,
        };
        let mut latest = String::new();
        loop {
            let page = self.query(&q)?;
            if let Some(last) = page.records.last() {
                latest = proto::AuditRecord::decode(last.clone())
                    .map_err(|e| super::super::corrupt(b"a/", e))?
                    .affiliation;
            }
            match page.next_after {
                Some(after) => q.after = Some(after),
                None => return Ok(latest),
            }
        }
    }

    /// Answers a query, reading only the records its most selective index points at.
    pub fn query(&self, q: &Query) -> Result<AuditPage, StoreError> {
        let size = self.size()?;
        let (lo, hi) = self.window(q, size)?;
        let limit = q.limit.max(1);
        let mut page = AuditPage {
            log_size: size,
            ..Default::default()
        };
        let mut cursor = RecordCursor {
            tree: self.tree,
            values: self.values,
            batch: None,
            read: 0,
        };
        // A page ends when it is full, when it would outgrow a frame, or when it has
        // examined its budget of records: filters the walked index does not serve
        // (e.g. partner and event together) then cost pages, not a scan of the log.
        let budget = (limit as u64)
            .saturating_mul(EXAMINE_PER_RESULT)
            .max(MIN_EXAMINED);
        let mut bytes_in_page = 0;
        let mut take = |seq: u64, page: &mut AuditPage| -> Result<bool, StoreError> {
            if page.records.len() == limit || bytes_in_page >= PAGE_BYTES || cursor.read >= budget {
                page.next_after = seq.checked_sub(1);
                return Ok(false);
            }
            if let Some((bytes, record)) = cursor.get(seq)? {
                if q.matches(&record) {
                    bytes_in_page += bytes.len();
                    page.records.push(bytes);
                }
            }
            Ok(true)
        };
        if lo < hi {
            if let Some(id) = &q.bulletin {
                // A bulletin has a handful of records: gather them, then page.
                for seq in self.bulletin_seqs(id)? {
                    if seq < lo {
                        continue;
                    }
                    if seq >= hi || !take(seq, &mut page)? {
                        break;
                    }
                }
                page.records_read = cursor.read;
                return Ok(page);
            }
            match posting_prefix(q) {
                None => {
                    for seq in lo..hi {
                        if !take(seq, &mut page)? {
                            break;
                        }
                    }
                }
                Some(prefix) => {
                    self.each_posted(&prefix, lo, hi, &mut |seq| take(seq, &mut page))?;
                }
            }
        }
        page.records_read = cursor.read;
        Ok(page)
    }

    /// The seqs a query's `after` and time window leave: `[lo, hi)` of a log of `size`.
    fn window(&self, q: &Query, size: u64) -> Result<(u64, u64), StoreError> {
        let mut lo = q.after.map_or(0, |a| a.saturating_add(1));
        if let Some(since) = q.since {
            lo = lo.max(self.seq_at(since.unix_ms(), size)?);
        }
        let hi = match q.until {
            Some(until) => self.seq_at(until.unix_ms().saturating_add(1), size)?,
            None => size,
        };
        Ok((lo, hi))
    }

    /// Hands `take` each seq in `[lo, hi)` filed under the index term `prefix`, in order,
    /// until it says stop.
    fn each_posted(
        &self,
        prefix: &[u8],
        lo: u64,
        hi: u64,
        take: &mut dyn FnMut(u64) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // The posting of the batch holding `lo` starts at or before it.
        let start = self
            .tree
            .range(prefix.to_vec()..=[prefix, &lo.to_be_bytes()].concat())
            .next_back()
            .transpose()?
            .map_or_else(|| prefix.to_vec(), |(k, _)| k.to_vec());
        for kv in self.tree.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            let first = be_u64(&k, &k[prefix.len()..])?;
            for seq in postings::seqs(&k, first, &v)? {
                if seq < lo {
                    continue;
                }
                if seq >= hi || !take(seq)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The hashes committed so far, for proofs.
    pub(super) fn hashes(&self) -> ReadHashes<'_> {
        ReadHashes {
            tree: self.tree,
            values: self.values,
            run: self.run,
            chunks: RefCell::new(HashMap::new()),
        }
    }

    /// Root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<TreeHash, StoreError> {
        merkle::root(size, &self.hashes()).map_err(|e| corrupt(HASHES, e))
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
            let note = String::from_utf8(v.to_vec()).map_err(|e| corrupt(&k, e))?;
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
        let key_name = format!("p/{size}");
        let v = checkpoint::verify(&note, origin, key)
            .map_err(|why| StoreError::AuditKey { size, why })?;
        let root = self.root(size)?;
        if v.size != size || v.root != root {
            return Err(corrupt(
                key_name.as_bytes(),
                format!("the log's tree of {size} records has root {root}, but the node signed {} for {}", v.root, v.size),
            ));
        }
        Ok(())
    }
}

/// Counter rows as of one log size: what the first `size` records add up to.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    /// Every counter row before the day asked for.
    pub rows: Vec<metrics::Row>,
    /// How many records the rows count.
    pub size: u64,
    /// The Merkle root of those records.
    pub root: TreeHash,
}

impl From<Counted> for metrics::Counters {
    fn from(c: Counted) -> metrics::Counters {
        metrics::Counters {
            rows: c.rows,
            log_size: c.size,
            log_root: c.root.0,
        }
    }
}

impl super::super::Store {
    /// The counter rows before `until_day`, each as of the same log size, and that size
    /// with its root: a report can then name the log it was computed from. The saved
    /// counters are read from a snapshot taken, with the unsaved ones, while the writer
    /// is held (a commit waits for a copy of at most a thousand counters, not a scan).
    pub fn counted(&self, until_day: u32) -> Result<Counted, StoreError> {
        let (snapshot, size, unsaved) = {
            let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            let unsaved = log.counters.unsaved_before(until_day);
            (self.state.snapshot(), log.size, unsaved)
        };
        let rows = super::counters::rows(&snapshot, until_day, unsaved)?;
        let root = self.audit().root(size)?;
        Ok(Counted { rows, size, root })
    }
}

/// Stored hashes read straight from the database, a full chunk at a time, and past
/// the last full chunk from the writer's shared run.
pub(super) struct ReadHashes<'a> {
    tree: &'a kv::Tree,
    values: &'a ValueLog,
    run: &'a SharedRun,
    chunks: RefCell<HashMap<u64, Vec<TreeHash>>>,
}

impl ReadHashes<'_> {
    /// Stored hash `i`.
    pub(super) fn one(&self, i: u64) -> Result<TreeHash, MerkleError> {
        let chunk = i / CHUNK;
        let at = (i % CHUNK) as usize;
        if let Some(h) = self.chunks.borrow().get(&chunk).and_then(|c| c.get(at)) {
            return Ok(*h);
        }
        // The run first: once the writer moves it past `i`, the chunk holding `i` is
        // already in the database (written by the commit that filled it).
        let run = self.run.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(h) = run.get(i) {
            return Ok(h);
        }
        let hashes = read_chunk(self.tree, self.values, chunk)
            .map_err(|e| MerkleError::Store(Box::new(e)))?;
        if let Some(h) = hashes.get(at).copied() {
            if hashes.len() as u64 == CHUNK {
                self.chunks.borrow_mut().insert(chunk, hashes);
            }
            return Ok(h);
        }
        Err(MerkleError::Store(format!("no stored hash {i}").into()))
    }
}

impl HashStore for ReadHashes<'_> {
    fn hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, MerkleError> {
        indexes.iter().map(|&i| self.one(i)).collect()
    }
}

/// A page stops growing past this many bytes of records, well inside a frame.
pub const PAGE_BYTES: usize = 512 << 10;
/// Records a page may examine per record it may return, before it ends early.
const EXAMINE_PER_RESULT: u64 = 10;
/// Records any page may examine, however small its limit.
const MIN_EXAMINED: u64 = 1_000;
