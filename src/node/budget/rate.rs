//! How fast the node reads a partner's frames: token buckets per partner, all its
//! connections and streams together, one of bytes and one of publishes. Reading is
//! what grants a partner QUIC flow-control credit, so a partner over its rate is held
//! back by its own windows: the node decrypts and copies no more of its bytes than the
//! rate, however fast it sends. Without the bytes, one partner padding its frames had
//! the node decrypting well over a gigabyte a second; without the publishes, five
//! partners sending small bulletins as fast as they were taken kept both cores busy,
//! and every other partner's publish waited for the CPU at each step.
//!
//! No clock and no waiting: callers pass the time in and are told how long to wait.

use std::time::{Duration, Instant};

/// The burst, in seconds' worth of the rate: short, so a partner that starts a flood
/// has the node decrypting as fast as it can for no longer than this.
const BURST_SECS: f64 = 0.125;

/// A partner's units (bytes, or publishes) per second, with a short burst.
#[derive(Debug)]
pub(crate) struct Rate {
    per_sec: f64,
    burst: f64,
    /// Bytes that may be read now; below zero, the debt a large frame left.
    level: f64,
    at: Option<Instant>,
    /// Every wait told so far, summed (streams wait at once, so it may outrun the clock).
    waited: Duration,
}

impl Rate {
    /// A rate of `per_sec` units a second (at least one), starting full.
    pub(crate) fn new(per_sec: u64) -> Rate {
        let per_sec = per_sec.max(1) as f64;
        let burst = per_sec * BURST_SECS;
        Rate {
            per_sec,
            burst,
            level: burst,
            at: None,
            waited: Duration::ZERO,
        }
    }

    /// Every wait [`Rate::take`] has told, summed: how long the partner was held back.
    pub(crate) fn waited(&self) -> Duration {
        self.waited
    }

    /// Takes `units` at `now`; returns how long to wait before reading them. A frame
    /// larger than the burst is never refused: it leaves a debt that later frames wait
    /// out, so the rate holds over time whatever the frame sizes.
    pub(crate) fn take(&mut self, units: usize, now: Instant) -> Duration {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_sec;
            self.level = (self.level + refill).min(self.burst);
        }
        // Callers read the clock before taking the lock: a late one with an earlier
        // `now` must not move the bucket back, or the next would refill twice.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        let wait = if self.level < 0.0 {
            Duration::from_secs_f64(-self.level / self.per_sec)
        } else {
            Duration::ZERO
        };
        self.level -= units as f64;
        self.waited += wait;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut rate = Rate::new(32 * MIB as u64);
        for _ in 0..4 {
            assert_eq!(rate.take(MIB, start), Duration::ZERO, "within the burst");
        }
        // The burst is spent: the next frame passes, the one after it waits 1/32 s for
        // the megabyte it took.
        assert_eq!(rate.take(MIB, start), Duration::ZERO);
        let wait = rate.take(MIB, start);
        assert!((wait.as_secs_f64() - 1.0 / 32.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(rate.waited(), wait, "the only wait told");
    }

    #[test]
    fn waiting_it_out_pays_the_debt_and_time_refills_no_more_than_a_burst() {
        let start = Instant::now();
        let mut rate = Rate::new(8 * MIB as u64);
        // A frame far above the burst (1 MiB) passes, and leaves 2 MiB of debt.
        assert_eq!(rate.take(3 * MIB, start), Duration::ZERO);
        let wait = rate.take(0, start);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-6, "{wait:?}");
        let later = start + Duration::from_millis(250);
        assert_eq!(rate.take(1, later), Duration::ZERO, "the debt is paid");
        // An hour idle refills one burst (1 MiB), not an hour's worth: 2 MiB leave a
        // debt of 1 MiB, an eighth of a second.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(rate.take(2 * MIB, much_later), Duration::ZERO);
        let wait = rate.take(0, much_later);
        assert!((wait.as_secs_f64() - 0.125).abs() < 1e-3, "{wait:?}");
    }

    #[test]
    fn a_caller_with_an_earlier_time_does_not_make_the_next_refill_twice() {
        let start = Instant::now();
        let mut rate = Rate::new(8 * MIB as u64);
        rate.take(2 * MIB, start + Duration::from_millis(100));
        rate.take(0, start);
        // 100 ms after the first take refills 0.8 MiB once, not 1.6 MiB.
        let wait = rate.take(0, start + Duration::from_millis(200));
        assert!((wait.as_secs_f64() - 0.025).abs() < 1e-3, "{wait:?}");
    }
}
