//! The file system's memory: the backing path each inode number stands for, the open
//! backing file and the pending operations of each regular file, and the moves that
//! make pending operations durable (fsync, sync) or lose them (a cut).

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::pending::{Cut, CutTally, Op, Pending, Rng};

/// The root directory's inode number, fixed by FUSE.
const ROOT: u64 = 1;

struct Node {
    /// Where it is in the backing directory; `None` once unlinked or replaced.
    path: Option<PathBuf>,
    /// Opened at the first data operation, kept until the kernel forgets the node.
    file: Option<File>,
    pending: Pending,
    /// References the kernel holds (lookups not yet forgotten).
    lookups: u64,
}

/// Every inode the kernel knows, by number and by backing path.
pub struct State {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    /// fsync and fdatasync requests served.
    pub syncs: u64,
    /// Cuts done.
    pub cuts: u64,
}

/// What a cut did, added up over the files that had pending operations.
#[derive(Debug, Default)]
pub struct CutReport {
    pub tally: CutTally,
    pub files: u64,
}

/// Locks the state, also after a panic of another holder (the data stays usable).
pub fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub fn new(root: PathBuf) -> State {
        let node = Node {
            path: Some(root.clone()),
            file: None,
            pending: Pending::default(),
            lookups: 1,
        };
        State {
            nodes: HashMap::from([(ROOT, node)]),
            by_path: HashMap::from([(root, ROOT)]),
            next_ino: ROOT + 1,
            syncs: 0,
            cuts: 0,
        }
    }

    fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    /// The backing path of `ino`.
    pub fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.node(ino)?.path.clone().ok_or(Errno::ENOENT)
    }

    /// The backing path of `name` in directory `parent`.
    pub fn child(&self, parent: u64, name: &std::ffi::OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    /// The inode number of `path` if the kernel knows it.
    pub fn known(&self, path: &Path) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The inode number for `path`, counting one more reference of the kernel.
    pub fn remember(&mut self, path: PathBuf) -> u64 {
        let ino = match self.by_path.get(&path) {
            Some(ino) => *ino,
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.by_path.insert(path.clone(), ino);
                let node = Node {
                    path: Some(path),
                    file: None,
                    pending: Pending::default(),
                    lookups: 0,
                };
                self.nodes.insert(ino, node);
                ino
            }
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// Gives up `n` references; a node nobody holds is dropped unless it still has
    /// pending operations (the kernel finds it again by its path).
    pub fn forget(&mut self, ino: u64, n: u64) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if ino == ROOT || node.lookups > 0 || (node.path.is_some() && !node.pending.is_empty()) {
            return;
        }
        if let Some(path) = node.path.take() {
            self.by_path.remove(&path);
        }
        self.nodes.remove(&ino);
    }

    /// Keeps `file` as the open backing file of `ino` if it has none yet.
    pub fn adopt(&mut self, ino: u64, file: File) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.file.get_or_insert(file);
        }
    }

    /// Opens the backing file of `ino` (read-write if it can) unless it is open.
    pub fn open(&mut self, ino: u64) -> Result<&File, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        match &mut node.file {
            Some(file) => Ok(file),
            slot @ None => {
                let path = node.path.as_ref().ok_or(Errno::ENOENT)?;
                let file = OpenOptions::new().read(true).write(true).open(path);
                Ok(slot.insert(file.or_else(|_| File::open(path))?))
            }
        }
    }

    /// The attributes of `ino`, its size as readers see it.
    pub fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let meta = match (&node.file, &node.path) {
            (Some(file), _) => file.metadata()?,
            (None, Some(path)) => fs::symlink_metadata(path)?,
            (None, None) => return Err(Errno::ENOENT),
        };
        to_attr(ino, &meta, node.pending.size(meta.len()))
    }

    /// `size` bytes at `offset` as readers see them: the backing file's bytes with
    /// the pending operations laid over them.
    pub fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.open(ino)?;
        let mut buf = vec![0; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let backing = file.metadata()?.len();
        let pending = &self.node(ino)?.pending;
        pending.overlay(offset, &mut buf);
        let visible = pending.size(backing).saturating_sub(offset);
        buf.truncate(visible.min(buf.len() as u64) as usize);
        Ok(buf)
    }

    /// Holds `op` in memory until the next fsync of `ino`.
    pub fn push(&mut self, ino: u64, op: Op) -> Result<(), Errno> {
        self.open(ino)?;
        self.nodes
            .get_mut(&ino)
            .ok_or(Errno::ENOENT)?
            .pending
            .push(op);
        Ok(())
    }

    /// Applies the pending operations of `ino` to its backing file and syncs it:
    /// its data only, or (`all`) its metadata as well.
    pub fn fsync(&mut self, ino: u64, all: bool) -> Result<(), Errno> {
        self.open(ino)?;
        self.syncs += 1;
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let file = node.file.as_ref().ok_or(Errno::EIO)?;
        node.pending.apply(file)?;
        if all {
            file.sync_all()?;
        } else {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Makes every pending operation durable, as sync(2) would.
    pub fn sync(&mut self) -> Result<(), Errno> {
        for ino in self.dirty() {
            let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
            let file = node.file.as_ref().ok_or(Errno::EIO)?;
            node.pending.apply(file)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// The nodes with pending operations, in inode order (so a seed means one cut).
    fn dirty(&self) -> Vec<u64> {
        let mut inos: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.pending.is_empty())
            .map(|(i, _)| *i)
            .collect();
        inos.sort_unstable();
        inos
    }

    /// A power cut: what survives of each file's pending operations is applied to
    /// its backing file and synced, the rest is forgotten.
    pub fn cut(&mut self, cut: Cut) -> Result<CutReport, Errno> {
        let mut rng = Rng::new(match cut {
            Cut::Drop => 0,
            Cut::Torn(seed) | Cut::Reorder(seed) => seed,
        });
        let mut report = CutReport::default();
        self.cuts += 1;
        for ino in self.dirty() {
            let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
            let (kept, tally) = node.pending.cut(cut, &mut rng);
            report.tally.add(tally);
            report.files += 1;
            if kept.is_empty() {
                continue;
            }
            let file = node.file.as_ref().ok_or(Errno::EIO)?;
            for op in &kept {
                op.apply(file)?;
            }
            file.sync_data()?;
        }
        Ok(report)
    }

    /// Pending operations and their bytes, over all files.
    pub fn pending(&self) -> (u64, u64) {
        let nodes = self.nodes.values();
        nodes.fold((0, 0), |(n, b), node| {
            (n + node.pending.len() as u64, b + node.pending.bytes())
        })
    }

    /// `path` was removed: its node no longer stands for it and its pending
    /// operations are lost.
    pub fn unlinked(&mut self, path: &Path) {
        let Some(ino) = self.by_path.remove(path) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.path = None;
            node.pending.clear();
        }
    }

    /// `from` was renamed to `to` (replacing it): the nodes under `from` move along
    /// with their pending operations.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        if from == to {
            return;
        }
        self.unlinked(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let Ok(rest) = old.strip_prefix(from) else {
                continue;
            };
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new);
            }
        }
    }
}

/// FUSE attributes from the backing file's metadata and the size readers see.
fn to_attr(ino: u64, meta: &Metadata, size: u64) -> Result<FileAttr, Errno> {
    let kind = FileType::from_std(meta.file_type()).ok_or(Errno::EIO)?;
    let ctime = Duration::new(
        u64::try_from(meta.ctime()).unwrap_or(0),
        u32::try_from(meta.ctime_nsec()).unwrap_or(0),
    );
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: if size == meta.len() {
            meta.blocks()
        } else {
            size.div_ceil(512)
        },
        atime: meta.accessed().unwrap_or(UNIX_EPOCH),
        mtime: meta.modified().unwrap_or(UNIX_EPOCH),
        ctime: UNIX_EPOCH + ctime,
        crtime: UNIX_EPOCH,
        kind,
        perm: (meta.mode() & 0o7777) as u16,
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: u32::try_from(meta.rdev()).unwrap_or(0),
        blksize: u32::try_from(meta.blksize()).unwrap_or(4096),
        flags: 0,
    })
}
