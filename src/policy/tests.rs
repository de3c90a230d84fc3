use super::*;
use crate::timestamp::Timestamp;
use proto::WithholdReason as R;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

fn header(tlp: Tlp, audience: &[&str]) -> Header {
    Header {
        id: crate::bulletin::BulletinId::parse_canonical("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b")
            .unwrap(),
        origin: pid("mod-jp"),
        created: Timestamp::from_unix_ms(1),
        tlp,
        kind: Kind::Advisory,
        tags: vec!["Phishing".into()],
        audience: audience.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

/// The decision for one partner, for a bulletin handed over by `from`: its origin, or
/// a relay that is then the one node on its path.
fn decide(b: &Header, from: &PartnerId, p: &PartnerRules) -> Decision {
    let path = Route::crossed(
        Vec::new(),
        from,
        if *from == b.origin {
            Role::Liaison
        } else {
            Role::Relay
        },
    );
    let route = Route {
        received_from: from,
        path: &path,
    };
    Policy::new(vec![p.clone()]).still_shared(b, route, &p.id)
}

fn rules(id: &str, role: Role, clearance: Option<Tlp>) -> PartnerRules {
    PartnerRules {
        id: pid(id),
        role,
        clearance,
        kinds: None,
        deny_tags: HashSet::new(),
        groups: ["nato".parse().unwrap()].into_iter().collect(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Audience {
    Empty,
    Direct,
    ViaGroup,
    OtherOnly,
}

/// The rules of proto/README.md §3 written as a flat table, independent of `decide`'s structure.
fn expected(
    tlp: Tlp,
    role: Role,
    clearance: Option<Tlp>,
    aud: Audience,
    via_relay: bool,
) -> Option<R> {
    let named = matches!(aud, Audience::Direct | Audience::ViaGroup);
    match (role, clearance) {
        (Role::Auditor, _) => Some(R::Auditor),
        (_, None) => Some(R::AboveClearance),
        (_, Some(c)) if tlp > c => Some(R::AboveClearance),
        _ => match tlp {
            // A first relay passes them to its own desks in the audience, never on.
            Tlp::Red | Tlp::AmberStrict if via_relay && role == Role::Relay => {
                Some(R::NoOnwardRelay)
            }
            Tlp::Red | Tlp::AmberStrict => (!named).then_some(R::NotInAudience),
            Tlp::Amber => (aud == Audience::OtherOnly).then_some(R::NotInAudience),
            Tlp::Green | Tlp::Clear => None,
        },
    }
}

#[test]
fn every_tlp_role_clearance_audience_and_route() {
    let mut cases = 0;
    let mut shared = 0;
    for &tlp in Tlp::ALL {
        for role in [Role::Liaison, Role::Relay, Role::Auditor] {
            for clearance in std::iter::once(None).chain(Tlp::ALL.iter().copied().map(Some)) {
                for aud in [
                    Audience::Empty,
                    Audience::Direct,
                    Audience::ViaGroup,
                    Audience::OtherOnly,
                ] {
                    for via_relay in [false, true] {
                        let audience: &[&str] = match aud {
                            Audience::Empty => &[],
                            Audience::Direct => &["mod-fr"],
                            Audience::ViaGroup => &["group:nato"],
                            Audience::OtherOnly => &["mod-de", "group:asean"],
                        };
                        let b = header(tlp, audience);
                        let from = if via_relay {
                            pid("hub-relay")
                        } else {
                            pid("mod-jp")
                        };
                        let got = match decide(&b, &from, &rules("mod-fr", role, clearance)) {
                            Decision::Share => None,
                            Decision::Withhold(w) => Some(w.code()),
                        };
                        let want = expected(tlp, role, clearance, aud, via_relay);
                        assert_eq!(got, want, "{tlp} to a {role} cleared {clearance:?}, audience {aud:?}, via relay {via_relay}");
                        cases += 1;
                        shared += usize::from(got.is_none());
                    }
                }
            }
        }
    }
    assert_eq!(cases, 5 * 3 * 6 * 4 * 2);
    assert!(shared > 0 && shared < cases);
}

#[test]
fn the_origin_never_gets_its_own_bulletin_back() {
    let b = header(Tlp::Clear, &["mod-jp"]);
    let origin = rules("mod-jp", Role::Liaison, Some(Tlp::Red));
    assert_eq!(
        decide(&b, &pid("mod-jp"), &origin),
        Decision::Withhold(Withhold::Origin)
    );
}

#[test]
fn a_relayed_bulletin_does_not_go_back_to_the_relay() {
    let b = header(Tlp::Green, &[]);
    let relay = rules("nato-ccdcoe", Role::Relay, Some(Tlp::Red));
    assert_eq!(
        decide(&b, &pid("nato-ccdcoe"), &relay),
        Decision::Withhold(Withhold::Sender)
    );
    assert_eq!(decide(&b, &pid("mod-jp"), &relay), Decision::Share);
}

#[test]
fn kinds_and_denied_tags_withhold_before_the_audience_is_considered() {
    let b = header(Tlp::Red, &["mod-fr"]);
    let mut p = rules("mod-fr", Role::Liaison, Some(Tlp::Red));
    p.kinds = Some([Kind::Exercise].into_iter().collect());
    assert_eq!(
        decide(&b, &pid("mod-jp"), &p),
        Decision::Withhold(Withhold::KindNotShared(Kind::Advisory))
    );
    p.kinds = None;
    p.deny_tags = ["phishing".to_string()].into_iter().collect();
    // Tags compare without regard to case.
    assert_eq!(
        decide(&b, &pid("mod-jp"), &p),
        Decision::Withhold(Withhold::DeniedTag("Phishing".into()))
    );
}

#[test]
fn reasons_read_well() {
    let w = Withhold::AboveClearance {
        tlp: Tlp::Red,
        clearance: Some(Tlp::Amber),
    };
    assert_eq!(w.to_string(), "red is above the partner's clearance amber");
    assert_eq!(
        Withhold::NotInAudience(Tlp::AmberStrict).to_string(),
        "amber+strict goes only to its audience, which does not include the partner"
    );
}

#[test]
fn policy_from_config_decides_for_every_partner_in_order() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/node.toml");
    let cfg = NodeConfig::load(&path).unwrap();
    let policy = Policy::from_config(&cfg);
    let mut b = header(Tlp::Amber, &["group:nato"]);
    b.tags = vec!["National-Only".into()];
    let decisions: Vec<_> = policy
        .decide_all(&b, Route::direct(&b.origin))
        .map(|(p, d)| (p.to_string(), d))
        .collect();
    let ids: Vec<_> = decisions.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(ids, ["nato-ccdcoe", "fr-mod", "vn-mod", "jp-audit"]);
    assert_eq!(
        decisions[0].1,
        Decision::Withhold(Withhold::DeniedTag("National-Only".into()))
    );
    assert_eq!(decisions[1].1, Decision::Share);
    assert!(matches!(
        decisions[2].1,
        Decision::Withhold(Withhold::AboveClearance { .. })
    ));
    assert_eq!(decisions[3].1, Decision::Withhold(Withhold::Auditor));
}

#[test]
fn details_formatted_once_read_as_formatted_now() {
    let mut seen = 0;
    for w in Withhold::untagged() {
        assert_eq!(w.detail(), w.to_string());
        seen += 1;
    }
    // 6 fixed reasons, 5 TLPs × 6 clearances, every kind, 3 × 5 relay and audience.
    assert_eq!(seen, 6 + 5 * 6 + Kind::ALL.len() + 3 * 5);
    let tag = Withhold::DeniedTag("national-only".into());
    assert_eq!(
        tag.detail(),
        "tag \"national-only\" is never shared with the partner"
    );
}

#[test]
fn a_denied_tag_is_withheld_in_every_spelling_that_reads_the_same() {
    // The operator writes the denied tag as it comes to mind; publishers spell it any way.
    let cfg_rules = |deny: &str| PartnerRules {
        deny_tags: [tag::fold(deny)].into_iter().collect(),
        ..rules("au-dod", Role::Liaison, Some(Tlp::Red))
    };
    for deny in ["national-only", "NATIONAL-ONLY", "Natİonal-Only"] {
        let p = cfg_rules(deny);
        for spelled in [
            "national-only",
            "ＮＡＴＩＯＮＡＬ－ＯＮＬＹ", // fullwidth
            "NATİONAL-ONLY",              // dotted capital I
            "natıonal-only",              // dotless i
            "nati\u{0307}onal-only",      // decomposed dotted i
            "nátional-only",              // an accent added
        ] {
            let mut b = header(Tlp::Green, &[]);
            b.tags = vec!["exercise".into(), spelled.into()];
            assert_eq!(
                decide(&b, &pid("mod-jp"), &p),
                Decision::Withhold(Withhold::DeniedTag(spelled.into())),
                "{deny} denies {spelled:?}"
            );
        }
    }
    // A zero-width variant never gets this far: the bulletin itself is refused.
    let b = proto::Bulletin {
        id: "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b".into(),
        origin: "mod-jp".into(),
        created_unix_ms: 1,
        tlp: proto::Tlp::Green as i32,
        kind: proto::Kind::Advisory as i32,
        title: "t".into(),
        tags: vec!["national\u{200B}-only".into()],
        ..Default::default()
    };
    let err = crate::bulletin::sign(
        &b,
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        &crate::bulletin::Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("invisible character"), "{err}");
    assert!(err.to_string().contains("\\u{200b}"), "escaped: {err}");
}

#[test]
fn an_audience_entry_is_known_if_it_names_the_node_a_partner_or_a_partners_group() {
    let policy = Policy::new(vec![rules("uk-mod", Role::Liaison, Some(Tlp::Amber))]);
    let node = pid("jp-mod");
    let b = header(
        Tlp::Amber,
        &["uk-mod", "group:nato", "jp-mod", "group:natoo", "uk-mdo"],
    );
    let unknown: Vec<String> = policy
        .unknown_audience(&b, &node)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(unknown, ["group:natoo", "uk-mdo"]);
    assert!(policy
        .unknown_audience(&header(Tlp::Red, &[]), &node)
        .is_empty());
}

mod hops;
