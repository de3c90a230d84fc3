//! Hot reload: reads the configuration file again and puts the whole of it in force for
//! every decision from then on (partners, origins, keys, revocations, `[federation]`,
//! `[disclosure]`), without dropping connections, except those of partners removed or
//! given another role. A file that changes a table only a restart can apply
//! (`[node]`, `[limits]`, `[transport]`, …) is refused whole, saying which: the node
//! never runs half of a file, and CONFIG_LOADED names exactly the rules in force.
//!
//! The comparison itself is `config::ConfigChange` (pure); this module records the
//! change in the audit log and swaps the rules.

use std::path::Path;
use std::sync::Arc;

use crate::audit::record::Event;
use crate::config::{ConfigChange, ConfigError, NodeConfig};
use crate::identity::{CertFingerprint, Partner, PartnerId};

use super::shared::{RuleSet, Shared};
use super::shared::{Rules, StorageHandle, Trail};

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
    /// The storage thread could not record the new configuration.
    #[error("the new configuration could not be recorded in the audit log, so the running one stays in force: {0}")]
    NotRecorded(super::writer::StorageError),
    /// The new configuration is in force, but the queues of partners it removes could
    /// not be withdrawn; the node withdraws them at its next start.
    #[error("the new configuration is in force, but the queues of removed partners could not be withdrawn ({0}); restart the node to withdraw them")]
    NotWithdrawn(super::writer::StorageError),
    /// The file changes tables that only a restart puts in force; nothing of it is.
    #[error("the new configuration {0}; the running configuration stays in force (restart the node to apply the file)")]
    NeedsRestart(String),
    /// The file describes another node.
    #[error("the new configuration is for node {new}, but this node is {running}; the running configuration stays in force")]
    OtherNode {
        /// `node.id` in the file.
        new: PartnerId,
        /// The running node's id.
        running: PartnerId,
    },
}

/// Why a connection made as `connected_as` by `partner` with certificate `cert` must
/// close under the new configuration `now`; `None` if it may stay.
pub(super) fn disconnect_reason(
    connected: &Partner,
    cert: &CertFingerprint,
    now: &NodeConfig,
) -> Option<String> {
    let (connected_as, partner) = (connected.role, &connected.id);
    if now.partner(partner).is_none() {
        return Some(
            "not a partner of this node any more: removed by a configuration reload".into(),
        );
    }
    match super::admission::admit(now, partner, cert) {
        Err(why) => Some(format!("{why} by a configuration reload")),
        Ok(role) if role != connected_as => Some(format!(
            "its role changed from {connected_as} to {role} by a configuration reload; connect again"
        )),
        Ok(_) => None,
    }
}

/// What a reload uses of the node: the rules it replaces, the trail it records the
/// change on, and the store whose head marks what the new rules check again.
#[derive(Clone)]
pub(super) struct Reloading {
    /// This node's id, under which a reload is recorded.
    pub id: PartnerId,
    pub rules: Arc<Rules>,
    pub trail: Arc<Trail>,
    pub storage: Arc<StorageHandle>,
}

impl Reloading {
    /// The running node's.
    pub(super) fn of(shared: &Shared) -> Reloading {
        Reloading {
            id: shared.own.id.clone(),
            rules: shared.rules.clone(),
            trail: shared.trail.clone(),
            storage: shared.storage.clone(),
        }
    }
}

/// Reads the configuration file again and puts all of it in force, or none of it; `who`
/// asked for it (for the audit log). A refusal is recorded too.
pub(super) async fn reload(node: &Reloading, who: &str) -> Result<ConfigChange, ReloadError> {
    // One at a time, so that records and rules change in the same order.
    let _one = node.rules.reloading.lock().await;
    let running = node.rules.in_force();
    let (new, change) = match checked(&running.config) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, %who, "configuration reload refused");
            let what = format!("reload requested by {who} refused: {e}");
            node.trail.record(Event::operator(&node.id, &what)).await;
            return Err(e);
        }
    };
    let summary = change.summary();
    let rules = {
        // No publish decides while the rules change: every decision made under the old
        // rules is queued before the record that names the new ones, every one made
        // under the new rules after it.
        let _gate = node.rules.gate.write().await;
        let own =
            crate::identity::Affiliation::of(new.node.country, new.node.organisation.as_ref());
        let loaded = Event::config_loaded(
            &node.id,
            new.policy_digest(),
            &format!("reloaded at the request of {who}: {summary}"),
        )
        .with_affiliations(own.as_ref(), |_| None);
        let mut recorded = node.trail.commit(Some(loaded), None).await;
        for r in &change.newly_revoked {
            let why = format!("revoked by a reload: {}", r.reason);
            let event = Event::key_revoked(&node.id, &r.what.to_string(), &why);
            recorded = recorded.and(node.trail.commit(Some(event), None).await);
        }
        if let Err(e) = recorded {
            // Not put in force unrecorded: the log must name the rules behind every decision.
            tracing::error!(error = %e, "the reload could not be recorded; the running configuration stays in force");
            return Err(ReloadError::NotRecorded(e));
        }
        // Everything stored so far was decided under the old rules: it is checked
        // against the new ones before it goes out.
        let through = node
            .storage
            .store
            .head()
            .map_err(|e| ReloadError::NotRecorded(e.into()))?;
        let own = &node.storage.audit_key;
        let rules = Arc::new(RuleSet::new(new, through).with_own_key(own));
        node.rules.current.send_replace(rules.clone());
        rules
    };
    if let Err(e) =
        super::withdraw::withdraw_removed(&node.storage.store, &node.trail, &rules).await
    {
        // In force, but the operator and the auditor must know what is still queued.
        tracing::error!(error = %e, "cannot withdraw the queues of removed partners");
        let what = format!(
            "reload requested by {who}: the new configuration is in force, but the queues of removed partners could not be withdrawn ({e}); the node withdraws them when it next starts"
        );
        node.trail.record(Event::operator(&node.id, &what)).await;
        return Err(ReloadError::NotWithdrawn(e));
    }
    tracing::info!(%who, %summary, "configuration reloaded");
    Ok(change)
}

/// The configuration file read again, if a reload may put it in force, and what it
/// changes.
fn checked(running: &NodeConfig) -> Result<(NodeConfig, ConfigChange), ReloadError> {
    let new = read(running.source.as_deref())?;
    if new.node.id != running.node.id {
        return Err(ReloadError::OtherNode {
            new: new.node.id.clone(),
            running: running.node.id.clone(),
        });
    }
    let change = ConfigChange::between(running, &new);
    match change.restart_needed() {
        Some(tables) => Err(ReloadError::NeedsRestart(tables)),
        None => Ok((new, change)),
    }
}

fn read(source: Option<&Path>) -> Result<NodeConfig, ReloadError> {
    Ok(NodeConfig::load(source.ok_or(ReloadError::NoFile)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    /// A node configuration with partner fr-mod as `role`, pinned to `pin` if given,
    /// and `revoked` appended.
    fn config(role: Role, pin: Option<CertFingerprint>, revoked: &str) -> NodeConfig {
        let pin = pin
            .map(|p| format!("tls_fingerprint = \"{p}\"\n"))
            .unwrap_or_default();
        let clearance = if role == Role::Auditor {
            ""
        } else {
            "clearance = \"amber\"\n"
        };
        let text = format!(
            "[node]\nid = \"hub\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"ca\"\n\
             tls_cert = \"c\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
             [[partner]]\nid = \"fr-mod\"\nrole = \"{role}\"\n{clearance}{pin}\n{revoked}"
        );
        match NodeConfig::parse(&text, Path::new("node.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn connections_close_when_the_partner_goes_its_role_changes_its_pin_moves_or_its_certificate_is_revoked(
    ) {
        let fr: PartnerId = "fr-mod".parse().expect("a partner id");
        let cert = CertFingerprint::of_der(b"the certificate presented");
        let other = CertFingerprint::of_der(b"another certificate");
        let liaison = Partner::new(fr.clone(), Role::Liaison);
        let stays = |c: &NodeConfig| disconnect_reason(&liaison, &cert, c);
        assert!(stays(&config(Role::Liaison, None, "")).is_none());
        assert!(stays(&config(Role::Liaison, Some(cert), "")).is_none());
        let gone = disconnect_reason(
            &Partner::new("uk-mod".parse().expect("id"), Role::Liaison),
            &cert,
            &config(Role::Liaison, None, ""),
        );
        assert!(gone.is_some_and(|w| w.contains("removed")));
        let moved = stays(&config(Role::Auditor, None, ""));
        assert!(moved.is_some_and(|w| w.contains("from liaison to auditor")));
        let repinned = stays(&config(Role::Liaison, Some(other), ""));
        assert!(repinned.is_some_and(|w| w.contains("is pinned to")));
        let lost = format!("[[revoked]]\ncertificate = \"{cert}\"\nreason = \"laptop lost\"\n");
        let revoked = stays(&config(Role::Liaison, None, &lost));
        assert!(revoked.is_some_and(|w| w.contains("is revoked (laptop lost)")));
        let elsewhere = format!("[[revoked]]\ncertificate = \"{other}\"\n");
        assert!(stays(&config(Role::Liaison, None, &elsewhere)).is_none());
    }

    /// A node on `path` whose storage thread records every event in `recorded` and
    /// fails each WITHDRAWN one while `fail` is set: what a full disk does to the
    /// withdrawal a reload starts, without a socket.
    fn node_with_failing_withdrawals(
        path: &Path,
        recorded: Arc<std::sync::Mutex<Vec<crate::proto::AuditRecord>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    ) -> Arc<Shared> {
        use super::super::writer::{Request, StorageError};
        use crate::proto::AuditEvent;
        let (shared, mut requests) = super::super::testing::node_on(path);
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let Request::Event { event, done, .. } = request else {
                    continue;
                };
                let record = event.map(|e| e.record().clone()).unwrap_or_default();
                let withdrawal = record.event == AuditEvent::Withdrawn as i32;
                let result = match withdrawal && fail.load(std::sync::atomic::Ordering::SeqCst) {
                    true => Err(StorageError::Full(crate::node::writer::Cause::new(
                        std::io::Error::other("no space left on device"),
                    ))),
                    false => {
                        recorded.lock().expect("not poisoned").push(record);
                        Ok(())
                    }
                };
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
        });
        shared
    }

    /// A withdrawal that fails after a reload is recorded and
    /// answered as `NotWithdrawn`; the new rules stay in force, and the next try (a
    /// start) withdraws the removed partner's queue.
    #[tokio::test]
    async fn a_withdrawal_that_fails_after_a_reload_is_recorded_and_reported() {
        use crate::proto::AuditEvent;
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("node.toml");
        use super::super::testing::{liaisons, node_file};
        let file = |ids: &[&str]| node_file(&liaisons(ids));
        std::fs::write(&path, file(&["fr-mod", "uk-mod"])).expect("written");
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let shared = node_with_failing_withdrawals(&path, recorded.clone(), fail.clone());
        let uk: PartnerId = "uk-mod".parse().expect("an id");

        std::fs::write(&path, file(&["fr-mod"])).expect("written");
        let answer = reload(&Reloading::of(&shared), "the operator").await;
        assert!(
            matches!(answer, Err(ReloadError::NotWithdrawn(_))),
            "{answer:?}"
        );
        assert!(
            shared.rules.in_force().config.partner(&uk).is_none(),
            "in force"
        );
        let events = |recorded: &std::sync::Mutex<Vec<crate::proto::AuditRecord>>| {
            let r = recorded.lock().expect("not poisoned");
            r.iter()
                .map(|r| (r.event, r.reason.clone(), r.partner.clone()))
                .collect::<Vec<_>>()
        };
        // The record of the operator's event goes without waiting: wait for it here.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while events(&recorded).len() < 2 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let seen = events(&recorded);
        assert_eq!(seen[0].0, AuditEvent::ConfigLoaded as i32, "{seen:?}");
        assert_eq!(seen[1].0, AuditEvent::Operator as i32, "{seen:?}");
        assert!(
            seen[1]
                .1
                .contains("could not be withdrawn (not stored, the disk is full"),
            "{seen:?}"
        );
        let roster = shared.storage.store.roster().expect("the roster");
        assert!(roster.contains(&uk), "still to withdraw at the next start");

        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        super::super::withdraw::withdraw_removed(
            &shared.storage.store,
            &shared.trail,
            &shared.rules.in_force(),
        )
        .await
        .expect("withdrawn at the next try");
        let seen = events(&recorded);
        assert!(
            seen.iter()
                .any(|e| e.0 == AuditEvent::Withdrawn as i32 && e.2 == "uk-mod"),
            "{seen:?}"
        );
    }
}
