//! The JSON view of a bulletin that every command prints or saves: every field, the
//! body as text when it is UTF-8 (base64 otherwise), the digest and the signature.
//!
//! It reads a decoded bulletin and says nothing about whether it verified: the caller
//! adds that, since only the caller knows which keys it checked against.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{Digest, Kind, Tlp};
use crate::proto;
use crate::timestamp::Timestamp;

fn enum_text<T: std::fmt::Display>(n: i32, parse: fn(i32) -> Option<T>) -> Value {
    match parse(n) {
        Some(v) => json!(v.to_string()),
        None => json!(format!("unknown({n})")),
    }
}

/// Every field of `b` and its envelope `signed` as one JSON object.
pub fn to_json(b: &proto::Bulletin, signed: &proto::SignedBulletin) -> Value {
    let created = Timestamp::from_unix_ms(b.created_unix_ms);
    let mut v = json!({
        "id": b.id,
        "origin": b.origin,
        "created": created.to_string(),
        "created_unix_ms": b.created_unix_ms,
        "tlp": enum_text(b.tlp, Tlp::from_proto),
        "kind": enum_text(b.kind, Kind::from_proto),
        "title": b.title,
        "summary": b.summary,
        "tags": b.tags,
        "audience": b.audience,
        "references": b.references,
        "content_type": b.content_type,
        "body_bytes": b.body.len(),
        "digest": Digest::of(&signed.bulletin).to_string(),
        "key_id": hex::encode(&signed.key_id),
        "signature": hex::encode(&signed.signature),
    });
    match std::str::from_utf8(&b.body) {
        Ok(text) => v["body"] = json!(text),
        Err(_) => v["body_base64"] = json!(B64.encode(&b.body)),
    }
    v
}

/// The file extension that suits a body of this MIME type (`bin` when unknown).
pub fn extension(content_type: &str) -> &'static str {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/stix+json" | "application/json" | "application/taxii+json" => "json",
        "text/plain" | "" => "txt",
        "text/markdown" => "md",
        "text/csv" => "csv",
        "text/html" => "html",
        "application/xml" | "text/xml" => "xml",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/yaml" | "text/yaml" => "yaml",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_body_is_text_when_it_is_utf8_and_base64_otherwise() {
        let mut b = proto::Bulletin {
            body: Bytes::from_static(b"hello"),
            tlp: 2,
            kind: 1,
            ..Default::default()
        };
        let signed = proto::SignedBulletin::default();
        let v = to_json(&b, &signed);
        assert_eq!(v["body"], "hello");
        assert!(v.get("body_base64").is_none());
        b.body = Bytes::from_static(&[0xff, 0x00]);
        let v = to_json(&b, &signed);
        assert_eq!(v["body_base64"], "/wA=");
        assert!(v.get("body").is_none());
        assert_eq!(
            to_json(&proto::Bulletin { tlp: 99, ..b }, &signed)["tlp"],
            "unknown(99)"
        );
    }

    #[test]
    fn extensions_follow_the_content_type() {
        assert_eq!(extension("application/stix+json;version=2.1"), "json");
        assert_eq!(extension("Text/Plain; charset=utf-8"), "txt");
        assert_eq!(extension("application/pdf"), "pdf");
        assert_eq!(extension("application/x-unheard-of"), "bin");
    }
}
