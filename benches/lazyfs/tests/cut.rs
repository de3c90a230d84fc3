//! `lazyfs` mounted for real: what each kind of cut keeps and loses, renames, locks,
//! and a clean stop.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{mounted, Mount, R};

#[test]
fn synced_writes_survive_a_drop_and_unsynced_ones_do_not() -> R {
    let Some(m) = Mount::start("synced_writes_survive_a_drop_and_unsynced_ones_do_not")? else {
        return Ok(());
    };
    let a = File::create(m.path("a"))?;
    a.write_all_at(b"old", 0)?;
    a.sync_data()?;
    a.write_all_at(b"NEW!", 0)?;
    assert_eq!(
        fs::read(m.path("a"))?,
        b"NEW!",
        "readers see the unsynced write"
    );
    assert_eq!(
        fs::read(m.backing.join("a"))?,
        b"old",
        "the disk does not have it yet"
    );
    let mut b = File::create(m.path("b"))?;
    b.write_all(b"synced")?;
    b.sync_data()?;
    drop((a, b)); // close persists nothing
    assert_eq!(
        m.ctl("stats"),
        "ok pending_writes=1 pending_bytes=4 syncs=2 cuts=0"
    );
    assert_eq!(m.ctl("cut drop"), "ok dropped=1 bytes=4 files=1");
    assert_eq!(fs::read(m.path("a"))?, b"old");
    assert_eq!(fs::read(m.path("b"))?, b"synced");
    assert_eq!(
        m.ctl("stats"),
        "ok pending_writes=0 pending_bytes=0 syncs=2 cuts=1"
    );
    Ok(())
}

#[test]
fn a_drop_undoes_unsynced_growth_and_truncation() -> R {
    let Some(m) = Mount::start("a_drop_undoes_unsynced_growth_and_truncation")? else {
        return Ok(());
    };
    let p = m.path("f");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)?;
    let base: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    f.write_all_at(&base, 0)?;
    f.sync_data()?;
    f.write_all_at(&[7; 4096], 8192)?;
    assert_eq!(f.metadata()?.len(), 12288);
    assert_eq!(m.ctl("cut drop"), "ok dropped=1 bytes=4096 files=1");
    assert_eq!(fs::metadata(&p)?.len(), 8192);
    assert_eq!(fs::read(&p)?, base);

    f.set_len(100)?;
    f.set_len(200)?;
    let cut_short = fs::read(&p)?;
    assert_eq!(cut_short[..100], base[..100]);
    assert_eq!(
        cut_short[100..],
        [0; 100],
        "a truncate hides the old bytes beyond it"
    );
    assert_eq!(m.ctl("cut drop"), "ok dropped=2 bytes=0 files=1");
    assert_eq!(fs::read(&p)?, base);

    f.write_all_at(b"end", 20_000)?;
    let sparse = fs::read(&p)?;
    assert_eq!(sparse.len(), 20_003);
    assert!(
        sparse[8192..20_000].iter().all(|&b| b == 0),
        "a hole reads as zeros"
    );
    f.sync_data()?;
    assert_eq!(fs::read(m.backing.join("f"))?, sparse);

    File::create(&p)?; // O_TRUNC of an existing file: a pending truncate as well
    assert_eq!(fs::metadata(&p)?.len(), 0);
    assert_eq!(m.ctl("cut drop"), "ok dropped=1 bytes=0 files=1");
    assert_eq!(fs::read(&p)?, sparse);
    Ok(())
}

/// Eight writes of 10,000 bytes, write `i` all `b'a' + i`, then `cut`.
fn eight_writes_then(
    m: &Mount,
    cut: &str,
) -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
    let f = File::create(m.path("t"))?;
    f.sync_data()?;
    for i in 0..8u8 {
        f.write_all_at(&[b'a' + i; 10_000], u64::from(i) * 10_000)?;
    }
    let answer = m.ctl(cut);
    Ok((answer, fs::read(m.path("t"))?))
}

#[test]
fn a_torn_cut_keeps_a_prefix_and_tears_at_a_page_boundary() -> R {
    let Some(m) = Mount::start("a_torn_cut_keeps_a_prefix_and_tears_at_a_page_boundary")? else {
        return Ok(());
    };
    let (answer, got) = eight_writes_then(&m, "cut torn 42")?;
    for (i, chunk) in got.chunks(10_000).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == b'a' + i as u8),
            "write {i} kept whole or as a prefix"
        );
    }
    assert_eq!(got.len() % 4096, 0, "torn at a page boundary");
    // With seed 42: write 0 kept, write 1 torn after 2,288 of its bytes (at 12,288).
    assert_eq!(got.len(), 12_288);
    assert_eq!(answer, "ok dropped=6 bytes=67712 files=1 kept=1 torn=1");
    Ok(())
}

#[test]
fn a_reordering_cut_keeps_some_writes_but_not_all() -> R {
    let Some(m) = Mount::start("a_reordering_cut_keeps_some_writes_but_not_all")? else {
        return Ok(());
    };
    let f = File::create(m.path("r"))?;
    f.set_len(2000)?;
    f.sync_data()?;
    for i in 0..20u8 {
        f.write_all_at(&[i + 1; 100], u64::from(i) * 100)?;
    }
    let answer = m.ctl("cut reorder 5");
    let got = fs::read(m.path("r"))?;
    assert_eq!(got.len(), 2000);
    let mut kept = 0;
    for (i, chunk) in got.chunks(100).enumerate() {
        let whole = chunk.iter().all(|&b| b == i as u8 + 1);
        assert!(
            whole || chunk.iter().all(|&b| b == 0),
            "write {i} whole or absent"
        );
        kept += usize::from(whole);
    }
    assert!(0 < kept && kept < 20, "{kept} of 20 writes kept");
    let lost = 20 - kept;
    assert_eq!(
        answer,
        format!(
            "ok dropped={lost} bytes={} files=1 kept={kept} torn=0",
            lost * 100
        )
    );
    Ok(())
}

#[test]
fn pending_writes_follow_renames_and_die_with_replaced_files() -> R {
    let Some(m) = Mount::start("pending_writes_follow_renames_and_die_with_replaced_files")? else {
        return Ok(());
    };
    fs::write(m.path("x.tmp"), b"hello")?;
    fs::rename(m.path("x.tmp"), m.path("x"))?;
    assert_eq!(fs::read(m.path("x"))?, b"hello");
    File::open(m.path("x"))?.sync_data()?;
    fs::write(m.path("y.tmp"), b"lost")?;
    fs::rename(m.path("y.tmp"), m.path("y"))?;
    fs::create_dir(m.path("d"))?;
    fs::write(m.path("d/z"), b"deep")?;
    fs::rename(m.path("d"), m.path("e"))?;
    File::open(m.path("e/z"))?.sync_data()?;
    fs::write(m.path("w"), b"replaced")?;
    fs::write(m.path("w.new"), b"new")?;
    fs::rename(m.path("w.new"), m.path("w"))?;
    assert_eq!(
        m.ctl("stats"),
        "ok pending_writes=2 pending_bytes=7 syncs=2 cuts=0"
    );
    assert_eq!(m.ctl("cut drop"), "ok dropped=2 bytes=7 files=2");
    assert_eq!(fs::read(m.path("x"))?, b"hello");
    assert_eq!(
        fs::read(m.path("y"))?,
        b"",
        "renamed, never synced: the name survives, not the data"
    );
    assert_eq!(fs::read(m.path("e/z"))?, b"deep");
    assert_eq!(fs::read(m.path("w"))?, b"");
    Ok(())
}

#[test]
fn flock_works_inside_the_mount() -> R {
    let Some(m) = Mount::start("flock_works_inside_the_mount")? else {
        return Ok(());
    };
    fs::write(m.path("lock"), b"")?;
    let (a, b) = (File::open(m.path("lock"))?, File::open(m.path("lock"))?);
    a.try_lock()?;
    assert!(b.try_lock().is_err(), "a second exclusive flock must fail");
    a.unlock()?;
    b.try_lock()?;
    Ok(())
}

#[test]
fn sigterm_unmounts_and_writes_back() -> R {
    let Some(mut m) = Mount::start("sigterm_unmounts_and_writes_back")? else {
        return Ok(());
    };
    fs::write(m.path("a"), b"unsynced")?;
    assert!(mounted(&m.mount));
    let status = m.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{status}: {}", m.log());
    assert!(!mounted(&m.mount));
    assert_eq!(
        fs::read(m.backing.join("a"))?,
        b"unsynced",
        "a clean unmount writes back"
    );
    Ok(())
}
