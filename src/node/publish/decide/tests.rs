//! The publish decisions without a socket: frames, rules, limits and a time in; the
//! answers, the audit records and what goes to the storage thread out.

use std::path::Path;

use bytes::Bytes;
use ed25519_dalek::SigningKey;

use super::*;
use crate::config::NodeConfig;
use crate::identity::PublicKey;
use crate::proto::AuditEvent;

mod order;

const NOW: u64 = 1_790_000_000_000;

fn key(id: &str) -> SigningKey {
    let seed = id
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    SigningKey::from_bytes(&[seed; 32])
}

fn pid(id: &str) -> PartnerId {
    id.parse().unwrap()
}

/// The hub's rules: us-dod and au-dod liaisons, nato-ccdcoe a relay, au-dod cleared
/// up to `au_clearance`; ee-mod is an origin whose key the hub knows (a partner too).
fn rules(au_clearance: &str) -> RuleSet {
    let config = NodeConfig::parse(&rules_text(au_clearance), Path::new("hub.toml")).unwrap();
    RuleSet::new(config, 0)
}

/// The hub's rules as TOML.
fn rules_text(au_clearance: &str) -> String {
    let mut text = String::from(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"c\"\n\
         tls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n",
    );
    for (id, role, clearance, groups) in [
        ("us-dod", "liaison", "red", "[\"five-eyes\"]"),
        ("au-dod", "liaison", au_clearance, "[\"five-eyes\"]"),
        ("nato-ccdcoe", "relay", "amber", "[\"nato\"]"),
        ("ee-mod", "liaison", "amber", "[\"nato\"]"),
    ] {
        text += &format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"{role}\"\nclearance = \"{clearance}\"\ngroups = {groups}\nkeys = [{{ public = \"{}\" }}]\n",
            PublicKey::of(&key(id))
        );
    }
    text
}

/// The hub with a second peer node, us-node, and ee-cert beyond nato-ccdcoe.
fn federated() -> RuleSet {
    RuleSet::new(
        NodeConfig::parse(&federated_text(), Path::new("hub.toml")).unwrap(),
        0,
    )
}

/// [`federated`] as TOML.
fn federated_text() -> String {
    format!(
        "{}\n[[partner]]\nid = \"us-node\"\nrole = \"relay\"\nclearance = \"red\"\naddress = \"127.0.0.1:4433\"\n\
         \n[[origin]]\nid = \"ee-cert\"\nvia = [\"nato-ccdcoe\"]\nkeys = [{{ public = \"{}\" }}]\n",
        rules_text("amber"),
        PublicKey::of(&key("ee-cert"))
    )
}

fn with_path(mut p: proto::Publish, path: &[&str]) -> proto::Publish {
    p.path = path.iter().map(|n| n.to_string()).collect();
    p
}

fn bulletin(origin: &str, tlp: proto::Tlp, audience: &[&str], created: u64) -> proto::Bulletin {
    proto::Bulletin {
        id: crate::bulletin::BulletinId::new_v7(Timestamp::from_unix_ms(created)).to_string(),
        origin: origin.into(),
        created_unix_ms: created,
        tlp: tlp as i32,
        kind: proto::Kind::Advisory as i32,
        title: "VPN appliance exploitation".into(),
        audience: audience.iter().map(|a| a.to_string()).collect(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"details"),
        ..Default::default()
    }
}

fn publish(request_id: u64, b: &proto::Bulletin, signer: &str) -> proto::Publish {
    let signed = crate::bulletin::sign(b, &key(signer), &Limits::default()).unwrap();
    proto::Publish {
        request_id,
        bulletin: Some(signed),
        allow_unknown_audience: false,
        path: Vec::new(),
    }
}

fn decide_one(rules: &RuleSet, from: &str, role: Role, p: proto::Publish) -> Prepared {
    let now = Timestamp::from_unix_ms(NOW);
    let from = Partner::new(pid(from), role);
    let mut out = decide_batch(rules, &Limits::default(), &from, vec![p], now);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn refusal(p: Prepared) -> (proto::PublishResult, proto::AuditRecord) {
    match p {
        Err(r) => (*r.result, r.audit.record().clone()),
        Ok((b, _)) => panic!("accepted {}", b.id),
    }
}

#[test]
fn an_accepted_bulletin_goes_to_storage_with_its_answer_and_every_decision() {
    let green = bulletin("us-dod", proto::Tlp::Green, &[], NOW - 1_000);
    let (stored, answer) = decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(7, &green, "us-dod"),
    )
    .unwrap();
    let shared: Vec<&str> = stored.shared_with.iter().map(PartnerId::as_str).collect();
    assert_eq!(shared, ["au-dod", "nato-ccdcoe", "ee-mod"]);
    assert_eq!(stored.received_from, pid("us-dod"));
    let record = stored.audit.record();
    assert_eq!(record.event, AuditEvent::BulletinAccepted as i32);
    assert_eq!(
        record.decisions.len(),
        4,
        "every configured partner's decision"
    );
    assert!(!record.decisions[0].shared, "not back to its origin");
    let result = answer.into_result();
    assert_eq!(
        (result.request_id, result.status),
        (7, PublishStatus::Accepted as i32)
    );
    assert_eq!(result.bulletin_id, green.id);
}

#[test]
fn a_batch_is_answered_in_order_each_refusal_on_the_record() {
    let good = bulletin("us-dod", proto::Tlp::Green, &[], NOW - 1_000);
    let mut forged = publish(
        2,
        &bulletin("us-dod", proto::Tlp::Green, &[], NOW - 1_000),
        "ee-mod",
    );
    // ee-mod's signature under us-dod's key id: the signature does not verify.
    let us = PublicKey::of(&key("us-dod"));
    if let Some(s) = forged.bulletin.as_mut() {
        s.key_id = Bytes::copy_from_slice(us.key_id().as_bytes());
    }
    let stranger = publish(
        3,
        &bulletin("nz-mod", proto::Tlp::Green, &[], NOW - 1_000),
        "nz-mod",
    );
    let empty = proto::Publish {
        request_id: 4,
        bulletin: None,
        allow_unknown_audience: false,
        path: Vec::new(),
    };
    let batch = vec![publish(1, &good, "us-dod"), forged, stranger, empty];
    let now = Timestamp::from_unix_ms(NOW);
    let answers = decide_batch(
        &rules("amber"),
        &Limits::default(),
        &Partner::new(pid("us-dod"), Role::Liaison),
        batch,
        now,
    );
    assert!(answers[0].is_ok());
    let codes: Vec<(u64, i32)> = answers
        .into_iter()
        .skip(1)
        .map(|a| {
            let (result, record) = refusal(a);
            assert_eq!(record.event, AuditEvent::BulletinRejected as i32);
            assert_eq!(
                record.error, result.error,
                "the record says what the publisher heard"
            );
            (result.request_id, result.error)
        })
        .collect();
    assert_eq!(
        codes,
        [
            (2, ErrorCode::BadSignature as i32),
            (3, ErrorCode::UnknownOrigin as i32),
            (4, ErrorCode::InvalidBulletin as i32),
        ]
    );
}

#[test]
fn a_liaison_publishes_only_its_own_bulletins_and_a_relay_forwards_others() {
    let ee = bulletin("ee-mod", proto::Tlp::Green, &[], NOW - 1_000);
    let (result, record) = refusal(decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(1, &ee, "ee-mod"),
    ));
    assert_eq!(result.error, ErrorCode::OriginMismatch as i32);
    assert_eq!(record.bulletin_id, ee.id, "the refusal names the bulletin");
    let (stored, _) = decide_one(
        &rules("amber"),
        "nato-ccdcoe",
        Role::Relay,
        publish(1, &ee, "ee-mod"),
    )
    .unwrap();
    assert_eq!(stored.received_from, pid("nato-ccdcoe"));
    assert!(
        !stored.shared_with.contains(&pid("nato-ccdcoe")),
        "not back to the relay"
    );
}

#[test]
fn an_unknown_audience_is_refused_unless_the_publisher_means_it() {
    let typo = bulletin(
        "us-dod",
        proto::Tlp::Amber,
        &["group:natoo", "au-dod"],
        NOW - 1_000,
    );
    let (result, _) = refusal(decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(1, &typo, "us-dod"),
    ));
    assert_eq!(result.error, ErrorCode::UnknownAudience as i32);
    // Which entry is unknown is the operator's to disclose (naming it would be an oracle).
    assert!(
        result.message.contains("names 1 entry this node knows")
            && !result.message.contains("natoo"),
        "{}",
        result.message
    );
    let disclosing = {
        let text = rules_text("amber") + "\n[disclosure]\nwithheld = true\n";
        RuleSet::new(NodeConfig::parse(&text, Path::new("hub.toml")).unwrap(), 0)
    };
    let (told, _) = refusal(decide_one(
        &disclosing,
        "us-dod",
        Role::Liaison,
        publish(1, &typo, "us-dod"),
    ));
    assert!(
        told.message.contains("names group:natoo,"),
        "{}",
        told.message
    );
    let mut meant = publish(1, &typo, "us-dod");
    meant.allow_unknown_audience = true;
    let (stored, _) = decide_one(&rules("amber"), "us-dod", Role::Liaison, meant).unwrap();
    assert_eq!(stored.shared_with, [pid("au-dod")]);
    // A relay's bulletin was addressed under another node's partners: not checked,
    // its own bulletins included.
    let relayed = bulletin("ee-mod", proto::Tlp::Green, &["lt-mod"], NOW - 1_000);
    let own = bulletin("nato-ccdcoe", proto::Tlp::Green, &["lt-mod"], NOW - 1_000);
    for (b, signer) in [(&relayed, "ee-mod"), (&own, "nato-ccdcoe")] {
        let p = publish(1, b, signer);
        assert!(decide_one(&rules("amber"), "nato-ccdcoe", Role::Relay, p).is_ok());
    }
    // An auditor receives nothing: naming one reaches nobody.
    let audit = rules_text("amber") + "\n[[partner]]\nid = \"audit\"\nrole = \"auditor\"\n";
    let audit = RuleSet::new(NodeConfig::parse(&audit, Path::new("hub.toml")).unwrap(), 0);
    let to_auditor = bulletin("us-dod", proto::Tlp::Amber, &["audit"], NOW - 1_000);
    let (r, _) = refusal(decide_one(
        &audit,
        "us-dod",
        Role::Liaison,
        publish(1, &to_auditor, "us-dod"),
    ));
    assert_eq!(r.error, ErrorCode::UnknownAudience as i32);
}

#[test]
fn the_rules_and_the_time_are_inputs() {
    // The same bulletin under the rules before and after a reload that lowers au-dod.
    let amber = bulletin("us-dod", proto::Tlp::Amber, &[], NOW - 1_000);
    let (before, _) = decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(1, &amber, "us-dod"),
    )
    .unwrap();
    let (after, _) = decide_one(
        &rules("green"),
        "us-dod",
        Role::Liaison,
        publish(1, &amber, "us-dod"),
    )
    .unwrap();
    assert!(before.shared_with.contains(&pid("au-dod")));
    assert!(!after.shared_with.contains(&pid("au-dod")));
    // Age and clock skew are judged at the time given, not the machine's clock.
    let future = bulletin("us-dod", proto::Tlp::Green, &[], NOW + 3_600_000);
    let (result, _) = refusal(decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(1, &future, "us-dod"),
    ));
    assert_eq!(result.error, ErrorCode::ClockSkew as i32);
    let old = bulletin("us-dod", proto::Tlp::Green, &[], NOW - 40 * 86_400_000);
    let (result, _) = refusal(decide_one(
        &rules("amber"),
        "us-dod",
        Role::Liaison,
        publish(1, &old, "us-dod"),
    ));
    assert_eq!(result.error, ErrorCode::TooOld as i32);
}

#[test]
fn an_origin_beyond_a_peer_arrives_only_through_the_peers_it_is_listed_for() {
    let hub = federated();
    let ee = bulletin("ee-cert", proto::Tlp::Green, &[], NOW - 1_000);
    let (stored, _) =
        decide_one(&hub, "nato-ccdcoe", Role::Relay, publish(1, &ee, "ee-cert")).unwrap();
    assert_eq!(
        stored.path,
        [pid("nato-ccdcoe")],
        "the relay is on the path"
    );
    assert!(stored.shared_with.contains(&pid("us-node")));
    let (result, record) = refusal(decide_one(
        &hub,
        "us-node",
        Role::Relay,
        publish(2, &ee, "ee-cert"),
    ));
    assert_eq!(result.error, ErrorCode::NotViaPeer as i32);
    assert!(
        result
            .message
            .contains("through nato-ccdcoe, not through us-node"),
        "{}",
        result.message
    );
    assert_eq!(record.event, AuditEvent::BulletinRejected as i32);
    let stranger = bulletin("kr-mnd", proto::Tlp::Green, &[], NOW - 1_000);
    let (result, _) = refusal(decide_one(
        &hub,
        "nato-ccdcoe",
        Role::Relay,
        publish(3, &stranger, "kr-mnd"),
    ));
    assert_eq!(result.error, ErrorCode::UnknownOrigin as i32);
    // A partner's own bulletins may come through any peer.
    let us = bulletin("us-dod", proto::Tlp::Green, &[], NOW - 1_000);
    assert!(decide_one(&hub, "us-node", Role::Relay, publish(4, &us, "us-dod")).is_ok());
}

#[test]
fn a_path_is_refused_when_it_loops_is_malformed_or_is_too_long() {
    let hub = federated();
    let us = bulletin("us-dod", proto::Tlp::Green, &[], NOW - 1_000);
    let forwarded = |path: &[&str]| {
        decide_one(
            &hub,
            "us-node",
            Role::Relay,
            with_path(publish(1, &us, "us-dod"), path),
        )
    };
    for (path, says) in [
        (&["jp-mod", "us-node"][..], "a loop"),
        (&["Not An Id", "us-node"][..], "path[0] is not a node id"),
        (
            &["a-node", "b-node", "c-node", "us-node"][..],
            "hop limit is 4",
        ),
    ] {
        let (result, _) = refusal(forwarded(path));
        assert_eq!(result.error, ErrorCode::BadPath as i32, "{path:?}");
        assert!(
            result.message.contains(says),
            "{path:?}: {}",
            result.message
        );
    }
    // Only a relay hands a path over.
    let (result, _) = refusal(decide_one(
        &hub,
        "us-dod",
        Role::Liaison,
        with_path(publish(2, &us, "us-dod"), &["us-node"]),
    ));
    assert_eq!(result.error, ErrorCode::BadPath as i32);
    assert!(
        result.message.contains("only a relay"),
        "{}",
        result.message
    );
    let (stored, _) = forwarded(&["a-node", "b-node", "us-node"]).unwrap();
    assert_eq!(stored.path, [pid("a-node"), pid("b-node"), pid("us-node")]);
    assert!(
        !stored.shared_with.contains(&pid("nato-ccdcoe")),
        "the path is full at the next relay: {:?}",
        stored.shared_with
    );
}
