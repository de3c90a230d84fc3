//! The storage thread's tests: its errors as peers hear them, the free-space guard,
//! and the gap record that names what a failed commit lost.

use super::*;

#[test]
fn a_storage_failure_has_one_wire_code_and_tells_a_peer_what_to_do_not_why() {
    use crate::proto::ErrorCode;
    let corrupt = || StoreError::Corrupt {
        key: "s/7".into(),
        why: "the segment does not decode".into(),
    };
    let cases = [
        (StorageError::Stopped, ErrorCode::ShuttingDown, "stopping"),
        (
            StorageError::of(corrupt()),
            ErrorCode::Internal,
            "could not store it",
        ),
        (
            StorageError::Failed(Cause::new(std::io::Error::other("disk full"))),
            ErrorCode::Internal,
            "could not store it",
        ),
        (
            StorageError::NotDurable(Cause::new(std::io::Error::other("fsync"))),
            ErrorCode::Internal,
            "DUPLICATE means it was kept",
        ),
    ];
    for (e, code, says) in cases {
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_peer().contains(says), "{e}: {}", e.to_peer());
        assert!(!e.to_peer().contains("s/7") && !e.to_peer().contains("disk full"));
    }
    assert!(matches!(
        StorageError::of(corrupt()),
        StorageError::Corrupt(_)
    ));
}

fn writer(dir: &std::path::Path) -> Writer {
    let node: PartnerId = "jp-mod".parse().expect("an id");
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    Writer {
        store: Arc::new(Store::open(dir, 8 << 20).expect("a store")),
        head: watch::channel(0).0,
        max_batch: 16,
        commit_target: std::time::Duration::from_millis(2),
        signer: CheckpointSigner::new(&crate::node::audit_origin(&node), key).expect("a signer"),
        checkpoint_every: 1000,
        commit_latency: Default::default(),
        node,
        data_dir: dir.to_owned(),
        reserve: 0,
        space: Default::default(),
    }
}

/// A bulletin, an event, and the answer the bulletin got if `make_room` refused it.
fn room_for_both(
    w: &Writer,
    guard: &mut SpaceGuard,
    lost: &mut Lost,
) -> (Vec<Entry>, Option<Result<Outcome, StorageError>>) {
    let (tx, mut rx) = oneshot::channel();
    let bulletin = crate::store::tests::new(1, "us-dod", &["jp-cdc"]);
    let (event, done) = event(9);
    let mut entries = vec![Entry::Bulletin(bulletin), event];
    let mut replies = vec![Waiter::Bulletin(tx), done];
    make_room(w, guard, &mut entries, &mut replies, lost);
    assert_eq!(entries.len(), replies.len());
    (entries, rx.try_recv().ok())
}

#[test]
fn below_the_reserve_bulletins_are_refused_and_events_still_recorded() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut w = writer(dir.path());
    let free = space::free_bytes(dir.path()).expect("free space");
    let mut lost = Lost::default();
    // Room to spare: all is kept, nothing recorded about space.
    w.reserve = free / 8;
    let mut guard = SpaceGuard::new(w.reserve);
    let (entries, answer) = room_for_both(&w, &mut guard, &mut lost);
    assert_eq!((entries.len(), answer), (2, None));
    // The reserve is above what is free: the change is recorded first, the
    // bulletin refused with the full-disk code, the event kept.
    w.reserve = free.saturating_mul(2);
    let mut guard = SpaceGuard::new(w.reserve);
    let (entries, answer) = room_for_both(&w, &mut guard, &mut lost);
    assert!(
        matches!(answer, Some(Err(StorageError::Full(_)))),
        "{answer:?}"
    );
    assert_eq!(entries.len(), 2);
    assert!(
        matches!(&entries[0], Entry::Event(Some(e), None) if e.record().reason.starts_with("STORAGE FULL"))
    );
    assert!(matches!(&entries[1], Entry::Event(Some(_), None)));
    assert!(w.space.full.load(std::sync::atomic::Ordering::Relaxed));
    // In the last quarter of the reserve nothing is written; the events are lost
    // and counted for the gap record.
    w.reserve = u64::MAX;
    let mut guard = SpaceGuard::new(w.reserve);
    let (entries, answer) = room_for_both(&w, &mut guard, &mut lost);
    assert!(matches!(answer, Some(Err(StorageError::Full(_)))));
    assert!(entries.is_empty());
    assert_eq!(lost.events, 2, "the STORAGE FULL record and the event");
}

fn event(n: u64) -> (Entry, Waiter) {
    let partner: PartnerId = "us-dod".parse().expect("an id");
    (
        Entry::Event(Some(Event::delivered(&partner, vec![n])), None),
        Waiter::Event(None),
    )
}

fn batch(range: std::ops::Range<u64>) -> (Vec<Entry>, Vec<Waiter>) {
    range.map(event).unzip()
}

#[test]
fn events_a_failed_commit_loses_are_named_by_a_gap_record() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = writer(dir.path());
    let mut lost = Lost::default();
    let (e, r) = batch(0..2);
    commit(&w, e, r, &mut lost);
    // The disk is full for two commits: three events, then two more, are lost.
    w.store
        .fail_commits
        .store(2, std::sync::atomic::Ordering::Relaxed);
    let (e, r) = batch(2..5);
    commit(&w, e, r, &mut lost);
    let (e, r) = batch(5..7);
    commit(&w, e, r, &mut lost);
    assert_eq!(lost.events, 5);
    // The injected failure is a full disk, and says so to a publisher.
    let full = StorageError::of(StoreError::Values {
        path: dir.path().to_owned(),
        source: std::io::ErrorKind::StorageFull.into(),
    });
    assert_eq!(full.code(), crate::proto::ErrorCode::StorageFull);
    assert!(
        full.to_peer().contains("disk is full"),
        "{}",
        full.to_peer()
    );
    let (e, r) = batch(7..8);
    commit(&w, e, r, &mut lost);
    assert_eq!(lost.events, 0, "named, so no longer pending");

    let records: Vec<crate::proto::AuditRecord> = (0..4)
        .map(|seq| w.store.audit().record(seq).expect("reads").expect("there"))
        .map(|b| prost::Message::decode(b).expect("a record"))
        .collect();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].bulletin_seqs, [0]);
    assert_eq!(records[1].bulletin_seqs, [1]);
    assert_eq!(records[2].event, crate::proto::AuditEvent::Operator as i32);
    assert!(
        records[2]
            .reason
            .starts_with("GAP: 5 audit event(s) could not be recorded"),
        "{}",
        records[2].reason
    );
    assert_eq!(records[3].bulletin_seqs, [7], "then the log goes on");
    assert!(w.store.audit().record(4).expect("reads").is_none());
}

fn lazy(n: u64) -> Request {
    let partner: PartnerId = "us-dod".parse().expect("an id");
    Request::Event {
        event: Some(Event::delivered(&partner, vec![n])),
        cursor: None,
        done: None,
    }
}

fn timer() -> tokio::runtime::Runtime {
    own_timer().expect("a timer")
}

#[test]
fn records_nobody_waits_on_linger_until_a_request_someone_waits_on_comes() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut waiting = staging::Staging::default();
    waiting.push(lazy(1));
    let (done, _heard) = oneshot::channel();
    let awaited = Request::Event {
        event: Some(Event::delivered(&"us-dod".parse().expect("an id"), vec![2])),
        cursor: None,
        done: Some(done),
    };
    for r in [lazy(3), awaited, lazy(4)] {
        assert!(tx.try_send(r).is_ok());
    }
    linger(&timer(), &mut rx, &mut waiting);
    assert!(waiting.awaited());
    assert_eq!(waiting.len(), 3, "taken up to the one awaited, no further");
    // With every sender gone it stops lingering at once.
    drop(tx);
    let mut alone = staging::Staging::default();
    alone.push(lazy(5));
    linger(&timer(), &mut rx, &mut alone);
    assert_eq!((alone.len(), alone.awaited()), (2, false));
}

#[test]
fn records_nobody_waits_on_are_committed_without_anyone_asking() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = writer(dir.path());
    let store = w.store.clone();
    let (tx, rx) = mpsc::channel(8);
    let thread = spawn(w, rx).expect("the storage thread");
    assert!(tx.try_send(lazy(1)).is_ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.audit_progress().0 == 0 {
        assert!(std::time::Instant::now() < deadline, "never committed");
        std::thread::yield_now();
    }
    drop(tx);
    thread.join().expect("it ends");
    let record = store.audit().record(0).expect("reads").expect("there");
    let record: crate::proto::AuditRecord = prost::Message::decode(record).expect("a record");
    assert_eq!(record.bulletin_seqs, [1]);
}
