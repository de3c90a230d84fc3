//! Could someone else talk to renkei from `proto/` alone? This verifier is written from
//! `proto/README.md` with a hand-written protobuf decoder and ring's Ed25519 and SHA-256,
//! sharing no code with renkei's prost / ed25519-dalek / sha2 path. It checks the worked
//! example in `proto/testdata/bulletin-v1.json` and a bulletin the CLI writes.

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::Value;

/// One protobuf field value: a varint or a length-delimited byte string.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Decodes one message into field number → values, per the protobuf wire format.
fn decode(buf: &[u8]) -> Result<HashMap<u64, Vec<Field>>, String> {
    let mut fields: HashMap<u64, Vec<Field>> = HashMap::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let value = match wire_type {
            0 => Field::Varint(read_varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).map_err(|_| "length")?;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = buf[pos..end].to_vec();
                pos = end;
                Field::Bytes(bytes)
            }
            1 => {
                pos += 8;
                continue;
            }
            5 => {
                pos += 4;
                continue;
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        if number == 0 {
            return Err("field number 0".into());
        }
        fields.entry(number).or_default().push(value);
    }
    if pos != buf.len() {
        return Err("truncated fixed-width field".into());
    }
    Ok(fields)
}

fn bytes_field(m: &HashMap<u64, Vec<Field>>, n: u64) -> Vec<u8> {
    match m.get(&n).and_then(|v| v.last()) {
        Some(Field::Bytes(b)) => b.clone(),
        _ => Vec::new(),
    }
}

fn string_field(m: &HashMap<u64, Vec<Field>>, n: u64) -> String {
    String::from_utf8(bytes_field(m, n)).unwrap_or_default()
}

/// A decoded, independently verified bulletin: (origin, id, tlp number, digest).
struct Checked {
    origin: String,
    id: String,
    tlp: u64,
    digest: Vec<u8>,
}

/// proto/README.md §4.6 steps 1–4, with the caller's single trusted key for the origin.
fn independent_verify(signed_bytes: &[u8], public_key: &[u8; 32]) -> Result<Checked, String> {
    let signed = decode(signed_bytes)?;
    let bulletin = bytes_field(&signed, 1);
    let signature = bytes_field(&signed, 2);
    let key_id = bytes_field(&signed, 3);
    if bulletin.is_empty() || key_id.len() != 8 || signature.len() != 64 {
        return Err("envelope fields have the wrong sizes".into());
    }
    let b = decode(&bulletin)?;
    let key_digest = digest(&SHA256, public_key);
    let expected_key_id = &key_digest.as_ref()[..8];
    if key_id != expected_key_id {
        return Err("key id names another key".into());
    }
    let mut message = b"renkei/bulletin/v1\0".to_vec();
    message.extend_from_slice(&bulletin);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &signature)
        .map_err(|_| "signature does not verify".to_string())?;
    let tlp = match b.get(&4).and_then(|v| v.last()) {
        Some(Field::Varint(n)) => *n,
        _ => 0,
    };
    Ok(Checked {
        origin: string_field(&b, 2),
        id: string_field(&b, 1),
        tlp,
        digest: digest(&SHA256, &bulletin).as_ref().to_vec(),
    })
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap_or_else(|| panic!("{name} missing"))).unwrap()
}

fn vector() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/bulletin-v1.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_worked_example_verifies_independently() {
    let v = vector();
    let public: [u8; 32] = hex_field(&v, "public_key_hex").try_into().unwrap();
    let text = format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    assert_eq!(v["public_key"], text.as_str());
    assert_eq!(
        &digest(&SHA256, &public).as_ref()[..8],
        &hex_field(&v, "key_id_hex")[..]
    );
    assert_eq!(
        hex_field(&v, "signature_domain_hex"),
        b"renkei/bulletin/v1\0"
    );

    let checked = independent_verify(&hex_field(&v, "signed_bulletin_hex"), &public).unwrap();
    assert_eq!(checked.digest, hex_field(&v, "digest_sha256_hex"));
    assert_eq!(
        checked.origin,
        v["bulletin_fields"]["origin"].as_str().unwrap()
    );
    assert_eq!(checked.id, v["bulletin_fields"]["id"].as_str().unwrap());
    assert_eq!(checked.tlp, 3, "TLP_AMBER");

    // The vector's own parts agree: the envelope holds exactly bulletin_hex and signature_hex.
    let env = decode(&hex_field(&v, "signed_bulletin_hex")).unwrap();
    assert_eq!(bytes_field(&env, 1), hex_field(&v, "bulletin_hex"));
    assert_eq!(bytes_field(&env, 2), hex_field(&v, "signature_hex"));

    // A different key, or one flipped bit, fails.
    let mut other = public;
    other[0] ^= 1;
    assert!(independent_verify(&hex_field(&v, "signed_bulletin_hex"), &other).is_err());
    let mut tampered = hex_field(&v, "signed_bulletin_hex");
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    assert!(independent_verify(&tampered, &public).is_err());
}

#[test]
fn renkei_reproduces_the_worked_example_byte_for_byte() {
    use prost::Message as _;
    let v = vector();
    let seed: [u8; 32] = hex_field(&v, "signing_key_seed_hex").try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let b = renkei::proto::Bulletin::decode(&hex_field(&v, "bulletin_hex")[..]).unwrap();
    let f = &v["bulletin_fields"];
    assert_eq!(b.title, f["title"].as_str().unwrap());
    assert_eq!(b.body, f["body_utf8"].as_str().unwrap().as_bytes());
    let signed = renkei::bulletin::sign(&b, &key, &renkei::bulletin::Limits::default()).unwrap();
    assert_eq!(
        signed.bulletin.as_ref(),
        &hex_field(&v, "bulletin_hex")[..],
        "prost re-encodes the same bytes"
    );
    assert_eq!(
        signed.signature.as_ref(),
        &hex_field(&v, "signature_hex")[..]
    );
    assert_eq!(signed.key_id.as_ref(), &hex_field(&v, "key_id_hex")[..]);
    assert_eq!(signed.encode_to_vec(), hex_field(&v, "signed_bulletin_hex"));
}

#[test]
fn a_bulletin_written_by_the_cli_verifies_independently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::pki(dir, "nato-ccdcoe");
    common::sh_ok(dir, "bulletin new --key certs/nato-ccdcoe/signing.key --origin nato-ccdcoe --tlp amber+strict --kind consultation --title 'Cyber consultation, Tallinn' --audience group:allies --out b.bin");
    let pub_text = fs::read_to_string(dir.join("certs/nato-ccdcoe/signing.pub")).unwrap();
    let b64 = pub_text.trim().strip_prefix("ed25519:").unwrap();
    let public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
        .try_into()
        .unwrap();
    let checked = independent_verify(&fs::read(dir.join("b.bin")).unwrap(), &public).unwrap();
    assert_eq!(checked.origin, "nato-ccdcoe");
    assert_eq!(checked.tlp, 4, "TLP_AMBER_STRICT");
}

/// A receipt's body, once its key id names `public_key` and its signature verifies
/// with it over `domain` and the body.
fn signed_body(
    signed: &HashMap<u64, Vec<Field>>,
    public_key: &[u8; 32],
    domain: &[u8],
) -> Result<Vec<u8>, String> {
    let (body, signature, key_id) = (
        bytes_field(signed, 1),
        bytes_field(signed, 2),
        bytes_field(signed, 3),
    );
    if key_id != digest(&SHA256, public_key).as_ref()[..8] || signature.len() != 64 {
        return Err("key id or signature of the wrong key or size".into());
    }
    let message = [domain, &body].concat();
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &signature)
        .map_err(|_| "signature does not verify".to_string())?;
    Ok(body)
}

/// proto/README.md §4.7, with the caller's one trusted key for the receiver: the
/// receipt's fields (receiver, node, origin, bulletin id, digest, time).
fn independent_receipt(signed_bytes: &[u8], public_key: &[u8; 32]) -> Result<Vec<String>, String> {
    let signed = decode(signed_bytes)?;
    let body = signed_body(&signed, public_key, b"renkei/receipt/v1\0")?;
    let b = decode(&body)?;
    let time = match b.get(&6).and_then(|v| v.last()) {
        Some(Field::Varint(n)) => *n,
        _ => 0,
    };
    let mut out: Vec<String> = (1..=4).map(|n| string_field(&b, n)).collect();
    out.push(hex::encode(bytes_field(&b, 5)));
    out.push(time.to_string());
    Ok(out)
}

#[test]
fn the_receipt_example_verifies_independently() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/receipt-v1.json");
    let v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let public: [u8; 32] = hex_field(&v, "public_key_hex").try_into().unwrap();
    let signed = hex_field(&v, "signed_receipt_hex");
    let fields = independent_receipt(&signed, &public).unwrap();
    let f = &v["receipt_fields"];
    let want: Vec<String> = [
        "receiver",
        "node",
        "origin",
        "bulletin_id",
        "digest_sha256_hex",
    ]
    .iter()
    .map(|k| f[k].as_str().unwrap().to_owned())
    .chain([f["received_unix_ms"].to_string()])
    .collect();
    assert_eq!(fields, want);
    // It is a receipt of the bulletin of the bulletin example.
    assert_eq!(f["digest_sha256_hex"], vector()["digest_sha256_hex"]);
    let mut tampered = signed.clone();
    let at = tampered.len() - 80;
    tampered[at] ^= 1;
    assert!(independent_receipt(&tampered, &public).is_err());
}

fn varint_field(m: &HashMap<u64, Vec<Field>>, n: u64) -> u64 {
    match m.get(&n).and_then(|v| v.last()) {
        Some(Field::Varint(v)) => *v,
        _ => 0,
    }
}

/// RFC 9162 §2.1.3.2: the root that `path` leads to from `leaf` at `index` in a tree of
/// `size` leaves, if it is a path of such a tree.
fn root_from_path(leaf: [u8; 32], index: u64, size: u64, path: &[Vec<u8>]) -> Option<[u8; 32]> {
    let node = |l: &[u8], r: &[u8]| -> [u8; 32] {
        let m = [&[1u8][..], l, r].concat();
        digest(&SHA256, &m).as_ref().try_into().unwrap()
    };
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// proto/README.md §4.7, a batch receipt's share, with the caller's one trusted key for
/// the receiver: what it states (receiver, node, origin, bulletin id, digest, time).
fn independent_share(signed_bytes: &[u8], public_key: &[u8; 32]) -> Result<Vec<String>, String> {
    let signed = decode(signed_bytes)?;
    let body = signed_body(&signed, public_key, b"renkei/receipts/v1\0")?;
    let (b, proof) = (decode(&body)?, decode(&bytes_field(&signed, 4))?);
    let item = bytes_field(&proof, 1);
    let path: Vec<Vec<u8>> = match proof.get(&3) {
        Some(hashes) => hashes
            .iter()
            .map(|h| match h {
                Field::Bytes(b) => Ok(b.clone()),
                Field::Varint(_) => Err("a path hash that is a number".to_string()),
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let leaf: [u8; 32] = digest(&SHA256, &[&[0u8][..], &item].concat())
        .as_ref()
        .try_into()
        .unwrap();
    let root = root_from_path(leaf, varint_field(&proof, 2), varint_field(&b, 5), &path);
    if root.map(|r| r.to_vec()) != Some(bytes_field(&b, 4)) {
        return Err("the item is not under the signed root".into());
    }
    let i = decode(&item)?;
    Ok(vec![
        string_field(&b, 1),
        string_field(&b, 2),
        string_field(&i, 1),
        string_field(&i, 2),
        hex::encode(bytes_field(&i, 3)),
        varint_field(&b, 3).to_string(),
    ])
}

#[test]
fn the_batch_receipt_example_verifies_independently() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/receipts-batch-v1.json");
    let v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let public: [u8; 32] = hex_field(&v, "public_key_hex").try_into().unwrap();
    let f = &v["batch_fields"];
    let shares = v["shares"].as_array().unwrap();
    assert_eq!(shares.len(), 3);
    for share in shares {
        let signed = hex_field(share, "signed_receipt_hex");
        let item = &share["item"];
        let text = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
        let want = vec![
            text(f, "receiver"),
            text(f, "node"),
            text(item, "origin"),
            text(item, "bulletin_id"),
            text(item, "digest_sha256_hex"),
            f["received_unix_ms"].to_string(),
        ];
        assert_eq!(independent_share(&signed, &public).unwrap(), want);
        // Its item swapped for another bulletin's: not under the root.
        let other = hex_field(
            &shares[(share["index"].as_u64().unwrap() as usize + 1) % 3],
            "item_hex",
        );
        let own = hex_field(share, "item_hex");
        let at = signed.windows(own.len()).position(|w| w == own).unwrap();
        let mut swapped = signed.clone();
        swapped.splice(at..at + own.len(), other);
        assert!(independent_share(&swapped, &public).is_err());
    }
}

/// C2SP tlog-cosignature v1, from its text alone: the key id is SHA-256(name ‖ "\n" ‖
/// 0x04 ‖ key)[:4]; the signature line holds key id ‖ timestamp (8 bytes, big-endian) ‖
/// an Ed25519 signature over "cosignature/v1\ntime T\n" and the checkpoint body.
fn cosignature_key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut m = name.as_bytes().to_vec();
    m.push(b'\n');
    m.push(0x04);
    m.extend_from_slice(public);
    digest(&SHA256, &m).as_ref()[..4].try_into().unwrap()
}

/// The time of `name`'s cosignature in the signed note `note`, checked with `public`.
fn independent_cosignature(note: &str, name: &str, public: &[u8; 32]) -> Result<u64, String> {
    let (body, sigs) = note.split_once("\n\n").ok_or("no blank line")?;
    let line = sigs
        .lines()
        .find(|l| {
            l.strip_prefix("\u{2014} ")
                .and_then(|l| l.split(' ').next())
                == Some(name)
        })
        .ok_or("no line of that name")?;
    let b64 = line.rsplit(' ').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    if raw.len() != 4 + 8 + 64 || raw[..4] != cosignature_key_id(name, public) {
        return Err("wrong size or key id".into());
    }
    let time = u64::from_be_bytes(raw[4..12].try_into().unwrap());
    let message = format!("cosignature/v1\ntime {time}\n{body}\n");
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message.as_bytes(), &raw[12..])
        .map_err(|_| "signature does not verify".to_string())?;
    Ok(time)
}

#[test]
fn a_cosignature_checks_against_the_c2sp_spec_independently() {
    use renkei::audit::checkpoint::{log_origin, CheckpointSigner};
    use renkei::audit::merkle::TreeHash;
    use renkei::audit::witness::{self, WitnessKey};
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    let log_key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let signer = CheckpointSigner::new(&log_origin("jp-mod"), log_key.clone()).unwrap();
    let note = signer.sign(20852163, TreeHash([7; 32])).unwrap();
    // renkei cosigns; the spec's reading of it verifies.
    let seed = [2u8; 32];
    let name = witness::witness_name("nato-ccdcoe");
    let line = witness::cosign(
        &note,
        &name,
        &ed25519_dalek::SigningKey::from_bytes(&seed),
        1679315147,
    )
    .unwrap();
    let cosigned = witness::with_cosignature(&note, &line);
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    assert_eq!(
        independent_cosignature(&cosigned, &name, &public),
        Ok(1679315147)
    );
    let mut other = public;
    other[0] ^= 1;
    assert!(independent_cosignature(&cosigned, &name, &other).is_err());
    // A cosignature made from the spec with ring verifies in renkei.
    let time = 1700000000u64;
    let body = note.split_once("\n\n").unwrap().0;
    let sig = pair.sign(format!("cosignature/v1\ntime {time}\n{body}\n").as_bytes());
    let mut raw = cosignature_key_id("example.com/w1", &public).to_vec();
    raw.extend_from_slice(&time.to_be_bytes());
    raw.extend_from_slice(sig.as_ref());
    let theirs = format!(
        "{note}\u{2014} example.com/w1 {}\n",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    let w = WitnessKey {
        name: "example.com/w1".into(),
        key: ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap(),
    };
    let log = (log_origin("jp-mod"), log_key.verifying_key());
    assert_eq!(
        witness::verify_cosignature(&theirs, (&log.0, &log.1), &w),
        Ok(time)
    );
}
