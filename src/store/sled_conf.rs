//! sled's `conf` file, which sled 0.34 writes when it creates a database and never
//! fsyncs. A power cut soon after creation can leave it empty (sled then writes it
//! again) or torn (sled then refuses to open: "Read corrupted data"). This module
//! makes it durable once written, and lets a torn one be written again.
//!
//! It knows sled's format of that one file (text lines, then a CRC-32 of them, little
//! endian); it must not touch any other of sled's files.

use std::path::Path;

use super::StoreError;

const CONF: &str = "conf";

/// Whether `bytes` is a whole `conf` as sled writes it: its text and their CRC.
fn whole(bytes: &[u8]) -> bool {
    let Some(split) = bytes.len().checked_sub(4) else {
        return false;
    };
    let (text, crc) = bytes.split_at(split);
    crc32fast::hash(text).to_le_bytes() == crc
}

/// Before sled opens `dir`: a torn `conf` is removed, so that sled writes it again.
/// It holds only sled's storage parameters, which renkei never changes from sled's
/// defaults, so the new one says what the torn one said. Returns whether it was torn.
pub(super) fn forget_torn(dir: &Path) -> Result<bool, StoreError> {
    let path = dir.join(CONF);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::NotDurable(e.into())),
    };
    // sled itself takes 8 bytes or fewer as no configuration.
    if bytes.len() <= 8 || whole(&bytes) {
        return Ok(false);
    }
    tracing::warn!(path = %path.display(), "sled's configuration file is torn (a power cut soon after the database was made); sled writes it again");
    std::fs::remove_file(&path).map_err(|e| StoreError::NotDurable(e.into()))?;
    Ok(true)
}

/// After sled opened `dir`: its `conf` made durable (the directory entry is synced by
/// the caller).
pub(super) fn make_durable(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir.join(CONF))
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::NotDurable(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Vec<u8> {
        let mut b = text.as_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(text.as_bytes()).to_le_bytes());
        b
    }

    #[test]
    fn a_torn_conf_is_removed_and_a_whole_or_empty_one_kept() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join(CONF);
        assert!(!forget_torn(dir.path()).expect("no conf yet"));

        let whole = conf("segment_size: 524288\nuse_compression: false\nversion: 0.34\n");
        std::fs::write(&path, &whole).expect("written");
        assert!(!forget_torn(dir.path()).expect("read"));
        assert!(path.exists());

        std::fs::write(&path, b"").expect("written");
        assert!(!forget_torn(dir.path()).expect("read"));
        assert!(path.exists(), "sled rewrites an empty one itself");

        std::fs::write(&path, &whole[..30]).expect("written");
        assert!(forget_torn(dir.path()).expect("read"));
        assert!(!path.exists());
    }

    #[test]
    fn sled_opens_after_its_torn_conf_is_forgotten() {
        let dir = tempfile::tempdir().expect("a temp dir");
        drop(sled::open(dir.path()).expect("created"));
        let path = dir.path().join(CONF);
        let bytes = std::fs::read(&path).expect("sled wrote its conf");
        assert!(whole(&bytes), "sled's format is as this module reads it");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("torn");
        assert!(sled::open(dir.path()).is_err(), "sled refuses a torn conf");
        assert!(forget_torn(dir.path()).expect("read"));
        drop(sled::open(dir.path()).expect("sled opens again"));
        make_durable(dir.path()).expect("synced");
    }
}
