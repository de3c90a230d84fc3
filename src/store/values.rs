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
//! its first byte in one logical append-only log. A frame never spans two files.
//!
//! The files are also the store's write-ahead log, so a commit costs one sync: each
//! commit appends its values, then its engine batch (the pointers and all else it
//! writes), syncs the files, and only then applies the batch to the engine, whose
//! journal is not synced for it. The engine records with each batch the end of the
//! batch's frame (`m/values`). When the store opens, the batches past the end the
//! engine kept are read back ([`recover`]) for the store to apply again; bytes past the
//! last whole batch are an interrupted commit's and are cut off.
//!
//! Each append is framed (a kind byte, the length, the CRC-32 of what follows) so that
//! what follows the engine's end can be read back. Pointers point past the frame's
//! header, so values written before frames existed read as they did.
//!
//! The file appended to is kept written with zeros a little past the log's end (as
//! databases keep their write-ahead logs), so a commit's sync writes only its pages and
//! the disk's cache flush: appending within the file allocates nothing and leaves its
//! size as it was, where growing it made each sync also write the inode and the
//! allocation's blocks. A zero byte is no frame's kind, so reading back stops there.
//!
//! It owns the files; it knows nothing of what the values or the batches mean.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;

mod recover;
pub(super) use recover::Replay;

/// Name of the directory inside the data directory.
pub(super) const DIR: &str = "values";
/// A new file is started once the current one would pass this size.
const FILE_BYTES: u64 = 256 << 20;
/// Files held open for reading at most (besides the one appended to): a node that ran
/// for years has thousands of files, more than its descriptors allow.
const OPEN_FILES: usize = 32;

/// What a frame holds: a value the engine points at, or a commit's engine batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Value = 0xa5,
    Batch = 0xb6,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        [Kind::Value, Kind::Batch]
            .into_iter()
            .find(|k| *k as u8 == byte)
    }
}

/// A frame's header: its kind, the length of what follows and its CRC-32.
const HEADER: u64 = 9;
/// Frames up to this size are copied behind their header and written at once.
const ONE_WRITE: usize = 64 << 10;
/// The zeros written ahead of the log's end at a time, once fewer than half are left:
/// one sync in this many bytes of commits writes the file's size and allocation.
const ZEROED_AHEAD: u64 = 1 << 20;
/// What zeros are written from.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn header(kind: Kind, len: u32, crc: u32) -> [u8; HEADER as usize] {
    let mut out = [0; HEADER as usize];
    out[0] = kind as u8;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    out[5..].copy_from_slice(&crc.to_be_bytes());
    out
}

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
    /// Where the file ends, in the log's bytes: past `end`, it holds zeros.
    file_end: u64,
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
    /// Set when an append failed and the files could not be cut back after it: a
    /// torn frame would stop the reading back of every commit after it.
    broken: std::sync::atomic::AtomicBool,
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

/// The start of every value file in `dir`, in order.
fn file_starts(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut starts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
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
    Ok(starts)
}

/// Cuts the files starting at `starts` back to the log's byte `end`: files begun at or
/// after it are removed (they hold nothing kept), the one holding it is shortened.
/// Returns the starts of the files kept.
fn cut_back(dir: &Path, starts: &[u64], end: u64) -> Result<BTreeSet<u64>, StoreError> {
    let mut files = BTreeSet::new();
    let mut removed = false;
    for &start in starts {
        let path = dir.join(file_name(start));
        if start > 0 && start >= end {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            removed = true;
            continue;
        }
        let file = open_file(&path, false)?;
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        if start + len > end {
            file.set_len(end - start).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
        }
        files.insert(start);
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(files)
}

impl ValueLog {
    /// Opens the files in `data_dir/values`, creating the directory; reads back the
    /// engine batches appended after `committed` (the end the engine kept), which the
    /// store applies again in order, and cuts the files after the last whole one.
    pub fn open(data_dir: &Path, committed: u64) -> Result<(ValueLog, Vec<Replay>), StoreError> {
        Self::open_sized(data_dir, committed, FILE_BYTES)
    }

    fn open_sized(
        data_dir: &Path,
        committed: u64,
        file_bytes: u64,
    ) -> Result<(ValueLog, Vec<Replay>), StoreError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let starts = file_starts(&dir)?;
        let (replays, end) = recover::read_back(&dir, &starts, committed)?;
        let mut files = cut_back(&dir, &starts, end)?;
        let start = files.last().copied().unwrap_or(0);
        let file = Arc::new(open_file(&dir.join(file_name(start)), files.is_empty())?);
        if files.insert(start) {
            sync_dir(&dir)?;
        }
        let last_end = start + file.metadata().map_err(|e| io(&dir, e))?.len();
        if last_end < end {
            return Err(StoreError::Corrupt {
                key: dir.display().to_string(),
                why: format!(
                    "the value files end at byte {last_end} but the database records {end}"
                )
                .into(),
            });
        }
        let tail = Tail {
            start,
            file,
            end,
            file_end: last_end,
            dirty: false,
        };
        let readers = Readers {
            open: BTreeMap::new(),
            uses: 0,
        };
        let log = ValueLog {
            dir,
            file_bytes,
            files: RwLock::new(files),
            readers: Mutex::new(readers),
            tail: Mutex::new(tail),
            broken: Default::default(),
        };
        Ok((log, replays))
    }

    /// Appends `value` (not yet durable: see [`ValueLog::sync`]) and says where it is.
    pub fn append(&self, value: &[u8]) -> Result<ValuePtr, StoreError> {
        let (offset, len, crc) = self.append_frame(Kind::Value, value)?;
        Ok(ValuePtr { offset, len, crc })
    }

    /// Appends a commit's engine batch, after the values it points at; returns the end
    /// to record with it.
    pub fn append_batch(&self, batch: &[u8]) -> Result<u64, StoreError> {
        let (offset, len, _) = self.append_frame(Kind::Batch, batch)?;
        Ok(offset + u64::from(len))
    }

    /// Appends one frame; returns the offset of its contents, their length and CRC.
    fn append_frame(&self, kind: Kind, bytes: &[u8]) -> Result<(u64, u32, u32), StoreError> {
        self.check_whole()?;
        let len = u32::try_from(bytes.len()).map_err(|_| StoreError::Corrupt {
            key: "values".into(),
            why: format!("a value of {} bytes is too large to store", bytes.len()).into(),
        })?;
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let framed = HEADER + u64::from(len);
        if tail.end > tail.start && tail.end - tail.start + framed > self.file_bytes {
            self.start_file(&mut tail)?;
        }
        let crc = crc32fast::hash(bytes);
        let at = tail.end - tail.start;
        let head = header(kind, len, crc);
        let written = if bytes.len() <= ONE_WRITE {
            // One write rather than two: most frames are a few kilobytes.
            let mut frame = Vec::with_capacity(head.len() + bytes.len());
            frame.extend_from_slice(&head);
            frame.extend_from_slice(bytes);
            tail.file.write_all_at(&frame, at)
        } else {
            tail.file
                .write_all_at(&head, at)
                .and_then(|()| tail.file.write_all_at(bytes, at + HEADER))
        };
        written.map_err(|e| io(&self.dir.join(file_name(tail.start)), e))?;
        let offset = tail.end + HEADER;
        tail.end += framed;
        tail.file_end = tail.file_end.max(tail.end);
        tail.dirty = true;
        Ok((offset, len, crc))
    }

    /// Finishes the full file and starts the next at the log's end.
    fn start_file(&self, tail: &mut Tail) -> Result<(), StoreError> {
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
        tail.file_end = tail.end;
        tail.file = file;
        Ok(())
    }

    /// Writes zeros ahead of the log's end once fewer than half of [`ZEROED_AHEAD`] are
    /// left, up to the file's size limit; the sync that follows makes them durable.
    fn zero_ahead(&self, tail: &mut Tail) -> Result<(), StoreError> {
        let limit = tail.start + self.file_bytes;
        if tail.file_end >= limit || tail.file_end - tail.end >= ZEROED_AHEAD / 2 {
            return Ok(());
        }
        let to = (tail.file_end + ZEROED_AHEAD).min(limit);
        let path = || self.dir.join(file_name(tail.start));
        while tail.file_end < to {
            let n = (to - tail.file_end).min(ZEROS.len() as u64);
            let zeros = ZEROS.get(..n as usize).unwrap_or(&ZEROS);
            tail.file
                .write_all_at(zeros, tail.file_end - tail.start)
                .map_err(|e| io(&path(), e))?;
            tail.file_end += n;
            tail.dirty = true;
        }
        Ok(())
    }

    /// Cuts off what was appended after `to`, the end before a commit that failed, so
    /// that no torn or unapplied frame lies between the commits before and after it.
    /// If the files cannot be cut, nothing more is appended until the store is opened
    /// again (which reads back to the last whole batch).
    pub fn roll_back(&self, to: u64) {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.end <= to {
            return;
        }
        let cut = if to >= tail.start {
            tail.file
                .set_len(to - tail.start)
                .map_err(|e| io(&self.dir.join(file_name(tail.start)), e))
        } else {
            self.drop_files_after(&mut tail, to)
        };
        match cut {
            Ok(()) => {
                tail.end = to;
                tail.file_end = to;
                // The shorter length is made durable by the next sync.
                tail.dirty = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot cut the value files back after a failed commit: no commit is taken until the node restarts");
                self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// [`ValueLog::roll_back`] across the start of a file: the files begun after `to`
    /// are removed and the one holding `to` is cut there and appended to again.
    fn drop_files_after(&self, tail: &mut Tail, to: u64) -> Result<(), StoreError> {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let starts: Vec<u64> = files.iter().copied().collect();
        *files = cut_back(&self.dir, &starts, to)?;
        let start = files.range(..=to).next_back().copied().unwrap_or(0);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        readers.open.retain(|s, _| files.contains(s));
        tail.file = Arc::new(open_file(&self.dir.join(file_name(start)), true)?);
        files.insert(start);
        tail.start = start;
        Ok(())
    }

    /// Refuses to go on after an append could not be undone.
    fn check_whole(&self) -> Result<(), StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Corrupt {
                key: self.dir.display().to_string(),
                why: "a failed commit could not be cut off the value files; restart the node to recover them".into(),
            });
        }
        Ok(())
    }

    /// Makes every append so far durable; returns the end to record in the engine.
    pub fn sync(&self) -> Result<u64, StoreError> {
        self.check_whole()?;
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.dirty {
            // Only a cheaper sync hangs on the zeros: a full disk refuses the commit
            // by its own bytes, not by them.
            if let Err(e) = self.zero_ahead(&mut tail) {
                tracing::debug!(error = %e, "cannot write zeros ahead of the value log");
            }
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
mod tests;
