//! sled's `conf` file, which sled 0.34 writes when it creates a database and never
//! fsyncs. A power cut soon after creation can leave it empty (sled then writes it
//! again) or with its text torn (sled then refuses to open: "Read corrupted data").
//! This module lets a torn copy of the defaults be written again, so that a database
//! an earlier renkei wrote with sled opens to be moved (`earlier`).
//!
//! It knows sled's format of that one file (text lines, then a CRC-32 of them, little
//! endian) and the text sled writes for the parameters renkei opens it with; it must
//! not touch any other of sled's files.

use std::path::Path;

use super::StoreError;

const CONF: &str = "conf";

/// The conf sled writes for the parameters renkei opens every database with (sled's
/// defaults; `cache_capacity` is not stored). A unit test holds sled to it.
const DEFAULT_TEXT: &str = "segment_size: 524288\nuse_compression: false\nversion: 0.34\n";

/// The whole conf file for [`DEFAULT_TEXT`]: its text, then their CRC.
fn default_conf() -> Vec<u8> {
    let mut bytes = DEFAULT_TEXT.as_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(DEFAULT_TEXT.as_bytes()).to_le_bytes());
    bytes
}

fn file_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        path: path.to_owned(),
        source,
    }
}

/// Before sled opens `dir`: a conf that is a torn copy of the defaults is removed, so
/// that sled writes it again, saying what the torn one said. Returns whether it was.
/// Any other conf is left to sled, which knows its parameters better than a guess.
pub(super) fn forget_torn(dir: &Path) -> Result<bool, StoreError> {
    let path = dir.join(CONF);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(file_error(&path, e)),
    };
    let default = default_conf();
    // sled itself takes 8 bytes or fewer as no configuration.
    if bytes.len() <= 8 || bytes == default {
        return Ok(false);
    }
    if !default.starts_with(&bytes) {
        // A whole conf of other parameters, or one torn beyond knowing: sled decides.
        return Ok(false);
    }
    tracing::warn!(path = %path.display(), "sled's configuration file is torn (a power cut soon after the database was made); sled writes it again");
    std::fs::remove_file(&path).map_err(|e| file_error(&path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled, opened again once the previous handle's lock is released (sled releases
    /// it from a background thread).
    fn open_again(dir: &Path) -> sled::Result<sled::Db> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match sled::open(dir) {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn only_a_torn_copy_of_the_defaults_is_removed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join(CONF);
        assert!(!forget_torn(dir.path()).expect("no conf yet"));

        let whole = default_conf();
        std::fs::write(&path, &whole).expect("written");
        assert!(!forget_torn(dir.path()).expect("read"));
        assert!(path.exists());

        std::fs::write(&path, b"").expect("written");
        assert!(!forget_torn(dir.path()).expect("read"));
        assert!(path.exists(), "sled rewrites an empty one itself");

        let other = "segment_size: 8388608\nuse_compression: false\nversion: 0.34\n";
        std::fs::write(&path, &other.as_bytes()[..30]).expect("written");
        assert!(
            !forget_torn(dir.path()).expect("read"),
            "not ours to rewrite"
        );
        assert!(path.exists());

        std::fs::write(&path, &whole[..30]).expect("written");
        assert!(forget_torn(dir.path()).expect("read"));
        assert!(!path.exists());
    }

    #[test]
    fn sled_writes_the_default_conf_and_opens_after_a_torn_one_is_forgotten() {
        let dir = tempfile::tempdir().expect("a temp dir");
        drop(sled::open(dir.path()).expect("created"));
        let path = dir.path().join(CONF);
        let bytes = std::fs::read(&path).expect("sled wrote its conf");
        assert_eq!(
            bytes,
            default_conf(),
            "sled's conf is the one this module knows"
        );
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("torn");
        assert!(open_again(dir.path()).is_err(), "sled refuses a torn conf");
        assert!(forget_torn(dir.path()).expect("read"));
        drop(open_again(dir.path()).expect("sled opens again"));
    }
}
