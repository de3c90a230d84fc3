//! What a reload changes: the difference between the configuration in force and a
//! newly read one, in the terms the running node acts on (partners to disconnect,
//! revocations to record, settings that only a restart applies).
//!
//! Pure: it compares two validated configurations and decides nothing else; the node
//! applies the result.

use crate::identity::PartnerId;

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
    /// Revocations that were not in force before.
    pub newly_revoked: Vec<Revocation>,
    /// Revocations in force before that the new configuration drops.
    pub unrevoked: Vec<Revocation>,
    /// Tables or fields that differ but only take effect at the next start.
    pub needs_restart: Vec<&'static str>,
    /// Whether the sharing policy (partners, rules, keys, revocations) differs.
    pub policy_changed: bool,
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
                Some(_) => {}
            }
        }
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
        ];
        change.needs_restart = restart
            .into_iter()
            .filter_map(|(table, differs)| differs.then_some(table))
            .collect();
        change
    }

    /// The configuration in force once `new` is reloaded over `running`: the sharing
    /// policy (partners and revocations) of `new`, everything else still `running`'s
    /// until a restart, so the next reload still reports those changes as pending.
    pub fn in_force(running: &NodeConfig, new: NodeConfig) -> NodeConfig {
        NodeConfig {
            partners: new.partners,
            revoked: new.revoked,
            source: new.source,
            ..running.clone()
        }
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
        if self.policy_changed && parts.is_empty() {
            parts.push("sharing rules changed".into());
        }
        if parts.is_empty() {
            parts.push("no change to the sharing policy".into());
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "changes to [{}] take effect at the next restart",
                self.needs_restart.join("], [")
            ));
        }
        parts.join("; ")
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
    fn only_new_revocations_are_reported_and_restart_settings_are_named() {
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
        // The new listen address is not in force until a restart: a second reload of
        // the same file still says so, while the revocations are in force already.
        let running = ConfigChange::in_force(&cfg(&old), cfg(&new));
        let again = ConfigChange::between(&running, &cfg(&new));
        assert_eq!(again.needs_restart, vec!["node"]);
        assert!(again.newly_revoked.is_empty() && !again.policy_changed);
        assert!(c
            .summary()
            .contains("[node] take effect at the next restart"));
    }
}
