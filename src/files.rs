//! Writing key and certificate files safely: private keys readable by their owner
//! only (0600), nothing overwritten unless the caller says so, the content on disk
//! before the name appears (write to a temporary file, sync, rename).
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
    if !overwrite && path.exists() {
        return Err(FileError::Exists(path.to_owned()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, access.mode());
        let mut file = opts.open(&tmp).map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // The umask may have narrowed the mode; set it exactly.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(access.mode()))
                .map_err(io(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
}
