//! The value files: appends read back, files cut and copied, damage reported.

use super::*;

#[test]
fn values_read_back_across_files_and_an_uncommitted_tail_is_cut() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let log = ValueLog::open(dir.path(), 0)?.0;
    let a = log.append(b"first value")?;
    let committed = log.sync()?;
    // An interrupted commit: appended and even synced, but the engine never recorded it.
    let lost = log.append(&[7; 100])?;
    log.sync()?;
    assert_eq!(log.read(a)?, b"first value");
    assert_eq!(log.read(lost)?.len(), 100);
    drop(log);

    let log = ValueLog::open(dir.path(), committed)?.0;
    assert_eq!(log.end(), committed);
    assert_eq!(log.read(a)?, b"first value");
    assert!(matches!(log.read(lost), Err(StoreError::Corrupt { .. })));
    let b = log.append(b"second")?;
    assert_eq!(
        b.offset,
        committed + HEADER,
        "appends continue at the committed end"
    );
    assert_eq!(log.read(b)?, b"second");
    Ok(())
}

#[test]
fn a_value_that_does_not_fit_starts_a_new_file() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let log = ValueLog::open_sized(dir.path(), 0, 100)?.0;
    let ptrs: Vec<ValuePtr> = (0..5u8)
        .map(|n| log.append(&[n; 40]))
        .collect::<Result<_, _>>()?;
    let end = log.sync()?;
    drop(log);
    let names: Vec<String> = std::fs::read_dir(dir.path().join(DIR))
        .map_err(|e| io(dir.path(), e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let log = ValueLog::open_sized(dir.path(), end, 100)?.0;
    for (n, ptr) in (0..5u8).zip(&ptrs) {
        assert_eq!(log.read(*ptr)?, vec![n; 40]);
    }
    // A copy holds what was committed, and opens.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).map_err(|e| io(&copy, e))?;
    ValueLog::copy_to(dir.path(), end, &copy)?;
    let copied = ValueLog::open_sized(&copy, end, 100)?.0;
    assert_eq!(copied.read(ptrs[4])?, vec![4; 40]);
    // Files missing under a recorded end are refused, not recreated empty.
    let err = ValueLog::open_sized(&dir.path().join("elsewhere"), end, 100)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("value files end at byte 0"), "{err}");
    Ok(())
}

#[test]
fn a_long_log_keeps_only_a_few_files_open() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let log = ValueLog::open_sized(dir.path(), 0, 100)?.0;
    let ptrs: Vec<ValuePtr> = (0..200u8)
        .map(|n| log.append(&[n; 60]))
        .collect::<Result<_, _>>()?;
    log.sync()?;
    // Read back in an order that keeps leaving the open files behind.
    for round in 0..2 {
        for (n, ptr) in ptrs.iter().enumerate().rev().skip(round) {
            assert_eq!(log.read(*ptr)?, vec![n as u8; 60]);
        }
    }
    let readers = log.readers.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(
        readers.open.len(),
        OPEN_FILES,
        "200 files, {OPEN_FILES} open"
    );
    assert!(readers.open.contains_key(&0), "the last used stays open");
    Ok(())
}

#[test]
fn a_flipped_byte_is_reported_not_returned() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let log = ValueLog::open(dir.path(), 0)?.0;
    let ptr = log.append(b"bulletins")?;
    log.sync()?;
    let path = dir.path().join(DIR).join(file_name(0));
    let file = open_file(&path, false)?;
    file.write_all_at(b"B", ptr.offset)
        .map_err(|e| io(&path, e))?;
    let err = log.read(ptr).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    Ok(())
}

#[test]
fn batches_after_the_engines_end_are_read_back_up_to_the_first_torn_frame() -> Result<(), StoreError>
{
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let (log, none) = ValueLog::open_sized(dir.path(), 0, 100)?;
    assert!(none.is_empty());
    let kept = log.end();
    // Three commits, the second across the start of a file; the engine kept none.
    let a = log.append(&[1; 30])?;
    let first = log.append_batch(b"batch one")?;
    log.append(&[2; 60])?;
    let second = log.append_batch(b"batch two")?;
    let torn = log.append(&[3; 20])?;
    log.append_batch(b"batch three")?;
    log.sync()?;
    drop(log);
    // The third commit's value did not reach the disk whole.
    let path = dir.path().join(DIR).join(file_name(second));
    let file = open_file(&path, false)?;
    file.write_all_at(&[0], torn.offset - second + 3)
        .map_err(|e| io(&path, e))?;
    let (log, replays) = ValueLog::open_sized(dir.path(), kept, 100)?;
    let read: Vec<(&[u8], u64)> = replays.iter().map(|r| (&r.batch[..], r.end)).collect();
    assert_eq!(
        read,
        [(&b"batch one"[..], first), (&b"batch two"[..], second)]
    );
    assert_eq!(log.end(), second, "cut after the last whole batch");
    assert_eq!(log.read(a)?, vec![1; 30]);
    // The engine kept the first: only the second is applied again.
    drop(log);
    let (_, replays) = ValueLog::open_sized(dir.path(), first, 100)?;
    assert_eq!(replays.iter().map(|r| r.end).collect::<Vec<_>>(), [second]);
    Ok(())
}

#[test]
fn a_failed_commit_is_cut_off_even_across_a_new_file() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let (log, _) = ValueLog::open_sized(dir.path(), 0, 100)?;
    log.append(&[1; 30])?;
    let kept = log.append_batch(b"kept")?;
    // Within one file, then past its end into a new one.
    for size in [10, 90] {
        log.append(&[9; 40])?;
        log.append(&vec![9; size])?;
        log.append_batch(b"failed")?;
        log.sync()?;
        log.roll_back(kept);
        assert_eq!(log.end(), kept);
    }
    let b = log.append(b"after")?;
    let end = log.append_batch(b"next")?;
    log.sync()?;
    assert_eq!(log.read(b)?, b"after");
    drop(log);
    let (log, replays) = ValueLog::open_sized(dir.path(), 0, 100)?;
    let read: Vec<&[u8]> = replays.iter().map(|r| &r.batch[..]).collect();
    assert_eq!(read, [&b"kept"[..], &b"next"[..]]);
    assert_eq!(log.end(), end);
    Ok(())
}

#[test]
fn the_file_is_zeroed_ahead_so_a_sync_within_it_keeps_its_size() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let (log, _) = ValueLog::open(dir.path(), 0)?;
    log.append(&[1; 100])?;
    let first = log.append_batch(b"one")?;
    log.sync()?;
    let path = dir.path().join(DIR).join(file_name(0));
    let size = || {
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| io(&path, e))
    };
    let zeroed = size()?;
    assert!(zeroed >= first + ZEROED_AHEAD / 2, "{zeroed} bytes");
    log.append(&[2; 100])?;
    let second = log.append_batch(b"two")?;
    log.sync()?;
    assert_eq!(size()?, zeroed, "a commit within the zeros leaves the size");
    drop(log);
    // Reading back stops at the zeros.
    let (log, replays) = ValueLog::open(dir.path(), 0)?;
    assert_eq!(
        replays.iter().map(|r| r.end).collect::<Vec<_>>(),
        [first, second]
    );
    // As commits use the zeros up, more are written ahead, never far ahead.
    for _ in 0..200 {
        log.append(&[3; 10_000])?;
        log.sync()?;
        let ahead = size()? - log.end();
        assert!(
            (ZEROED_AHEAD / 2..=ZEROED_AHEAD * 3 / 2).contains(&ahead),
            "{ahead}"
        );
    }
    drop(log);
    // Nor past a file's size limit.
    let small = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
    let (log, _) = ValueLog::open_sized(small.path(), 0, 100)?;
    log.append(&[4; 10])?;
    log.sync()?;
    let path = small.path().join(DIR).join(file_name(0));
    assert_eq!(
        std::fs::metadata(&path).map_err(|e| io(&path, e))?.len(),
        100
    );
    Ok(())
}

#[test]
fn pointers_round_trip_and_other_lengths_are_refused() {
    let p = ValuePtr {
        offset: 1 << 40,
        len: 70_000,
        crc: 0xdead_beef,
    };
    assert_eq!(ValuePtr::decode(&p.encode()), Some(p));
    assert_eq!(ValuePtr::decode(&p.encode()[..15]), None);
}
