//! Hot reload: reads the configuration file again and puts its partners, keys,
//! revocations and sharing rules in force for every decision from then on, without
//! dropping connections, except those of partners removed or given another role.
//!
//! The comparison itself is `config::ConfigChange` (pure); this module records the
//! change in the audit log and swaps the rules. Settings outside the sharing policy
//! (`[node]`, `[limits]`, `[transport]`, …) only take effect at the next start.

use std::path::Path;
use std::sync::Arc;

use crate::audit::record::Event;
use crate::config::{ConfigChange, ConfigError, NodeConfig};
use crate::identity::{PartnerId, Role};

use super::{Shared, Sharing};

/// Why a reload was refused. The configuration in force stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not read or does not validate.
    #[error("the new configuration is refused and the running one stays in force: {0}")]
    Invalid(#[from] ConfigError),
    /// The running configuration was not read from a file.
    #[error(
        "this node's configuration was not read from a file, so there is nothing to read again"
    )]
    NoFile,
    /// The file describes another node.
    #[error("the new configuration is for node {new}, but this node is {running}; the running configuration stays in force")]
    OtherNode {
        /// `node.id` in the file.
        new: PartnerId,
        /// The running node's id.
        running: PartnerId,
    },
}

/// Why a connection made with `connected_as` must close now that the partner's role
/// is `now` (`None`: no longer a partner); `None` if it may stay.
pub(super) fn disconnect_reason(connected_as: Role, now: Option<Role>) -> Option<String> {
    match now {
        None => Some("removed from this node's partners by a configuration reload".into()),
        Some(role) if role != connected_as => Some(format!(
            "its role changed from {connected_as} to {role} by a configuration reload; connect again"
        )),
        Some(_) => None,
    }
}

/// Reads the configuration file again and puts its sharing policy in force; `who`
/// asked for it (for the audit log). A refusal is recorded too.
pub(super) async fn reload(shared: &Shared, who: &str) -> Result<ConfigChange, ReloadError> {
    // One at a time, so that records and rules change in the same order.
    let _one = shared.reloading.lock().await;
    let source = shared.sharing().config.source.clone();
    let new = read(source.as_deref()).and_then(|new| {
        if new.node.id == shared.node_id {
            Ok(new)
        } else {
            Err(ReloadError::OtherNode {
                new: new.node.id.clone(),
                running: shared.node_id.clone(),
            })
        }
    });
    let new = match new {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, %who, "configuration reload refused");
            let what = format!("reload requested by {who} refused: {e}");
            shared.record(Event::operator(&shared.node_id, &what)).await;
            return Err(e);
        }
    };
    let change = ConfigChange::between(&shared.sharing().config, &new);
    let summary = change.summary();
    // Recorded before the rules change, so every decision made under the new policy
    // comes after the record that names it.
    let loaded = Event::config_loaded(
        &shared.node_id,
        new.policy_digest(),
        &format!("reloaded at the request of {who}: {summary}"),
    );
    shared.record(loaded).await;
    for r in &change.newly_revoked {
        let why = format!("revoked by a reload: {}", r.reason);
        let event = Event::key_revoked(&shared.node_id, &r.key.to_string(), &why);
        shared.record(event).await;
    }
    shared.sharing.send_replace(Arc::new(Sharing::new(new)));
    tracing::info!(%who, %summary, "configuration reloaded");
    Ok(change)
}

fn read(source: Option<&Path>) -> Result<NodeConfig, ReloadError> {
    Ok(NodeConfig::load(source.ok_or(ReloadError::NoFile)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_close_when_the_partner_goes_or_its_role_changes() {
        assert!(disconnect_reason(Role::Liaison, Some(Role::Liaison)).is_none());
        let gone = disconnect_reason(Role::Liaison, None);
        assert!(gone.is_some_and(|w| w.contains("removed")));
        let moved = disconnect_reason(Role::Liaison, Some(Role::Auditor));
        assert!(moved.is_some_and(|w| w.contains("from liaison to auditor")));
    }
}
