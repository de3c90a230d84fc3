//! Reading back, when the store opens, the commits the engine may have lost: the
//! frames appended after the end the engine kept, up to the last whole engine batch.
//!
//! A commit's frames were synced before its batch was applied to the engine, and the
//! engine's journal is not synced for each commit, so after a power cut the engine
//! may hold fewer commits than the files. Every frame is checked against its CRC, the
//! values' too: after a cut, a later page may have reached the disk and an earlier one
//! not, and a batch must not be applied again over a value that is not whole. The
//! first frame that is not whole ends the reading; what follows it was never synced.
//!
//! It only reads; cutting the files is the caller's.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::{file_name, io, Kind, HEADER};
use crate::store::StoreError;

/// An engine batch to apply again, and the end of its frame (what the engine records
/// with it).
#[derive(Debug)]
pub(in crate::store) struct Replay {
    pub batch: Vec<u8>,
    pub end: u64,
}

/// The batches framed after byte `from` of the log in `dir` (whose files start at
/// `starts`), and the end of the last one (`from` if none).
pub(super) fn read_back(
    dir: &Path,
    starts: &[u64],
    from: u64,
) -> Result<(Vec<Replay>, u64), StoreError> {
    let mut reader = Frames {
        dir,
        starts,
        pos: from,
        open: None,
    };
    let (mut replays, mut end) = (Vec::new(), from);
    while let Some((kind, contents)) = reader.next()? {
        if kind == Kind::Batch {
            end = reader.pos;
            replays.push(Replay {
                batch: contents,
                end,
            });
        }
    }
    Ok((replays, end))
}

/// The log's frames from `pos` on, across files.
struct Frames<'a> {
    dir: &'a Path,
    starts: &'a [u64],
    pos: u64,
    /// The file being read: its start, handle and length.
    open: Option<(u64, File, u64)>,
}

impl Frames<'_> {
    /// The next whole frame, or `None` at the first that is not.
    fn next(&mut self) -> Result<Option<(Kind, Vec<u8>)>, StoreError> {
        let Some((start, len)) = self.file_at()? else {
            return Ok(None);
        };
        let Some((_, file, _)) = &self.open else {
            return Ok(None);
        };
        let at = self.pos - start;
        if at + HEADER > len {
            return Ok(None);
        }
        let path = self.dir.join(file_name(start));
        let mut header = [0u8; HEADER as usize];
        file.read_exact_at(&mut header, at)
            .map_err(|e| io(&path, e))?;
        let Some(kind) = Kind::of(header[0]) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let crc = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        if at + HEADER + u64::from(size) > len {
            return Ok(None);
        }
        let mut contents = vec![0u8; size as usize];
        file.read_exact_at(&mut contents, at + HEADER)
            .map_err(|e| io(&path, e))?;
        if crc32fast::hash(&contents) != crc {
            return Ok(None);
        }
        self.pos += HEADER + u64::from(size);
        Ok(Some((kind, contents)))
    }

    /// The file holding `pos` (or starting at it, once the one before ends there).
    /// Its start and length.
    fn file_at(&mut self) -> Result<Option<(u64, u64)>, StoreError> {
        let holder = self.starts.iter().rev().find(|s| **s <= self.pos).copied();
        let Some(start) = holder else {
            return Ok(None);
        };
        if self.open.as_ref().map(|(s, ..)| *s) != Some(start) {
            let path = self.dir.join(file_name(start));
            let file = File::open(&path).map_err(|e| io(&path, e))?;
            let len = file.metadata().map_err(|e| io(&path, e))?.len();
            self.open = Some((start, file, len));
        }
        Ok(self.open.as_ref().map(|(start, _, len)| (*start, *len)))
    }
}
