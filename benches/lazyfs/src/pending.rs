//! The data operations of one file that are not durable yet: laying them over the
//! backing file's bytes as a page cache would, applying them to the backing file, and
//! choosing which of them a simulated power cut lets survive.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The size of a page: a torn write keeps its data up to such a boundary.
pub const PAGE: u64 = 4096;

/// One data operation, held in memory until an fsync of its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `data` written at `offset`.
    Write { offset: u64, data: Vec<u8> },
    /// The file's size set to this many bytes (truncate, ftruncate, set_len).
    Truncate(u64),
}

impl Op {
    fn bytes(&self) -> u64 {
        match self {
            Op::Write { data, .. } => data.len() as u64,
            Op::Truncate(_) => 0,
        }
    }

    /// Makes this operation happen to the backing file (not yet durably).
    pub fn apply(&self, file: &File) -> io::Result<()> {
        match self {
            Op::Write { offset, data } => file.write_all_at(data, *offset),
            Op::Truncate(size) => file.set_len(*size),
        }
    }
}

/// How a power cut treats the pending operations of each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every pending operation is lost.
    Drop,
    /// A prefix survives, the next write torn at a page boundary, the rest lost.
    Torn(u64),
    /// A random subset survives, applied in its original order.
    Reorder(u64),
}

/// What a cut did to one file's operations, or to all of them added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutTally {
    pub kept: u64,
    pub torn: u64,
    pub dropped: u64,
    /// Bytes of written data that did not reach the backing file.
    pub lost_bytes: u64,
}

impl CutTally {
    pub fn add(&mut self, other: CutTally) {
        self.kept += other.kept;
        self.torn += other.torn;
        self.dropped += other.dropped;
        self.lost_bytes += other.lost_bytes;
    }
}

/// A small seeded generator (SplitMix64): the same seed makes the same cut.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The pending operations of one file, oldest first.
#[derive(Debug, Default)]
pub struct Pending {
    ops: Vec<Op>,
}

impl Pending {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.ops.iter().map(Op::bytes).sum()
    }

    /// Forgets every operation, returning how many there were and their bytes.
    pub fn clear(&mut self) -> (u64, u64) {
        let counted = (self.ops.len() as u64, self.bytes());
        self.ops.clear();
        counted
    }

    /// The file's size as readers see it, given the backing file's size.
    pub fn size(&self, backing: u64) -> u64 {
        self.ops.iter().fold(backing, |size, op| match op {
            Op::Write { offset, data } => size.max(offset + data.len() as u64),
            Op::Truncate(to) => *to,
        })
    }

    /// Lays the operations over `buf`, which holds the backing file's bytes from
    /// `offset` on (zeros past its end). The caller cuts `buf` to [`Pending::size`].
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for op in &self.ops {
            match op {
                Op::Write { offset: at, data } => {
                    let from = (*at).max(offset);
                    let to = (at + data.len() as u64).min(end);
                    if from < to {
                        let src = (from - at) as usize..(to - at) as usize;
                        let dst = (from - offset) as usize..(to - offset) as usize;
                        buf[dst].copy_from_slice(&data[src]);
                    }
                }
                Op::Truncate(size) if *size < end => {
                    let from = size.saturating_sub(offset) as usize;
                    buf[from..].fill(0);
                }
                Op::Truncate(_) => {}
            }
        }
    }

    /// Applies the operations to `file` in order. On an error the ones not applied
    /// stay pending.
    pub fn apply(&mut self, file: &File) -> io::Result<()> {
        for (done, op) in self.ops.iter().enumerate() {
            if let Err(e) = op.apply(file) {
                self.ops.drain(..done);
                return Err(e);
            }
        }
        self.ops.clear();
        Ok(())
    }

    /// Empties the list, returning the operations that survive `cut` (in their
    /// order, a torn write already shortened) and what became of the others.
    pub fn cut(&mut self, cut: Cut, rng: &mut Rng) -> (Vec<Op>, CutTally) {
        let ops = std::mem::take(&mut self.ops);
        let (count, total) = (ops.len() as u64, ops.iter().map(Op::bytes).sum::<u64>());
        let (kept, torn) = match cut {
            Cut::Drop => (Vec::new(), false),
            Cut::Torn(_) => torn(ops, rng),
            Cut::Reorder(_) => (
                ops.into_iter().filter(|_| rng.next() & 1 == 1).collect(),
                false,
            ),
        };
        let torn = u64::from(torn);
        let tally = CutTally {
            kept: kept.len() as u64 - torn,
            torn,
            dropped: count - kept.len() as u64,
            lost_bytes: total - kept.iter().map(Op::bytes).sum::<u64>(),
        };
        (kept, tally)
    }
}

/// A random prefix of `ops`, then the next write cut at a page boundary inside it
/// (true if so).
fn torn(mut ops: Vec<Op>, rng: &mut Rng) -> (Vec<Op>, bool) {
    let prefix = rng.below(ops.len() as u64 + 1) as usize;
    let next = ops.get(prefix).cloned();
    ops.truncate(prefix);
    let Some(Op::Write { offset, mut data }) = next else {
        return (ops, false);
    };
    // Where it may tear: at its start (nothing kept), or at a page boundary strictly
    // inside it.
    let first = (offset / PAGE + 1) * PAGE;
    let end = offset + data.len() as u64;
    let inside = if first < end {
        (end - 1 - first) / PAGE + 1
    } else {
        0
    };
    let pick = rng.below(inside + 1);
    if pick == 0 {
        return (ops, false);
    }
    data.truncate((first + (pick - 1) * PAGE - offset) as usize);
    ops.push(Op::Write { offset, data });
    (ops, true)
}

#[cfg(test)]
mod tests;
