//! Admission control: who may connect (a configured partner, with the certificate it
//! is pinned to, if any), as whom, and how many connections a partner may hold. With
//! `refusals` (how many refusals are recorded), it bounds what a peer can make the
//! node hold or write.

use std::sync::Arc;

use tokio::sync::watch;

use super::link_rules::Dialler;
use super::shared::ConnectionBook;
use super::shared::RuleSet;
use crate::config::NodeConfig;
use crate::identity::{CertFingerprint, Partner, PartnerId, Role};

/// Who a connection was admitted as, and the rules it was admitted under (watched, so
/// that a reload that removes, re-roles or re-pins the partner closes it).
pub(super) struct AdmittedAs {
    pub who: Partner,
    pub cert: CertFingerprint,
    pub rules: watch::Receiver<Arc<RuleSet>>,
    /// When the partner is a peer node: who dialled this connection.
    pub link: Option<Dialler>,
}

/// Why a certificate may not connect as the partner it names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotAdmitted {
    /// The configuration revokes the certificate.
    #[error("certificate {cert} is revoked ({why})")]
    Revoked {
        /// The certificate presented.
        cert: CertFingerprint,
        /// The reason the revocation gives.
        why: String,
    },
    /// The partner id is not in the configuration.
    #[error("not a partner of this node")]
    NotAPartner,
    /// The partner is pinned to another certificate.
    #[error("presented certificate {cert}, but {partner} is pinned to {pinned}")]
    NotThePinned {
        /// The certificate presented.
        cert: CertFingerprint,
        /// The partner it names.
        partner: PartnerId,
        /// The certificate the configuration pins it to.
        pinned: CertFingerprint,
    },
}

/// The role a connection presenting `cert` as `partner` gets under `config`; or why it
/// may not connect (not a partner, a revoked certificate, not the pinned one).
pub(crate) fn admit(
    config: &NodeConfig,
    partner: &PartnerId,
    cert: &CertFingerprint,
) -> Result<Role, NotAdmitted> {
    if let Some(r) = config.certificate_revoked(cert) {
        let why = match r.reason.is_empty() {
            true => "no reason given".to_owned(),
            false => r.reason.clone(),
        };
        return Err(NotAdmitted::Revoked { cert: *cert, why });
    }
    let p = config.partner(partner).ok_or(NotAdmitted::NotAPartner)?;
    match p.tls_fingerprint {
        Some(pinned) if pinned != *cert => Err(NotAdmitted::NotThePinned {
            cert: *cert,
            partner: p.id.clone(),
            pinned,
        }),
        _ => Ok(p.role),
    }
}

/// What to do with a connection attempt before any handshake work is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// Start the handshake.
    Accept,
    /// Ask the peer to prove its address first (a stateless QUIC Retry).
    Retry,
    /// Refuse it: too many handshakes are in progress.
    Refuse,
}

/// How many handshakes may run at once, and above how many an address must be proven.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandshakeLimits {
    pub retry_above: usize,
    pub max: usize,
}

/// The greeting for an attempt when `in_flight` handshakes are running; `validated`:
/// the peer proved its address (it answered a Retry); `may_retry`: a Retry can still be
/// sent (not already retried). Strangers can flood the port with Initial packets from
/// forged addresses: beyond `retry_above` they must prove their address before the node
/// does any signature work, and beyond `max` nobody new is taken until some finish.
pub(crate) fn greet(
    in_flight: usize,
    validated: bool,
    may_retry: bool,
    limits: HandshakeLimits,
) -> Greeting {
    if in_flight >= limits.max {
        Greeting::Refuse
    } else if in_flight >= limits.retry_above && !validated {
        if may_retry {
            Greeting::Retry
        } else {
            // It claims to have answered a Retry, but its token did not prove the
            // address: no second chance.
            Greeting::Refuse
        }
    } else {
        Greeting::Accept
    }
}

/// Connections one partner may hold open at once (each may carry 32 streams).
pub const MAX_CONNECTIONS_PER_PARTNER: usize = 8;

/// A partner's place among its open connections; given back when dropped.
pub(crate) struct Admitted<'a> {
    book: &'a ConnectionBook,
    partner: PartnerId,
}

impl<'a> Admitted<'a> {
    pub(crate) fn new(book: &'a ConnectionBook, partner: &PartnerId) -> Option<Self> {
        let mut open = book.connections.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(partner.clone()).or_default();
        if *count >= MAX_CONNECTIONS_PER_PARTNER {
            return None;
        }
        *count += 1;
        Some(Admitted {
            book,
            partner: partner.clone(),
        })
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut open = self
            .book
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.partner) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_prove_their_address_before_handshake_work_when_many_are_in_progress() {
        let limits = HandshakeLimits {
            retry_above: 2,
            max: 4,
        };
        let g = |in_flight, validated, may_retry| greet(in_flight, validated, may_retry, limits);
        assert_eq!(
            g(0, false, true),
            Greeting::Accept,
            "quiet: no extra round trip"
        );
        assert_eq!(g(1, false, true), Greeting::Accept);
        assert_eq!(
            g(2, false, true),
            Greeting::Retry,
            "busy: prove the address"
        );
        assert_eq!(g(2, true, false), Greeting::Accept, "proven: go ahead");
        assert_eq!(
            g(3, false, false),
            Greeting::Refuse,
            "a failed proof is not retried"
        );
        assert_eq!(g(4, true, false), Greeting::Refuse, "full: nobody new");
        let always = HandshakeLimits {
            retry_above: 0,
            max: 4,
        };
        assert_eq!(greet(0, false, true, always), Greeting::Retry);
    }
}
