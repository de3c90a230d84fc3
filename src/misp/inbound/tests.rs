//! MISP events in: what they say of the bulletin, and their attributes as STIX.

use serde_json::json;

use super::*;

const CREATED: &str = "2026-12-06T09:00:00.000Z";

fn event(extra: Value) -> Vec<u8> {
    let mut e = json!({"uuid": "5e6f7a8b-0000-4000-8000-000000000001", "info": "Phishing wave",
    "distribution": "1",
    "Tag": [{"name": "tlp:green"}, {"name": "tlp:amber"}, {"name": "renkei:kind=\"advisory\""},
            {"name": "misp-galaxy:threat-actor=\"X\""}],
    "Attribute": [
        {"type": "ip-dst", "category": "Network activity", "value": "198.51.100.7"},
        {"type": "url", "category": "Network activity", "value": "http://x.example/it's"},
        {"type": "sha256", "category": "Payload delivery", "value": "bb22"},
        {"type": "vulnerability", "category": "External analysis", "value": "CVE-2026-0002"},
        {"type": "text", "category": "Other", "value": "sent to three ministries"},
    ]});
    for (k, v) in extra.as_object().expect("fields") {
        e[k] = v.clone();
    }
    json!({"Event": e}).to_string().into_bytes()
}

#[test]
fn the_tags_give_the_strictest_tlp_the_kind_and_the_rest() {
    let i = read(&event(json!({}))).expect("an event");
    assert_eq!(i.tlp, Some(Tlp::Amber), "the strictest of its TLP tags");
    assert_eq!(i.kind, Some(Kind::Advisory));
    assert_eq!(i.title, "Phishing wave");
    assert_eq!(i.tags, ["misp-galaxy:threat-actor=\"X\""]);
    let untagged = read(&event(json!({"Tag": []}))).expect("an event");
    assert_eq!((untagged.tlp, untagged.kind), (None, None));
}

#[test]
fn an_event_for_its_organisation_only_or_not_an_event_is_refused() {
    assert_eq!(
        read(&event(json!({"distribution": 0}))),
        Err(MispError::OrganisationOnly)
    );
    assert_eq!(
        read(&event(json!({"distribution": "0"}))),
        Err(MispError::OrganisationOnly)
    );
    assert!(matches!(read(b"[1, 2]"), Err(MispError::NotAnEvent(_))));
    assert!(matches!(
        read(b"{\"Event\": {\"Attribute\": 3}}"),
        Err(MispError::NotAnEvent(_))
    ));
    let huge = vec![b' '; MAX_EVENT_BYTES + 1];
    assert_eq!(read(&huge), Err(MispError::TooLarge(MAX_EVENT_BYTES + 1)));
}

#[test]
fn a_sharing_group_names_its_organisations() {
    let group = json!({"distribution": "4", "SharingGroup": {"SharingGroupOrg": [
        {"Organisation": {"name": "uk-mod"}}, {"Organisation": {"name": "ee-mod"}}]}});
    assert_eq!(
        read(&event(group)).expect("an event").sharing_group,
        ["uk-mod", "ee-mod"]
    );
}

#[test]
fn attributes_become_indicators_a_vulnerability_notes_and_a_report() {
    let i = read(&event(json!({}))).expect("an event");
    let bundle = to_stix(&i, Tlp::Amber, CREATED);
    let objects = stix::bundle_objects(bundle.to_string().as_bytes()).expect("a bundle");
    let patterns: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.json["pattern"].as_str())
        .collect();
    assert_eq!(
        patterns,
        [
            "[ipv4-addr:value = '198.51.100.7']",
            "[url:value = 'http://x.example/it\\'s']",
            "[file:hashes.'SHA-256' = 'bb22']",
        ]
    );
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "indicator",
            "indicator",
            "indicator",
            "vulnerability",
            "note",
            "report"
        ]
    );
    assert_eq!(
        objects[3].json["external_references"][0]["external_id"],
        "CVE-2026-0002"
    );
    assert_eq!(objects[4].json["content"], "sent to three ministries");
    assert_eq!(
        objects[5].json["object_refs"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(
        stix::strictest_tlp(&objects),
        Some(Tlp::Amber),
        "every object marked"
    );
    assert_eq!(
        bundle,
        to_stix(&i, Tlp::Amber, CREATED),
        "the same event, the same objects"
    );
}

#[test]
fn an_objects_attributes_and_the_event_reports_are_carried_too() {
    let file = json!([{"name": "file", "Attribute": [
        {"type": "filename", "object_relation": "filename", "value": "invoice.pdf.exe"},
        {"type": "md5", "object_relation": "md5", "value": "0123456789abcdef0123456789abcdef"},
    ]}]);
    let report = json!([{"name": "Loader analysis", "content": "# The loader\nIt drops a file."}]);
    let i = read(&event(json!({ "Object": file, "EventReport": report }))).expect("an event");
    let bundle = to_stix(&i, Tlp::Green, CREATED);
    let objects = stix::bundle_objects(bundle.to_string().as_bytes()).expect("a bundle");
    let patterns: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.json["pattern"].as_str())
        .collect();
    assert!(
        patterns.contains(&"[file:name = 'invoice.pdf.exe']")
            && patterns.contains(&"[file:hashes.MD5 = '0123456789abcdef0123456789abcdef']"),
        "{patterns:?}"
    );
    let note = objects
        .iter()
        .find(|o| o.json["abstract"] == "Loader analysis");
    assert_eq!(
        note.map(|n| n.kind.as_str()),
        Some("note"),
        "the event report"
    );
    let why = "five attributes, two of an object, the event report's note, the report";
    assert_eq!(objects.len(), 9, "{why}");
}
