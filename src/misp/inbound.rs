//! A MISP event a desk brings in: what it says of the bulletin it becomes (TLP and kind
//! from its tags, the title from its `info`, an audience from its sharing group), and
//! its attributes as a STIX 2.1 bundle. An event meant for its own organisation only
//! (`distribution` 0) is refused: it was never the desk's to share.

use serde_json::{json, Value};

use crate::bulletin::{BulletinId, Kind, Tlp, STIX_CONTENT_TYPE};
use crate::proto;
use crate::stix;
use crate::timestamp::Timestamp;

/// Largest MISP event read, in bytes (a bulletin body is smaller still).
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// Why a MISP event cannot become a bulletin.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MispError {
    /// Not MISP event JSON.
    #[error("not a MISP event: {0}")]
    NotAnEvent(String),
    /// Larger than a bulletin could carry.
    #[error("the MISP event is {0} bytes, over the {MAX_EVENT_BYTES} bytes read")]
    TooLarge(usize),
    /// Marked for its own organisation only.
    #[error("the MISP event's distribution is 0 (your organisation only): it is not to be shared")]
    OrganisationOnly,
    /// No TLP, and none given.
    #[error("the MISP event has no tlp: tag (renkei shares nothing unlabelled): tag it in MISP, or give a TLP")]
    NoTlp,
}

impl MispError {
    /// The protocol's error code for it, as a refused publish has.
    pub fn code(&self) -> proto::ErrorCode {
        match self {
            MispError::NotAnEvent(_) | MispError::NoTlp => proto::ErrorCode::InvalidBulletin,
            MispError::TooLarge(_) => proto::ErrorCode::BulletinTooLarge,
            MispError::OrganisationOnly => proto::ErrorCode::NotPermitted,
        }
    }
}

/// How an event travels in its bulletin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Form {
    /// As a STIX 2.1 bundle, which every desk and TAXII client reads.
    #[default]
    Stix,
    /// As the MISP event JSON itself (`misp::MISP_CONTENT_TYPE`).
    Event,
}

/// What the publisher decides of the bulletin an event becomes; the event fills the
/// rest.
#[derive(Clone, Debug)]
pub struct Drafting {
    /// Whose bulletin it is (who signs it).
    pub origin: String,
    /// When it is created.
    pub created: Timestamp,
    /// A TLP that overrides the event's tags.
    pub tlp: Option<Tlp>,
    /// A kind that overrides the event's tag (otherwise the objects say).
    pub kind: Option<Kind>,
    /// How the event travels.
    pub form: Form,
    /// Who it is for: partner ids and `group:NAME`s.
    pub audience: Vec<String>,
}

/// What a MISP event says of the bulletin it becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    /// The strictest `tlp:` tag, if it has one.
    pub tlp: Option<Tlp>,
    /// From a `renkei:kind="…"` tag, if it has one.
    pub kind: Option<Kind>,
    /// Its `info`.
    pub title: String,
    /// Its other tags.
    pub tags: Vec<String>,
    /// The organisations of its sharing group (distribution 4), by name.
    pub sharing_group: Vec<String>,
    /// The event itself (the object under `Event`).
    pub event: Value,
}

/// Reads a MISP event (`{"Event": {...}}` or the bare event object).
pub fn read(bytes: &[u8]) -> Result<Inbound, MispError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(MispError::TooLarge(bytes.len()));
    }
    let json: Value =
        serde_json::from_slice(bytes).map_err(|e| MispError::NotAnEvent(e.to_string()))?;
    let event = json.get("Event").cloned().unwrap_or(json);
    if !event.is_object() || event.get("Attribute").is_some_and(|a| !a.is_array()) {
        return Err(MispError::NotAnEvent(
            "no event object with an Attribute list".into(),
        ));
    }
    if number(&event, "distribution") == Some(0) {
        return Err(MispError::OrganisationOnly);
    }
    let names = tag_names(&event);
    let tlp = names
        .iter()
        .filter(|t| t.to_ascii_lowercase().starts_with("tlp:"))
        .filter_map(|t| t.parse::<Tlp>().ok())
        .max();
    let kind = names.iter().find_map(|t| {
        let k = t.strip_prefix("renkei:kind=")?.trim_matches('"');
        k.parse::<Kind>().ok()
    });
    let tags = names
        .iter()
        .filter(|t| !t.to_ascii_lowercase().starts_with("tlp:") && !t.starts_with("renkei:kind="))
        .cloned()
        .collect();
    Ok(Inbound {
        tlp,
        kind,
        title: text(&event, "info").to_owned(),
        tags,
        sharing_group: sharing_group(&event),
        event,
    })
}

/// The unsigned bulletin the event `raw` (read as `event`) becomes: its TLP and kind
/// from its tags unless `d` gives them, its `info` as the title, its tags, and as id
/// its own uuid when that is one, so that it comes back under it.
pub fn draft(event: &Inbound, raw: &[u8], d: &Drafting) -> Result<proto::Bulletin, MispError> {
    let tlp = d.tlp.or(event.tlp).ok_or(MispError::NoTlp)?;
    let bundle = to_stix(event, tlp, &d.created.rfc3339_ms());
    let kind = d.kind.or(event.kind).unwrap_or_else(|| {
        let objects = stix::bundle_objects(bundle.to_string().as_bytes());
        objects.map_or(Kind::Report, |o| stix::kind_of(&o))
    });
    let (content_type, body) = match d.form {
        Form::Stix => (STIX_CONTENT_TYPE, bundle.to_string().into_bytes()),
        Form::Event => (super::MISP_CONTENT_TYPE, raw.to_vec()),
    };
    let id = BulletinId::parse_canonical(text(&event.event, "uuid"))
        .unwrap_or_else(|| BulletinId::new_v7(d.created));
    Ok(proto::Bulletin {
        id: id.to_string(),
        origin: d.origin.clone(),
        created_unix_ms: d.created.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title: match event.title.is_empty() {
            true => "MISP event".to_owned(),
            false => event.title.clone(),
        },
        summary: String::new(),
        tags: event.tags.clone(),
        audience: d.audience.clone(),
        content_type: content_type.to_owned(),
        body: body.into(),
        references: vec![],
    })
}

/// The organisations of the event's sharing group that `known` knows (as an audience),
/// and those it does not.
pub fn sharing_group_audience(
    event: &Inbound,
    known: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    event.sharing_group.iter().cloned().partition(|n| known(n))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A field MISP writes as a number or as a string of digits.
fn number(v: &Value, key: &str) -> Option<u64> {
    let f = v.get(key)?;
    f.as_u64().or_else(|| f.as_str()?.parse().ok())
}

fn tag_names(event: &Value) -> Vec<String> {
    let tags = event.get("Tag").and_then(Value::as_array);
    tags.into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn sharing_group(event: &Value) -> Vec<String> {
    if number(event, "distribution") != Some(4) {
        return Vec::new();
    }
    let orgs = event
        .pointer("/SharingGroup/SharingGroupOrg")
        .and_then(Value::as_array);
    orgs.into_iter()
        .flatten()
        .filter_map(|o| o.pointer("/Organisation/name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The event's attributes (its objects' too) as a STIX 2.1 bundle marked `tlp`:
/// observables as indicators, vulnerabilities as vulnerabilities, the rest and its event
/// reports as notes, all held by one report named by the event's `info`.
pub fn to_stix(inbound: &Inbound, tlp: Tlp, created: &str) -> Value {
    let e = &inbound.event;
    let uuid = text(e, "uuid");
    let report_id = format!("report--{}", stix_uuid(uuid, "report"));
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned();
    // An object's attributes (a file's name and hashes) are carried one by one.
    let of_objects = list(e, "Object").into_iter().flatten().enumerate();
    let of_objects = of_objects.flat_map(|(j, o)| {
        let each = list(&o, "Attribute").into_iter().flatten().enumerate();
        each.map(move |(i, a)| (format!("{uuid}/object {j}/{i}"), a))
    });
    let own = list(e, "Attribute").into_iter().flatten().enumerate();
    let own = own.map(|(i, a)| (format!("{uuid}/{i}"), a));
    let mut objects: Vec<Value> = own
        .chain(of_objects)
        .filter_map(|(name, a)| stix_object(&a, &name, &report_id, created))
        .collect();
    let reports = list(e, "EventReport").into_iter().flatten().enumerate();
    objects.extend(reports.filter_map(|(i, r)| {
        let name = format!("{uuid}/report {i}");
        report_note(&r, &name, &report_id, created)
    }));
    let refs: Vec<Value> = objects.iter().map(|o| o["id"].clone()).collect();
    let name = if inbound.title.is_empty() {
        "MISP event"
    } else {
        inbound.title.as_str()
    };
    objects.push(json!({
        "type": "report", "spec_version": "2.1", "id": report_id,
        "created": created, "modified": created, "published": created,
        "name": name, "report_types": ["threat-report"],
        // A report must hold something: an event without attributes holds itself.
        "object_refs": if refs.is_empty() { vec![json!(report_id)] } else { refs },
    }));
    let marking = stix::marking_of(tlp);
    for o in &mut objects {
        o["object_marking_refs"] = json!([marking]);
    }
    json!({"type": "bundle", "id": format!("bundle--{}", stix_uuid(uuid, "bundle")), "objects": objects})
}

/// A STIX id's UUID for `what` of the event `uuid`: stable, so the same event gives the
/// same objects.
fn stix_uuid(uuid: &str, what: &str) -> String {
    super::stable_uuid(&format!("stix {uuid} {what}"))
}

/// One attribute as a STIX object, if MISP says anything by it.
fn stix_object(a: &Value, name: &str, report: &str, created: &str) -> Option<Value> {
    let (kind, value) = (text(a, "type"), text(a, "value"));
    if value.is_empty() {
        return None;
    }
    let common = |t: &str| {
        json!({"type": t, "spec_version": "2.1", "id": format!("{t}--{}", stix_uuid(name, t)),
               "created": created, "modified": created})
    };
    if let Some(pattern) = pattern_of(kind, value) {
        let mut o = common("indicator");
        o["pattern"] = json!(pattern);
        o["pattern_type"] = json!("stix");
        o["valid_from"] = json!(created);
        o["name"] = json!(format!("{kind}: {value}"));
        return Some(o);
    }
    if kind == "vulnerability" {
        let mut o = common("vulnerability");
        o["name"] = json!(value);
        if value.to_ascii_uppercase().starts_with("CVE-") {
            o["external_references"] = json!([{"source_name": "cve", "external_id": value}]);
        }
        return Some(o);
    }
    let mut o = common("note");
    o["content"] = json!(match kind {
        "text" | "comment" | "other" => value.to_owned(),
        _ => format!("{kind}: {value}"),
    });
    o["object_refs"] = json!([report]);
    Some(o)
}

/// An event report (MISP's analyst write-up, in Markdown) as a STIX note.
fn report_note(r: &Value, name: &str, report: &str, created: &str) -> Option<Value> {
    let content = text(r, "content");
    if content.is_empty() {
        return None;
    }
    Some(json!({"type": "note", "spec_version": "2.1",
        "id": format!("note--{}", stix_uuid(name, "note")),
        "created": created, "modified": created,
        "abstract": text(r, "name"), "content": content, "object_refs": [report]}))
}

/// The STIX pattern of an observable attribute.
fn pattern_of(kind: &str, value: &str) -> Option<String> {
    let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
    let path = match kind {
        "ip-dst" | "ip-src" if value.contains(':') => "ipv6-addr:value",
        "ip-dst" | "ip-src" => "ipv4-addr:value",
        "domain" | "hostname" => "domain-name:value",
        "url" | "link" => "url:value",
        "email" | "email-src" | "email-dst" => "email-addr:value",
        "filename" => "file:name",
        "md5" => "file:hashes.MD5",
        "sha1" => "file:hashes.'SHA-1'",
        "sha256" => "file:hashes.'SHA-256'",
        "stix2-pattern" => return Some(value.to_owned()),
        _ => return None,
    };
    Some(format!("[{path} = '{quoted}']"))
}

#[cfg(test)]
mod tests;
