//! The key-value engine under the store, and the only module that names it: fjall, an
//! LSM-tree in safe Rust, in `<data_dir>/state/`. It offers the store one ordered
//! keyspace, atomic batches, reads that see whole batches, and a durable persist.
//!
//! Why fjall and not sled 0.34, which earlier renkeis stored in: sled keeps about
//! 30 bytes of resident memory per key it holds, whatever its cache (its page table
//! remembers every tree node), so a node's memory grew with its log; fjall keeps about
//! a byte and a quarter (its top levels' filter and index blocks), takes a tenth of the
//! time per key, and its file is about the size of the live data
//! (`benches/store-memory`).
//!
//! Reads go through a snapshot: fjall applies a batch key by key and only then makes
//! it visible to snapshots, so a plain read could see half a batch.
//!
//! It knows nothing of what the keys mean.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::Path;

use fjall::Readable as _;

use super::StoreError;

/// A stored value (or key): cheap to clone, derefs to bytes.
pub(crate) type Value = fjall::Slice;

/// Name of the engine's directory inside the data directory.
pub(super) const DIR: &str = "state";
/// The in-memory write buffer, flushed to a sorted file when full. fjall's default
/// (64 MiB) would count against a node's memory on top of its cache.
const MEMTABLE_BYTES: u64 = 4 << 20;
/// The size of the sorted files compactions write (fjall's default: 64 MiB). Each
/// compaction running builds its file's filter and index in memory, and three engine
/// workers may compact at once: at ten million queued bulletins, 32 MiB files kept the
/// node's peak memory 38 to 61 MiB lower and drained no slower. Fixed when a keyspace
/// is created: stores created earlier keep their 64 MiB.
const TABLE_BYTES: u64 = 32 << 20;
/// The journals kept before the oldest memtables are flushed (fjall's least): what a
/// restart replays.
const JOURNALS_BYTES: u64 = 64 << 20;
/// The engine's background threads (flushes and compactions). With two, fjall's first
/// worker hands a compaction request back to the queue and takes it again for as long
/// as the second compacts: a core spent spinning through every compaction (a fifth of
/// a draining node's CPU). A third worker takes the request and ends the spin.
const WORKERS: usize = 3;

/// Entries per batch when a whole keyspace is copied.
const COPY_BATCH: usize = 4096;

/// The engine: one database with one keyspace.
pub(crate) struct Db {
    db: fjall::Database,
}

impl Db {
    /// Opens (or creates) the engine in `data_dir`, with `cache_bytes` of block cache.
    /// A handle of this process being dropped (a node restarting in place) may hold
    /// the engine's lock a moment longer; that is waited for, up to `patience`.
    pub fn open(
        data_dir: &Path,
        cache_bytes: u64,
        patience: std::time::Duration,
    ) -> Result<Db, StoreError> {
        let dir = data_dir.join(DIR);
        let deadline = std::time::Instant::now() + patience;
        let db = loop {
            let builder = fjall::Database::builder(&dir)
                .cache_size(cache_bytes)
                .max_journaling_size(JOURNALS_BYTES)
                .worker_threads(WORKERS);
            match builder.open() {
                Err(fjall::Error::Locked) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        Ok(Db { db })
    }

    /// The keyspace `name`, created if new.
    pub fn tree(&self, name: &str) -> Result<Tree, StoreError> {
        let options = || {
            let tables = fjall::compaction::Leveled::default().with_table_target_size(TABLE_BYTES);
            fjall::KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES)
                .compaction_strategy(std::sync::Arc::new(tables))
        };
        Ok(Tree {
            db: self.db.clone(),
            keyspace: self.db.keyspace(name, options)?,
        })
    }

    /// Makes every batch applied so far survive a power cut (the journal fsynced).
    pub fn persist(&self) -> Result<(), StoreError> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(StoreError::NotDurable)
    }
}

/// One ordered keyspace.
#[derive(Clone)]
pub(crate) struct Tree {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

/// Key and value of one entry, or why it could not be read.
pub(crate) type Entry = Result<(Value, Value), StoreError>;

impl Tree {
    /// The value at `key`, as of the last whole batch.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, StoreError> {
        Ok(self.db.snapshot().get(&self.keyspace, key)?)
    }

    /// Writes one key (a batch of one, visible at once, durable with the next persist).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(key, value);
        self.apply_batch(batch)
    }

    /// Removes one key (tests make old layouts with it).
    #[cfg(test)]
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.remove(key);
        self.apply_batch(batch)
    }

    /// Every entry whose key starts with `prefix`, in key order, from one snapshot.
    pub fn scan_prefix<P: AsRef<[u8]>>(
        &self,
        prefix: P,
    ) -> impl DoubleEndedIterator<Item = Entry> + use<P> {
        self.db
            .snapshot()
            .prefix(&self.keyspace, prefix)
            .map(|g| g.into_inner().map_err(StoreError::from))
    }

    /// Every entry in `range`, in key order, from one snapshot.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + use<K, R> {
        self.db
            .snapshot()
            .range(&self.keyspace, range)
            .map(|g| g.into_inner().map_err(StoreError::from))
    }

    /// The keyspace as it is now, for reads that must agree with each other and with
    /// state taken at the same moment.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            snapshot: self.db.snapshot(),
            keyspace: self.keyspace.clone(),
        }
    }

    /// Every entry, in key order, from one snapshot.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Entry> + use<> {
        self.db
            .snapshot()
            .iter(&self.keyspace)
            .map(|g| g.into_inner().map_err(StoreError::from))
    }

    /// Makes every batch applied so far durable (the whole engine's, not only this
    /// keyspace's).
    pub fn persist(&self) -> Result<(), StoreError> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(StoreError::NotDurable)
    }

    /// Writes `entries` into this (empty) keyspace a few thousand at a time, as a copy
    /// or a move does; returns how many. Not atomic: a copy cut short is started again.
    pub fn insert_all<K, V, E>(
        &self,
        entries: impl Iterator<Item = Result<(K, V), E>>,
    ) -> Result<u64, StoreError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
        StoreError: From<E>,
    {
        let (mut batch, mut written) = (Batch::default(), 0);
        for entry in entries {
            let (k, v) = entry?;
            batch.insert(k, v);
            written += 1;
            if batch.len() == COPY_BATCH {
                self.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.apply_batch(batch)?;
        Ok(written)
    }

    /// Applies `batch` atomically: readers see all of it or none.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.writes.is_empty() {
            return Ok(());
        }
        let mut writes = self.db.batch();
        for (key, value) in batch.writes {
            match value {
                Some(value) => writes.insert(&self.keyspace, key, value),
                None => writes.remove(&self.keyspace, key),
            }
        }
        Ok(writes.commit()?)
    }
}

/// One keyspace as it was when the snapshot was taken: later batches are not seen.
pub(crate) struct Snapshot {
    snapshot: fjall::Snapshot,
    keyspace: fjall::Keyspace,
}

impl Snapshot {
    /// Every entry in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + '_ {
        self.snapshot
            .range(&self.keyspace, range)
            .map(|g| g.into_inner().map_err(StoreError::from))
    }
}

/// Writes to apply together. A key written twice keeps its last value.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes
            .insert(key.as_ref().to_vec(), Some(value.as_ref().to_vec()));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.writes.insert(key.as_ref().to_vec(), None);
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// The writes as bytes, for a log that applies them again after a crash: each key
    /// and value after its length (4 bytes, big-endian), a removal as a value of
    /// length `u32::MAX`.
    pub fn encode(&self) -> Vec<u8> {
        let size = self
            .writes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Vec::len));
        let mut out = Vec::with_capacity(size.sum());
        for (key, value) in &self.writes {
            out.extend_from_slice(&len32(key.len()).to_be_bytes());
            out.extend_from_slice(key);
            match value {
                Some(value) => {
                    out.extend_from_slice(&len32(value.len()).to_be_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&REMOVED.to_be_bytes()),
            }
        }
        out
    }

    /// The writes [`Batch::encode`] wrote, or `None` if `bytes` are not such.
    pub fn decode(mut bytes: &[u8]) -> Option<Batch> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn len(bytes: &mut &[u8]) -> Option<u32> {
            Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
        }
        let mut batch = Batch::default();
        while !bytes.is_empty() {
            let key_len = len(&mut bytes)? as usize;
            let key = take(&mut bytes, key_len)?.to_vec();
            let value = match len(&mut bytes)? {
                REMOVED => None,
                n => Some(take(&mut bytes, n as usize)?.to_vec()),
            };
            batch.writes.insert(key, value);
        }
        Some(batch)
    }
}

/// The length [`Batch::encode`] gives a removal.
const REMOVED: u32 = u32::MAX;

/// A key's or value's length as encoded: the engine's keys and the store's values
/// (pointers, counters, index entries) are far below 4 GiB.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(REMOVED - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_sees_each_batch_whole_while_batches_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), 1 << 20, std::time::Duration::ZERO).unwrap();
        let tree = db.tree("state").unwrap();
        let writer = {
            let tree = tree.clone();
            std::thread::spawn(move || {
                for n in 0u64..5_000 {
                    let mut batch = Batch::default();
                    for key in 0u8..16 {
                        batch.insert([b'k', b'/', key], n.to_be_bytes());
                    }
                    tree.apply_batch(batch).unwrap();
                }
            })
        };
        let mut scans = 0;
        while !writer.is_finished() || scans == 0 {
            let values: Vec<Value> = tree.scan_prefix(b"k/").map(|e| e.unwrap().1).collect();
            assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
            scans += 1;
        }
        writer.join().unwrap();
        assert_eq!(
            &*tree.get([b'k', b'/', 15]).unwrap().unwrap(),
            &4_999u64.to_be_bytes()[..]
        );
        // A key written twice in one batch keeps its last value.
        let mut batch = Batch::default();
        batch.insert(b"k/a", b"first");
        batch.insert(b"k/a", b"last");
        tree.apply_batch(batch).unwrap();
        assert_eq!(&*tree.get(b"k/a").unwrap().unwrap(), b"last");
    }

    #[test]
    fn a_batch_reads_back_from_its_bytes_and_a_cut_one_is_refused() {
        let mut batch = Batch::default();
        batch.insert(b"k/a", b"value");
        batch.insert(b"k/empty", b"");
        batch.remove(b"k/gone");
        let bytes = batch.encode();
        let back = Batch::decode(&bytes).unwrap();
        assert_eq!(back.writes, batch.writes);
        assert_eq!(Batch::decode(&[]).unwrap().len(), 0);
        for cut in 1..bytes.len() {
            let read = Batch::decode(&bytes[..cut]);
            assert!(read.is_none_or(|b| b.len() < 3), "cut at {cut}");
        }
    }
}
