use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::merkle::{self, MemoryTree};
use crate::audit::record::Event;
use crate::audit::Query;
use crate::identity::PartnerId;
use crate::metrics;
use crate::proto::{self, AuditEvent};
use crate::store::{kv, Cursor, Entry, Store};
use crate::timestamp::Timestamp;
use prost::Message as _;

const DAY0: u64 = 1_790_000_000_000;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

pub(super) fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, 16 << 20).unwrap()
}

/// Commits `n` delivered-events, record i for partner `p{i % partners}`.
pub(super) fn append(store: &Store, from: u64, n: u64, partners: u64, now: Timestamp) {
    let entries = (from..from + n)
        .map(|i| {
            let partner = pid(&format!("p{}", i % partners));
            Entry::Event(Some(Event::delivered(&partner, vec![i])), None)
        })
        .collect();
    store.commit(entries, now).unwrap();
}

fn decode(bytes: &[u8]) -> proto::AuditRecord {
    proto::AuditRecord::decode(bytes).unwrap()
}

pub(super) fn signer() -> CheckpointSigner {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    CheckpointSigner::new("renkei/jp-mod/audit", key).unwrap()
}

#[test]
fn records_are_gapless_and_their_tree_is_the_one_an_independent_rebuild_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Batches of odd sizes, so hash chunks (256 hashes) fill and split mid-batch.
    let mut n = 0;
    for (i, size) in [1u64, 2, 3, 100, 129, 1, 300, 7].into_iter().enumerate() {
        append(&store, n, size, 3, Timestamp::from_unix_ms(DAY0 + i as u64));
        n += size;
    }
    // A cursor alone moves no record.
    let cursor = Entry::Event(None, Some((pid("p1"), Cursor::default())));
    store
        .commit(vec![cursor], Timestamp::from_unix_ms(DAY0))
        .unwrap();
    let log = store.audit();
    assert_eq!(log.size().unwrap(), n);

    let mut rebuilt = MemoryTree::new();
    for (i, r) in log.records_from(0).enumerate() {
        let r = r.unwrap();
        assert_eq!(decode(&r).seq, i as u64, "gapless, in order");
        rebuilt.push(&r).unwrap();
    }
    assert_eq!(rebuilt.size(), n);
    for size in [1, 2, 3, 6, 106, 235, 236, 536, n] {
        assert_eq!(
            log.root(size).unwrap(),
            rebuilt.root(size).unwrap(),
            "size {size}"
        );
    }
    let root = log.root(n).unwrap();
    for seq in [0, 1, 255, 256, 300, n - 1] {
        let proof = log.prove_inclusion(n, seq).unwrap();
        let leaf = merkle::leaf_hash(&log.record(seq).unwrap().unwrap());
        merkle::check_inclusion(&proof, n, root, seq, leaf).unwrap();
    }
    let proof = log.prove_consistency(n, 106).unwrap();
    merkle::check_consistency(&proof, n, root, 106, rebuilt.root(106).unwrap()).unwrap();
    // Records later than the clock's step back keep the last time.
    append(&store, n, 1, 3, Timestamp::from_unix_ms(DAY0 - 5_000));
    let last = decode(&log.record(n).unwrap().unwrap());
    assert_eq!(last.time_unix_ms, DAY0 + 7, "time never goes back");
}

#[test]
fn a_query_by_partner_reads_only_the_records_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    const TOTAL: u64 = 100_000;
    for (batch, from) in (0..TOTAL).step_by(1_000).enumerate() {
        // One minute per batch: the time index has 100 distinct points.
        let now = Timestamp::from_unix_ms(DAY0 + batch as u64 * 60_000);
        append(&store, from, 1_000, 10, now);
    }
    let log = store.audit();
    assert_eq!(log.size().unwrap(), TOTAL);
    let mut q = Query {
        partner: Some(pid("p3")),
        limit: 100,
        ..Query::default()
    };
    let page = log.query(&q).unwrap();
    assert_eq!(page.records.len(), 100);
    assert_eq!(page.records_read, 100, "no scan: only what it returns");
    let seqs: Vec<u64> = page.records.iter().map(|r| decode(r).seq).collect();
    assert_eq!(seqs, (0..100).map(|i| 3 + 10 * i).collect::<Vec<_>>());
    assert_eq!(page.next_after, Some(1_002), "the next match is 1,003");

    // The cursor pages on, again at the cost of the page.
    q.after = page.next_after;
    let next = log.query(&q).unwrap();
    assert_eq!(decode(&next.records[0]).seq, 1_003);
    assert_eq!(next.records_read, 100);

    // A time range deep in the log starts there, not at the beginning.
    let q = Query {
        partner: Some(pid("p7")),
        since: Some(Timestamp::from_unix_ms(DAY0 + 50 * 60_000)),
        until: Some(Timestamp::from_unix_ms(DAY0 + 50 * 60_000)),
        limit: 1_000,
        ..Query::default()
    };
    let page = log.query(&q).unwrap();
    assert_eq!(page.records.len(), 100, "one batch of 1,000, one in ten");
    assert_eq!(decode(&page.records[0]).seq, 50_007);
    assert_eq!(page.records_read, 100);
    assert_eq!(page.next_after, None);

    // Filters combine: the event index, checked against the partner.
    let mut q = Query {
        partner: Some(pid("p1")),
        event: Some(AuditEvent::Acked),
        limit: 10,
        ..Query::default()
    };
    let page = log.query(&q).unwrap();
    assert!(page.records.is_empty());
    assert_eq!(page.records_read, 1_000, "a page examines a bounded number");
    assert_eq!(page.next_after, Some(10_000), "and says where to go on");
    q.after = page.next_after;
    assert_eq!(log.query(&q).unwrap().records_read, 1_000);
}

#[test]
fn accepted_bulletins_are_found_by_every_partner_they_were_decided_for() {
    use crate::bulletin::BulletinId;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = BulletinId::parse_canonical("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b").unwrap();
    let (uk, ee) = (pid("uk-mod"), pid("ee-mod"));
    let bulletin = accepted_bulletin(id, &uk, &ee);
    let now = Timestamp::from_unix_ms(DAY0);
    store
        .commit(vec![Entry::Bulletin(bulletin.clone())], now)
        .unwrap();
    store.commit(vec![Entry::Bulletin(bulletin)], now).unwrap();
    let log = store.audit();
    let by = |q: Query| log.query(&Query { limit: 10, ..q }).unwrap().records.len();
    let partner = |p: &PartnerId| Query {
        partner: Some(p.clone()),
        ..Query::default()
    };
    assert_eq!(by(partner(&uk)), 1, "shared with uk-mod");
    assert_eq!(
        by(partner(&ee)),
        1,
        "a partner's records include what was withheld from it"
    );
    assert_eq!(by(partner(&pid("us-dod"))), 2, "accepted, then duplicate");
    let about = Query {
        bulletin: Some(id),
        ..Query::default()
    };
    assert_eq!(by(about.clone()), 2);
    let dup = Query {
        event: Some(AuditEvent::BulletinDuplicate),
        ..about
    };
    let page = log.query(&Query { limit: 10, ..dup }).unwrap();
    let r = decode(&page.records[0]);
    assert_eq!((r.seq, r.bulletin_seqs.as_slice()), (1, &[1u64][..]));

    assert_counters_equal_a_recount(&store);
    assert_withheld_partners_are_reindexed_on_open(dir.path(), store, &ee);
}

#[test]
fn a_commit_that_fails_moves_no_counter() {
    use crate::bulletin::BulletinId;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (uk, ee) = (pid("uk-mod"), pid("ee-mod"));
    let now = Timestamp::from_unix_ms(DAY0);
    let commit = |id: &str| {
        let id = BulletinId::parse_canonical(id).unwrap();
        let bulletin = accepted_bulletin(id, &uk, &ee);
        store.commit(vec![Entry::Bulletin(bulletin)], now)
    };
    commit("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a81").unwrap();
    // The disk fills after this commit's records and counters were planned.
    store
        .fail_commits
        .store(1, std::sync::atomic::Ordering::Relaxed);
    assert!(commit("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a82").is_err());
    commit("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a83").unwrap();
    assert_eq!(store.audit_progress().0, 2);
    let recount = recount(&store);
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount);
    let day = metrics::day_of(DAY0);
    assert!(recount.contains(&(day, "uk-mod".into(), "shared.exercise".into(), 2)));
}

/// Builds bulletin `id` from us-dod, accepted: shared with `uk`, withheld from `ee`.
fn accepted_bulletin(
    id: crate::bulletin::BulletinId,
    uk: &PartnerId,
    ee: &PartnerId,
) -> crate::store::NewBulletin {
    use crate::bulletin::{Digest, Header, Kind, Tlp};
    use crate::policy::{Decision, Withhold};
    let header = Header {
        id,
        origin: pid("us-dod"),
        created: Timestamp::from_unix_ms(DAY0),
        tlp: Tlp::Amber,
        kind: Kind::Exercise,
        tags: vec![],
        audience: vec![],
    };
    let withheld = Decision::Withhold(Withhold::KindNotShared(Kind::Exercise));
    let event = Event::accepted(
        &pid("us-dod"),
        &header,
        Digest([1; 32]),
        [(uk, &Decision::Share), (ee, &withheld)],
    );
    crate::store::NewBulletin {
        signed: crate::proto::SignedBulletin {
            bulletin: bytes::Bytes::from_static(b"signed"),
            ..Default::default()
        },
        digest: Digest([1; 32]),
        origin: pid("us-dod"),
        id,
        received_from: pid("us-dod"),
        shared_with: vec![uk.clone()],
        path: Vec::new(),
        relayed: false,
        audit: event,
    }
}

/// What every record of `store`'s log adds up to, as counter rows.
pub(super) fn recount(store: &Store) -> Vec<metrics::Row> {
    let records: Vec<_> = store
        .audit()
        .records_from(0)
        .map(|r| decode(&r.unwrap()))
        .collect();
    metrics::aggregate(&records)
        .into_iter()
        .map(|((d, p, n), v)| (d, p, n, v))
        .collect()
}

/// Checks that the counters moved with the records equal a recount of them.
fn assert_counters_equal_a_recount(store: &Store) {
    let recount = recount(store);
    assert_eq!(store.counted(u32::MAX).unwrap().rows, recount);
    assert!(recount.contains(&(
        metrics::day_of(DAY0),
        "uk-mod".into(),
        "shared.exercise".into(),
        1
    )));
}

/// Unfiles `ee`'s records from the partner index and checks a reopen files them again.
fn assert_withheld_partners_are_reindexed_on_open(
    dir: &std::path::Path,
    store: Store,
    ee: &PartnerId,
) {
    // A log indexed before withheld partners were: opening it files them too.
    let ee_prefix = super::partner_prefix("ee-mod");
    for kv in store.state.scan_prefix(&ee_prefix) {
        store.state.remove(kv.unwrap().0).unwrap();
    }
    store
        .state
        .insert(super::INDEX_KEY, &1u64.to_be_bytes()[..])
        .unwrap();
    let q = Query {
        partner: Some(ee.clone()),
        limit: 10,
        ..Query::default()
    };
    assert_eq!(store.audit().query(&q).unwrap().records.len(), 0);
    drop(store);
    let store = open(dir);
    assert_eq!(
        store.audit().query(&q).unwrap().records.len(),
        1,
        "reindexed"
    );
}

#[test]
fn a_reopened_log_goes_on_from_its_checkpoint_and_refuses_one_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let origin = "renkei/jp-mod/audit";
    {
        let store = open(dir.path());
        assert_eq!(store.sign_checkpoint(&signer()).unwrap(), None, "empty");
        append(&store, 0, 300, 4, Timestamp::from_unix_ms(DAY0));
        assert_eq!(store.sign_checkpoint(&signer()).unwrap(), Some(300));
        assert_eq!(store.sign_checkpoint(&signer()).unwrap(), None, "no growth");
        store.audit().check_checkpoint(origin, &key).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.audit_progress(), (300, 300));
    append(&store, 300, 5, 4, Timestamp::from_unix_ms(DAY0));
    assert_eq!(store.sign_checkpoint(&signer()).unwrap(), Some(305));
    let log = store.audit();
    log.check_checkpoint(origin, &key).unwrap();
    let sizes: Vec<u64> = log.checkpoints().map(|c| c.unwrap().0).collect();
    assert_eq!(sizes, [300, 305]);
    // Another key, or another log name, is not this node's checkpoint.
    let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
    let err = log
        .check_checkpoint(origin, &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("put the previous key back"), "{err}");
    assert!(log.check_checkpoint("renkei/us-dod/audit", &key).is_err());
    // Rewritten stored hashes make the tree disagree with what was signed.
    for (k, chunk) in inline_chunks(&store) {
        let flipped: Vec<u8> = chunk.iter().map(|b| b ^ 1).collect();
        store.state.insert(k, flipped).unwrap();
    }
    let err = log.check_checkpoint(origin, &key).unwrap_err().to_string();
    assert!(err.contains("but the node signed"), "{err}");
    // Reopening refuses it before anything is appended or signed.
    drop(store);
    let err = Store::open(dir.path(), 16 << 20).err().unwrap().to_string();
    assert!(err.contains("but the node signed"), "{err}");
}

/// A report names the log it counted. Read while a writer appends, every
/// `counted` answer is exactly what its first `size` records add up to, with their root.
#[test]
fn counters_read_under_appends_are_those_of_the_log_size_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for batch in 0..200 {
                append(&store, batch * 7, 7, 5, Timestamp::from_unix_ms(DAY0));
            }
        })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() || seen.is_empty() {
        seen.push(store.counted(u32::MAX).unwrap());
    }
    writer.join().unwrap();
    let log = store.audit();
    let mut tree = MemoryTree::new();
    let records: Vec<_> = log.records_from(0).map(Result::unwrap).collect();
    for counted in seen {
        let first = &records[..counted.size as usize];
        let decoded: Vec<_> = first.iter().map(|b| decode(b)).collect();
        let summed: Vec<metrics::Row> = metrics::aggregate(&decoded)
            .into_iter()
            .map(|((d, p, n), v)| (d, p, n, v))
            .collect();
        assert_eq!(counted.rows, summed, "the rows of {} records", counted.size);
        while tree.size() < counted.size {
            tree.push(&records[tree.size() as usize]).unwrap();
        }
        assert_eq!(counted.root, tree.root(counted.size).unwrap());
    }
}

/// Each `h/` key with the hashes its value points at in the value files.
fn inline_chunks(store: &Store) -> Vec<(kv::Value, Vec<u8>)> {
    store
        .state
        .scan_prefix(super::HASHES)
        .map(|kv| {
            let (k, v) = kv.unwrap();
            assert_eq!(v.len(), 16, "a pointer into the value files");
            let chunk = store.values.resolve(&k, &v).unwrap();
            (k, chunk)
        })
        .collect()
}

/// A Merkle tree of every record in `store`'s log, built apart from the store.
fn independent_tree(store: &Store) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for r in store.audit().records_from(0) {
        tree.push(&r.unwrap()).unwrap();
    }
    tree
}

/// Marks `store` as of layout `n`, as an earlier renkei left it.
pub(super) fn set_layout(store: &Store, n: u64) {
    store.state.insert(b"m/format", n.to_be_bytes()).unwrap();
}

/// The layout `store` is marked with.
pub(super) fn layout(store: &Store) -> u64 {
    let v = store.state.get(b"m/format").unwrap().unwrap();
    u64::from_be_bytes(v[..].try_into().unwrap())
}

/// The lengths of the chunks the `h/` values point at, by chunk.
fn stored_chunk_lengths(store: &Store) -> Vec<usize> {
    inline_chunks(store).iter().map(|(_, c)| c.len()).collect()
}

#[test]
fn a_layout_3_store_with_its_hashes_inline_is_read_and_marked_as_this_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 0, 300, 2, Timestamp::from_unix_ms(DAY0));
    let root = store.audit().root(300).unwrap();
    let proof = store.audit().prove_inclusion(300, 7).unwrap();
    // What layout 3 kept: each full chunk's hashes in the database itself.
    let chunks = inline_chunks(&store);
    assert!(!chunks.is_empty());
    for (k, chunk) in chunks {
        store.state.insert(k, chunk).unwrap();
    }
    set_layout(&store, 3);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.audit().root(300).unwrap(), root);
    assert_eq!(store.audit().prove_inclusion(300, 7).unwrap(), proof);
    assert_eq!(layout(&store), crate::store::FORMAT);
    // And it goes on, new chunks written the layout-4 way beside the old ones.
    append(&store, 300, 300, 2, Timestamp::from_unix_ms(DAY0 + 1));
    let tree = independent_tree(&store);
    assert_eq!(store.audit().root(600).unwrap(), tree.root(600).unwrap());
}

#[test]
fn hash_chunks_are_written_once_full_and_the_rest_is_rebuilt_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut rebuilt = MemoryTree::new();
    let mut n = 0;
    for round in 0..3u64 {
        let store = open(dir.path());
        for (i, size) in [1u64, 5, 130, 2, 61, 3].into_iter().enumerate() {
            append(
                &store,
                n,
                size,
                2,
                Timestamp::from_unix_ms(DAY0 + round * 10 + i as u64),
            );
            n += size;
            let chunks = stored_chunk_lengths(&store);
            assert!(chunks.iter().all(|l| *l == 256 * 32), "{chunks:?}");
            assert_eq!(chunks.len() as u64, merkle::stored_count(n) / 256);
        }
        let log = store.audit();
        for r in log.records_from(rebuilt.size()) {
            rebuilt.push(&r.unwrap()).unwrap();
        }
        // Readers find every hash, those past the last full chunk included.
        for size in [1, n / 2, n - 1, n] {
            assert_eq!(
                log.root(size).unwrap(),
                rebuilt.root(size).unwrap(),
                "size {size}"
            );
        }
        let proof = log.prove_inclusion(n, n - 1).unwrap();
        let leaf = merkle::leaf_hash(&log.record(n - 1).unwrap().unwrap());
        merkle::check_inclusion(&proof, n, log.root(n).unwrap(), n - 1, leaf).unwrap();
        store.sign_checkpoint(&signer()).unwrap();
    }
}

#[test]
fn a_layout_2_store_is_read_with_its_partial_chunk_checked_against_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 0, 40, 2, Timestamp::from_unix_ms(DAY0));
    let root = store.audit().root(40).unwrap();
    // Write what layout 2 kept: the partial chunk of the first 40 records' hashes.
    let tree = independent_tree(&store);
    let partial: Vec<u8> = (0..merkle::stored_count(40))
        .flat_map(|i| merkle::HashStore::hashes(&tree, &[i]).unwrap()[0].0)
        .collect();
    let key = crate::store::seq_key(super::HASHES, 0);
    store.state.insert(&key, partial.clone()).unwrap();
    set_layout(&store, 2);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.audit().root(40).unwrap(), root);
    assert_eq!(layout(&store), crate::store::FORMAT);
    // A partial chunk that disagrees with the records is refused, not trusted.
    let mut wrong = partial;
    wrong[0] ^= 1;
    store.state.insert(&key, wrong).unwrap();
    drop(store);
    let err = Store::open(dir.path(), 16 << 20)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("disagree with the records"), "{err}");
}
