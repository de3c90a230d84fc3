//! Micro-benchmarks of the pure core and the store, one per hot operation: bulletin
//! verification (single and batched), a policy decision over 50 partners, an audit
//! append, frame encoding and decoding, an audit query page and a fiscal-year report.
//! Run with `cargo bench --bench micro`; `renkei bench` measures the whole path.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
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

fn verification(c: &mut Criterion) {
    let k = key(1);
    let origin: PartnerId = "us-dod".parse().expect("id");
    let mut keyring = Keyring::new();
    keyring.insert(origin, PublicKey::of(&k), Validity::default());
    let limits = Limits::default();
    let b = signed(&k, "us-dod", 0);
    let mut g = c.benchmark_group("bulletin");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode and verify (1 KiB body)", |bench| {
        bench.iter(|| {
            let u =
                UnverifiedBulletin::from_signed(black_box(b.clone()), &limits).expect("decodes");
            u.verify(&keyring, Timestamp::now(), &limits)
                .expect("verifies")
        })
    });
    let items: Vec<(Vec<u8>, Signature)> = (0..256)
        .map(|n| {
            let s = signed(&k, "us-dod", n);
            let mut msg = bulletin::SIGNATURE_DOMAIN.to_vec();
            msg.extend_from_slice(&s.bulletin);
            (msg, Signature::from_slice(&s.signature).expect("64 bytes"))
        })
        .collect();
    let key = renkei::identity::PublicKey::of(&k);
    // The node batches what is queued on a publish stream, up to its limit.
    for size in [64, 256] {
        g.throughput(Throughput::Elements(size as u64));
        let name = format!("batch of {size} (one signer), the node's rule");
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let batch: Vec<_> = items[..size]
                    .iter()
                    .map(|(m, s)| (&key, m.as_slice(), s))
                    .collect();
                let valid = bulletin::signature::verify_many(&batch);
                assert!(valid.iter().all(|v| *v));
            })
        });
    }
    g.finish();
}

fn policy(c: &mut Criterion) {
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
    c.bench_function("policy: decide for 50 partners", |bench| {
        bench.iter(|| {
            policy
                .decide_all(black_box(u.header()), Route::direct(&from))
                .count()
        })
    });
}

fn frames(c: &mut Criterion) {
    let frame = proto::ClientFrame {
        frame: Some(proto::client_frame::Frame::Publish(proto::Publish {
            request_id: 1,
            bulletin: Some(signed(&key(1), "us-dod", 0)),
            allow_unknown_audience: false,
            path: Vec::new(),
        })),
    };
    let bytes = Bytes::from(frame.encode_length_delimited_to_vec());
    let mut g = c.benchmark_group("frame (1 KiB bulletin)");
    g.bench_function("encode", |bench| {
        bench.iter(|| black_box(&frame).encode_length_delimited_to_vec())
    });
    g.bench_function("decode", |bench| {
        bench.iter(|| {
            proto::ClientFrame::decode_length_delimited(black_box(bytes.clone())).expect("decodes")
        })
    });
    g.finish();
}

fn delivered(partners: &[PartnerId], from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let p = &partners[(i % partners.len() as u64) as usize];
            Entry::Event(Some(Event::delivered(p, vec![i])), None)
        })
        .collect()
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let partners: Vec<PartnerId> = (0..10)
        .map(|i| format!("partner-{i}").parse().expect("id"))
        .collect();
    // A log of 100,000 records to query.
    for from in (0..100_000).step_by(1_000) {
        store
            .commit(delivered(&partners, from, 1_000), Timestamp::now())
            .expect("commit");
    }
    let mut next = 100_000;
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(100));
    g.bench_function(
        "append 100 records (hashes, postings, counters, flush)",
        |bench| {
            bench.iter_batched(
                || {
                    let entries = delivered(&partners, next, 100);
                    next += 100;
                    entries
                },
                |entries| store.commit(entries, Timestamp::now()).expect("commit"),
                BatchSize::SmallInput,
            )
        },
    );
    let q = Query {
        partner: Some(partners[3].clone()),
        after: Some(50_000),
        limit: 100,
        ..Query::default()
    };
    g.bench_function("query: a page of 100 by partner", |bench| {
        bench.iter(|| store.audit().query(black_box(&q)).expect("query"))
    });
    g.finish();
}

fn report(c: &mut Criterion) {
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
    c.bench_function(
        "metrics: fiscal-year report (2 years × 20 partners × 10 counters)",
        |bench| {
            bench.iter_batched(
                || rows.clone(),
                |rows| metrics::report("jp-mod", &fy, rows),
                BatchSize::LargeInput,
            )
        },
    );
}

criterion_group!(micro, verification, policy, frames, audit, report);
criterion_main!(micro);
