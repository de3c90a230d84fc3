//! The order of the checks (proto §4.6) as test vectors: for each place where two
//! checks could disagree, one `Publish` with the answer a node gives. The vectors live
//! in `proto/testdata/check-order-v1.json`, for implementations in other languages;
//! this test makes them from scratch (keys, ids and times are fixed, Ed25519 and the
//! encoding deterministic), checks this node answers each as the file says, and
//! rewrites the file when `RENKEI_WRITE_VECTORS=1`.

use prost::Message as _;
use serde_json::{json, Value};

use super::*;

/// A fixed UUIDv7 for vector `n`.
fn fixed_id(n: u8) -> String {
    format!("0195f0a1-2b3c-7d4e-8f5a-6b7c8d9e0f{n:02x}")
}

/// A bulletin of `origin` with a fixed id, created `age_ms` before the vectors' time.
fn fixed(n: u8, origin: &str, audience: &[&str], age_ms: u64) -> proto::Bulletin {
    proto::Bulletin {
        id: fixed_id(n),
        ..bulletin(origin, proto::Tlp::Amber, audience, NOW - age_ms)
    }
}

/// `b` signed by `origin`'s key id but with another key: a forgery.
fn forged(b: &proto::Bulletin, origin: &str) -> proto::Publish {
    let mut p = publish(1, b, "forger");
    let genuine = publish(1, b, origin);
    if let (Some(f), Some(g)) = (p.bulletin.as_mut(), genuine.bulletin) {
        f.key_id = g.key_id;
    }
    p
}

struct Case {
    name: &'static str,
    publisher: &'static str,
    role: Role,
    publish: proto::Publish,
    error: ErrorCode,
}

fn case(
    name: &'static str,
    publisher: &'static str,
    role: Role,
    p: proto::Publish,
    error: ErrorCode,
) -> Case {
    Case {
        name,
        publisher,
        role,
        publish: p,
        error,
    }
}

const DAY_MS: u64 = 86_400_000;

fn cases() -> Vec<Case> {
    use ErrorCode as E;
    let looping = with_path(
        forged(&fixed(1, "us-dod", &[], 1_000), "us-dod"),
        &["us-node", "jp-mod"],
    );
    let stranger = forged(&fixed(2, "cn-pla", &[], 1_000), "cn-pla");
    let elsewhere = forged(&fixed(3, "ee-cert", &[], 1_000), "ee-cert");
    let passed_on = forged(&fixed(4, "us-dod", &[], 1_000), "us-dod");
    let genuine = publish(1, &fixed(5, "us-dod", &[], 1_000), "us-dod");
    let from_a_desk = with_path(
        publish(1, &fixed(6, "us-dod", &[], 1_000), "us-dod"),
        &["nato-ccdcoe"],
    );
    let typo = publish(1, &fixed(7, "us-dod", &["group:natoo"], 1_000), "us-dod");
    let old_forgery = forged(&fixed(8, "us-dod", &[], 40 * DAY_MS), "us-dod");
    let old = publish(1, &fixed(9, "us-dod", &[], 40 * DAY_MS), "us-dod");
    vec![
        case("forged, with a path that holds this node: the path is checked before the signature", "nato-ccdcoe", Role::Relay, looping, E::BadPath),
        case("forged, of an origin this node does not know: the origin before the signature", "nato-ccdcoe", Role::Relay, stranger, E::UnknownOrigin),
        case("forged, of an [[origin]] through a peer not in its via: the route before the signature", "us-node", Role::Relay, elsewhere, E::NotViaPeer),
        case("forged, passed on by a liaison for another origin: the signature before the role", "ee-mod", Role::Liaison, passed_on, E::BadSignature),
        case("genuine, passed on by a liaison for another origin", "ee-mod", Role::Liaison, genuine, E::OriginMismatch),
        case("genuine, with a path, from a liaison: only a relay hands over a path", "us-dod", Role::Liaison, from_a_desk, E::BadPath),
        case("genuine, its own, with an audience entry nobody here answers to", "us-dod", Role::Liaison, typo, E::UnknownAudience),
        case("forged and 40 days old: the signature before the age", "us-dod", Role::Liaison, old_forgery, E::BadSignature),
        case("genuine and 40 days old (max_age_days 30)", "us-dod", Role::Liaison, old, E::TooOld),
    ]
}

/// The vectors file as this node makes it.
fn vectors() -> Value {
    let rules = federated();
    let mut out = Vec::new();
    for c in cases() {
        let wire = c.publish.encode_to_vec();
        let (result, record) = refusal(decide_one(&rules, c.publisher, c.role, c.publish));
        let code = ErrorCode::try_from(result.error).unwrap_or(ErrorCode::Unspecified);
        assert_eq!(code, c.error, "{}: {}", c.name, result.message);
        assert_eq!(
            record.bulletin_id, result.bulletin_id,
            "{}: the record names it",
            c.name
        );
        assert!(
            !record.bulletin_id.is_empty(),
            "{}: names the bulletin",
            c.name
        );
        out.push(json!({
            "name": c.name,
            "publisher": c.publisher,
            "publisher_role": c.role.to_string(),
            "publish_hex": hex::encode(wire),
            "error": code.as_str_name(),
        }));
    }
    json!({
        "about": "proto/README.md §4.6: the answer a node gives to each Publish, sent on a publish stream by `publisher` (with the role its configuration gives it) to node jp-mod configured by `config_toml`, at `now_unix_ms`, with the default limits (max_age_days 30, max_clock_skew 300 s). Keys are Ed25519 from 32-byte seeds; a forgery is signed by another key under the origin's key id. Made by src/node/publish/decide/tests/order.rs.",
        "now_unix_ms": NOW,
        "config_toml": federated_text(),
        "cases": out,
    })
}

#[test]
fn the_checks_run_in_the_order_the_spec_gives_as_its_vectors_show() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/check-order-v1.json");
    let made = vectors();
    let text = serde_json::to_string_pretty(&made).expect("json") + "\n";
    if std::env::var_os("RENKEI_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &text).expect("writes the vectors");
    }
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the vectors file"))
            .expect("the vectors are JSON");
    assert_eq!(
        kept, made,
        "proto/testdata/check-order-v1.json is not what this node answers"
    );
}
