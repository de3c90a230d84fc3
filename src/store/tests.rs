use bytes::Bytes;

use super::*;
use crate::bulletin::{Header, Kind, Tlp};
use crate::timestamp::Timestamp;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

/// Commits bulletins only, returning their outcomes.
fn commit(store: &Store, bulletins: Vec<NewBulletin>) -> Vec<Outcome> {
    store
        .commit(bulletins.into_iter().map(Entry::Bulletin).collect(), NOW)
        .unwrap()
        .outcomes
        .into_iter()
        .map(|o| o.unwrap())
        .collect()
}

fn save_cursor(store: &Store, partner: &PartnerId, cursor: &Cursor) {
    let entry = Entry::Event(None, Some((partner.clone(), cursor.clone())));
    let done = store.commit(vec![entry], NOW).unwrap();
    assert_eq!(done.outcomes, [None]);
}

/// A stand-in envelope (the store does not check signatures).
fn envelope(body: Vec<u8>) -> proto::SignedBulletin {
    proto::SignedBulletin {
        bulletin: Bytes::from(body),
        signature: Bytes::from_static(&[9; 64]),
        key_id: Bytes::from_static(&[3; 8]),
    }
}

pub(crate) fn new(n: u8, origin: &str, shared: &[&str]) -> NewBulletin {
    let id =
        BulletinId::parse_canonical(&format!("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a{n:02x}")).unwrap();
    let signed = envelope(vec![n; 10]);
    let header = Header {
        id,
        origin: pid(origin),
        created: NOW,
        tlp: Tlp::Green,
        kind: Kind::Indicator,
        tags: vec![],
        audience: vec![],
    };
    NewBulletin {
        audit: Event::accepted(&pid(origin), &header, Digest::of(&signed.bulletin), []),
        digest: Digest::of(&signed.bulletin),
        signed,
        origin: pid(origin),
        id,
        received_from: pid(origin),
        shared_with: shared.iter().map(|s| pid(s)).collect(),
        path: Vec::new(),
        relayed: false,
    }
}

const NOW: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);
const CACHE: u64 = 16 << 20;

#[test]
fn commits_assign_gapless_seqs_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(store.head().unwrap(), 0);
    let out = commit(
        &store,
        vec![
            new(1, "a", &["b"]),
            new(2, "a", &["c"]),
            new(1, "a", &["b"]),
        ],
    );
    assert_eq!(
        out,
        vec![
            Outcome::Accepted(1),
            Outcome::Accepted(2),
            Outcome::Duplicate(1)
        ]
    );

    let mut conflicting = new(2, "a", &["b"]);
    conflicting.signed = envelope(b"other bytes".to_vec());
    conflicting.digest = Digest::of(&conflicting.signed.bulletin);
    let out = commit(
        &store,
        vec![new(3, "a", &[]), conflicting, new(2, "a", &["c"])],
    );
    assert_eq!(out[0], Outcome::Accepted(3));
    assert!(matches!(out[1], Outcome::Conflict { seq: 2, .. }));
    assert_eq!(out[2], Outcome::Duplicate(2));
    // The same id from another origin is another bulletin.
    assert_eq!(
        commit(&store, vec![new(1, "z", &[])]),
        [Outcome::Accepted(4)]
    );
    assert_eq!(store.head().unwrap(), 4);
    let stored = store.get(2).unwrap().unwrap();
    assert_eq!(stored.signed, envelope(vec![2u8; 10]).encode_to_vec());
    assert_eq!(stored.shared_with, vec!["c".to_string()]);
    assert!(store.get(5).unwrap().is_none());
}

#[test]
fn a_partners_queue_is_what_was_shared_with_it_after_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    commit(&store, vec![new(1, "a", &["b", "c"]), new(2, "a", &["c"])]);
    commit(&store, vec![new(3, "a", &["b"]), new(4, "a", &["b", "c"])]);
    let seqs = |p: &Page| p.items.iter().map(|i| i.seq).collect::<Vec<_>>();

    let b = pid("b");
    let page = store
        .pending(&b, 0, &Cursor::default(), Room::bulletins(10))
        .unwrap();
    assert_eq!(seqs(&page), [1, 3, 4]);
    assert_eq!(page.scanned_through, 4);

    // Paging: at most `room.bulletins`, and the scan position says where to go on.
    let page = store
        .pending(&b, 0, &Cursor::default(), Room::bulletins(2))
        .unwrap();
    assert_eq!(seqs(&page), [1, 3]);
    assert_eq!(page.scanned_through, 3);
    let page = store
        .pending(&b, 3, &Cursor::default(), Room::bulletins(2))
        .unwrap();
    assert_eq!(seqs(&page), [4]);

    // A page holds the bulletins that fit in its bytes, and always one: each keeps its
    // segment in memory.
    let one = envelope(vec![1; 10]).encoded_len();
    let two = Room {
        bulletins: 10,
        bytes: 2 * one + 1,
    };
    let page = store.pending(&b, 0, &Cursor::default(), two).unwrap();
    assert_eq!(seqs(&page), [1, 3]);
    assert_eq!(page.scanned_through, 3, "4 is read again next time");
    let none = Room {
        bulletins: 10,
        bytes: 1,
    };
    let page = store.pending(&b, 0, &Cursor::default(), none).unwrap();
    assert_eq!(seqs(&page), [1]);

    // Acknowledged entries are skipped.
    let cursor = Cursor {
        acked_through: 1,
        acked_above: [4].into_iter().collect(),
    };
    save_cursor(&store, &b, &cursor);
    assert_eq!(store.cursor(&b).unwrap(), cursor);
    assert_eq!(
        seqs(&store.pending(&b, 0, &cursor, Room::bulletins(10)).unwrap()),
        [3]
    );
    assert_eq!(
        store
            .pending(&pid("nobody"), 0, &Cursor::default(), Room::bulletins(10))
            .unwrap()
            .items,
        vec![]
    );
}

#[test]
fn a_page_of_the_recent_commits_reads_from_memory_and_an_older_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    commit(&store, vec![new(1, "a", &["b", "c"]), new(2, "a", &["c"])]);
    commit(&store, vec![new(3, "a", &["b"]), new(4, "a", &["b", "c"])]);
    let (b, cursor, room) = (pid("b"), Cursor::default(), Room::bulletins(10));
    let seqs = |p: &Page| p.items.iter().map(|i| i.seq).collect::<Vec<_>>();
    let page = store.pending_in_memory(&b, 0, 4, &cursor, room).unwrap();
    assert_eq!(page.as_ref().map(seqs), Some(vec![1, 3, 4]));
    // Through the head it is given, not past it.
    let page = store.pending_in_memory(&b, 0, 3, &cursor, room).unwrap();
    assert_eq!(page.as_ref().map(seqs), Some(vec![1, 3]));
    // After a reopen the segments are on disk only: no page from memory, the same one
    // from the database, which then holds it in memory.
    drop(store);
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert!(store
        .pending_in_memory(&b, 0, 4, &cursor, room)
        .unwrap()
        .is_none());
    assert_eq!(
        seqs(&store.pending(&b, 0, &cursor, room).unwrap()),
        [1, 3, 4]
    );
    let page = store.pending_in_memory(&b, 2, 4, &cursor, room).unwrap();
    assert_eq!(page.as_ref().map(seqs), Some(vec![3, 4]));
}

#[test]
fn everything_is_still_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), CACHE).unwrap();
        commit(&store, vec![new(1, "a", &["b"]), new(2, "a", &["b"])]);
        save_cursor(
            &store,
            &pid("b"),
            &Cursor {
                acked_through: 1,
                ..Cursor::default()
            },
        );
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(store.head().unwrap(), 2);
    assert_eq!(
        store
            .lookup(&pid("a"), &new(2, "a", &[]).id)
            .unwrap()
            .map(|(s, _)| s),
        Some(2)
    );
    let cursor = store.cursor(&pid("b")).unwrap();
    assert_eq!(cursor.acked_through, 1);
    let page = store
        .pending(&pid("b"), 0, &cursor, Room::bulletins(10))
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].seq, 2);
    assert_eq!(
        commit(&store, vec![new(3, "a", &[])]),
        [Outcome::Accepted(3)]
    );
}

#[test]
fn a_head_that_disagrees_with_the_segments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), CACHE).unwrap();
        commit(&store, vec![new(1, "a", &["b"])]);
        store.state.insert(HEAD, &7u64.to_be_bytes()[..]).unwrap();
        store.flush().unwrap();
    }
    let err = Store::open(dir.path(), CACHE)
        .err()
        .expect("corruption must be refused");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(
        err.to_string()
            .contains("head is 7 but the last stored bulletin is 1"),
        "{err}"
    );
}

#[test]
fn bulletins_survive_a_reopen_after_an_interrupted_commit_and_old_layouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), CACHE).unwrap();
        commit(&store, vec![new(1, "a", &["b"])]);
        // A commit that wrote its values and died before the engine recorded them.
        store.values.append(&[0xee; 4096]).unwrap();
        store.values.sync().unwrap();
    }
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(
        store.get(1).unwrap().unwrap().signed,
        envelope(vec![1; 10]).encode_to_vec()
    );
    assert_eq!(
        commit(&store, vec![new(2, "a", &["b"])]),
        [Outcome::Accepted(2)]
    );
    let page = store
        .pending(&pid("b"), 0, &Cursor::default(), Room::bulletins(10))
        .unwrap();
    assert_eq!(page.items.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2]);
    // What an earlier renkei wrote has no layout mark.
    store.state.remove(FORMAT_KEY).unwrap();
    store.flush().unwrap();
    drop(store);
    let err = Store::open(dir.path(), CACHE)
        .err()
        .expect("must be refused");
    assert!(
        err.to_string().contains("earlier renkei (layout 1)"),
        "{err}"
    );
}

#[test]
fn a_relayed_copy_of_a_stored_bulletin_is_acknowledged_without_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(
        commit(&store, vec![new(1, "a", &["b"])]),
        [Outcome::Accepted(1)]
    );
    let records = store.audit_progress().0;
    let mut copy = new(1, "a", &["b"]);
    copy.relayed = true;
    assert_eq!(commit(&store, vec![copy]), [Outcome::Duplicate(1)]);
    assert_eq!(store.audit_progress().0, records, "nothing recorded");
    // A desk publishing it again is on the record, and so is a relayed conflict.
    assert_eq!(
        commit(&store, vec![new(1, "a", &["b"])]),
        [Outcome::Duplicate(1)]
    );
    assert_eq!(store.audit_progress().0, records + 1);
    let mut conflicting = new(1, "a", &["b"]);
    conflicting.signed = envelope(b"other bytes".to_vec());
    conflicting.digest = Digest::of(&conflicting.signed.bulletin);
    conflicting.relayed = true;
    assert!(matches!(
        commit(&store, vec![conflicting])[0],
        Outcome::Conflict { seq: 1, .. }
    ));
    assert_eq!(store.audit_progress().0, records + 2);
}

#[test]
fn its_origin_publishing_after_a_relays_copy_shares_it_with_whom_the_copy_could_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    let mut copy = new(1, "a", &["b"]);
    copy.received_from = pid("relay");
    copy.path = vec![pid("home"), pid("relay")];
    copy.relayed = true;
    assert_eq!(commit(&store, vec![copy]), [Outcome::Accepted(1)]);
    // The origin's own publish would share it with b (queued already), home and relay
    // (they have it), and c: only c is new.
    let origin = new(1, "a", &["b", "c", "home", "relay"]);
    assert_eq!(commit(&store, vec![origin]), [Outcome::Accepted(2)]);
    let again = store.get(2).unwrap().unwrap();
    assert_eq!(again.shared_with, ["c"]);
    assert_eq!(again.received_from, "a");
    assert!(again.path.is_empty());
    let (records, _) = store.audit_progress();
    let last = store.audit().record(records - 1).unwrap().unwrap();
    let last = proto::AuditRecord::decode(last).unwrap();
    assert_eq!(last.event, proto::AuditEvent::BulletinReshared as i32);
    assert!(
        last.reason.contains("now also shared with c"),
        "{}",
        last.reason
    );
    // From now on it is an ordinary duplicate, for the origin and for relays.
    assert_eq!(
        commit(&store, vec![new(1, "a", &["b", "c"])]),
        [Outcome::Duplicate(2)]
    );
    assert_eq!(store.head().unwrap(), 2);
}

#[test]
fn a_relays_copy_and_its_origins_publish_in_one_commit_still_share_what_the_origin_adds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    let mut copy = new(1, "a", &["b"]);
    copy.received_from = pid("relay");
    copy.path = vec![pid("relay")];
    copy.relayed = true;
    let origin = new(1, "a", &["b", "c"]);
    assert_eq!(
        commit(&store, vec![copy, origin]),
        [Outcome::Accepted(1), Outcome::Accepted(2)]
    );
    assert_eq!(store.get(2).unwrap().unwrap().shared_with, ["c"]);
    // A query by bulletin finds both records: the acceptance and the reshare.
    let q = crate::audit::Query {
        bulletin: Some(new(1, "a", &[]).id),
        limit: 10,
        ..Default::default()
    };
    let page = store.audit().query(&q).unwrap();
    let events: Vec<i32> = page
        .records
        .into_iter()
        .map(|r| proto::AuditRecord::decode(r).unwrap().event)
        .collect();
    assert_eq!(
        events,
        [
            proto::AuditEvent::BulletinAccepted as i32,
            proto::AuditEvent::BulletinReshared as i32
        ]
    );
}

#[test]
fn commits_the_engine_lost_are_applied_again_from_the_value_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join(kv::DIR);
    let kept = dir.path().join("engine-before");
    {
        let store = Store::open(dir.path(), CACHE).unwrap();
        commit(&store, vec![new(1, "a", &["b"])]);
    }
    backup::copy_dir(&engine, &kept).unwrap();
    let records = {
        let store = Store::open(dir.path(), CACHE).unwrap();
        commit(&store, vec![new(2, "a", &["b"]), new(3, "a", &["b"])]);
        let cursor = Cursor {
            acked_through: 2,
            ..Cursor::default()
        };
        save_cursor(&store, &pid("b"), &cursor);
        store.audit_progress().0
    };
    // A power cut: the value files kept the last two commits, the engine did not.
    std::fs::remove_dir_all(&engine).unwrap();
    backup::copy_dir(&kept, &engine).unwrap();
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(store.head().unwrap(), 3);
    assert_eq!(store.audit_progress().0, records);
    let found = store.lookup(&pid("a"), &new(3, "a", &[]).id).unwrap();
    assert_eq!(found.map(|(seq, _)| seq), Some(3));
    assert_eq!(store.cursor(&pid("b")).unwrap().acked_through, 2);
    assert_eq!(
        commit(&store, vec![new(4, "a", &["b"]), new(3, "a", &["b"])]),
        [Outcome::Accepted(4), Outcome::Duplicate(3)]
    );
    drop(store);
    // Applied once: opening again finds nothing more to apply.
    let store = Store::open(dir.path(), CACHE).unwrap();
    assert_eq!(store.head().unwrap(), 4);
}
