//! Refusal windows: how many refusals are recorded per minute, of strangers and of
//! each partner, and how the rest are counted into the next record allowed. Pure
//! counting with the time passed in; the connection tasks record what it allows.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::identity::PartnerId;

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
