//! Moving a database an earlier renkei wrote with sled (layouts 2 and 3: sled's `db`
//! and `conf` files in the data directory) into the engine, once, when the store
//! opens. The keys and values move as they are; the value files stay where they are.
//!
//! Crash-safe by order: the engine's copy is built from scratch, made durable, and only
//! then are sled's files removed (`db` first). While `db` exists the move is not done,
//! and a move a crash interrupted starts again from an empty engine.

use std::path::Path;

use super::kv::{self, Batch, Db};
use super::{sled_conf, StoreError};

/// sled's files and directories in a data directory (and its `snap.*` files); `db` is
/// the one that says a sled database is there.
const SLED_FILES: [&str; 3] = ["db", "conf", "blobs"];
/// Entries per batch while moving.
const BATCH: usize = 10_000;

fn file_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        path: path.to_owned(),
        source,
    }
}

/// Opens the engine in `dir`, first moving into it a sled database found there.
/// Returns the engine and how many entries were moved (0 when there was nothing).
pub(super) fn open_moving(
    dir: &Path,
    cache_bytes: u64,
    patience: std::time::Duration,
) -> Result<(Db, u64), StoreError> {
    if !dir.join("db").exists() {
        remove_leftovers(dir)?;
        return Ok((Db::open(dir, cache_bytes, patience)?, 0));
    }
    let engine = dir.join(kv::DIR);
    if engine.exists() {
        // A move a crash interrupted: sled's files are still the truth.
        std::fs::remove_dir_all(&engine).map_err(|e| file_error(&engine, e))?;
    }
    let db = Db::open(dir, cache_bytes, patience)?;
    let moved = copy_from_sled(dir, &db.tree("state")?)?;
    db.persist()?;
    remove_leftovers(dir)?;
    Ok((db, moved))
}

/// Copies every entry of the `state` tree of the sled database in `dir` (a data
/// directory, or a backup an earlier renkei made) into `to`; returns how many.
pub(super) fn copy_from_sled(dir: &Path, to: &kv::Tree) -> Result<u64, StoreError> {
    sled_conf::forget_torn(dir)?;
    let sled = sled::Config::new()
        .path(dir)
        .cache_capacity(16 << 20)
        .open()?;
    let from = sled.open_tree("state")?;
    let (mut batch, mut moved) = (Batch::default(), 0);
    for kv in from.iter() {
        let (k, v) = kv?;
        batch.insert(k, v);
        moved += 1;
        if batch.len() == BATCH {
            to.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    to.apply_batch(batch)?;
    tracing::info!(
        entries = moved,
        "moved the database from sled into the engine"
    );
    Ok(moved)
}

/// Removes sled's files, `db` first (what says a move is still to do), then syncs the
/// directory so the removal survives a power cut.
fn remove_leftovers(dir: &Path) -> Result<(), StoreError> {
    let mut removed = false;
    let snapshots = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("snap."));
    let names: Vec<String> = SLED_FILES
        .iter()
        .map(|n| n.to_string())
        .chain(snapshots)
        .collect();
    for name in names {
        let path = dir.join(name);
        let gone = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        gone.map_err(|e| file_error(&path, e))?;
        removed = true;
    }
    if removed {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| file_error(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::new;
    use crate::store::{Entry, Store};
    use crate::timestamp::Timestamp;

    const CACHE: u64 = 16 << 20;

    /// A data directory as an earlier renkei left it: the entries of `store`'s engine
    /// in a sled database, beside a copy of its value files.
    fn as_sled(store: &Store, to: &Path) {
        let sled = sled::open(to).unwrap();
        let state = sled.open_tree("state").unwrap();
        for kv in store.state.iter() {
            let (k, v) = kv.unwrap();
            state.insert(&k[..], &v[..]).unwrap();
        }
        sled.flush().unwrap();
        let values = to.join(crate::store::values::DIR);
        std::fs::create_dir(&values).unwrap();
        for f in std::fs::read_dir(store.dir.join(crate::store::values::DIR)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), values.join(f.file_name())).unwrap();
        }
    }

    #[test]
    fn an_earlier_sled_database_is_moved_whole_and_a_move_cut_short_starts_again() {
        let (dir, earlier) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = Store::open(dir.path(), CACHE).unwrap();
        let bulletins = vec![new(1, "a", &["b"]), new(2, "a", &["c"])];
        let entries = bulletins.into_iter().map(Entry::Bulletin).collect();
        store
            .commit(entries, Timestamp::from_unix_ms(1_790_000_000_000))
            .unwrap();
        let (head, size) = (store.head().unwrap(), store.audit_progress().0);
        let root = store.audit().root(size).unwrap();
        as_sled(&store, earlier.path());
        drop(store);
        // A move cut short left a half-built engine: it is thrown away, not trusted.
        std::fs::create_dir(earlier.path().join(kv::DIR)).unwrap();
        std::fs::write(earlier.path().join(kv::DIR).join("half"), b"x").unwrap();

        let moved = Store::open(earlier.path(), CACHE).unwrap();
        assert_eq!(moved.head().unwrap(), head);
        assert_eq!(moved.audit().root(size).unwrap(), root);
        assert_eq!(moved.get(2).unwrap().unwrap().seq, 2);
        for name in SLED_FILES {
            assert!(!earlier.path().join(name).exists(), "{name} is gone");
        }
        drop(moved);
        let again = Store::open(earlier.path(), CACHE).unwrap();
        assert_eq!(again.head().unwrap(), head);
    }
}
