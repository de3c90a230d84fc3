//! Moving a database an earlier renkei wrote with sled (layouts 2 and 3: sled's `db`
//! and `conf` files in the data directory) into the engine, once, when the store
//! opens. The keys and values move as they are; the value files stay where they are.
//!
//! Crash-safe by order: the engine's copy is built from scratch, made durable, and only
//! then are sled's files removed (`db` first). While `db` exists the move is not done,
//! and a move a crash interrupted starts again from an empty engine. A database of a
//! layout this renkei does not read is refused before anything is copied or removed.
//!
//! An earlier renkei started on a moved directory must refuse it, not take it for a new
//! one (it would create an empty sled database and cut the value files to its end, 0).
//! So the directory keeps a `conf` that sled 0.34 refuses to open ([`REFUSAL`]), written
//! before sled's files are removed; sled reads it before it creates any file.

use std::path::Path;

use super::kv::{self, Db};
use super::{sled_conf, StoreError};

/// sled's files and directories in a data directory (and its `snap.*` files); `db` is
/// the one that says a sled database is there.
const SLED_FILES: [&str; 3] = ["db", "conf", "blobs"];
/// sled's `conf` in a data directory this renkei stores in: text sled 0.34 cannot read
/// as its parameters ("Read corrupted data"), so an earlier renkei stops there.
const REFUSAL: &str = "renkei: this data directory is stored in fjall (layout 4) by a newer renkei; an earlier renkei, which stored in sled, must not open it\n";

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
        let db = Db::open(dir, cache_bytes, patience)?;
        refuse_sled(dir)?;
        remove_leftovers(dir)?;
        return Ok((db, 0));
    }
    let engine = dir.join(kv::DIR);
    if engine.exists() {
        // A move a crash interrupted: sled's files are still the truth.
        std::fs::remove_dir_all(&engine).map_err(|e| file_error(&engine, e))?;
    }
    let db = Db::open(dir, cache_bytes, patience)?;
    let moved = copy_from_sled(dir, &db.tree("state")?)?;
    db.persist()?;
    // The engine's directory must be there after a power cut before sled's files go.
    sync_dir(dir)?;
    refuse_sled(dir)?;
    remove_leftovers(dir)?;
    Ok((db, moved))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_error(dir, e))
}

fn conf_is_refusal(dir: &Path) -> bool {
    std::fs::read(dir.join("conf")).is_ok_and(|c| c == REFUSAL.as_bytes())
}

/// Leaves [`REFUSAL`] as sled's `conf` in `dir` (written whole, then renamed in place).
fn refuse_sled(dir: &Path) -> Result<(), StoreError> {
    if conf_is_refusal(dir) {
        return Ok(());
    }
    let (tmp, conf) = (dir.join("conf.renkei"), dir.join("conf"));
    std::fs::write(&tmp, REFUSAL)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, &conf).map_err(|e| file_error(&conf, e))?;
    sync_dir(dir)
}

/// Refuses a sled database of a layout this renkei does not read, before it is moved.
fn check_movable(from: &sled::Tree) -> Result<(), StoreError> {
    let layout = match from.get(super::FORMAT_KEY)? {
        Some(v) => Some(super::be_u64(super::FORMAT_KEY, &v)?),
        None => None,
    };
    match layout {
        Some(n) if super::FORMAT_UPGRADED.contains(&n) || n == super::FORMAT => Ok(()),
        Some(n) => Err(super::corrupt(
            super::FORMAT_KEY,
            format!("sled's database is of layout {n}, which this renkei does not move; nothing was changed"),
        )),
        None if from.is_empty() => Ok(()),
        None => Err(super::corrupt(
            super::FORMAT_KEY,
            "sled's database was written by an earlier renkei (layout 1), which this one does not read; nothing was changed",
        )),
    }
}

/// Copies every entry of the `state` tree of the sled database in `dir` (a data
/// directory, or a backup an earlier renkei made) into `to`; returns how many.
pub(super) fn copy_from_sled(dir: &Path, to: &kv::Tree) -> Result<u64, StoreError> {
    if conf_is_refusal(dir) {
        // A move cut short after the refusal took the place of sled's conf: sled writes
        // its own again (renkei always opened sled with its defaults).
        let conf = dir.join("conf");
        std::fs::remove_file(&conf).map_err(|e| file_error(&conf, e))?;
    }
    sled_conf::forget_torn(dir)?;
    let sled = sled::Config::new()
        .path(dir)
        .cache_capacity(16 << 20)
        .open()?;
    let from = sled.open_tree("state")?;
    check_movable(&from)?;
    let moved = to.insert_all(from.iter())?;
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
        if name == "conf" && conf_is_refusal(dir) {
            continue;
        }
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
        sync_dir(dir)?;
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
        // A move cut short left a half-built engine, and the refusal in place of sled's
        // conf: the engine is thrown away, not trusted, and sled opens again.
        std::fs::create_dir(earlier.path().join(kv::DIR)).unwrap();
        std::fs::write(earlier.path().join(kv::DIR).join("half"), b"x").unwrap();
        std::fs::write(earlier.path().join("conf"), REFUSAL).unwrap();

        let moved = Store::open(earlier.path(), CACHE).unwrap();
        assert_eq!(moved.head().unwrap(), head);
        assert_eq!(moved.audit().root(size).unwrap(), root);
        assert_eq!(moved.get(2).unwrap().unwrap().seq, 2);
        for name in ["db", "blobs"] {
            assert!(!earlier.path().join(name).exists(), "{name} is gone");
        }
        assert!(conf_is_refusal(earlier.path()));
        drop(moved);
        let again = Store::open(earlier.path(), CACHE).unwrap();
        assert_eq!(again.head().unwrap(), head);
    }

    #[test]
    fn an_earlier_renkei_cannot_open_a_moved_directory_and_a_new_one_still_can() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let entries = vec![Entry::Bulletin(new(1, "a", &["b"]))];
        store
            .commit(entries, Timestamp::from_unix_ms(1_790_000_000_000))
            .unwrap();
        drop(store);
        // What an earlier renkei does first: open sled in the data directory.
        let err = sled::Config::new().path(dir.path()).open().err();
        assert!(err.is_some(), "sled must refuse the directory");
        assert!(!dir.path().join("db").exists(), "sled made no database");
        let store = Store::open(dir.path(), CACHE).unwrap();
        assert_eq!(store.head().unwrap(), 1);
        assert!(conf_is_refusal(dir.path()));
    }

    #[test]
    fn a_sled_database_of_a_layout_not_read_is_refused_before_anything_moves() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sled = sled::open(dir.path()).unwrap();
            let state = sled.open_tree("state").unwrap();
            state.insert(b"m/head", &5u64.to_be_bytes()[..]).unwrap();
            sled.flush().unwrap();
        }
        let err = Store::open(dir.path(), CACHE).err().unwrap().to_string();
        assert!(err.contains("layout 1"), "{err}");
        assert!(dir.path().join("db").exists(), "sled's database is kept");
    }
}
