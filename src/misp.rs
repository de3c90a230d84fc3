//! MISP, the platform most partners already run: a verified bulletin as a MISP event
//! (MISP core format, JSON), and what a MISP feed lists of it (its `manifest.json`
//! entry and its `hashes.csv` lines). STIX 2.1 bodies become attributes: an indicator's
//! pattern its observables (addresses, domains, URLs, hashes, file names; the pattern
//! itself otherwise), a vulnerability its CVE, malware, notes and reports text; any
//! other body one attachment. The TLP and the kind become tags, the origin the event's
//! `Orgc`, the bulletin id its `uuid` (stable across exports), and the origin's
//! signature and the bulletin's path stay as attributes, so a MISP user can still
//! verify it.
//!
//! Pure: no files, no clock. Writing a feed's files is the command line's.

use base64::Engine as _;
use md5::Digest as _;
use serde_json::{json, Value};

use crate::bulletin::{Tlp, VerifiedBulletin, STIX_CONTENT_TYPE};
use crate::stix::{self, StixObject};

/// One MISP attribute, before it gets its uuid.
#[derive(Clone, Debug, PartialEq)]
struct Attribute {
    kind: &'static str,
    category: &'static str,
    value: String,
    comment: String,
    /// Base64 content, for an attachment.
    data: Option<String>,
    to_ids: bool,
}

impl Attribute {
    fn new(kind: &'static str, category: &'static str, value: impl Into<String>) -> Attribute {
        Attribute {
            kind,
            category,
            value: value.into(),
            comment: String::new(),
            data: None,
            to_ids: false,
        }
    }

    fn noted(mut self, comment: impl Into<String>) -> Attribute {
        self.comment = comment.into();
        self
    }
}

/// A UUID derived from `name`: the same bulletin gives the same uuids in every export.
fn stable_uuid(name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("renkei misp {name}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The MISP tag of a TLP 2.0 level (MISP's `tlp` taxonomy).
pub fn tlp_tag(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "tlp:clear",
        Tlp::Green => "tlp:green",
        Tlp::Amber => "tlp:amber",
        Tlp::AmberStrict => "tlp:amber+strict",
        Tlp::Red => "tlp:red",
    }
}

/// The MISP distribution a TLP level allows: CLEAR to all communities, GREEN to this
/// community, anything stricter to the receiving organisation only.
fn distribution(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "3",
        Tlp::Green => "1",
        Tlp::Amber | Tlp::AmberStrict | Tlp::Red => "0",
    }
}

/// The content type of a bulletin body that is a MISP event's JSON.
pub const MISP_CONTENT_TYPE: &str = "application/misp+json";

/// `b`, which crossed the peer nodes `path` (first to last), as a MISP event:
/// `{"Event": {...}}`. A body that is itself a MISP event keeps its attributes,
/// objects and event reports as they were; the bulletin's header (TLP, kind, tags, title, origin) is what
/// the event says, since that is what the origin signed and the policy judged.
pub fn event(b: &VerifiedBulletin, path: &[String]) -> Value {
    let h = b.header();
    let p = b.bulletin();
    let uuid = h.id.to_string();
    let stamp = h.created.unix_ms() / 1000;
    let carried = carried_event(&p.content_type, &p.body);
    let (mut attributes, objects, reports) = match &carried {
        Some(e) => (
            listed(e, "Attribute"),
            listed(e, "Object"),
            listed(e, "EventReport"),
        ),
        None => {
            let made = body_attributes(&p.content_type, &p.body);
            let made = made.into_iter().enumerate();
            let made = made.map(|(i, a)| attribute_json(&uuid, i, a, stamp));
            (made.collect(), Vec::new(), Vec::new())
        }
    };
    let first = attributes.len();
    let signed = provenance(b, path).into_iter().enumerate();
    attributes.extend(signed.map(|(i, a)| attribute_json(&uuid, first + i, a, stamp)));
    let mut tags = vec![
        tlp_tag(h.tlp).to_owned(),
        format!("renkei:kind=\"{}\"", h.kind),
    ];
    for t in &h.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    let date = h
        .created
        .to_datetime()
        .map_or(String::new(), |d| d.date().to_string());
    let mut event = json!({
        "uuid": uuid,
        "info": if p.title.is_empty() { format!("renkei bulletin {uuid}") } else { p.title.clone() },
        "date": date,
        "timestamp": stamp.to_string(),
        "published": true,
        "analysis": "2",
        "threat_level_id": "4",
        "distribution": distribution(h.tlp),
        "Orgc": orgc(h.origin.as_str()),
        "Tag": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "Attribute": attributes,
    });
    for (key, list) in [("Object", objects), ("EventReport", reports)] {
        if !list.is_empty() {
            event[key] = Value::Array(list);
        }
    }
    json!({ "Event": event })
}

/// The MISP event a body of [`MISP_CONTENT_TYPE`] holds, if it holds one.
fn carried_event(content_type: &str, body: &[u8]) -> Option<Value> {
    if content_type != MISP_CONTENT_TYPE {
        return None;
    }
    inbound::read(body).ok().map(|i| i.event)
}

/// The array `key` of a MISP event, empty if it has none.
fn listed(event: &Value, key: &str) -> Vec<Value> {
    event
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The organisation a partner id stands for, as MISP names one.
fn orgc(origin: &str) -> Value {
    json!({"name": origin, "uuid": stable_uuid(&format!("org {origin}"))})
}

fn attribute_json(event: &str, i: usize, a: Attribute, timestamp: u64) -> Value {
    let mut v = json!({
        "uuid": stable_uuid(&format!("attribute {event}/{i}")),
        "type": a.kind,
        "category": a.category,
        "value": a.value,
        "comment": a.comment,
        "to_ids": a.to_ids,
        "distribution": "5",
        "timestamp": timestamp.to_string(),
    });
    if let Some(data) = a.data {
        v["data"] = json!(data);
    }
    v
}

/// What a body says, as attributes: a STIX bundle's objects, or the body attached.
fn body_attributes(content_type: &str, body: &[u8]) -> Vec<Attribute> {
    let objects = match content_type == STIX_CONTENT_TYPE {
        true => stix::bundle_objects(body).ok(),
        false => None,
    };
    match objects {
        Some(objects) => objects.iter().flat_map(object_attributes).collect(),
        None => {
            let mut a = Attribute::new("attachment", "External analysis", "body")
                .noted(format!("the bulletin's body, {content_type}"));
            a.data = Some(base64::engine::general_purpose::STANDARD.encode(body));
            vec![a]
        }
    }
}

/// One STIX object as MISP attributes.
fn object_attributes(o: &StixObject) -> Vec<Attribute> {
    let text = |field: &str| {
        o.json
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let noted = |a: Attribute| a.noted(format!("STIX {}", o.id));
    match o.kind.as_str() {
        "indicator" => pattern_attributes(text("pattern"))
            .into_iter()
            .map(noted)
            .collect(),
        "vulnerability" => {
            let cve = o
                .json
                .get("external_references")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("source_name").and_then(Value::as_str) == Some("cve"))
                .and_then(|r| r.get("external_id").and_then(Value::as_str));
            let value = cve.unwrap_or(text("name"));
            vec![noted(Attribute::new(
                "vulnerability",
                "External analysis",
                value,
            ))]
        }
        "malware" => vec![noted(Attribute::new(
            "text",
            "Payload installation",
            text("name"),
        ))],
        "note" => vec![noted(Attribute::new("text", "Other", text("content")))],
        "report" => {
            let words = [text("name"), text("description")].join("\n");
            vec![noted(Attribute::new(
                "text",
                "External analysis",
                words.trim(),
            ))]
        }
        _ => Vec::new(),
    }
}

/// The observables a STIX pattern compares with `=`, as MISP attributes; the pattern
/// itself when it names none MISP has a type for.
fn pattern_attributes(pattern: &str) -> Vec<Attribute> {
    let mut found = Vec::new();
    for comparison in pattern
        .split(['[', ']'])
        .flat_map(|p| p.split(" OR "))
        .flat_map(|p| p.split(" AND "))
    {
        let Some((path, value)) = comparison.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('\'').replace("\\'", "'");
        let typed = match path.trim() {
            "ipv4-addr:value" | "ipv6-addr:value" => ("ip-dst", "Network activity"),
            "domain-name:value" => ("domain", "Network activity"),
            "url:value" => ("url", "Network activity"),
            "email-addr:value" => ("email-src", "Payload delivery"),
            "file:name" => ("filename", "Payload delivery"),
            "file:hashes.MD5" | "file:hashes.'MD5'" => ("md5", "Payload delivery"),
            "file:hashes.'SHA-1'" | "file:hashes.SHA1" => ("sha1", "Payload delivery"),
            "file:hashes.'SHA-256'" | "file:hashes.SHA256" => ("sha256", "Payload delivery"),
            _ => continue,
        };
        let mut a = Attribute::new(typed.0, typed.1, value);
        a.to_ids = true;
        found.push(a);
    }
    if found.is_empty() && !pattern.is_empty() {
        let mut a = Attribute::new("stix2-pattern", "Payload installation", pattern);
        a.to_ids = true;
        found.push(a);
    }
    found
}

/// The origin's signature over the bulletin and the path it took: with them a MISP
/// user can verify the event came from its origin as renkei did.
fn provenance(b: &VerifiedBulletin, path: &[String]) -> Vec<Attribute> {
    use prost::Message as _;
    let signed = base64::engine::general_purpose::STANDARD.encode(b.signed().encode_to_vec());
    let mut out = vec![Attribute::new("text", "Other", signed).noted(format!(
        "renkei: the SignedBulletin (base64 protobuf) of {}, signed by its origin's Ed25519 key {}",
        b.header().origin,
        b.key()
    ))];
    if !path.is_empty() {
        out.push(
            Attribute::new("text", "Other", path.join(" > "))
                .noted("renkei: the peer nodes the bulletin crossed, first to last"),
        );
    }
    out
}

/// The event's entry in a feed's `manifest.json`: `(uuid, entry)`.
pub fn manifest_entry(event: &Value) -> Option<(String, Value)> {
    let e = event.get("Event")?;
    let uuid = e.get("uuid")?.as_str()?.to_owned();
    let mut entry = json!({});
    for key in ["Orgc", "Tag", "info", "date"] {
        entry[key] = e.get(key).cloned().unwrap_or(Value::Null);
    }
    // Numbers in a manifest, as MISP's own feed generator writes them.
    for key in ["analysis", "threat_level_id", "timestamp"] {
        let number = e
            .get(key)
            .and_then(Value::as_str)
            .and_then(|n| n.parse::<u64>().ok());
        entry[key] = number.map_or(Value::Null, Value::from);
    }
    Some((uuid, entry))
}

/// The event's lines in a feed's `hashes.csv`: the MD5 of each attribute value (its
/// objects' too, and each part of a composite `a|b` value, as MISP hashes them), then
/// the event's uuid, as MISP looks values up in a feed without fetching it.
pub fn hash_lines(event: &Value) -> Vec<String> {
    let Some(e) = event.get("Event") else {
        return Vec::new();
    };
    let uuid = e.get("uuid").and_then(Value::as_str).unwrap_or_default();
    let own = listed(e, "Attribute");
    let of_objects = listed(e, "Object")
        .iter()
        .flat_map(|o| listed(o, "Attribute"))
        .collect::<Vec<_>>();
    let mut lines = Vec::new();
    for a in own.iter().chain(&of_objects) {
        let kind = a.get("type").and_then(Value::as_str).unwrap_or_default();
        let value = match a.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => continue,
            Some(other) => other.to_string(),
        };
        let parts: Vec<&str> = match kind.contains('|') || kind == "malware-sample" {
            true => value.split('|').collect(),
            false => vec![value.as_str()],
        };
        for part in parts {
            lines.push(format!("{},{uuid}", hex::encode(md5::Md5::digest(part))));
        }
    }
    lines
}

pub mod inbound;

#[cfg(test)]
mod tests;
