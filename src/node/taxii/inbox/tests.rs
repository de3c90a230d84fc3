//! The inbox without a socket: objects, rules, the node's key and a time in; bulletins
//! and failures out.

use std::path::Path;

use prost::Message as _;
use serde_json::json;

use crate::identity::Role;

use super::*;
use crate::config::NodeConfig;
use crate::proto::AuditEvent;

const NOW: u64 = 1_790_000_000_000;
const GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
const AMBER: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";

fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// The signing key of desk number `n`.
fn desk_key(n: u8) -> String {
    crate::identity::PublicKey::of(&SigningKey::from_bytes(&[n; 32])).to_string()
}

/// jp-mod's rules: three liaison desks with their keys, au-dod cleared for AMBER, the
/// others GREEN, and an audit office; `extra` appended.
fn rules_with(extra: &str) -> RuleSet {
    let mut text = String::from(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"c\"\n\
         tls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
         [[partner]]\nid = \"audit\"\nrole = \"auditor\"\n",
    );
    for (n, id, clearance) in [
        (1, "jp-cdc", "green"),
        (2, "au-dod", "amber"),
        (3, "ee-mod", "green"),
    ] {
        text += &format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"{clearance}\"\n\
             keys = [{{ public = \"{}\" }}]\n",
            desk_key(n)
        );
    }
    text += extra;
    let config = NodeConfig::parse(&text, Path::new("hub.toml")).expect("a config");
    RuleSet::new(config, 0).with_own_key(&node_key().verifying_key())
}

fn rules() -> RuleSet {
    rules_with("")
}

fn object(kind: &str, n: u32, marking: Option<&str>) -> Value {
    let mut o = json!({
        "type": kind, "spec_version": "2.1",
        "id": format!("{kind}--00000000-0000-4000-8000-{n:012}"),
        "created": "2026-11-30T09:00:00.000Z", "modified": "2026-11-30T09:00:00.000Z",
    });
    if let Some(m) = marking {
        o["object_marking_refs"] = json!([m]);
    }
    o
}

fn prepare_as(writer: &str, objects: Vec<Value>) -> Prepared {
    prepare_under(&rules(), (writer, Role::Liaison, &[]), objects)
}

fn prepare_under(
    rules: &RuleSet,
    (writer, role, audience): (&str, Role, &[&str]),
    objects: Vec<Value>,
) -> Prepared {
    let id: PartnerId = writer.parse().expect("an id");
    let writer = Writer {
        who: Partner::new(id, role),
        audience: audience.iter().map(|a| a.to_string()).collect(),
    };
    let now = Timestamp::from_unix_ms(NOW);
    prepare(
        objects,
        &writer,
        rules,
        &node_key(),
        &Limits::default(),
        now,
    )
}

fn header(m: &Made) -> proto::Bulletin {
    let signed = &m.bulletin.signed;
    proto::Bulletin::decode(signed.bulletin.clone()).expect("a bulletin")
}

#[test]
fn objects_become_node_bulletins_one_per_tlp_shared_by_the_policy() {
    let p = prepare_under(
        &rules(),
        ("jp-cdc", Role::Liaison, &["au-dod", "ee-mod"]),
        vec![
            object("indicator", 1, Some(GREEN)),
            object("malware", 2, Some(GREEN)),
            object("report", 3, Some(AMBER)),
            // Unmarked: takes the envelope's strictest marking, AMBER.
            object("indicator", 4, None),
        ],
    );
    assert!(p.failures.is_empty(), "{:?}", p.failures);
    assert_eq!(p.made.len(), 2);
    let (green, amber) = (&p.made[0], &p.made[1]);
    for m in [green, amber] {
        let b = header(m);
        assert_eq!(b.origin, "jp-mod");
        assert_eq!(m.bulletin.received_from.as_str(), "jp-cdc");
        assert_eq!(b.content_type, crate::bulletin::STIX_CONTENT_TYPE);
        let record = m.bulletin.audit.record();
        assert_eq!(record.event, AuditEvent::BulletinAccepted as i32);
        assert_eq!(record.partner, "jp-cdc");
    }
    assert_eq!(header(green).tlp, Tlp::Green.to_proto() as i32);
    assert_eq!(header(green).kind, Kind::Indicator.to_proto() as i32);
    assert_eq!(green.objects.len(), 2);
    assert_eq!(header(amber).tlp, Tlp::Amber.to_proto() as i32);
    assert_eq!(header(amber).kind, Kind::Report.to_proto() as i32);
    // The writer does not get its own objects back; AMBER only reaches the AMBER desk.
    let names = |m: &Made| {
        m.bulletin
            .shared_with
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(green), ["au-dod", "ee-mod"]);
    assert_eq!(names(amber), ["au-dod"]);
    // Signed by the node: its key verifies the bulletin.
    let bundle: Value = serde_json::from_slice(&header(green).body).expect("json");
    assert_eq!(bundle["objects"].as_array().map(Vec::len), Some(2));
}

#[test]
fn unlabelled_or_malformed_objects_are_refused_one_by_one() {
    let p = prepare_as(
        "jp-cdc",
        vec![object("indicator", 1, None), json!({"type": "indicator"})],
    );
    assert!(p.made.is_empty());
    assert_eq!(p.failures.len(), 2);
    // What does not parse is named first, then what has no label.
    assert_eq!(p.failures[0].id, "");
    assert_eq!(p.failures[0].message, "object 1: no \"id\"");
    assert!(p.failures[1].id.starts_with("indicator--"));
    let why = &p.failures[1].message;
    assert!(why.contains("renkei shares nothing unlabelled"), "{why}");
}

/// The inbox once published as the node for anyone, with no audience.
#[test]
fn the_node_signs_only_for_a_desk_that_could_publish_and_only_to_an_audience() {
    let amber = || vec![object("report", 5, Some(AMBER))];
    let refused = |p: &Prepared| (p.made.len(), p.failures.first().map(|f| f.code));
    // AMBER and stricter need an audience the node knows.
    let none = prepare_as("jp-cdc", amber());
    assert_eq!(refused(&none), (0, Some(ErrorCode::UnknownAudience)));
    assert!(none.failures[0].message.contains("x_renkei_audience"));
    let stranger = prepare_under(&rules(), ("jp-cdc", Role::Liaison, &["cn-pla"]), amber());
    assert_eq!(refused(&stranger), (0, Some(ErrorCode::UnknownAudience)));
    let named = prepare_under(&rules(), ("jp-cdc", Role::Liaison, &["au-dod"]), amber());
    assert_eq!(refused(&named), (1, None));
    // An auditor (or a peer node) publishes nothing, through any door.
    let auditor = prepare_under(&rules(), ("audit", Role::Auditor, &["au-dod"]), amber());
    assert_eq!(refused(&auditor), (0, Some(ErrorCode::NotPermitted)));
    // A desk whose keys are all revoked is cut off here too.
    let revoked = rules_with(&format!("\n[[revoked]]\nkey = \"{}\"\n", desk_key(1)));
    let cut = prepare_under(&revoked, ("jp-cdc", Role::Liaison, &["au-dod"]), amber());
    assert_eq!(refused(&cut), (0, Some(ErrorCode::KeyRevoked)));
    assert!(cut.failures[0].message.contains("no signing key in force"));
}
