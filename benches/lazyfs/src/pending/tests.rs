//! Unit tests of the overlay and of the cut choices, without a mount.

use super::*;

fn write(offset: u64, data: &[u8]) -> Op {
    Op::Write {
        offset,
        data: data.to_vec(),
    }
}

/// Reads `len` bytes at `offset` of a backing file holding `backing`.
fn view(p: &Pending, backing: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    let start = (offset as usize).min(backing.len());
    let end = (offset as usize + len).min(backing.len());
    buf[..end - start].copy_from_slice(&backing[start..end]);
    p.overlay(offset, &mut buf);
    let size = p.size(backing.len() as u64);
    buf.truncate(size.saturating_sub(offset).min(len as u64) as usize);
    buf
}

#[test]
fn writes_overlay_in_order_and_sparse_gaps_read_as_zeros() {
    let mut p = Pending::default();
    p.push(write(1, b"abc"));
    p.push(write(2, b"XY"));
    p.push(write(8, b"z"));
    assert_eq!(p.size(4), 9);
    assert_eq!(view(&p, b"0123", 0, 100), b"0aXY\0\0\0\0z");
    assert_eq!(view(&p, b"0123", 3, 2), b"Y\0");
    assert_eq!(view(&p, b"0123", 20, 5), b"");
}

#[test]
fn truncate_hides_old_bytes_even_when_the_file_grows_again() {
    let mut p = Pending::default();
    p.push(Op::Truncate(2));
    p.push(write(5, b"e"));
    assert_eq!(p.size(8), 6);
    assert_eq!(view(&p, b"01234567", 0, 8), b"01\0\0\0e");
    assert_eq!((p.len(), p.bytes()), (2, 1));
}

#[test]
fn torn_keeps_a_prefix_then_tears_at_a_page_boundary() {
    let ops: Vec<Op> = (0..6u8)
        .map(|i| write(u64::from(i) * 10_000, &[i; 10_000]))
        .collect();
    let mut torn_seen = 0;
    for seed in 0..200 {
        let mut p = Pending { ops: ops.clone() };
        let (kept, tally) = p.cut(Cut::Torn(seed), &mut Rng::new(seed));
        assert!(p.is_empty());
        let full = kept.len() - tally.torn as usize;
        assert_eq!(kept[..full], ops[..full]);
        if let Some(Op::Write { offset, data }) = kept.get(full) {
            torn_seen += 1;
            assert_eq!(*offset, full as u64 * 10_000);
            assert_eq!((offset + data.len() as u64) % PAGE, 0, "seed {seed}");
            assert!(!data.is_empty() && data.len() < 10_000);
        }
        assert_eq!(tally.kept + tally.torn + tally.dropped, 6);
    }
    assert!(torn_seen > 50, "only {torn_seen} torn writes in 200 cuts");
}

#[test]
fn reorder_keeps_a_subset_in_the_original_order() {
    let ops: Vec<Op> = (0..20u8).map(|i| write(u64::from(i), &[i])).collect();
    let mut p = Pending { ops: ops.clone() };
    let (kept, tally) = p.cut(Cut::Reorder(7), &mut Rng::new(7));
    assert!(!kept.is_empty() && kept.len() < 20);
    assert!(kept
        .windows(2)
        .all(|w| ops.iter().position(|o| *o == w[0]) < ops.iter().position(|o| *o == w[1])));
    assert_eq!(tally.kept + tally.dropped, 20);
    assert_eq!(tally.lost_bytes, 20 - kept.len() as u64);
}

#[test]
fn drop_loses_everything() {
    let mut p = Pending {
        ops: vec![write(0, b"abc"), Op::Truncate(1)],
    };
    let (kept, tally) = p.cut(Cut::Drop, &mut Rng::new(1));
    assert!(kept.is_empty());
    assert_eq!(
        tally,
        CutTally {
            kept: 0,
            torn: 0,
            dropped: 2,
            lost_bytes: 3
        }
    );
}
