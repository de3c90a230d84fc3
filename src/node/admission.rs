//! Admission control: who may connect (a configured partner, with the certificate it
//! is pinned to, if any), how many connections a partner may hold, and how many
//! refusals of strangers are recorded. Bounds what a peer can make the node hold or
//! write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::link::rules::Dialler;
use super::{RuleSet, Shared};
use crate::config::NodeConfig;
use crate::identity::{CertFingerprint, PartnerId, Role};

/// Who a connection was admitted as, and the rules it was admitted under (watched, so
/// that a reload that removes, re-roles or re-pins the partner closes it).
pub(super) struct AdmittedAs {
    pub partner: PartnerId,
    pub role: Role,
    pub cert: CertFingerprint,
    pub sharing: watch::Receiver<Arc<RuleSet>>,
    /// When the partner is a peer node: who dialled this connection.
    pub link: Option<Dialler>,
}

/// The role a connection presenting `cert` as `partner` gets under `config`; or why it
/// may not connect (not a partner, a revoked certificate, not the pinned one).
pub(crate) fn admit(
    config: &NodeConfig,
    partner: &PartnerId,
    cert: &CertFingerprint,
) -> Result<Role, String> {
    if let Some(r) = config.certificate_revoked(cert) {
        let why = if r.reason.is_empty() {
            "no reason given"
        } else {
            r.reason.as_str()
        };
        return Err(format!("certificate {cert} is revoked ({why})"));
    }
    let p = config
        .partner(partner)
        .ok_or_else(|| "not a partner of this node".to_string())?;
    match p.tls_fingerprint {
        Some(pinned) if pinned != *cert => Err(format!(
            "presented certificate {cert}, but {} is pinned to {pinned}",
            p.id
        )),
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
    shared: &'a Shared,
    partner: &'a PartnerId,
}

impl<'a> Admitted<'a> {
    pub(crate) fn new(shared: &'a Shared, partner: &'a PartnerId) -> Option<Self> {
        let mut open = shared
            .book
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = open.entry(partner.clone()).or_default();
        if *count >= MAX_CONNECTIONS_PER_PARTNER {
            return None;
        }
        *count += 1;
        Some(Admitted { shared, partner })
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .book
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(self.partner) {
            *count = count.saturating_sub(1);
        }
    }
}

/// Refusals of anonymous peers (failed handshakes, certificates without a partner id)
/// recorded per minute, at most. Beyond that they are counted, and the count goes into
/// the next record allowed: anyone who can reach the port can cause these, and they
/// must neither fill the disk nor bury partners' events.
pub const ANONYMOUS_REFUSALS_PER_MINUTE: u32 = 60;

/// The current minute's anonymous refusals.
pub(crate) struct RefusalWindow {
    started: Instant,
    recorded: u32,
    suppressed: u64,
}

impl RefusalWindow {
    pub(crate) fn new(now: Instant) -> Self {
        RefusalWindow {
            started: now,
            recorded: 0,
            suppressed: 0,
        }
    }

    /// Should a refusal at `now` be recorded? If so, with how many went unrecorded
    /// before it.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.started) >= Duration::from_secs(60) {
            self.started = now;
            self.recorded = 0;
        }
        if self.recorded < ANONYMOUS_REFUSALS_PER_MINUTE {
            self.recorded += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// A partner's refusals (bulletins rejected, frames refused, streams not permitted)
/// recorded one by one per minute, at most. Beyond that they are counted per error
/// code, and the counts are recorded when the next minute's first refusal is, or when
/// the partner's connection ends: an authenticated partner cannot fill the log with
/// refusals, and the metrics still count every one.
pub const PARTNER_REFUSALS_PER_MINUTE: u32 = 600;

/// Per partner, the current minute's refusals.
#[derive(Default)]
pub(crate) struct PartnerRefusals {
    windows: HashMap<PartnerId, PartnerWindow>,
}

struct PartnerWindow {
    started: Instant,
    recorded: u32,
    /// Error code → refusals not recorded one by one.
    counted: BTreeMap<i32, u64>,
}

/// What to record for one refusal: the counts held back so far (code, count), and
/// whether the refusal itself is recorded or only counted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RefusalVerdict {
    pub counted: Vec<(i32, u64)>,
    pub record_it: bool,
}

impl PartnerRefusals {
    /// A refusal of `partner` with `code` at `now`.
    pub(crate) fn admit(&mut self, partner: &PartnerId, code: i32, now: Instant) -> RefusalVerdict {
        let w = self
            .windows
            .entry(partner.clone())
            .or_insert_with(|| PartnerWindow {
                started: now,
                recorded: 0,
                counted: BTreeMap::new(),
            });
        let mut counted = Vec::new();
        if now.duration_since(w.started) >= Duration::from_secs(60) {
            w.started = now;
            w.recorded = 0;
            counted = std::mem::take(&mut w.counted).into_iter().collect();
        }
        let record_it = w.recorded < PARTNER_REFUSALS_PER_MINUTE;
        if record_it {
            w.recorded += 1;
        } else {
            *w.counted.entry(code).or_default() += 1;
        }
        RefusalVerdict { counted, record_it }
    }

    /// Every count held back for `partner`, to be recorded now (its connection ended).
    pub(crate) fn drain(&mut self, partner: &PartnerId) -> Vec<(i32, u64)> {
        match self.windows.get_mut(partner) {
            Some(w) => std::mem::take(&mut w.counted).into_iter().collect(),
            None => Vec::new(),
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

    #[test]
    fn a_partners_refusals_over_the_limit_are_counted_by_code_and_recorded_later() {
        let t0 = Instant::now();
        let xx: PartnerId = "xx-mod".parse().unwrap();
        let us: PartnerId = "us-dod".parse().unwrap();
        let mut r = PartnerRefusals::default();
        for _ in 0..PARTNER_REFUSALS_PER_MINUTE {
            assert!(r.admit(&xx, 12, t0).record_it);
        }
        let over = r.admit(&xx, 12, t0 + Duration::from_secs(1));
        assert_eq!(
            over,
            RefusalVerdict {
                counted: vec![],
                record_it: false
            }
        );
        r.admit(&xx, 12, t0 + Duration::from_secs(2));
        r.admit(&xx, 10, t0 + Duration::from_secs(3));
        assert!(
            r.admit(&us, 12, t0).record_it,
            "another partner has its own limit"
        );
        // The next minute: the counts come out with the first refusal, by code.
        let next = r.admit(&xx, 13, t0 + Duration::from_secs(60));
        assert_eq!(next.counted, vec![(10, 1), (12, 2)]);
        assert!(next.record_it);
        assert!(r.drain(&xx).is_empty(), "nothing held back any more");
        for _ in 0..PARTNER_REFUSALS_PER_MINUTE {
            r.admit(&xx, 12, t0 + Duration::from_secs(61));
        }
        assert_eq!(
            r.drain(&xx),
            vec![(12, 1)],
            "held back until the connection ends"
        );
    }

    #[test]
    fn anonymous_refusals_are_recorded_up_to_a_limit_per_minute_then_counted() {
        let t0 = Instant::now();
        let mut w = RefusalWindow::new(t0);
        for _ in 0..ANONYMOUS_REFUSALS_PER_MINUTE {
            assert_eq!(w.admit(t0), Some(0));
        }
        assert_eq!(w.admit(t0 + Duration::from_secs(30)), None);
        assert_eq!(w.admit(t0 + Duration::from_secs(59)), None);
        // The next minute's first record carries the count of those not recorded.
        assert_eq!(w.admit(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(w.admit(t0 + Duration::from_secs(61)), Some(0));
    }
}
