//! Bulletins in, MISP events out: the observables an analyst's MISP shows.

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::bulletin::{self, Kind, Limits, UnverifiedBulletin};
use crate::identity::{Keyring, PublicKey, Validity};
use crate::proto;
use crate::timestamp::Timestamp;

const NOW: u64 = 1_790_000_000_000;

/// A verified bulletin of us-dod with `body` as `content_type`.
fn verified(tlp: Tlp, content_type: &str, body: &[u8]) -> VerifiedBulletin {
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let draft = proto::Bulletin {
        id: bulletin::BulletinId::new_v7(Timestamp::from_unix_ms(NOW)).to_string(),
        origin: "us-dod".into(),
        created_unix_ms: NOW,
        tlp: tlp.to_proto() as i32,
        kind: Kind::Indicator.to_proto() as i32,
        title: "C2 of a campaign".into(),
        tags: vec!["apt-x".into()],
        content_type: content_type.into(),
        body: Bytes::copy_from_slice(body),
        ..Default::default()
    };
    let signed = bulletin::sign(&draft, &key, &Limits::default()).expect("signs");
    let mut keys = Keyring::new();
    keys.insert(
        "us-dod".parse().expect("id"),
        PublicKey::of(&key),
        Validity::default(),
    );
    UnverifiedBulletin::from_signed(signed, &Limits::default())
        .and_then(|u| u.verify(&keys, Timestamp::from_unix_ms(NOW), &Limits::default()))
        .expect("verifies")
}

fn bundle(objects: Value) -> Vec<u8> {
    json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects})
        .to_string()
        .into_bytes()
}

fn stix(kind: &str, n: u32, fields: Value) -> Value {
    let mut o = json!({"type": kind, "spec_version": "2.1",
        "id": format!("{kind}--00000000-0000-4000-8000-{n:012}"),
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z"});
    for (k, v) in fields.as_object().expect("fields").iter() {
        o[k] = v.clone();
    }
    o
}

/// (type, category, value) of every attribute.
fn attributes(event: &Value) -> Vec<(String, String, String)> {
    event["Event"]["Attribute"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().expect(k).to_owned();
            (s("type"), s("category"), s("value"))
        })
        .collect()
}

#[test]
fn a_stix_bundle_becomes_the_attributes_an_analyst_expects() {
    let body = bundle(json!([
        stix(
            "indicator",
            1,
            json!({"pattern_type": "stix",
            "pattern": "[ipv4-addr:value = '203.0.113.5'] OR [domain-name:value = 'c2.example']"})
        ),
        stix(
            "indicator",
            2,
            json!({"pattern_type": "stix",
            "pattern": "[file:hashes.'SHA-256' = 'aa11'] AND [file:name = 'drop.exe']"})
        ),
        stix(
            "indicator",
            3,
            json!({"pattern_type": "stix", "pattern": "[process:pid = 4]"})
        ),
        stix(
            "vulnerability",
            4,
            json!({"name": "a flaw",
            "external_references": [{"source_name": "cve", "external_id": "CVE-2026-0001"}]})
        ),
        stix(
            "note",
            5,
            json!({"content": "seen at two ministries", "object_refs": []})
        ),
    ]));
    let b = verified(Tlp::Amber, STIX_CONTENT_TYPE, &body);
    let e = event(&b, &["nato-ccdcoe".to_owned()]);
    let got = attributes(&e);
    let want = [
        ("ip-dst", "Network activity", "203.0.113.5"),
        ("domain", "Network activity", "c2.example"),
        ("sha256", "Payload delivery", "aa11"),
        ("filename", "Payload delivery", "drop.exe"),
        ("stix2-pattern", "Payload installation", "[process:pid = 4]"),
        ("vulnerability", "External analysis", "CVE-2026-0001"),
        ("text", "Other", "seen at two ministries"),
    ];
    for (i, (t, c, v)) in want.iter().enumerate() {
        assert_eq!(
            got[i],
            (t.to_string(), c.to_string(), v.to_string()),
            "attribute {i}"
        );
    }
    // Then the provenance: the signed bulletin, and the path it took.
    assert_eq!(got.len(), want.len() + 2);
    assert_eq!(got[want.len() + 1].2, "nato-ccdcoe");
    let ev = &e["Event"];
    assert_eq!(ev["uuid"], b.header().id.to_string());
    assert_eq!(ev["Orgc"]["name"], "us-dod");
    assert_eq!(
        ev["distribution"], "0",
        "AMBER stays in the receiving organisation"
    );
    let tags: Vec<&str> = ev["Tag"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tags, ["tlp:amber", "renkei:kind=\"indicator\"", "apt-x"]);
    assert_eq!(ev["info"], "C2 of a campaign");
}

#[test]
fn the_same_bulletin_gives_the_same_event_and_its_signature_still_verifies() {
    let b = verified(Tlp::Green, "text/plain", b"a note for the desk");
    let (one, two) = (event(&b, &[]), event(&b, &[]));
    assert_eq!(
        one, two,
        "stable uuids: a feed re-exported is the same feed"
    );
    let got = attributes(&one);
    assert_eq!(got[0].0, "attachment");
    assert_eq!(
        one["Event"]["Attribute"][0]["data"],
        "YSBub3RlIGZvciB0aGUgZGVzaw=="
    );
    // The signed bulletin kept in the event verifies as it did at the desk.
    use prost::Message as _;
    let signed = base64::engine::general_purpose::STANDARD
        .decode(&got[1].2)
        .expect("base64");
    let signed = proto::SignedBulletin::decode(signed.as_slice()).expect("protobuf");
    assert_eq!(&signed, b.signed());
}

#[test]
fn a_feed_lists_each_event_in_its_manifest_and_each_value_in_its_hashes() {
    let b = verified(
        Tlp::Clear,
        STIX_CONTENT_TYPE,
        &bundle(json!([stix(
            "indicator",
            1,
            json!({"pattern_type": "stix", "pattern": "[url:value = 'http://x.example/a']"})
        )])),
    );
    let e = event(&b, &[]);
    let (uuid, entry) = manifest_entry(&e).expect("an entry");
    assert_eq!(uuid, b.header().id.to_string());
    assert_eq!(entry["info"], "C2 of a campaign");
    assert_eq!(entry["Tag"][0]["name"], "tlp:clear");
    assert_eq!(
        entry["timestamp"],
        NOW / 1000,
        "a number, as MISP writes it"
    );
    assert_eq!(entry["analysis"], 2);
    let lines = hash_lines(&e);
    // MD5("http://x.example/a"), then the event it is in.
    assert_eq!(
        lines[0],
        format!(
            "{},{uuid}",
            hex::encode(md5::Md5::digest(b"http://x.example/a"))
        )
    );
    assert_eq!(lines.len(), 2, "the URL and the signed bulletin");
}

#[test]
fn a_misp_event_body_comes_back_with_its_attributes_objects_and_reports() {
    let carried = json!({"Event": {"uuid": "5e6f7a8b-0000-4000-8000-000000000001",
        "info": "Phishing wave", "distribution": "1", "Tag": [{"name": "tlp:green"}],
        "Attribute": [{"uuid": "11111111-0000-4000-8000-000000000001", "type": "ip-dst",
                       "category": "Network activity", "value": "198.51.100.7"}],
        "Object": [{"name": "file", "Attribute": [
            {"type": "filename|md5", "value": "a.exe|0123456789abcdef0123456789abcdef"}]}],
        "EventReport": [{"name": "Loader analysis", "content": "It drops a file."}]}});
    let b = verified(
        Tlp::Green,
        MISP_CONTENT_TYPE,
        carried.to_string().as_bytes(),
    );
    let e = event(&b, &["nato-ccdcoe".into()]);
    let ev = &e["Event"];
    assert_eq!(
        ev["Attribute"][0], carried["Event"]["Attribute"][0],
        "kept as it was"
    );
    assert_eq!(ev["Object"], carried["Event"]["Object"]);
    assert_eq!(ev["EventReport"], carried["Event"]["EventReport"]);
    assert_eq!(ev["Attribute"][2]["value"], "nato-ccdcoe", "then the path");
    // The origin's header, not the carried event, says the TLP: it was signed and judged.
    assert_eq!(ev["Tag"][0]["name"], "tlp:green");
    let lines = hash_lines(&e);
    let md5 = |v: &str| hex::encode(md5::Md5::digest(v.as_bytes()));
    for part in ["198.51.100.7", "a.exe", "0123456789abcdef0123456789abcdef"] {
        assert!(lines.iter().any(|l| l.starts_with(&md5(part))), "{part}");
    }
    assert_eq!(
        lines.len(),
        5,
        "the address, the signature, the path, the object's two parts: {lines:?}"
    );
}
