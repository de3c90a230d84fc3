//! Writing files safely (keys, certificates, audit exports): private ones readable
//! by their owner only (0600), nothing overwritten unless the caller says so, the
//! content on disk before the name appears (write to a temporary file, sync, rename),
//! and an edited file keeping the mode and owner it had.
//!
//! It decides nothing about what goes into the files.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file exists and overwriting was not asked for.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// The replacement could not be given the owner and group of the file it replaces.
    #[error("{path}: cannot keep its owner and group ({uid}:{gid}): {source}; run as that user or as root")]
    Owner {
        /// The file being replaced.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Who may read a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Owner read/write only (0600): private keys.
    Private,
    /// World-readable (0644): certificates, public keys.
    Public,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Public => 0o644,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` with the given access, creating parent directories.
/// Refuses to replace an existing file unless `overwrite`.
pub fn write(
    path: &Path,
    contents: &[u8],
    access: Access,
    overwrite: bool,
) -> Result<(), FileError> {
    Staged::create(path, access, overwrite)?.put(contents, None)
}

/// Replaces the contents of the existing file at `path` in one step, keeping its
/// permission bits and, on Unix, its owner and group (a configuration edited as root
/// must stay readable by the service's group). A reader sees the old file or the new
/// one, never a mix; a failure leaves the old one.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    #[cfg(unix)]
    let (mode, owner) = {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        (
            meta.permissions().mode() & 0o7777,
            Some((meta.uid(), meta.gid())),
        )
    };
    #[cfg(not(unix))]
    let (mode, owner) = {
        let _ = meta;
        (0o644, None)
    };
    Staged::open(path, mode)?.put(contents, owner)
}

/// A file written under a temporary name beside `path`, that becomes `path` in one
/// step once [`Staged::finish`]ed (synced, renamed, the directory synced); dropped
/// unfinished, it is removed. For contents written as they are made, too large to
/// hold in memory.
pub struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    mode: u32,
    file: std::io::BufWriter<fs::File>,
}

impl Staged {
    /// Starts the file that will be `path`, with the given access. Refuses an existing
    /// `path` unless `overwrite`.
    pub fn create(path: &Path, access: Access, overwrite: bool) -> Result<Staged, FileError> {
        if !overwrite && path.exists() {
            return Err(FileError::Exists(path.to_owned()));
        }
        Staged::open(path, access.mode())
    }

    fn open(path: &Path, mode: u32) -> Result<Staged, FileError> {
        let dir = parent(path);
        fs::create_dir_all(dir).map_err(io(dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        let file = opts.open(&tmp).map_err(io(&tmp))?;
        Ok(Staged {
            path: path.to_owned(),
            tmp,
            mode,
            // Contents larger than the buffer go straight to the file.
            file: std::io::BufWriter::with_capacity(64 << 10, file),
        })
    }

    /// Where the contents go (buffered).
    pub fn writer(&mut self) -> &mut impl std::io::Write {
        &mut self.file
    }

    /// Makes the written contents `path`.
    pub fn finish(self) -> Result<(), FileError> {
        self.finish_owned_by(None)
    }

    /// Writes all of `contents` and finishes, given `owner` (uid, gid) if any.
    fn put(mut self, contents: &[u8], owner: Option<(u32, u32)>) -> Result<(), FileError> {
        self.file.write_all(contents).map_err(io(&self.tmp))?;
        self.finish_owned_by(owner)
    }

    fn finish_owned_by(mut self, owner: Option<(u32, u32)>) -> Result<(), FileError> {
        let (tmp, path, mode) = (self.tmp.clone(), self.path.clone(), self.mode);
        self.file.flush().map_err(io(&tmp))?;
        let file = self.file.get_ref();
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
            if let Some((uid, gid)) = owner {
                let now = file.metadata().map_err(io(&tmp))?;
                if (now.uid(), now.gid()) != (uid, gid) {
                    std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(|source| {
                        FileError::Owner {
                            path: path.clone(),
                            uid,
                            gid,
                            source,
                        }
                    })?;
                }
            }
            // The umask may have narrowed the mode, and chown clears set-id bits.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
        }
        #[cfg(not(unix))]
        let _ = (mode, owner);
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.tmp = PathBuf::new();
        // Best effort: some file systems refuse to sync a directory, and the content
        // itself is already safe.
        if let Ok(d) = fs::File::open(parent(&path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The directory `path` is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Reads a whole file as UTF-8 text, naming the path on error.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_never_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.pem");
        write(&path, b"one", Access::Private, false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            write(&path, b"two", Access::Private, false),
            Err(FileError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write(&path, b"two", Access::Private, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_staged_file_appears_only_when_finished_and_is_gone_if_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.export");
        let mut staged = Staged::create(&path, Access::Private, false).unwrap();
        staged.writer().write_all(b"half").unwrap();
        assert!(!path.exists(), "not under its name before it is finished");
        drop(staged);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "an unfinished file leaves nothing behind"
        );
        let mut staged = Staged::create(&path, Access::Private, false).unwrap();
        staged.writer().write_all(b"whole").unwrap();
        staged.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(matches!(
            Staged::create(&path, Access::Private, false),
            Err(FileError::Exists(_))
        ));
    }

    #[test]
    fn replace_keeps_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        }
        replace(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(matches!(
            replace(&dir.path().join("absent.toml"), b"x"),
            Err(FileError::Io { .. })
        ));
    }
}
