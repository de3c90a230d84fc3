//! What a reload changes: the difference between the configuration in force and a
//! newly read one, in the terms the running node acts on (partners to disconnect,
//! revocations to record, tables that only a restart can apply, which make the reload
//! refuse).
//!
//! Pure: it compares two validated configurations and decides nothing else; the node
//! applies the result.

use crate::identity::PartnerId;

use super::digest::origin_line;
use super::{NodeConfig, Revocation};

/// What a list of revocations names, for the summary.
fn list_revoked(revoked: &[Revocation]) -> String {
    let named: Vec<String> = revoked.iter().map(|r| r.what.to_string()).collect();
    named.join(", ")
}

/// The difference between the configuration in force and the one replacing it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Partners that the new configuration adds.
    pub added: Vec<PartnerId>,
    /// Partners it removes (the node closes their connections).
    pub removed: Vec<PartnerId>,
    /// Partners whose role changed (the node closes their connections: what a
    /// connection may do was decided by the role it had when it connected).
    pub role_changed: Vec<PartnerId>,
    /// Partners whose peer address changed, was given or was taken away (a link comes
    /// up, moves or ends).
    pub address_changed: Vec<PartnerId>,
    /// Revocations that were not in force before.
    pub newly_revoked: Vec<Revocation>,
    /// Revocations in force before that the new configuration drops.
    pub unrevoked: Vec<Revocation>,
    /// `[[origin]]`s the new configuration adds, removes, or gives other keys, peers
    /// or groups.
    pub origins: OriginChanges,
    /// Tables a reload puts in force that hold no partner or origin and differ:
    /// `federation`, `disclosure`.
    pub tables_changed: Vec<&'static str>,
    /// Tables that differ but that only a restart can put in force: a reload that
    /// names any refuses as a whole, so the node never runs half of a file.
    pub needs_restart: Vec<&'static str>,
    /// Whether the sharing policy (partners, origins, rules, keys, revocations, the hop
    /// limit, disclosure) differs.
    pub policy_changed: bool,
}

/// How the `[[origin]]` tables differ.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OriginChanges {
    /// Origins that are new.
    pub added: Vec<PartnerId>,
    /// Origins that are gone: their bulletins are UNKNOWN_ORIGIN from then on.
    pub removed: Vec<PartnerId>,
    /// Origins whose keys, peers (`via`) or groups differ.
    pub changed: Vec<PartnerId>,
}

impl OriginChanges {
    fn between(old: &NodeConfig, new: &NodeConfig) -> OriginChanges {
        let mut c = OriginChanges::default();
        for o in &new.origins {
            match old.origin(&o.id) {
                None => c.added.push(o.id.clone()),
                Some(before) if origin_line(before) != origin_line(o) => {
                    c.changed.push(o.id.clone())
                }
                Some(_) => {}
            }
        }
        c.removed = old
            .origins
            .iter()
            .filter(|o| new.origin(&o.id).is_none())
            .map(|o| o.id.clone())
            .collect();
        c
    }
}

impl ConfigChange {
    /// What replacing `old` by `new` changes.
    pub fn between(old: &NodeConfig, new: &NodeConfig) -> ConfigChange {
        let mut change = ConfigChange {
            policy_changed: old.policy_digest() != new.policy_digest(),
            ..ConfigChange::default()
        };
        for p in &new.partners {
            match old.partner(&p.id) {
                None => change.added.push(p.id.clone()),
                Some(before) if before.role != p.role => change.role_changed.push(p.id.clone()),
                Some(before) if before.peer_address() != p.peer_address() => {
                    change.address_changed.push(p.id.clone())
                }
                Some(_) => {}
            }
        }
        change.origins = OriginChanges::between(old, new);
        change.tables_changed = [
            (
                "federation",
                old.federation.hop_limit != new.federation.hop_limit
                    || old.federation.redial() != new.federation.redial(),
            ),
            ("disclosure", old.disclosure != new.disclosure),
            ("target", old.targets != new.targets),
        ]
        .into_iter()
        .filter_map(|(table, differs)| differs.then_some(table))
        .collect();
        change.removed = old
            .partners
            .iter()
            .filter(|p| new.partner(&p.id).is_none())
            .map(|p| p.id.clone())
            .collect();
        change.newly_revoked = new
            .revoked
            .iter()
            .filter(|r| !old.revoked.iter().any(|o| o.what == r.what))
            .cloned()
            .collect();
        change.unrevoked = old
            .revoked
            .iter()
            .filter(|r| !new.revoked.iter().any(|n| n.what == r.what))
            .cloned()
            .collect();
        let restart = [
            ("node", old.node != new.node),
            ("limits", old.limits != new.limits),
            ("transport", old.transport != new.transport),
            ("storage", old.storage != new.storage),
            ("audit", old.audit != new.audit),
            ("metrics", old.metrics != new.metrics),
            ("admin", old.admin != new.admin),
            ("taxii", old.taxii != new.taxii),
        ];
        change.needs_restart = restart
            .into_iter()
            .filter_map(|(table, differs)| differs.then_some(table))
            .collect();
        change
    }

    /// One line for logs, the audit log and the operator.
    pub fn summary(&self) -> String {
        let list = |ids: &[PartnerId]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("partners added: {}", list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("partners removed: {}", list(&self.removed)));
        }
        if !self.role_changed.is_empty() {
            parts.push(format!("roles changed: {}", list(&self.role_changed)));
        }
        if !self.address_changed.is_empty() {
            parts.push(format!(
                "peer addresses changed (links follow): {}",
                list(&self.address_changed)
            ));
        }
        if !self.newly_revoked.is_empty() {
            parts.push(format!(
                "newly revoked: {}",
                list_revoked(&self.newly_revoked)
            ));
        }
        if !self.unrevoked.is_empty() {
            parts.push(format!(
                "no longer revoked: {}",
                list_revoked(&self.unrevoked)
            ));
        }
        let o = &self.origins;
        for (what, ids) in [
            ("origins added", &o.added),
            ("origins removed", &o.removed),
            ("origins changed", &o.changed),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what}: {}", list(ids)));
            }
        }
        if !self.tables_changed.is_empty() {
            parts.push(format!("[{}] changed", self.tables_changed.join("], [")));
        }
        if self.policy_changed && parts.is_empty() {
            parts.push("sharing rules changed".into());
        }
        if parts.is_empty() {
            parts.push("no change to the sharing policy".into());
        }
        parts.join("; ")
    }

    /// The tables only a restart can put in force, as the refusal names them:
    /// `needs a restart: node, limits`; `None` when a reload can apply the whole file.
    pub fn restart_needed(&self) -> Option<String> {
        (!self.needs_restart.is_empty())
            .then(|| format!("needs a restart: {}", self.needs_restart.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[node]
id = "hub"
listen = "127.0.0.1:0"
data_dir = "data"
ca_cert = "ca.crt"
tls_cert = "tls.crt"
tls_key = "tls.key"
signing_key = "signing.key"

[[partner]]
id = "fr"
role = "liaison"
clearance = "amber"

[[partner]]
id = "de"
role = "liaison"
clearance = "green"
"#;

    fn cfg(text: &str) -> NodeConfig {
        match NodeConfig::parse(text, Path::new("node.toml")) {
            Ok(c) => c,
            Err(e) => panic!("test config does not parse: {e}"),
        }
    }

    fn ids(list: &[&str]) -> Vec<PartnerId> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let c = ConfigChange::between(&cfg(BASE), &cfg(BASE));
        assert_eq!(c, ConfigChange::default());
        assert_eq!(c.summary(), "no change to the sharing policy");
    }

    #[test]
    fn a_peer_given_an_address_is_said_to_link() {
        // This used to say "no change to the sharing policy".
        let relay = "\n[[partner]]\nid = \"nato\"\nrole = \"relay\"\nclearance = \"green\"\n";
        let before = cfg(&format!("{BASE}{relay}"));
        let after = cfg(&format!("{BASE}{relay}address = \"192.0.2.7:4433\"\n"));
        let c = ConfigChange::between(&before, &after);
        assert_eq!(c.address_changed, ids(&["nato"]));
        assert_eq!(c.summary(), "peer addresses changed (links follow): nato");
    }

    #[test]
    fn added_removed_and_re_roled_partners_are_told_apart() {
        let new = BASE
            .replace(
                "id = \"de\"\nrole = \"liaison\"",
                "id = \"de\"\nrole = \"relay\"",
            )
            .replace(
                "id = \"fr\"\nrole = \"liaison\"\nclearance = \"amber\"",
                "id = \"nato\"\nrole = \"auditor\"",
            );
        let c = ConfigChange::between(&cfg(BASE), &cfg(&new));
        assert_eq!(c.added, ids(&["nato"]));
        assert_eq!(c.removed, ids(&["fr"]));
        assert_eq!(c.role_changed, ids(&["de"]));
        assert!(c.policy_changed);
        assert!(c.needs_restart.is_empty());
    }

    #[test]
    fn a_rule_change_is_a_policy_change_without_reconnecting_anyone() {
        let new = BASE.replace("clearance = \"green\"", "clearance = \"amber\"");
        let c = ConfigChange::between(&cfg(BASE), &cfg(&new));
        assert!(c.policy_changed);
        assert!(c.added.is_empty() && c.removed.is_empty() && c.role_changed.is_empty());
        assert_eq!(c.summary(), "sharing rules changed");
    }

    #[test]
    fn only_new_revocations_are_reported_and_restart_tables_are_named() {
        let key = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let old = format!("{BASE}\n[[revoked]]\nkey = \"{key}\"\n");
        let new = old.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:4433\"")
            + "\n[[revoked]]\nkey = \"ed25519:O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=\"\nreason = \"lost\"\n";
        let c = ConfigChange::between(&cfg(&old), &cfg(&new));
        let back = ConfigChange::between(&cfg(&new), &cfg(BASE));
        assert_eq!(back.unrevoked.len(), 2);
        assert!(back
            .summary()
            .contains(&format!("no longer revoked: signing key {key}")));
        assert_eq!(c.newly_revoked.len(), 1);
        assert_eq!(c.newly_revoked[0].reason, "lost");
        assert_eq!(c.needs_restart, vec!["node"]);
        assert_eq!(c.restart_needed().as_deref(), Some("needs a restart: node"));
    }

    const NODE: &str = "[node]\nid = \"hub\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\
        ca_cert = \"ca\"\ntls_cert = \"c\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
        [[partner]]\nid = \"nato\"\nrole = \"relay\"\nclearance = \"amber\"\n\n\
        [[partner]]\nid = \"uk\"\nrole = \"relay\"\nclearance = \"amber\"\n";

    fn relays(extra: &str) -> NodeConfig {
        match NodeConfig::parse(&format!("{NODE}{extra}"), Path::new("node.toml")) {
            Ok(c) => c,
            Err(e) => panic!("test config does not parse: {e}"),
        }
    }

    #[test]
    fn origins_the_hop_limit_and_disclosure_change_the_policy_and_need_no_restart() {
        let ee = "\n[[origin]]\nid = \"ee-mod\"\nvia = [\"nato\"]\n";
        let base = relays(ee);
        let gone = ConfigChange::between(&base, &relays(""));
        assert_eq!(
            gone.origins.removed,
            vec!["ee-mod".parse::<PartnerId>().unwrap()]
        );
        assert!(gone.policy_changed && gone.restart_needed().is_none());
        assert_eq!(gone.summary(), "origins removed: ee-mod");
        let rerouted = ConfigChange::between(&base, &relays(&ee.replace("[\"nato\"]", "[\"uk\"]")));
        assert_eq!(rerouted.origins.changed.len(), 1);
        assert!(rerouted.policy_changed);
        let tables = relays(&format!(
            "{ee}\n[federation]\nhop_limit = 2\n\n[disclosure]\nwithheld = true\n"
        ));
        let c = ConfigChange::between(&base, &tables);
        assert_eq!(c.tables_changed, vec!["federation", "disclosure"]);
        assert!(c.policy_changed, "both decide who gets what");
        assert_eq!(c.summary(), "[federation], [disclosure] changed");
        let taxii = relays(&format!("{ee}\n[taxii]\nlisten = \"127.0.0.1:0\"\n"));
        assert_eq!(
            ConfigChange::between(&base, &taxii)
                .restart_needed()
                .as_deref(),
            Some("needs a restart: taxii")
        );
    }
}
