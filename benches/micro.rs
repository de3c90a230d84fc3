//! Micro-benchmarks of the pure core and the store, one per hot operation: bulletin
//! verification (single and batched), a policy decision over 50 partners, an audit
//! append, frame encoding and decoding, an audit query page and a fiscal-year report.
//! Run with `cargo bench --bench micro`; `renkei bench` measures the whole path.
//! divan (not criterion) because it builds in a fraction of the time, and every
//! `cargo test` builds the benchmarks' dependencies.

use std::hint::black_box;
use std::sync::LazyLock;

use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::Bencher;
use ed25519_dalek::{Signature, SigningKey};
use prost::Message as _;
use renkei::audit::record::Event;
use renkei::audit::Query;
use renkei::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use renkei::config::NodeConfig;
use renkei::identity::{Keyring, PartnerId, PublicKey, Validity};
use renkei::metrics::{self, Period};
use renkei::policy::{Policy, Route};
use renkei::proto;
use renkei::store::{Entry, Store};
use renkei::timestamp::Timestamp;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn signed(key: &SigningKey, origin: &str, n: usize) -> proto::SignedBulletin {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Amber.to_proto() as i32,
        kind: Kind::Indicator.to_proto() as i32,
        title: format!("indicator {n}"),
        summary: String::new(),
        tags: vec!["apt".into(), "phishing".into()],
        audience: vec!["group:nato".into()],
        content_type: "application/octet-stream".into(),
        body: Bytes::from(vec![0x42; 1024]),
        references: vec![],
    };
    bulletin::sign(&b, key, &Limits::default()).expect("signing")
}

fn main() {
    divan::main();
}

/// A 1 KiB bulletin of `us-dod`'s, and the keyring that verifies it.
static US_DOD: LazyLock<(proto::SignedBulletin, Keyring)> = LazyLock::new(|| {
    let k = key(1);
    let origin: PartnerId = "us-dod".parse().expect("id");
    let mut keyring = Keyring::new();
    keyring.insert(origin, PublicKey::of(&k), Validity::default());
    (signed(&k, "us-dod", 0), keyring)
});

mod bulletin_verification {
    use super::*;

    #[divan::bench(name = "decode and verify (1 KiB body)")]
    fn decode_and_verify(bench: Bencher) {
        let (b, keyring) = &*US_DOD;
        let limits = Limits::default();
        bench.counter(ItemsCount::new(1usize)).bench(|| {
            let u =
                UnverifiedBulletin::from_signed(black_box(b.clone()), &limits).expect("decodes");
            u.verify(keyring, Timestamp::now(), &limits)
                .expect("verifies")
        });
    }

    /// The node batches what is queued on a publish stream, up to its limit.
    #[divan::bench(name = "batch of N (one signer), the node's rule", args = [64, 256])]
    fn batch(bench: Bencher, size: usize) {
        let k = key(1);
        let items: Vec<(Vec<u8>, Signature)> = (0..size)
            .map(|n| {
                let s = signed(&k, "us-dod", n);
                let mut msg = bulletin::SIGNATURE_DOMAIN.to_vec();
                msg.extend_from_slice(&s.bulletin);
                (msg, Signature::from_slice(&s.signature).expect("64 bytes"))
            })
            .collect();
        let key = PublicKey::of(&k);
        bench.counter(ItemsCount::new(size)).bench(|| {
            let batch: Vec<_> = items.iter().map(|(m, s)| (&key, m.as_slice(), s)).collect();
            let valid = bulletin::signature::verify_many(&batch);
            assert!(valid.iter().all(|v| *v));
        });
    }
}

#[divan::bench(name = "policy: decide for 50 partners")]
fn policy(bench: Bencher) {
    let mut text = String::from(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"c\"\ntls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n",
    );
    let clearances = ["clear", "green", "amber", "amber+strict", "red"];
    for i in 0..50 {
        let groups = if i % 3 == 0 { "[\"nato\"]" } else { "[]" };
        text.push_str(&format!(
            "\n[[partner]]\nid = \"partner-{i}\"\nrole = \"liaison\"\nclearance = \"{}\"\ngroups = {groups}\ndeny_tags = [\"national-only\"]\n",
            clearances[i % 5]
        ));
    }
    let cfg = NodeConfig::parse(&text, std::path::Path::new("bench.toml")).expect("config");
    let policy = Policy::from_config(&cfg);
    let b = signed(&key(1), "partner-7", 0);
    let u = UnverifiedBulletin::from_signed(b, &Limits::default()).expect("decodes");
    let from: PartnerId = "partner-7".parse().expect("id");
    bench.bench(|| {
        policy
            .decide_all(black_box(u.header()), Route::direct(&from))
            .count()
    });
}

/// A Publish frame of a 1 KiB bulletin.
fn publish_frame() -> proto::ClientFrame {
    proto::ClientFrame {
        frame: Some(proto::client_frame::Frame::Publish(proto::Publish {
            request_id: 1,
            bulletin: Some(signed(&key(1), "us-dod", 0)),
            allow_unknown_audience: false,
            path: Vec::new(),
        })),
    }
}

mod frame_1_kib_bulletin {
    use super::*;

    #[divan::bench]
    fn encode(bench: Bencher) {
        let frame = publish_frame();
        bench.bench(|| black_box(&frame).encode_length_delimited_to_vec());
    }

    #[divan::bench]
    fn decode(bench: Bencher) {
        let bytes = Bytes::from(publish_frame().encode_length_delimited_to_vec());
        bench.bench(|| {
            proto::ClientFrame::decode_length_delimited(black_box(bytes.clone())).expect("decodes")
        });
    }
}

fn delivered(partners: &[PartnerId], from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let p = &partners[(i % partners.len() as u64) as usize];
            Entry::Event(Some(Event::delivered(p, vec![i])), None)
        })
        .collect()
}

/// A store holding a log of 100,000 records, over 10 partners.
fn audit_log() -> (tempfile::TempDir, Store, Vec<PartnerId>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let partners: Vec<PartnerId> = (0..10)
        .map(|i| format!("partner-{i}").parse().expect("id"))
        .collect();
    for from in (0..100_000).step_by(1_000) {
        store
            .commit(delivered(&partners, from, 1_000), Timestamp::now())
            .expect("commit");
    }
    (dir, store, partners)
}

mod audit {
    use super::*;

    #[divan::bench(name = "append 100 records (hashes, postings, counters, flush)")]
    fn append(bench: Bencher) {
        let (_dir, store, partners) = audit_log();
        let next = std::sync::atomic::AtomicU64::new(100_000);
        bench
            .counter(ItemsCount::new(100usize))
            .with_inputs(|| {
                let from = next.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
                delivered(&partners, from, 100)
            })
            .bench_local_values(|entries| store.commit(entries, Timestamp::now()).expect("commit"));
    }

    #[divan::bench(name = "query: a page of 100 by partner")]
    fn query(bench: Bencher) {
        let (_dir, store, partners) = audit_log();
        let q = Query {
            partner: Some(partners[3].clone()),
            after: Some(50_000),
            limit: 100,
            ..Query::default()
        };
        bench.bench_local(|| store.audit().query(black_box(&q)).expect("query"));
    }
}

#[divan::bench(name = "metrics: fiscal-year report (2 years × 20 partners × 10 counters)")]
fn report(bench: Bencher) {
    let fy = Period::fiscal_year(2026, 4).expect("period");
    let names = [
        "received.indicator",
        "received.exercise",
        "received.consultation",
        "shared.indicator",
        "shared.exercise",
        "shared.consultation",
        "withheld.above_clearance",
        "delivered",
        "acked",
        "latency.le_5",
    ];
    let mut rows = Vec::new();
    for day in fy.previous.0..fy.until {
        for p in 0..20 {
            for name in names {
                rows.push((day, format!("partner-{p}"), name.to_owned(), 3));
            }
        }
    }
    bench
        .with_inputs(|| rows.clone())
        .bench_local_values(|rows| metrics::report("jp-mod", &fy, rows));
}
