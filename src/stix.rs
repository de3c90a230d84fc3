//! STIX 2.1 as the TAXII gateway serves and takes it: the objects of a bundle body and
//! their identity (id, type, version), and a bulletin's labels in STIX terms (TLP 2.0
//! marking definitions, the kind its object types make it). Pure: bytes and JSON in,
//! values out; no I/O, no clock.

use serde_json::Value;

use crate::bulletin::{Kind, Tlp};

/// Why a body or an object is not STIX 2.1 that renkei can carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StixError {
    /// Not JSON, or not a bundle.
    #[error("not a STIX 2.1 bundle: {0}")]
    NotABundle(String),
    /// Not a TAXII 2.1 envelope a client may add.
    #[error("not a TAXII 2.1 envelope: {0}")]
    NotAnEnvelope(String),
    /// An object without a usable `type` or `id`.
    #[error("object {index}: {why}")]
    BadObject {
        /// Its place in the envelope or bundle.
        index: usize,
        /// What is wrong with it.
        why: String,
    },
}

/// One STIX object and the identity TAXII pages and filters by.
#[derive(Clone, Debug, PartialEq)]
pub struct StixObject {
    /// `id`, e.g. `indicator--…`.
    pub id: String,
    /// `type`.
    pub kind: String,
    /// Its version: `modified`, else `created`; none for objects without either
    /// (cyber observables), which TAXII versions by the date they were added.
    pub version: Option<String>,
    /// The object as JSON.
    pub json: Value,
}

impl StixObject {
    /// Reads the identity of `json`, the object at `index`.
    pub fn from_json(index: usize, json: Value) -> Result<StixObject, StixError> {
        let bad = |why: &str| StixError::BadObject {
            index,
            why: why.to_owned(),
        };
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"type\""))?
            .to_owned();
        let id = json
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"id\""))?
            .to_owned();
        if id.split_once("--").map(|(t, _)| t) != Some(kind.as_str()) {
            return Err(bad(
                "its \"id\" does not start with its \"type\" and \"--\"",
            ));
        }
        let version = ["modified", "created"]
            .iter()
            .find_map(|f| json.get(*f).and_then(Value::as_str))
            .map(str::to_owned);
        Ok(StixObject {
            id,
            kind,
            version,
            json,
        })
    }
}

/// A TAXII 2.1 envelope as a client adds it to an inbox: its objects (not yet read as
/// STIX), and the audience it names for them (`x_renkei_audience`: partner ids and
/// `group:NAME`s, as a bulletin's audience).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    /// `objects`.
    pub objects: Vec<Value>,
    /// `x_renkei_audience`.
    pub audience: Vec<String>,
}

/// Reads the body of a TAXII 2.1 add-objects request.
pub fn envelope(body: &[u8]) -> Result<Envelope, StixError> {
    let not = |why: String| StixError::NotAnEnvelope(why);
    let mut envelope = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(not("the body is not a JSON object".into())),
        Err(e) => return Err(not(format!("the body is not JSON: {e}"))),
    };
    let objects = match envelope.remove("objects") {
        Some(Value::Array(objects)) => objects,
        None => Vec::new(),
        Some(_) => return Err(not("\"objects\" is not a list".into())),
    };
    let audience = match envelope.remove("x_renkei_audience") {
        None => Vec::new(),
        Some(Value::Array(names)) => names
            .into_iter()
            .map(|n| match n {
                Value::String(n) => Ok(n),
                _ => Err(not(
                    "\"x_renkei_audience\" lists partner ids and group:NAMEs, as strings".into(),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(not("\"x_renkei_audience\" is not a list".into())),
    };
    Ok(Envelope { objects, audience })
}

/// The objects of a bulletin body that is a STIX 2.1 bundle.
pub fn bundle_objects(body: &[u8]) -> Result<Vec<StixObject>, StixError> {
    let bundle: Value =
        serde_json::from_slice(body).map_err(|e| StixError::NotABundle(e.to_string()))?;
    if bundle.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err(StixError::NotABundle(
            "its \"type\" is not \"bundle\"".into(),
        ));
    }
    let Some(Value::Array(objects)) = bundle.get("objects").cloned() else {
        return Ok(Vec::new());
    };
    objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| StixObject::from_json(i, o))
        .collect()
}

/// The STIX 2.1 marking definitions of TLP 2.0 (and of TLP 1.0, read as their 2.0
/// counterparts, WHITE as CLEAR), as OASIS publishes them.
const TLP_MARKINGS: [(&str, Tlp); 9] = [
    (
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        Tlp::Clear,
    ),
    (
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        Tlp::Green,
    ),
    (
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        Tlp::Amber,
    ),
    (
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
        Tlp::AmberStrict,
    ),
    (
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        Tlp::Red,
    ),
    (
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        Tlp::Clear,
    ),
    (
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        Tlp::Green,
    ),
    (
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        Tlp::Amber,
    ),
    (
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        Tlp::Red,
    ),
];

/// The STIX 2.1 marking-definition id of TLP 2.0 level `tlp`.
pub fn marking_of(tlp: Tlp) -> &'static str {
    // The first five entries are TLP 2.0's, one per level.
    TLP_MARKINGS[..5]
        .iter()
        .find(|(_, t)| *t == tlp)
        .map_or(TLP_MARKINGS[4].0, |(m, _)| m)
}

/// `object` as it leaves the node: marked, as a whole, with the bulletin's TLP 2.0
/// level in place of any TLP marking it carried (the bulletin's level is the one the
/// node shared it under, never less strict than the object's own), other markings
/// kept. Marking definitions themselves are left as they are.
pub fn with_tlp(mut object: Value, tlp: Tlp) -> Value {
    if object.get("type").and_then(Value::as_str) == Some("marking-definition") {
        return object;
    }
    let Some(fields) = object.as_object_mut() else {
        return object;
    };
    let mut refs: Vec<Value> = fields
        .get("object_marking_refs")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| r.as_str().and_then(tlp_of_marking).is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    refs.insert(0, Value::from(marking_of(tlp)));
    fields.insert("object_marking_refs".into(), Value::Array(refs));
    object
}

/// The TLP of one marking-definition id, if it is a TLP marking.
pub fn tlp_of_marking(id: &str) -> Option<Tlp> {
    TLP_MARKINGS.iter().find(|(m, _)| *m == id).map(|(_, t)| *t)
}

/// The strictest TLP any object is marked with, as a whole (`object_marking_refs`) or
/// in part (`granular_markings`: a RED field makes the object RED, as it travels
/// whole); `None` if no object carries a TLP marking.
pub fn strictest_tlp(objects: &[StixObject]) -> Option<Tlp> {
    let whole = objects
        .iter()
        .filter_map(|o| o.json.get("object_marking_refs").and_then(Value::as_array))
        .flatten();
    let parts = objects
        .iter()
        .filter_map(|o| o.json.get("granular_markings").and_then(Value::as_array))
        .flatten()
        .filter_map(|g| g.get("marking_ref"));
    whole
        .chain(parts)
        .filter_map(|r| r.as_str().and_then(tlp_of_marking))
        // `Tlp`'s order is the TLP 2.0 order, CLEAR to RED.
        .max()
}

/// The bulletin kind a set of objects makes: the first object (in this order of
/// precedence) that names one; an indicator when none does.
pub fn kind_of(objects: &[StixObject]) -> Kind {
    const BY_TYPE: [(&str, Kind); 6] = [
        ("incident", Kind::Incident),
        ("report", Kind::Report),
        ("vulnerability", Kind::Vulnerability),
        ("course-of-action", Kind::Advisory),
        ("note", Kind::Advisory),
        ("indicator", Kind::Indicator),
    ];
    BY_TYPE
        .iter()
        .find(|(t, _)| objects.iter().any(|o| o.kind == *t))
        .map_or(Kind::Indicator, |(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, n: u8, extra: Value) -> Value {
        let mut o = json!({
            "type": kind,
            "spec_version": "2.1",
            "id": format!("{kind}--00000000-0000-4000-8000-0000000000{n:02x}"),
            "created": "2026-11-30T09:00:00.000Z",
        });
        if let (Value::Object(o), Value::Object(extra)) = (&mut o, extra) {
            o.extend(extra);
        }
        o
    }

    #[test]
    fn a_bundles_objects_are_read_with_their_versions() {
        let body = json!({
            "type": "bundle",
            "id": "bundle--00000000-0000-4000-8000-000000000000",
            "objects": [
                object("indicator", 1, json!({"modified": "2026-11-30T10:00:00.000Z"})),
                object("ipv4-addr", 2, json!({})),
            ],
        });
        let mut objects = bundle_objects(body.to_string().as_bytes()).expect("a bundle");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].kind, "indicator");
        assert_eq!(
            objects[0].version.as_deref(),
            Some("2026-11-30T10:00:00.000Z")
        );
        assert_eq!(
            objects[1].version.as_deref(),
            Some("2026-11-30T09:00:00.000Z")
        );
        objects[1].json.as_object_mut().map(|o| o.remove("created"));
        let again = StixObject::from_json(1, objects[1].json.clone()).expect("an object");
        assert_eq!(again.version, None);
    }

    #[test]
    fn what_is_not_a_bundle_or_an_object_says_why() {
        assert!(matches!(
            bundle_objects(b"not json"),
            Err(StixError::NotABundle(_))
        ));
        assert!(matches!(
            bundle_objects(br#"{"type":"indicator"}"#),
            Err(StixError::NotABundle(_))
        ));
        let wrong =
            json!({"type": "indicator", "id": "malware--00000000-0000-4000-8000-000000000001"});
        let err = StixObject::from_json(3, wrong).expect_err("a mismatched id");
        assert!(err.to_string().starts_with("object 3: its \"id\""), "{err}");
        let err = StixObject::from_json(0, json!({"id": "x--1"})).expect_err("no type");
        assert_eq!(err.to_string(), "object 0: no \"type\"");
    }

    #[test]
    fn the_strictest_tlp_marking_wins_and_tlp_1_reads_as_2() {
        let marked = |refs: &[&str]| {
            StixObject::from_json(
                0,
                object("indicator", 1, json!({"object_marking_refs": refs})),
            )
            .expect("an object")
        };
        let green = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
        let amber_strict = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003";
        let white_1_0 = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9";
        let objects = [
            marked(&[green]),
            marked(&[amber_strict, "marking-definition--other"]),
        ];
        assert_eq!(strictest_tlp(&objects), Some(Tlp::AmberStrict));
        assert_eq!(strictest_tlp(&[marked(&[white_1_0])]), Some(Tlp::Clear));
        assert_eq!(strictest_tlp(&[marked(&[])]), None);
        // A RED field makes the whole GREEN object RED.
        let mut partly_red = marked(&[green]);
        partly_red.json["granular_markings"] = json!([{
            "marking_ref": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
            "selectors": ["pattern"],
        }]);
        assert_eq!(strictest_tlp(&[partly_red]), Some(Tlp::Red));
    }

    #[test]
    fn an_envelope_gives_its_objects_and_audience_or_says_what_is_wrong() {
        let e = envelope(br#"{"objects": [{"type": "note"}], "x_renkei_audience": ["au-dod"]}"#);
        assert_eq!(
            e.map(|e| (e.objects.len(), e.audience)),
            Ok((1, vec!["au-dod".into()]))
        );
        assert_eq!(envelope(b"{}"), Ok(Envelope::default()));
        for (bad, why) in [
            (&b"{"[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (br#"{"objects": 3}"#, "\"objects\" is not a list"),
            (br#"{"x_renkei_audience": [1]}"#, "as strings"),
        ] {
            let e = envelope(bad).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn served_objects_carry_the_bulletins_tlp_in_place_of_their_own() {
        // A RED indicator once left the TAXII gateway unmarked.
        let bare = object("indicator", 1, json!({}));
        let red = with_tlp(bare, Tlp::Red);
        assert_eq!(
            red["object_marking_refs"],
            json!(["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"])
        );
        let green = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
        let marked = object(
            "report",
            2,
            json!({"object_marking_refs": [green, "marking-definition--pap-amber"]}),
        );
        let amber = with_tlp(marked, Tlp::Amber);
        assert_eq!(
            amber["object_marking_refs"],
            json!([marking_of(Tlp::Amber), "marking-definition--pap-amber"])
        );
        for t in [
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red,
        ] {
            assert_eq!(tlp_of_marking(marking_of(t)), Some(t));
        }
    }

    #[test]
    fn the_kind_follows_the_weightiest_object_type() {
        let objects = |kinds: &[&str]| -> Vec<StixObject> {
            kinds
                .iter()
                .enumerate()
                .map(|(i, k)| StixObject::from_json(i, object(k, i as u8, json!({}))).expect("ok"))
                .collect()
        };
        assert_eq!(kind_of(&objects(&["indicator", "report"])), Kind::Report);
        assert_eq!(
            kind_of(&objects(&["indicator", "malware"])),
            Kind::Indicator
        );
        assert_eq!(kind_of(&objects(&["vulnerability"])), Kind::Vulnerability);
        assert_eq!(kind_of(&objects(&["identity"])), Kind::Indicator);
    }
}
