//! The rules across hops (proto/README.md, "Sharing across hops"): a line of nodes
//! jp-mod — nato-ccdcoe — ee-mod-node, each test deciding at one of them.

use super::*;

/// A peer node (a relay partner), in no group.
fn peer(id: &str) -> PartnerRules {
    PartnerRules {
        groups: HashSet::new(),
        ..rules(id, Role::Relay, Some(Tlp::Red))
    }
}

/// A desk of the node (a liaison partner), in group nato.
fn desk(id: &str) -> PartnerRules {
    rules(id, Role::Liaison, Some(Tlp::Red))
}

/// An organisation beyond `via`, in `groups`.
fn remote(id: &str, via: &str, groups: &[&str]) -> RemoteRules {
    RemoteRules {
        id: pid(id),
        groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
        towards: pid(via),
    }
}

/// Every partner's decision, by id.
fn decisions(policy: &Policy, b: &Header, from: &str, path: &[&str]) -> Vec<(String, Decision)> {
    let from = pid(from);
    let path: Vec<PartnerId> = path.iter().map(|p| pid(p)).collect();
    let route = Route {
        received_from: &from,
        path: &path,
    };
    policy
        .decide_all(b, route)
        .map(|(p, d)| (p.to_string(), d))
        .collect()
}

fn decision<'a>(all: &'a [(String, Decision)], id: &str) -> &'a Decision {
    &all.iter().find(|(p, _)| p == id).expect("a partner").1
}

/// The home node of mod-jp's bulletins: its desk mod-jp, a desk jp-cert, the peers
/// nato-ccdcoe (leading to ee-mod) and us-dod.
fn home() -> Policy {
    Policy::new(vec![
        desk("mod-jp"),
        desk("jp-cert"),
        peer("nato-ccdcoe"),
        peer("us-dod"),
    ])
    .beyond(
        vec![
            remote("ee-mod", "nato-ccdcoe", &["nato"]),
            remote("au-dod", "us-dod", &[]),
        ],
        DEFAULT_HOP_LIMIT,
    )
}

/// The first relay, nato-ccdcoe: its desk ee-mod, its peers jp-mod (home) and
/// ee-mod-node, beyond which lies ee-cert.
fn first_relay() -> Policy {
    Policy::new(vec![desk("ee-mod"), peer("jp-mod"), peer("ee-mod-node")]).beyond(
        vec![
            remote("mod-jp", "jp-mod", &[]),
            remote("ee-cert", "ee-mod-node", &[]),
        ],
        DEFAULT_HOP_LIMIT,
    )
}

#[test]
fn red_goes_from_its_home_only_towards_its_audience() {
    for tlp in [Tlp::Red, Tlp::AmberStrict] {
        let b = header(tlp, &["ee-mod"]);
        let all = decisions(&home(), &b, "mod-jp", &[]);
        assert_eq!(*decision(&all, "nato-ccdcoe"), Decision::Share, "{tlp}");
        assert_eq!(
            *decision(&all, "us-dod"),
            Decision::Withhold(Withhold::NotInAudience(tlp))
        );
        assert_eq!(
            *decision(&all, "jp-cert"),
            Decision::Withhold(Withhold::NotInAudience(tlp))
        );
    }
}

#[test]
fn red_at_its_first_relay_goes_to_the_audience_desks_and_no_further() {
    let b = header(Tlp::Red, &["ee-mod", "ee-cert"]);
    let all = decisions(&first_relay(), &b, "jp-mod", &["jp-mod"]);
    assert_eq!(*decision(&all, "ee-mod"), Decision::Share);
    assert_eq!(
        *decision(&all, "jp-mod"),
        Decision::Withhold(Withhold::Sender)
    );
    // ee-cert is two relays away from home: withheld, and the reason says so.
    let beyond = decision(&all, "ee-mod-node");
    assert_eq!(
        *beyond,
        Decision::Withhold(Withhold::AudienceBeyondRelay(Tlp::Red))
    );
    let Decision::Withhold(w) = beyond else {
        unreachable!()
    };
    assert!(w.to_string().contains("stops at its first relay"), "{w}");
    // A peer the audience does not lead to is told plainly too.
    let b = header(Tlp::AmberStrict, &["ee-mod"]);
    let all = decisions(&first_relay(), &b, "jp-mod", &["jp-mod"]);
    assert_eq!(
        *decision(&all, "ee-mod-node"),
        Decision::Withhold(Withhold::NoOnwardRelay(Tlp::AmberStrict))
    );
}

#[test]
fn red_that_crossed_two_relays_reaches_nobody() {
    let b = header(Tlp::Red, &["ee-mod", "ee-cert"]);
    let all = decisions(&first_relay(), &b, "jp-mod", &["us-dod", "jp-mod"]);
    // Not its desks, and not the peer towards the audience either (no "further
    // away": it is already beyond where it may go).
    for p in ["ee-mod", "ee-mod-node"] {
        assert_eq!(
            *decision(&all, p),
            Decision::Withhold(Withhold::NoOnwardRelay(Tlp::Red)),
            "{p}"
        );
    }
}

#[test]
fn amber_with_an_audience_travels_towards_it_over_any_number_of_hops() {
    let b = header(Tlp::Amber, &["ee-cert"]);
    let all = decisions(&first_relay(), &b, "jp-mod", &["jp-mod"]);
    assert_eq!(*decision(&all, "ee-mod-node"), Decision::Share);
    assert_eq!(
        *decision(&all, "ee-mod"),
        Decision::Withhold(Withhold::NotInAudience(Tlp::Amber))
    );
    // A group travels towards the organisations beyond a peer that belong to it.
    let b = header(Tlp::Amber, &["group:nato"]);
    let all = decisions(&home(), &b, "mod-jp", &[]);
    assert_eq!(*decision(&all, "nato-ccdcoe"), Decision::Share);
    assert_eq!(
        *decision(&all, "us-dod"),
        Decision::Withhold(Withhold::NotInAudience(Tlp::Amber))
    );
}

#[test]
fn green_never_goes_back_along_its_path() {
    let b = header(Tlp::Green, &[]);
    let all = decisions(&first_relay(), &b, "jp-mod", &["ee-mod-node", "jp-mod"]);
    assert_eq!(
        *decision(&all, "jp-mod"),
        Decision::Withhold(Withhold::Sender)
    );
    assert_eq!(
        *decision(&all, "ee-mod-node"),
        Decision::Withhold(Withhold::OnPath)
    );
    assert_eq!(*decision(&all, "ee-mod"), Decision::Share);
}

#[test]
fn the_hop_limit_stops_relays_but_not_desks() {
    let policy = Policy::new(vec![desk("ee-mod"), peer("ee-mod-node")]).beyond(Vec::new(), 3);
    let b = header(Tlp::Green, &[]);
    // Two nodes before, this one the third: a relay would be the fourth.
    let all = decisions(&policy, &b, "jp-mod", &["us-dod", "jp-mod"]);
    assert_eq!(
        *decision(&all, "ee-mod-node"),
        Decision::Withhold(Withhold::HopLimit(3))
    );
    assert_eq!(*decision(&all, "ee-mod"), Decision::Share);
    let all = decisions(&policy, &b, "jp-mod", &["jp-mod"]);
    assert_eq!(*decision(&all, "ee-mod-node"), Decision::Share);
}

#[test]
fn an_audience_beyond_a_peer_is_known() {
    let b = header(Tlp::Amber, &["ee-mod", "group:nato", "au-dod", "ee-mdo"]);
    let unknown: Vec<String> = home()
        .unknown_audience(&b, &pid("jp-mod"))
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(unknown, ["ee-mdo"]);
}

#[test]
fn a_relay_publisher_is_a_node_on_the_path() {
    let from = pid("nato-ccdcoe");
    assert_eq!(
        Route::crossed(vec![], &from, Role::Relay),
        std::slice::from_ref(&from)
    );
    assert_eq!(
        Route::crossed(vec![pid("jp-mod"), from.clone()], &from, Role::Relay),
        [pid("jp-mod"), from.clone()]
    );
    assert!(Route::crossed(vec![], &pid("mod-jp"), Role::Liaison).is_empty());
}
