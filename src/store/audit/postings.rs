//! The value of one index posting (`x/p/`, `x/b/`, `x/e/`): the seqs of one commit's
//! records filed under one term, ascending.
//!
//! Written as a tag byte and then varint gaps, each from the seq before (the first from
//! the commit's first seq, which ends the key): a commit's records are consecutive, so
//! most gaps take one byte where a plain seq took eight. The index was a sixth of what
//! the audit log added to the database per record. Postings written before (eight
//! bytes per seq, big-endian) are still read: their first byte is a seq's top byte,
//! which is 0 for any log smaller than 2^56 records, never the tag.
//!
//! It knows nothing of what the terms mean.

use super::{be_u64, corrupt, StoreError};

/// First byte of a posting written as gaps.
const GAPS: u8 = 1;

/// A posting being built, one seq at a time.
#[derive(Debug)]
pub(super) struct Posting {
    bytes: Vec<u8>,
    last: u64,
}

impl Posting {
    /// An empty posting of the commit whose first record is `first`.
    pub fn new(first: u64) -> Posting {
        Posting {
            bytes: vec![GAPS],
            last: first,
        }
    }

    /// Files `seq`, which is at or after the last one filed.
    pub fn push(&mut self, seq: u64) {
        prost::encoding::encode_varint(seq.saturating_sub(self.last), &mut self.bytes);
        self.last = self.last.max(seq);
    }

    /// The value to store.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The seqs of the posting `value` stored at `key`, whose commit's first record is
/// `first`.
pub(super) fn seqs(key: &[u8], first: u64, value: &[u8]) -> Result<Vec<u64>, StoreError> {
    match value.split_first() {
        Some((&GAPS, mut gaps)) => {
            let mut out = Vec::with_capacity(gaps.len());
            let mut seq = first;
            while !gaps.is_empty() {
                let gap = prost::encoding::decode_varint(&mut gaps)
                    .map_err(|e| corrupt(key, format!("index entry: {e}")))?;
                seq = seq
                    .checked_add(gap)
                    .ok_or_else(|| corrupt(key, "index entry passes the largest seq"))?;
                out.push(seq);
            }
            Ok(out)
        }
        _ if value.len().is_multiple_of(8) => {
            value.chunks_exact(8).map(|s| be_u64(key, s)).collect()
        }
        _ => Err(corrupt(key, "index entry is not a list of seqs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_come_back_as_filed_in_about_a_byte_each() {
        let first = 1_000_000;
        let filed = [
            first,
            first,
            first + 1,
            first + 2,
            first + 300,
            first + 70_000,
        ];
        let mut p = Posting::new(first);
        for s in filed {
            p.push(s);
        }
        let bytes = p.into_bytes();
        assert_eq!(bytes.len(), 1 + 4 + 2 + 3);
        assert_eq!(seqs(b"k", first, &bytes).unwrap(), filed);
    }

    #[test]
    fn postings_of_eight_bytes_a_seq_are_still_read() {
        let old: Vec<u8> = [5u64, 9, 1 << 40]
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        assert_eq!(seqs(b"k", 5, &old).unwrap(), [5, 9, 1 << 40]);
    }

    #[test]
    fn a_damaged_posting_is_named_not_misread() {
        // A varint cut short, and a length that is neither form.
        assert!(seqs(b"x/e/1", 0, &[GAPS, 0x80]).is_err());
        assert!(seqs(b"x/e/1", 0, &[0, 0, 0]).is_err());
        let err = seqs(b"x/e/1", u64::MAX, &[GAPS, 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/e/1"), "{err}");
    }
}
