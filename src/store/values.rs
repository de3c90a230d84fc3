//! The large values of the store (a commit's bulletin segment and its audit record batch)
//! in append-only files beside the key-value engine, which keeps only a 16-byte pointer
//! to each.
//!
//! Why: an engine that holds values rewrites them as it compacts or consolidates (and
//! sled 0.34, the engine before fjall, kept them in its page cache well past its
//! bound). Bulletins are written once here and read back through the store's own
//! bounded caches.
//!
//! Files live in `<data_dir>/values/`, each named by the offset (20 decimal digits) of
//! its first byte in one logical append-only log. A value never spans two files. What
//! is committed is decided by the engine alone: each commit appends, syncs the files, then
//! writes the pointers and the new end (`m/values`) in its engine batch. Bytes past that
//! end are an interrupted commit's and are cut off when the store opens.
//!
//! It owns the files; it knows nothing of what the values mean.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;

/// Name of the directory inside the data directory.
pub(super) const DIR: &str = "values";
/// A new file is started once the current one would pass this size.
const FILE_BYTES: u64 = 256 << 20;
/// Files held open for reading at most (besides the one appended to): a node that ran
/// for years has thousands of files, more than its descriptors allow.
const OPEN_FILES: usize = 32;

/// Where a value is, and its checksum: what the engine stores in place of the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ValuePtr {
    offset: u64,
    len: u32,
    crc: u32,
}

impl ValuePtr {
    /// Encoded size.
    pub const LEN: usize = 16;

    /// Its stored value.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.len.to_be_bytes());
        out[12..].copy_from_slice(&self.crc.to_be_bytes());
        out
    }

    /// Reads a stored value written by [`ValuePtr::encode`].
    pub fn decode(v: &[u8]) -> Option<ValuePtr> {
        let v: &[u8; Self::LEN] = v.try_into().ok()?;
        let (offset, rest) = v.split_at(8);
        let (len, crc) = rest.split_at(4);
        Some(ValuePtr {
            offset: u64::from_be_bytes(offset.try_into().ok()?),
            len: u32::from_be_bytes(len.try_into().ok()?),
            crc: u32::from_be_bytes(crc.try_into().ok()?),
        })
    }
}

/// The append end: the last file and the log's end (committed or not).
struct Tail {
    start: u64,
    file: Arc<File>,
    end: u64,
    /// Appended since the last sync.
    dirty: bool,
}

/// Files open for reading, the least recently used closed first.
struct Readers {
    /// By the offset of the file's first byte: the file, and its last use.
    open: BTreeMap<u64, (Arc<File>, u64)>,
    uses: u64,
}

impl Readers {
    /// The open file that starts at `start`, if it is open.
    fn get(&mut self, start: u64) -> Option<Arc<File>> {
        self.uses += 1;
        let (file, used) = self.open.get_mut(&start)?;
        *used = self.uses;
        Some(file.clone())
    }

    /// Keeps `file` open, closing the least recently used past the limit.
    fn keep(&mut self, start: u64, file: Arc<File>) {
        self.open.insert(start, (file, self.uses));
        while self.open.len() > OPEN_FILES {
            let oldest = self.open.iter().min_by_key(|(_, (_, used))| *used);
            match oldest.map(|(start, _)| *start) {
                Some(start) => self.open.remove(&start),
                None => break,
            };
        }
    }
}

/// The value files of one store.
pub(super) struct ValueLog {
    dir: PathBuf,
    file_bytes: u64,
    /// The offset of every file's first byte.
    files: RwLock<BTreeSet<u64>>,
    readers: Mutex<Readers>,
    tail: Mutex<Tail>,
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Values {
        path: path.to_owned(),
        source,
    }
}

fn file_name(start: u64) -> String {
    format!("{start:020}")
}

fn open_file(path: &Path, create: bool) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        // They hold every bulletin, TLP:RED included.
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl ValueLog {
    /// Opens the files in `data_dir/values`, creating the directory, and cuts them back
    /// to `committed`, the end the engine recorded with the last commit.
    pub fn open(data_dir: &Path, committed: u64) -> Result<ValueLog, StoreError> {
        Self::open_sized(data_dir, committed, FILE_BYTES)
    }

    fn open_sized(
        data_dir: &Path,
        committed: u64,
        file_bytes: u64,
    ) -> Result<ValueLog, StoreError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut starts = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name();
            let start = name
                .to_str()
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: entry.path().display().to_string(),
                    why: "a file that is not a value file in the values directory".into(),
                })?;
            starts.push(start);
        }
        starts.sort_unstable();
        let mut files = BTreeSet::new();
        let mut changed = false;
        for start in starts {
            let path = dir.join(file_name(start));
            // Files begun by an interrupted commit hold nothing committed.
            if start > 0 && start >= committed {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                changed = true;
                continue;
            }
            let file = open_file(&path, false)?;
            let len = file.metadata().map_err(|e| io(&path, e))?.len();
            if start + len > committed {
                file.set_len(committed - start).map_err(|e| io(&path, e))?;
                file.sync_all().map_err(|e| io(&path, e))?;
            }
            files.insert(start);
        }
        if changed {
            sync_dir(&dir)?;
        }
        let start = files.last().copied().unwrap_or(0);
        let file = Arc::new(open_file(&dir.join(file_name(start)), files.is_empty())?);
        if files.insert(start) {
            sync_dir(&dir)?;
        }
        let last_end = start + file.metadata().map_err(|e| io(&dir, e))?.len();
        if last_end < committed {
            return Err(StoreError::Corrupt {
                key: dir.display().to_string(),
                why: format!(
                    "the value files end at byte {last_end} but the database records {committed}"
                )
                .into(),
            });
        }
        let tail = Tail {
            start,
            file,
            end: committed,
            dirty: false,
        };
        let readers = Readers {
            open: BTreeMap::new(),
            uses: 0,
        };
        Ok(ValueLog {
            dir,
            file_bytes,
            files: RwLock::new(files),
            readers: Mutex::new(readers),
            tail: Mutex::new(tail),
        })
    }

    /// Appends `value` (not yet durable: see [`ValueLog::sync`]) and says where it is.
    pub fn append(&self, value: &[u8]) -> Result<ValuePtr, StoreError> {
        let len = u32::try_from(value.len()).map_err(|_| StoreError::Corrupt {
            key: "values".into(),
            why: format!("a value of {} bytes is too large to store", value.len()).into(),
        })?;
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.end > tail.start && tail.end - tail.start + u64::from(len) > self.file_bytes {
            // Finish the full file before naming the new one in the directory.
            if tail.dirty {
                tail.file.sync_data().map_err(|e| io(&self.dir, e))?;
                tail.dirty = false;
            }
            let path = self.dir.join(file_name(tail.end));
            let file = Arc::new(open_file(&path, true)?);
            sync_dir(&self.dir)?;
            self.files
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tail.end);
            tail.start = tail.end;
            tail.file = file;
        }
        let path = || self.dir.join(file_name(tail.start));
        tail.file
            .write_all_at(value, tail.end - tail.start)
            .map_err(|e| io(&path(), e))?;
        let ptr = ValuePtr {
            offset: tail.end,
            len,
            crc: crc32fast::hash(value),
        };
        tail.end += u64::from(len);
        tail.dirty = true;
        Ok(ptr)
    }

    /// Makes every append so far durable; returns the end to record in the engine.
    pub fn sync(&self) -> Result<u64, StoreError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.dirty {
            tail.file
                .sync_data()
                .map_err(|e| io(&self.dir.join(file_name(tail.start)), e))?;
            tail.dirty = false;
        }
        Ok(tail.end)
    }

    /// The end of what was appended so far.
    pub fn end(&self) -> u64 {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).end
    }

    /// Reads the value whose pointer the engine holds at `key`.
    pub fn resolve(&self, key: &[u8], v: &[u8]) -> Result<Vec<u8>, StoreError> {
        let ptr = ValuePtr::decode(v).ok_or_else(|| super::corrupt(key, "not a value pointer"))?;
        self.read(ptr)
    }

    /// Reads the value `ptr` points at and checks it against its checksum.
    pub fn read(&self, ptr: ValuePtr) -> Result<Vec<u8>, StoreError> {
        let start = {
            let files = self.files.read().unwrap_or_else(|p| p.into_inner());
            match files.range(..=ptr.offset).next_back() {
                Some(start) => *start,
                None => return Err(self.damaged(ptr, "no file holds it")),
            }
        };
        let file = self.reader(start)?;
        // Not `vec![0; len]`: jemalloc serves a zeroed allocation from fresh pages
        // rather than reuse freed ones, so a reader going through a long log held the
        // memory it had freed (an export of 300,000 records: 443 MiB, against 16 MiB
        // with glibc's malloc).
        #[expect(
            clippy::slow_vector_initialization,
            reason = "the allocator's retention"
        )]
        let mut buf = Vec::with_capacity(ptr.len as usize);
        buf.resize(ptr.len as usize, 0);
        file.read_exact_at(&mut buf, ptr.offset - start)
            .map_err(|e| self.damaged(ptr, &format!("reading {}: {e}", file_name(start))))?;
        if crc32fast::hash(&buf) != ptr.crc {
            return Err(self.damaged(ptr, "its checksum does not match"));
        }
        Ok(buf)
    }

    /// The file that starts at `start`, open for reading: kept open, or opened now. Not
    /// the appending handle, whose lock a large append holds.
    fn reader(&self, start: u64) -> Result<Arc<File>, StoreError> {
        let lock = || self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = lock().get(start) {
            return Ok(file);
        }
        // Opened outside the lock: other reads go on meanwhile.
        let path = self.dir.join(file_name(start));
        let file = Arc::new(File::open(&path).map_err(|e| io(&path, e))?);
        lock().keep(start, file.clone());
        Ok(file)
    }

    fn damaged(&self, ptr: ValuePtr, why: &str) -> StoreError {
        StoreError::Corrupt {
            key: format!("{} at offset {}", self.dir.display(), ptr.offset),
            why: format!("the value of {} bytes is unreadable: {why}", ptr.len).into(),
        }
    }

    /// Copies the committed bytes (up to `end`) of every file into `to/values`, which
    /// must not exist: the copy a backup or a restore takes.
    pub fn copy_to(from_dir: &Path, end: u64, to: &Path) -> Result<(), StoreError> {
        let (from, to) = (from_dir.join(DIR), to.join(DIR));
        std::fs::create_dir(&to).map_err(|e| io(&to, e))?;
        let mut entries: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&from).map_err(|e| io(&from, e))? {
            let entry = entry.map_err(|e| io(&from, e))?;
            if let Some(start) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                entries.push(start);
            }
        }
        entries.sort_unstable();
        for start in entries.into_iter().filter(|s| *s == 0 || *s < end) {
            let (src, dst) = (from.join(file_name(start)), to.join(file_name(start)));
            let mut reader = std::io::Read::take(
                File::open(&src).map_err(|e| io(&src, e))?,
                end.saturating_sub(start),
            );
            let mut writer = open_file(&dst, true)?;
            std::io::copy(&mut reader, &mut writer).map_err(|e| io(&dst, e))?;
            writer.sync_all().map_err(|e| io(&dst, e))?;
        }
        sync_dir(&to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_across_files_and_an_uncommitted_tail_is_cut() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let log = ValueLog::open(dir.path(), 0)?;
        let a = log.append(b"first value")?;
        let committed = log.sync()?;
        // An interrupted commit: appended and even synced, but the engine never recorded it.
        let lost = log.append(&[7; 100])?;
        log.sync()?;
        assert_eq!(log.read(a)?, b"first value");
        assert_eq!(log.read(lost)?.len(), 100);
        drop(log);

        let log = ValueLog::open(dir.path(), committed)?;
        assert_eq!(log.end(), committed);
        assert_eq!(log.read(a)?, b"first value");
        assert!(matches!(log.read(lost), Err(StoreError::Corrupt { .. })));
        let b = log.append(b"second")?;
        assert_eq!(b.offset, committed, "appends continue at the committed end");
        assert_eq!(log.read(b)?, b"second");
        Ok(())
    }

    #[test]
    fn a_value_that_does_not_fit_starts_a_new_file() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let log = ValueLog::open_sized(dir.path(), 0, 100)?;
        let ptrs: Vec<ValuePtr> = (0..5u8)
            .map(|n| log.append(&[n; 40]))
            .collect::<Result<_, _>>()?;
        let end = log.sync()?;
        drop(log);
        let names: Vec<String> = std::fs::read_dir(dir.path().join(DIR))
            .map_err(|e| io(dir.path(), e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let log = ValueLog::open_sized(dir.path(), end, 100)?;
        for (n, ptr) in (0..5u8).zip(&ptrs) {
            assert_eq!(log.read(*ptr)?, vec![n; 40]);
        }
        // A copy holds what was committed, and opens.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).map_err(|e| io(&copy, e))?;
        ValueLog::copy_to(dir.path(), end, &copy)?;
        let copied = ValueLog::open_sized(&copy, end, 100)?;
        assert_eq!(copied.read(ptrs[4])?, vec![4; 40]);
        // Files missing under a recorded end are refused, not recreated empty.
        let err = ValueLog::open_sized(&dir.path().join("elsewhere"), end, 100)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("value files end at byte 0"), "{err}");
        Ok(())
    }

    #[test]
    fn a_long_log_keeps_only_a_few_files_open() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let log = ValueLog::open_sized(dir.path(), 0, 100)?;
        let ptrs: Vec<ValuePtr> = (0..200u8)
            .map(|n| log.append(&[n; 60]))
            .collect::<Result<_, _>>()?;
        log.sync()?;
        // Read back in an order that keeps leaving the open files behind.
        for round in 0..2 {
            for (n, ptr) in ptrs.iter().enumerate().rev().skip(round) {
                assert_eq!(log.read(*ptr)?, vec![n as u8; 60]);
            }
        }
        let readers = log.readers.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(
            readers.open.len(),
            OPEN_FILES,
            "200 files, {OPEN_FILES} open"
        );
        assert!(readers.open.contains_key(&0), "the last used stays open");
        Ok(())
    }

    #[test]
    fn a_flipped_byte_is_reported_not_returned() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let log = ValueLog::open(dir.path(), 0)?;
        let ptr = log.append(b"bulletins")?;
        log.sync()?;
        let path = dir.path().join(DIR).join(file_name(0));
        let file = open_file(&path, false)?;
        file.write_all_at(b"B", 0).map_err(|e| io(&path, e))?;
        let err = log.read(ptr).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        Ok(())
    }

    #[test]
    fn pointers_round_trip_and_other_lengths_are_refused() {
        let p = ValuePtr {
            offset: 1 << 40,
            len: 70_000,
            crc: 0xdead_beef,
        };
        assert_eq!(ValuePtr::decode(&p.encode()), Some(p));
        assert_eq!(ValuePtr::decode(&p.encode()[..15]), None);
    }
}
