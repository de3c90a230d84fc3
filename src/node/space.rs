//! The disk-space guard: from the free space the storage thread measures before each
//! group commit, decides whether the node takes new bulletins, and what the log says
//! when that changes.
//!
//! Why refuse early rather than let a write fail: a failed journal write poisons the
//! store's engine (every later write fails until the database is reopened), so a node
//! that let it meet a full disk could not resume by itself. The guard keeps a reserve free:
//! below it, new bulletins are refused with `STORAGE_FULL` and nothing about them is
//! written; events (acknowledgements, auditors' queries, refusals) still are, until a
//! quarter of the reserve is left. This module measures nothing itself (the caller
//! passes the free space in) and holds no clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the guard lets through a group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Everything.
    All,
    /// Events and cursor moves, not new bulletins: the reserve is being used.
    EventsOnly,
    /// Nothing: the last quarter of the reserve is kept for the engine itself (flushes, compactions).
    Nothing,
}

/// A change the log should record, in the words of its operator event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Free space fell below the reserve.
    Filled { free: u64, reserve: u64 },
    /// Free space came back; `refused` bulletins were turned away meanwhile.
    Freed { free: u64, refused: u64 },
}

impl Change {
    /// The text of the operator event that records it.
    pub fn describe(&self, resume_at: u64) -> String {
        match self {
            Change::Filled { free, reserve } => format!(
                "STORAGE FULL: {} free in the data directory's filesystem, below the reserve of {}; new bulletins are refused with STORAGE_FULL until {} are free",
                mib(*free),
                mib(*reserve),
                mib(resume_at)
            ),
            Change::Freed { free, refused } => format!(
                "STORAGE RESUMED: {} free; {refused} bulletin(s) were refused with STORAGE_FULL while the disk was full",
                mib(*free)
            ),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The guard's state: the reserve, and whether the node is refusing.
#[derive(Debug)]
pub(crate) struct SpaceGuard {
    reserve: u64,
    /// Bulletins refused since the disk filled; `None` while there is room.
    full: Option<u64>,
    /// The last measurement, standing in while the filesystem cannot be measured.
    last: Option<u64>,
    /// Whether the last attempt to measure failed.
    failing: bool,
}

impl SpaceGuard {
    /// A guard keeping `reserve` bytes free.
    pub fn new(reserve: u64) -> SpaceGuard {
        SpaceGuard {
            reserve,
            full: None,
            last: None,
            failing: false,
        }
    }

    /// Free space at which a full node takes bulletins again: a quarter above the
    /// reserve, so a node near the line does not flap with every commit.
    pub fn resume_at(&self) -> u64 {
        self.reserve.saturating_add(self.reserve / 4)
    }

    /// Notes whether measuring worked; true when it has just started failing (worth
    /// one warning, not one per commit).
    pub fn measured(&mut self, ok: bool) -> bool {
        let started = !ok && !self.failing;
        self.failing = !ok;
        started
    }

    /// The last measurement, if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Takes a measurement of the free space; returns the change to record, if any.
    pub fn observe(&mut self, free: u64) -> Option<Change> {
        self.last = Some(free);
        match self.full {
            None if free < self.reserve => {
                self.full = Some(0);
                Some(Change::Filled {
                    free,
                    reserve: self.reserve,
                })
            }
            Some(refused) if free >= self.resume_at() => {
                self.full = None;
                Some(Change::Freed { free, refused })
            }
            _ => None,
        }
    }

    /// What a commit may write, given the last measurement `free`.
    pub fn admit(&self, free: u64) -> Admit {
        match self.full {
            None => Admit::All,
            Some(_) if free < self.reserve / 4 => Admit::Nothing,
            Some(_) => Admit::EventsOnly,
        }
    }

    /// Counts bulletins refused because the disk is full.
    pub fn refused(&mut self, n: u64) {
        if let Some(count) = &mut self.full {
            *count += n;
        }
    }

    /// Whether new bulletins are being refused.
    pub fn is_full(&self) -> bool {
        self.full.is_some()
    }
}

/// What `/metrics` shows of the guard: written by the storage thread, read by scrapes.
#[derive(Debug, Default)]
pub(crate) struct SpaceGauge {
    /// Free bytes at the last measurement.
    pub free: AtomicU64,
    /// Whether new bulletins are being refused.
    pub full: AtomicBool,
}

impl SpaceGauge {
    /// Publishes a measurement.
    pub fn set(&self, free: u64, full: bool) {
        self.free.store(free, Ordering::Relaxed);
        self.full.store(full, Ordering::Relaxed);
    }
}

/// Bytes an unprivileged process may still write in the filesystem holding `dir`.
pub(crate) fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    fs2::available_space(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_node_refuses_below_the_reserve_and_resumes_a_quarter_above_it() {
        let mut g = SpaceGuard::new(100 * MIB);
        assert_eq!(g.observe(500 * MIB), None);
        assert_eq!(g.admit(500 * MIB), Admit::All);
        let filled = g.observe(99 * MIB);
        assert_eq!(
            filled,
            Some(Change::Filled {
                free: 99 * MIB,
                reserve: 100 * MIB
            })
        );
        assert!(g.is_full());
        assert_eq!(g.admit(99 * MIB), Admit::EventsOnly);
        g.refused(3);
        g.refused(2);
        // Back above the reserve, but not by a quarter: still full.
        assert_eq!(g.observe(110 * MIB), None);
        assert_eq!(g.admit(110 * MIB), Admit::EventsOnly);
        assert_eq!(
            g.observe(125 * MIB),
            Some(Change::Freed {
                free: 125 * MIB,
                refused: 5
            })
        );
        assert_eq!(g.admit(125 * MIB), Admit::All);
        // Refusals are counted afresh the next time.
        assert!(g.observe(10 * MIB).is_some());
        assert_eq!(
            g.observe(200 * MIB),
            Some(Change::Freed {
                free: 200 * MIB,
                refused: 0
            })
        );
    }

    #[test]
    fn the_last_quarter_of_the_reserve_is_kept_for_the_database() {
        let mut g = SpaceGuard::new(100 * MIB);
        assert!(g.observe(20 * MIB).is_some());
        assert_eq!(g.admit(25 * MIB), Admit::EventsOnly);
        assert_eq!(g.admit(24 * MIB), Admit::Nothing);
        // Counting refusals while there is room changes nothing.
        let mut roomy = SpaceGuard::new(MIB);
        roomy.refused(7);
        assert!(!roomy.is_full());
    }

    #[test]
    fn a_failed_measurement_warns_once_and_the_last_one_stands_in() {
        let mut g = SpaceGuard::new(100 * MIB);
        assert_eq!(g.last(), None);
        assert!(g.observe(50 * MIB).is_some());
        assert!(g.measured(false), "the first failure is worth a warning");
        assert!(!g.measured(false), "the next ones are not");
        assert_eq!(g.last(), Some(50 * MIB));
        assert_eq!(g.admit(50 * MIB), Admit::EventsOnly);
        assert!(!g.measured(true));
        assert!(
            g.measured(false),
            "failing again after a success warns again"
        );
    }

    #[test]
    fn the_records_say_what_happened_in_mib() {
        let g = SpaceGuard::new(8 * MIB);
        let text = Change::Filled {
            free: 3 * MIB,
            reserve: 8 * MIB,
        }
        .describe(g.resume_at());
        assert!(text.starts_with("STORAGE FULL: 3.0 MiB free"), "{text}");
        assert!(text.contains("until 10.0 MiB are free"), "{text}");
        let text = Change::Freed {
            free: 12 * MIB,
            refused: 4,
        }
        .describe(g.resume_at());
        assert!(text.contains("4 bulletin(s) were refused"), "{text}");
    }
}
