//! The FUSE requests: metadata goes to the backing directory at once, data writes and
//! size changes are held as pending operations until an fsync of their file.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::pending::Op;
use crate::state::{self, State};

/// Nothing is cached by the kernel: after a cut every size and name is asked again.
const TTL: Duration = Duration::ZERO;

/// Files are opened so that every read and write comes here, past the page cache.
const OPEN: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

pub struct LazyFs {
    state: Arc<Mutex<State>>,
}

impl LazyFs {
    pub fn new(state: Arc<Mutex<State>>) -> LazyFs {
        LazyFs { state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        state::lock(&self.state)
    }

    /// Runs `make` (a create, or a mere stat for a lookup) on the backing path of `name`
    /// in `parent`, then counts a kernel reference to it and gives its attributes.
    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        make: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.lock();
        let path = state.child(parent.0, name)?;
        make(&path)?;
        let ino = state.remember(path);
        state.attr(ino)
    }

    fn create_file(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.lock();
        let path = state.child(parent.0, name)?;
        let existed = fs::symlink_metadata(&path).is_ok();
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & 0o7777);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = options.open(&path)?;
        let ino = state.remember(path);
        state.adopt(ino, file);
        if existed && flags & libc::O_TRUNC != 0 {
            state.push(ino, Op::Truncate(0))?;
        }
        state.attr(ino)
    }

    fn set_attr(
        &self,
        ino: u64,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.lock();
        if let Some(size) = size {
            state.push(ino, Op::Truncate(size))?;
        }
        if let Some(mode) = mode {
            fs::set_permissions(state.path(ino)?, Permissions::from_mode(mode & 0o7777))?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::lchown(state.path(ino)?, owner.0, owner.1)?;
        }
        if atime.is_some() || mtime.is_some() {
            let mut times = FileTimes::new();
            if let Some(t) = atime {
                times = times.set_accessed(when(t));
            }
            if let Some(t) = mtime {
                times = times.set_modified(when(t));
            }
            File::open(state.path(ino)?)?.set_times(times)?;
        }
        state.attr(ino)
    }

    /// A directory's entries with `.` and `..`, by name.
    fn list(&self, ino: u64) -> Result<Vec<(u64, FileType, Vec<u8>)>, Errno> {
        let state = self.lock();
        let path = state.path(ino)?;
        let up = path.parent().and_then(|p| state.known(p)).unwrap_or(ino);
        let mut entries = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (up, FileType::Directory, b"..".to_vec()),
        ];
        let mut rest = Vec::new();
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            let ino = state.known(&entry.path()).unwrap_or(entry.ino());
            rest.push((ino, kind, entry.file_name().as_bytes().to_vec()));
        }
        rest.sort_by(|a, b| a.2.cmp(&b.2));
        entries.extend(rest);
        Ok(entries)
    }

    fn rename_path(
        &self,
        from: (INodeNo, &OsStr),
        to: (INodeNo, &OsStr),
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let mut state = self.lock();
        let (old, new) = (state.child(from.0 .0, from.1)?, state.child(to.0 .0, to.1)?);
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && fs::symlink_metadata(&new).is_ok() {
            return Err(Errno::EEXIST);
        }
        fs::rename(&old, &new)?;
        state.renamed(&old, &new);
        Ok(())
    }

    /// Removes `name` from `parent` with `remove`.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&Path) -> std::io::Result<()>,
    ) -> Result<(), Errno> {
        let mut state = self.lock();
        let path = state.child(parent.0, name)?;
        remove(&path)?;
        state.unlinked(&path);
        Ok(())
    }

    fn with_path<T>(
        &self,
        ino: INodeNo,
        f: impl FnOnce(PathBuf) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let path = self.lock().path(ino.0)?;
        f(path)
    }
}

fn when(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn nix_errno(e: nix::Error) -> Errno {
    Errno::from_i32(e as i32)
}

fn entry(reply: ReplyEntry, attr: Result<FileAttr, Errno>) {
    match attr {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, done: Result<(), Errno>) {
    match done {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFs {
    fn destroy(&mut self) {
        // A clean unmount writes everything back, as the kernel would.
        if let Err(e) = self.lock().sync() {
            eprintln!("lazyfs: writing back at unmount: {e:?}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(
            reply,
            self.make(parent, name, |path| fs::symlink_metadata(path).map(drop)),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.lock().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.set_attr(ino.0, mode, (uid, gid), size, atime, mtime) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.with_path(ino, |p| Ok(fs::read_link(p)?)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mode = mode & !umask & 0o7777;
        entry(
            reply,
            self.make(parent, name, |p| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(p)
                    .map(drop)
            }),
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask & 0o7777;
        entry(
            reply,
            self.make(parent, name, |p| DirBuilder::new().mode(mode).create(p)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.remove(parent, name, |p| fs::remove_file(p)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.remove(parent, name, |p| fs::remove_dir(p)));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.make(parent, link_name, |p| std::os::unix::fs::symlink(target, p)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.rename_path((parent, name), (newparent, newname), flags),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().open(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), OPEN),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.lock().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Ok(written) = u32::try_from(data.len()) else {
            return reply.error(Errno::EFBIG);
        };
        match self.lock().push(
            ino.0,
            Op::Write {
                offset,
                data: data.to_vec(),
            },
        ) {
            Ok(()) => reply.written(written),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) persists nothing: only fsync and fdatasync do.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.lock().fsync(ino.0, !datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let is_dir = self.with_path(ino, |p| Ok(fs::metadata(p)?.is_dir()));
        match is_dir {
            Ok(true) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(false) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.list(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.with_path(ino, |p| Ok(File::open(p)?.sync_all()?)),
        );
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.with_path(ino, |p| nix::sys::statvfs::statvfs(&p).map_err(nix_errno)) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                u32::try_from(s.name_max()).unwrap_or(255),
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let mode = nix::unistd::AccessFlags::from_bits_truncate(mask.bits());
        empty(
            reply,
            self.with_path(ino, |p| nix::unistd::access(&p, mode).map_err(nix_errno)),
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(parent, name, mode & !umask, flags) {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), OPEN),
            Err(e) => reply.error(e),
        }
    }
}
