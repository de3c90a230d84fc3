use super::super::tests::{append, layout, open, recount, set_layout, signer};
use super::{COUNTED, UNSAVED_RECORDS};
use crate::store::{backup, be_u64, kv, Store};
use crate::timestamp::Timestamp;

const DAY0: u64 = 1_790_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(DAY0)
}

/// The counter rows saved in the engine, without those not saved yet.
fn saved_rows(store: &Store) -> Vec<crate::metrics::Row> {
    store
        .state
        .scan_prefix(super::COUNTERS)
        .map(|kv| {
            let (k, v) = kv.unwrap();
            super::row(&k, be_u64(&k, &v).unwrap()).unwrap()
        })
        .collect()
}

/// The log size the saved counters count.
fn counted_at(store: &Store) -> u64 {
    be_u64(COUNTED, &store.state.get(COUNTED).unwrap().unwrap()).unwrap()
}

/// Every counter summed over days, from a recount: what monitoring should show.
fn recounted_totals(store: &Store) -> std::collections::BTreeMap<(String, String), u64> {
    let mut totals = std::collections::BTreeMap::new();
    for (_, partner, name, value) in recount(store) {
        *totals.entry((partner, name)).or_default() += value;
    }
    totals
}

#[test]
fn commits_leave_counters_unsaved_and_a_checkpoint_saves_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for batch in 0..20 {
        append(&store, batch * 5, 5, 3, now());
    }
    assert!(saved_rows(&store).is_empty(), "no commit wrote a counter");
    assert_eq!(counted_at(&store), 0);
    // Yet every report counts every record, and monitoring too.
    let counted = store.counted(u32::MAX).unwrap();
    assert_eq!((counted.rows, counted.size), (recount(&store), 100));
    assert_eq!(store.counter_totals(), recounted_totals(&store));

    store.sign_checkpoint(&signer()).unwrap();
    assert_eq!(saved_rows(&store), recount(&store));
    assert_eq!(counted_at(&store), 100);
    append(&store, 100, 5, 3, now());
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount(&store));
}

#[test]
fn a_store_opened_after_unsaved_commits_recounts_only_those() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        append(&store, 0, 40, 4, now());
        store.sign_checkpoint(&signer()).unwrap();
        append(&store, 40, 30, 6, now());
    }
    let store = open(dir.path());
    assert_eq!(counted_at(&store), 40);
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount(&store));
    assert_eq!(store.counter_totals(), recounted_totals(&store));
    // Going on from the recount, nothing is counted twice.
    append(&store, 70, 10, 6, now());
    store.sign_checkpoint(&signer()).unwrap();
    assert_eq!(saved_rows(&store), recount(&store));
}

/// A checkpoint's save, then commits the engine lost in a power cut (the value files
/// kept them): the commits are applied again and counted once.
#[test]
fn commits_the_engine_lost_after_a_save_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join(kv::DIR);
    let kept = dir.path().join("engine-before");
    {
        let store = open(dir.path());
        append(&store, 0, 10, 2, now());
        store.sign_checkpoint(&signer()).unwrap();
    }
    backup::copy_dir(&engine, &kept).unwrap();
    {
        let store = open(dir.path());
        append(&store, 10, 10, 3, now());
        append(&store, 20, 10, 4, now());
    }
    std::fs::remove_dir_all(&engine).unwrap();
    backup::copy_dir(&kept, &engine).unwrap();
    let store = open(dir.path());
    assert_eq!(store.audit_progress().0, 30);
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount(&store));
    assert_eq!(store.counter_totals(), recounted_totals(&store));
}

#[test]
fn a_commit_saves_every_counter_once_too_many_are_unsaved() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Six hundred partners, then six hundred others: over the bound of unsaved keys.
    append(&store, 0, 600, 600, now());
    assert!(saved_rows(&store).is_empty());
    append(&store, 600, 600, 1200, now());
    assert_eq!(counted_at(&store), 1200);
    assert_eq!(saved_rows(&store), recount(&store));
}

#[test]
fn a_commit_saves_every_counter_once_too_many_records_are_uncounted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch = 1000;
    let batches = UNSAVED_RECORDS / batch + 1;
    for b in 0..batches {
        append(&store, b * batch, batch, 5, now());
    }
    let at = counted_at(&store);
    assert!(at > 0 && at <= UNSAVED_RECORDS + batch, "saved at {at}");
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount(&store));
}

/// A layout-5 store saved its counters with every commit: opened here, they count its
/// whole log, and it is marked so before this renkei commits without saving.
#[test]
fn a_layout_5_store_counts_its_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        append(&store, 0, 50, 5, now());
        store.sign_checkpoint(&signer()).unwrap();
        store.state.remove(COUNTED).unwrap();
        set_layout(&store, 5);
    }
    let store = open(dir.path());
    assert_eq!(layout(&store), crate::store::FORMAT);
    assert_eq!(counted_at(&store), 50);
    append(&store, 50, 10, 5, now());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount(&store));
}

/// Unsaved values come before, over, between and after the saved ones, in key order.
#[test]
fn a_report_merges_unsaved_counters_over_the_saved_ones_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = |partner: &str| super::counter_key(7, partner, "delivered");
    for (partner, n) in [("b", 1u64), ("d", 2), ("f", 3)] {
        store.state.insert(key(partner), n.to_be_bytes()).unwrap();
    }
    let unsaved = ["a", "d", "e", "g"].iter().map(|p| (key(p), 10)).collect();
    let rows = super::rows(&store.state.snapshot(), 8, unsaved).unwrap();
    let found: Vec<(String, u64)> = rows.into_iter().map(|(_, p, _, n)| (p, n)).collect();
    let expected = [
        ("a", 10),
        ("b", 1),
        ("d", 10),
        ("e", 10),
        ("f", 3),
        ("g", 10),
    ];
    let expected: Vec<(String, u64)> = expected.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    assert_eq!(found, expected);
    // A day from `until_day` on is left out.
    assert!(super::rows(&store.state.snapshot(), 7, vec![])
        .unwrap()
        .is_empty());
}
