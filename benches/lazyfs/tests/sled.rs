//! sled 0.34.7 (the version renkei uses) on `lazyfs`: which of its writes a power cut
//! keeps. A child process (this test binary again, running `sled_child`) writes and is
//! killed with SIGKILL, as a power cut would stop it; then the mount is cut and the
//! database reopened.

mod common;

use std::env;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mount, R};

const CHILD_DIR: &str = "LAZYFS_SLED_CHILD";
const CHILD_MODE: &str = "LAZYFS_SLED_MODE";
const KEYS: usize = 200;
const ROUNDS: usize = 4;

/// sled without its periodic flusher: only the calls below write and sync.
fn open(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(dir).flush_every_ms(None).open()
}

/// fdatasync of every file under `dir`, as renkei does before it acknowledges.
fn fdatasync_all(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            fdatasync_all(&path)?;
        } else {
            File::open(&path)?.sync_data()?;
        }
    }
    Ok(())
}

fn insert(db: &sled::Db, prefix: &str) -> sled::Result<()> {
    for i in 0..KEYS {
        db.insert(format!("{prefix}{i:04}"), vec![b'v'; 100])?;
    }
    Ok(())
}

fn count(db: &sled::Db, prefix: &str) -> usize {
    db.scan_prefix(prefix).filter(Result::is_ok).count()
}

/// The writer, run only as a child of the tests below: durable keys, then rounds of
/// keys written with `db.flush()` only (or also fdatasync'd), then it waits to be killed.
#[test]
fn sled_child() -> R {
    let (Ok(dir), Ok(mode)) = (env::var(CHILD_DIR), env::var(CHILD_MODE)) else {
        return Ok(());
    };
    let dir = Path::new(&dir);
    let db = open(dir)?;
    insert(&db, "durable/")?;
    db.flush()?;
    fdatasync_all(dir)?;
    for round in 0..ROUNDS {
        insert(&db, &format!("flushed/{round}/"))?;
        db.flush()?;
    }
    if mode == "fdatasync" {
        fdatasync_all(dir)?;
    }
    println!("sled-child: ready");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?; // SIGKILL comes here
    Ok(())
}

/// Runs `sled_child` on `dir`, then kills it with SIGKILL.
fn write_and_kill(dir: &Path, mode: &str) -> R {
    let mut child = Command::new(env::current_exe()?)
        .args(["sled_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let ready = common::wait_for(
        &common::lines(stdout),
        "sled-child: ready",
        Duration::from_secs(60),
    );
    child.kill()?;
    child.wait()?;
    ready?;
    Ok(())
}

/// (durable keys, flushed keys) after reopening `dir`; prints the flushed keys of
/// each round (a database that recovers a prefix of its log never has a round without
/// the ones before it).
fn reopen_and_count(dir: &Path) -> sled::Result<(usize, usize)> {
    let db = open(dir)?;
    let rounds: Vec<usize> = (0..ROUNDS)
        .map(|r| count(&db, &format!("flushed/{r}/")))
        .collect();
    println!("{}: flushed keys by round {rounds:?}", dir.display());
    Ok((count(&db, "durable/"), count(&db, "flushed/")))
}

#[test]
fn sled_keys_written_with_db_flush_only_are_lost_in_a_cut() -> R {
    let Some(m) = Mount::start("sled_keys_written_with_db_flush_only_are_lost_in_a_cut")? else {
        return Ok(());
    };
    let dir = m.path("db");
    write_and_kill(&dir, "flush")?;
    println!("before the cut: {}", m.ctl("stats"));
    println!("cut drop: {}", m.ctl("cut drop"));
    let (durable, flushed) = reopen_and_count(&dir)?;
    println!(
        "after: {durable} of {KEYS} fdatasync'd keys, {flushed} of {} db.flush()ed keys",
        KEYS * ROUNDS
    );
    assert_eq!(durable, KEYS);
    assert_eq!(
        flushed, 0,
        "db.flush() (sync_file_range) alone made keys survive"
    );
    Ok(())
}

#[test]
fn sled_keys_fdatasynced_after_db_flush_survive_a_cut() -> R {
    let Some(m) = Mount::start("sled_keys_fdatasynced_after_db_flush_survive_a_cut")? else {
        return Ok(());
    };
    let dir = m.path("db");
    write_and_kill(&dir, "fdatasync")?;
    println!("before the cut: {}", m.ctl("stats"));
    println!("cut drop: {}", m.ctl("cut drop"));
    assert_eq!(reopen_and_count(&dir)?, (KEYS, KEYS * ROUNDS));
    Ok(())
}

/// Opens `dir`, retrying while sled's own lock of an earlier handle in this process
/// is still being released by its background thread.
fn open_again(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(dir) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[test]
fn sled_keys_survive_a_cut_after_the_db_is_dropped() -> R {
    let Some(m) = Mount::start("sled_keys_survive_a_cut_after_the_db_is_dropped")? else {
        return Ok(());
    };
    let dir = m.path("db");
    let db = open(&dir)?;
    insert(&db, "flushed/")?;
    db.flush()?;
    println!("after db.flush(): {}", m.ctl("stats"));
    drop(db);
    println!("after drop(db): {}", m.ctl("stats"));
    println!("cut drop: {}", m.ctl("cut drop"));
    // sled never fsyncs its `conf` file: the cut empties it, and sled takes that as
    // "no configuration yet".
    let conf = fs::metadata(m.backing.join("db/conf"))?.len();
    println!("conf after the cut: {conf} bytes");
    let db = open_again(&dir)?;
    let flushed = count(&db, "flushed/");
    println!("after: {flushed} of {KEYS} keys");
    // sled's Drop fsyncs its file (sync_all in Log::drop): a clean close is durable.
    assert_eq!(flushed, KEYS);
    Ok(())
}

#[test]
fn sled_reopens_after_torn_and_reordered_cuts() -> R {
    let Some(m) = Mount::start("sled_reopens_after_torn_and_reordered_cuts")? else {
        return Ok(());
    };
    let cuts = [
        "cut torn 1",
        "cut torn 2",
        "cut torn 3",
        "cut torn 4",
        "cut reorder 1",
        "cut reorder 2",
    ];
    let mut failed = Vec::new();
    for (i, cut) in cuts.iter().enumerate() {
        let dir = m.path(format!("db{i}"));
        write_and_kill(&dir, "flush")?;
        let answer = m.ctl(cut);
        assert!(answer.starts_with("ok"), "{cut}: {answer}");
        let result = reopen_and_count(&dir);
        println!("{cut}: {answer}; reopened: {result:?}");
        if !matches!(result, Ok((KEYS, _))) {
            failed.push(format!("{cut}: {result:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "sled lost durable keys or did not reopen: {failed:?}"
    );
    Ok(())
}

/// A value too large for sled's log (over about 128 KiB; sled's leaves grow that large
/// too) goes to a file of its own under `blobs/`, which sled never fsyncs. An fdatasync
/// of `db` alone (what renkei did before it acknowledged) does not keep it: the log
/// survives and points at a blob the cut emptied.
#[test]
fn a_sled_blob_survives_a_cut_only_if_its_file_is_synced() -> R {
    let Some(m) = Mount::start("a_sled_blob_survives_a_cut_only_if_its_file_is_synced")? else {
        return Ok(());
    };
    const LARGE: usize = 300 * 1024;
    for (name, blobs_synced) in [("db-only", false), ("with-blobs", true)] {
        let dir = m.path(name);
        {
            let db = open(&dir)?;
            db.insert("large", vec![7u8; LARGE])?;
            db.flush()?;
            File::open(dir.join("db"))?.sync_data()?;
            if blobs_synced {
                fdatasync_all(&dir.join("blobs"))?;
            }
            // Dropping the Db syncs its log (sled's Log::drop), not its blobs.
        }
        let blobs = fs::read_dir(dir.join("blobs"))?.count();
        let answer = m.ctl("cut drop");
        assert!(answer.starts_with("ok"), "{answer}");
        let large = open_again(&dir).and_then(|db| db.get("large"));
        let len = large.as_ref().map(|v| v.as_ref().map(|v| v.len()));
        println!(
            "{name}: {blobs} blob file(s); cut drop: {answer}; the large value after: {len:?}"
        );
        match blobs_synced {
            true => assert_eq!(len.ok().flatten(), Some(LARGE), "a synced blob is kept"),
            false => assert_ne!(len.ok().flatten(), Some(LARGE), "an unsynced blob is lost"),
        }
    }
    Ok(())
}
