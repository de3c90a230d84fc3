//! sled's blobs: values (and tree nodes) too large for its log, each written to a file
//! of its own under `blobs/`, which sled 0.34 never fsyncs. Its log, which the store
//! does fdatasync, then points at a blob a power cut may empty, and sled's recovery
//! drops that write and everything after it, silently (shown on lazyfs:
//! benches/lazyfs/tests/sled.rs). So every flush also syncs the blobs written since the
//! last one.
//!
//! It owns the names of the blobs it has synced; it must not read or change a blob.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// The blobs of one database, and which of them are synced.
pub(super) struct Blobs {
    dir: PathBuf,
    synced: Mutex<HashSet<OsString>>,
}

impl Blobs {
    /// The blobs under `db_dir`; none counts as synced yet.
    pub(super) fn new(db_dir: &Path) -> Blobs {
        Blobs {
            dir: db_dir.join("blobs"),
            synced: Mutex::default(),
        }
    }

    /// Syncs every blob not synced before, then the directory that names them; how
    /// many it synced. Blobs sled has removed are forgotten.
    pub(super) fn sync_new(&self) -> Result<usize, StoreError> {
        let failed = |source| StoreError::File {
            path: self.dir.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(failed(e)),
        };
        let mut present = HashSet::new();
        for entry in entries {
            present.insert(entry.map_err(failed)?.file_name());
        }
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        synced.retain(|name| present.contains(name));
        let mut new = 0;
        for name in present.difference(&synced.clone()) {
            let path = self.dir.join(name);
            let file = std::fs::File::open(&path).and_then(|f| f.sync_data());
            match file {
                Ok(()) => {}
                // Removed by sled since the listing: nothing left to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::File { path, source }),
            }
            synced.insert(name.clone());
            new += 1;
        }
        if new > 0 {
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(failed)?;
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_blob_is_synced_once_and_removed_ones_are_forgotten() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let blobs = Blobs::new(dir.path());
        assert_eq!(blobs.sync_new().expect("no blobs yet"), 0);
        let at = dir.path().join("blobs");
        std::fs::create_dir(&at).expect("made");
        for name in ["101", "102"] {
            std::fs::write(at.join(name), b"blob").expect("written");
        }
        assert_eq!(blobs.sync_new().expect("synced"), 2);
        assert_eq!(blobs.sync_new().expect("synced"), 0, "each once");
        std::fs::write(at.join("103"), b"blob").expect("written");
        std::fs::remove_file(at.join("101")).expect("removed");
        assert_eq!(blobs.sync_new().expect("synced"), 1);
        let synced = blobs.synced.lock().expect("not poisoned");
        assert!(!synced.contains(&OsString::from("101")), "forgotten");
        assert_eq!(synced.len(), 2);
    }

    #[test]
    fn a_value_too_large_for_sleds_log_is_a_blob_the_store_syncs() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = sled::open(dir.path()).expect("opened");
        db.insert("large", vec![7u8; 300 * 1024]).expect("inserted");
        db.flush().expect("flushed");
        assert_eq!(Blobs::new(dir.path()).sync_new().expect("synced"), 1);
    }
}
