//! How many bulletins the next group commit may take. A commit cannot be interrupted,
//! so a bulletin that arrives while one runs waits for it to end and then for its own:
//! under a flood, a long commit is what a light partner's publish mostly waits for.
//! Long commits are also what makes a flood cheap (one flush for many bulletins).
//! So while light partners wait behind heavy ones (the staging says so), commits are
//! kept near a target duration, sized from how long the last full ones took; while
//! every partner waiting is heavy, they take the configured most. This is the sparse
//! flow's priority of fair queueing, as far as a commit that cannot be split allows.
//!
//! No I/O and no clock: the storage thread measures each commit and says how it went.

use std::time::Duration;

/// Bulletins a commit may always take, however slow the disk: below this the flush
/// per commit would cost more than the commits save.
const FEWEST: usize = 16;

/// Commits that stay short after the last one that held a light partner behind a
/// heavy one: a desk publishing one bulletin at a time is seen again well within them.
const LINGER: u32 = 64;

/// The size of the next group commit.
#[derive(Debug)]
pub(super) struct Pace {
    target: Duration,
    most: usize,
    /// Bulletins that fit in the target, as the last full or late commits measured it.
    fits: usize,
    /// Short commits still to come.
    linger: u32,
}

impl Pace {
    /// Commits of about `target` while light partners wait, of at most `most`.
    pub(super) fn new(target: Duration, most: usize) -> Pace {
        let most = most.max(1);
        Pace {
            target,
            most,
            fits: most,
            linger: 0,
        }
    }

    /// Bulletins the next commit may take.
    pub(super) fn limit(&self) -> usize {
        if self.linger > 0 {
            self.fits
        } else {
            self.most
        }
    }

    /// A commit of `bulletins` took `took`; `sparse` if it held a light partner's
    /// bulletins while a heavier partner's waited. A commit that was full (the queue
    /// had more) or over its time says what the disk and the load allow now; one that
    /// emptied the queue within its time says nothing new.
    pub(super) fn committed(&mut self, bulletins: usize, took: Duration, sparse: bool) {
        let full = bulletins >= self.limit();
        self.linger = if sparse {
            LINGER
        } else {
            self.linger.saturating_sub(1)
        };
        if bulletins == 0 || (!full && took <= self.target) {
            return;
        }
        let took = took.max(Duration::from_micros(1));
        let fits = bulletins as f64 * self.target.as_secs_f64() / took.as_secs_f64();
        // Down at once, as a light partner waits on every commit too long; up halfway,
        // so one fast commit does not double the next.
        let next = if fits < self.fits as f64 {
            fits
        } else {
            (self.fits as f64 + fits) / 2.0
        };
        self.fits = (next.round() as usize).clamp(FEWEST.min(self.most), self.most);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 40 µs a bulletin and 0.5 ms a flush.
    fn disk(n: usize) -> Duration {
        Duration::from_micros(40 * n as u64 + 500)
    }

    #[test]
    fn a_light_partner_behind_a_flood_gets_short_commits() {
        let mut pace = Pace::new(ms(2), 512);
        for _ in 0..5 {
            pace.committed(512, disk(512), false);
        }
        assert_eq!(
            pace.limit(),
            512,
            "heavy partners alone: the longest commits"
        );
        for _ in 0..20 {
            pace.committed(pace.limit(), disk(pace.limit()), true);
        }
        // About 37 fit in 2 ms.
        assert!((30..=45).contains(&pace.limit()), "{}", pace.limit());
    }

    #[test]
    fn commits_grow_again_once_no_light_partner_waits() {
        let mut pace = Pace::new(ms(2), 512);
        pace.committed(512, disk(512), true);
        let short = pace.limit();
        assert!(
            short < 64,
            "one long commit is enough to shorten the next: {short}"
        );
        pace.committed(3, ms(1), false);
        assert_eq!(pace.limit(), short, "a small commit on time says nothing");
        for _ in 0..LINGER {
            pace.committed(pace.limit(), disk(pace.limit()), false);
        }
        assert_eq!(pace.limit(), 512);
    }

    #[test]
    fn a_fast_disk_never_goes_above_the_most_and_a_stalled_one_keeps_a_floor() {
        let mut pace = Pace::new(ms(2), 512);
        for _ in 0..20 {
            pace.committed(
                pace.limit(),
                Duration::from_micros(2 * pace.limit() as u64),
                true,
            );
        }
        assert_eq!(pace.limit(), 512, "never above the configured most");
        for _ in 0..20 {
            pace.committed(pace.limit(), Duration::from_secs(1), true);
        }
        assert_eq!(pace.limit(), FEWEST);
        let mut tiny = Pace::new(ms(2), 4);
        tiny.committed(4, Duration::from_secs(1), true);
        assert_eq!(
            tiny.limit(),
            4,
            "the floor is never above the configured most"
        );
    }
}
