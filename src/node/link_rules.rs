//! The decisions of a peer link without the link: which of two connections between the
//! same pair of nodes survives, how long to wait before dialling again, and what an
//! acknowledgement of a forwarded bulletin depends on. No I/O, no clock: the time and
//! the randomness are passed in.

use std::time::Duration;

use crate::identity::PartnerId;
use crate::proto::ErrorCode;

/// Who opened a connection between this node and a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialler {
    /// This node dialled the peer.
    Us,
    /// The peer dialled this node.
    Peer,
}

impl Dialler {
    /// In words, for the status and the audit log.
    pub(crate) fn describe(self, us: &PartnerId, peer: &PartnerId) -> String {
        match self {
            Dialler::Us => format!("{us} dialled {peer}"),
            Dialler::Peer => format!("{peer} dialled {us}"),
        }
    }
}

/// When both nodes of a pair dialled, which connection both keep: the one dialled by
/// the node whose id sorts first. Both sides compute the same answer, so they close the
/// same connection.
pub(crate) fn keeps_new(us: &PartnerId, peer: &PartnerId, current: Dialler, new: Dialler) -> bool {
    if current == new {
        // A redial of the same side replaces a connection that is going away.
        return true;
    }
    let first = if us.as_str() < peer.as_str() {
        Dialler::Us
    } else {
        Dialler::Peer
    };
    new == first
}

/// The pause before the next dial: `min` after the first failure, doubling with each
/// further one up to `max`, then spread by `jitter` (0 to 1) over its upper half so
/// that nodes that lost each other at once do not dial in step.
pub(crate) fn redial_pause(failures: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let base = doubled.min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    base.mul_f64(0.5 + 0.5 * jitter).max(min.min(max))
}

/// Whether a forwarded bulletin's answer is final, so the peer's entry may be
/// acknowledged: accepted, a duplicate, or refused for a reason that will not change by
/// sending it again. A node that is stopping or failed to store it gets it again.
pub(crate) fn is_final(rejected: Option<ErrorCode>) -> bool {
    !matches!(
        rejected,
        Some(ErrorCode::Internal | ErrorCode::ShuttingDown | ErrorCode::StorageFull)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn both_sides_keep_the_connection_the_first_id_dialled() {
        let (jp, nato) = (pid("jp-mod"), pid("nato-ccdcoe"));
        // jp-mod sorts first: both keep the connection jp-mod dialled.
        assert!(keeps_new(&jp, &nato, Dialler::Peer, Dialler::Us));
        assert!(!keeps_new(&jp, &nato, Dialler::Us, Dialler::Peer));
        assert!(keeps_new(&nato, &jp, Dialler::Us, Dialler::Peer));
        assert!(!keeps_new(&nato, &jp, Dialler::Peer, Dialler::Us));
        // Whatever order the two connections arrive in, the same one survives.
        for (us, peer) in [(&jp, &nato), (&nato, &jp)] {
            let kept_if_us_first = if keeps_new(us, peer, Dialler::Us, Dialler::Peer) {
                Dialler::Peer
            } else {
                Dialler::Us
            };
            let kept_if_peer_first = if keeps_new(us, peer, Dialler::Peer, Dialler::Us) {
                Dialler::Us
            } else {
                Dialler::Peer
            };
            assert_eq!(kept_if_us_first, kept_if_peer_first);
        }
        assert!(keeps_new(&jp, &nato, Dialler::Us, Dialler::Us));
    }

    #[test]
    fn redials_back_off_to_a_cap_with_jitter() {
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(30));
        assert_eq!(redial_pause(1, min, max, 1.0), min);
        assert_eq!(redial_pause(2, min, max, 1.0), min * 2);
        assert_eq!(redial_pause(4, min, max, 1.0), min * 8);
        assert_eq!(redial_pause(30, min, max, 1.0), max);
        assert_eq!(redial_pause(u32::MAX, min, max, 1.0), max);
        assert_eq!(redial_pause(30, min, max, 0.0), max / 2);
        assert_eq!(
            redial_pause(1, min, max, 0.0),
            min,
            "never below the minimum"
        );
    }

    #[test]
    fn only_a_stopping_or_failing_node_makes_the_peer_send_again() {
        assert!(is_final(None));
        assert!(is_final(Some(ErrorCode::BadSignature)));
        assert!(is_final(Some(ErrorCode::NotViaPeer)));
        assert!(!is_final(Some(ErrorCode::Internal)));
        assert!(!is_final(Some(ErrorCode::ShuttingDown)));
        assert!(!is_final(Some(ErrorCode::StorageFull)));
    }
}
