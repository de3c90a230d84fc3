//! The index without a store: stored bulletins in, pages out.

use bytes::Bytes;
use prost::Message as _;
use serde_json::json;

use super::*;

fn id(s: &str) -> PartnerId {
    s.parse().expect("an id")
}

/// A stored bulletin at `seq`, accepted at `seq` seconds, whose bundle holds `objects`
/// as (type, n, modified).
fn stored(seq: u64, shared: &[&str], objects: &[(&str, u32, &str)]) -> proto::StoredBulletin {
    let objects: Vec<_> = objects
        .iter()
        .map(|(t, n, modified)| {
            json!({"type": t, "spec_version": "2.1",
                   "id": format!("{t}--00000000-0000-4000-8000-{n:012}"),
                   "created": "2026-01-01T00:00:00.000Z", "modified": modified})
        })
        .collect();
    let bundle = json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects});
    let b = proto::Bulletin {
        content_type: crate::bulletin::STIX_CONTENT_TYPE.into(),
        body: Bytes::from(bundle.to_string()),
        ..Default::default()
    };
    let signed = proto::SignedBulletin {
        bulletin: b.encode_to_vec().into(),
        ..Default::default()
    };
    proto::StoredBulletin {
        seq,
        signed: signed.encode_to_vec().into(),
        accepted_unix_ms: seq * 1000,
        shared_with: shared.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn query(limit: usize) -> Query {
    Query {
        added_after: None,
        ids: vec![],
        types: vec![],
        versions: Versions::Last,
        after: None,
        limit,
    }
}

fn for_partner(p: &str) -> impl Fn(&Entry) -> bool {
    let p = id(p);
    move |e: &Entry| e.shared_with.contains(&p)
}

const V1: &str = "2026-02-01T00:00:00.000Z";
const V2: &str = "2026-03-01T00:00:00.000Z";

#[test]
fn pages_follow_next_to_the_end_without_repeating_an_object() {
    let mut index = Index::default();
    for seq in 1..=250 {
        index.add(&stored(seq, &["jp-cdc"], &[("indicator", seq as u32, V1)]));
    }
    assert_eq!(index.through(), 250);
    let visible = for_partner("jp-cdc");
    let (mut seen, mut q, mut sizes) = (Vec::new(), query(100), Vec::new());
    loop {
        let page = index.page(&q, &visible);
        sizes.push(page.positions.len());
        seen.extend(
            page.positions
                .iter()
                .map(|p| index.get(*p).expect("an entry").seq),
        );
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(seen, (1..=250).collect::<Vec<_>>());
}

#[test]
fn a_partner_sees_only_what_was_shared_with_it() {
    let mut index = Index::default();
    index.add(&stored(1, &["jp-cdc", "ee-mod"], &[("indicator", 1, V1)]));
    index.add(&stored(2, &["ee-mod"], &[("indicator", 2, V1)]));
    let plain = stored(3, &["jp-cdc"], &[]);
    let mut not_stix = plain.clone();
    not_stix.signed = proto::SignedBulletin::default().encode_to_vec().into();
    index.add(&not_stix);
    let seqs = |p: &str| -> Vec<u64> {
        let page = index.page(&query(10), &for_partner(p));
        page.positions
            .iter()
            .map(|p| index.entries[*p].seq)
            .collect()
    };
    assert_eq!(seqs("jp-cdc"), [1]);
    assert_eq!(seqs("ee-mod"), [1, 2]);
    assert_eq!(seqs("us-dod"), Vec::<u64>::new());
    assert_eq!(index.through(), 3);
}

#[test]
fn filters_by_time_id_type_and_version() {
    let mut index = Index::default();
    index.add(&stored(
        1,
        &["jp-cdc"],
        &[("indicator", 1, V1), ("malware", 2, V1)],
    ));
    index.add(&stored(2, &["jp-cdc"], &[("indicator", 1, V2)]));
    index.add(&stored(3, &["jp-cdc"], &[("indicator", 3, V1)]));
    let visible = for_partner("jp-cdc");
    let found = |q: &Query| -> Vec<(u64, String)> {
        let page = index.page(q, &visible);
        page.positions
            .iter()
            .map(|p| {
                let e = &index.entries[*p];
                (e.seq, e.version_or("").to_string())
            })
            .collect()
    };
    // The latest version of each by default; the first, or all, when asked.
    let mut q = query(10);
    assert_eq!(found(&q), [(1, V1.into()), (2, V2.into()), (3, V1.into())]);
    q.versions = Versions::First;
    assert_eq!(found(&q), [(1, V1.into()), (1, V1.into()), (3, V1.into())]);
    q.versions = Versions::All;
    assert_eq!(found(&q).len(), 4);
    let v2: crate::timestamp::Timestamp = V2.parse().expect("a time");
    q.versions = Versions::Exactly(vec![v2.unix_ms()]);
    assert_eq!(found(&q), [(2, V2.into())]);
    // By id, by type, after a time.
    let mut q = query(10);
    q.ids = vec!["indicator--00000000-0000-4000-8000-000000000001".into()];
    assert_eq!(found(&q), [(2, V2.into())]);
    let mut q = query(10);
    q.types = vec!["malware".into()];
    assert_eq!(found(&q), [(1, V1.into())]);
    // Seq 1's two objects were added at 1,000,000 and 1,000,001 µs.
    let mut q = query(10);
    q.added_after = Some(1_000_000);
    assert_eq!(found(&q), [(1, V1.into()), (2, V2.into()), (3, V1.into())]);
    q.added_after = Some(1_000_001);
    assert_eq!(found(&q), [(2, V2.into()), (3, V1.into())]);
}

#[test]
fn objects_of_one_millisecond_get_distinct_dates_and_versions_compare_as_times() {
    let mut index = Index::default();
    // Two bulletins accepted in the same millisecond; versions with and without
    // fractional seconds.
    let mut a = stored(
        1,
        &["jp-cdc"],
        &[("indicator", 1, "2026-03-01T00:00:00Z"), ("malware", 2, V1)],
    );
    let mut b = stored(
        2,
        &["jp-cdc"],
        &[("indicator", 1, "2026-03-01T00:00:00.500Z")],
    );
    a.accepted_unix_ms = 5000;
    b.accepted_unix_ms = 5000;
    index.add(&a);
    index.add(&b);
    let dates: Vec<u64> = index.entries.iter().map(|e| e.added_us).collect();
    assert_eq!(dates, [5_000_000, 5_000_001, 5_000_002]);
    // added_after the second object's date leaves exactly the third.
    let mut q = query(10);
    q.added_after = Some(5_000_001);
    assert_eq!(index.page(&q, &for_partner("jp-cdc")).positions, [2]);
    // ".500Z" is later than "00Z", though it sorts before it as text.
    let q = query(10);
    let page = index.page(&q, &for_partner("jp-cdc"));
    assert_eq!(page.positions, [1, 2]);
    // An id asked twice is served once; a `next` at the end of time does not overflow.
    let mut q = query(10);
    q.ids = vec!["malware--00000000-0000-4000-8000-000000000002".into(); 2];
    assert_eq!(index.page(&q, &for_partner("jp-cdc")).positions, [1]);
    let mut q = query(10);
    q.after = Some(usize::MAX);
    assert!(index.page(&q, &for_partner("jp-cdc")).positions.is_empty());
}

/// One object with 1,200 versions used to make a page ask about every version once
/// per version (13 s after a reload, when each answer reads the store).
#[test]
fn a_page_asks_about_each_bulletin_once_however_many_versions_an_object_has() {
    let modified: Vec<String> = (0..1_200u32)
        .map(|v| format!("2026-02-01T00:{:02}:{:02}.000Z", v / 60, v % 60))
        .collect();
    let objects: Vec<(&str, u32, &str)> = modified
        .iter()
        .map(|m| ("indicator", 1, m.as_str()))
        .collect();
    // One bulletin holding every version, then one bulletin per version.
    let mut index = Index::default();
    index.add(&stored(1, &["jp-cdc"], &objects));
    for (seq, o) in (2..).zip(&objects) {
        index.add(&stored(seq, &["jp-cdc"], &[*o]));
    }
    let bulletins = 1 + objects.len() as u64;
    let asked = std::cell::Cell::new(0u64);
    let counting = |e: &Entry| {
        asked.set(asked.get() + 1);
        e.shared_with.iter().any(|p| p.as_str() == "jp-cdc")
    };
    for (versions, served) in [
        (Versions::Last, 1),
        (Versions::First, 1),
        (Versions::All, 2 * objects.len()),
    ] {
        asked.set(0);
        let mut q = query(10_000);
        q.versions = versions.clone();
        assert_eq!(index.page(&q, &counting).positions.len(), served);
        assert!(
            asked.get() <= bulletins,
            "{versions:?}: asked {}",
            asked.get()
        );
    }
}

/// The index once held every object of every bulletin. It holds the
/// newest `most`; positions stay where they were, so a `next` from before still works.
#[test]
fn the_index_keeps_the_newest_objects_and_their_positions() {
    let mut index = Index::holding_at_most(3);
    for seq in 1..=5 {
        // Objects 1 and 2 have a second version in bulletins 4 and 5.
        let n = if seq > 3 { seq as u32 - 3 } else { seq as u32 };
        let version = if seq > 3 { V2 } else { V1 };
        index.add(&stored(seq, &["jp-cdc"], &[("indicator", n, version)]));
    }
    assert!(
        index.get(0).is_none() && index.get(1).is_none(),
        "the oldest left"
    );
    assert_eq!(index.get(4).map(|e| e.seq), Some(5));
    let seqs = |q: &Query| -> Vec<u64> {
        let page = index.page(q, &for_partner("jp-cdc"));
        page.positions
            .iter()
            .filter_map(|p| index.get(*p))
            .map(|e| e.seq)
            .collect()
    };
    // The latest version of each object still held: object 3 (seq 3), 1 and 2 (4, 5).
    assert_eq!(seqs(&query(10)), [3, 4, 5]);
    // A `next` into what left starts at the oldest held.
    let mut q = query(10);
    q.after = Some(0);
    assert_eq!(seqs(&q), [3, 4, 5]);
    q.after = Some(3);
    assert_eq!(seqs(&q), [5]);
    // An id whose every version left is gone from the index, not kept empty.
    let mut only = query(10);
    only.ids = vec!["indicator--00000000-0000-4000-8000-000000000001".into()];
    only.versions = Versions::All;
    assert_eq!(seqs(&only), [4]);
    assert!(index.by_id.values().all(|at| !at.is_empty()));
    assert_eq!(index.by_id.len(), 3);
}
