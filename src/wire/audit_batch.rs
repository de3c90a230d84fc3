//! An `AuditBatch` (the records of one group commit, as one value) written record by
//! record: each record is encoded straight into the batch, and its bytes there are the
//! ones hashed into the Merkle tree, so a record is never encoded twice.

use std::ops::Range;

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message as _;

use crate::proto;

/// `AuditBatch.first_seq`.
const FIRST_SEQ: u32 = 1;
/// `AuditBatch.records`.
const RECORDS: u32 = 2;

/// Starts a batch whose first record has seq `first` (omitted when 0, as proto3 does).
pub(crate) fn audit_batch_start(buf: &mut Vec<u8>, first: u64) {
    if first != 0 {
        encode_key(FIRST_SEQ, WireType::Varint, buf);
        encode_varint(first, buf);
    }
}

/// Appends `record` to the batch; returns where its encoding lies in `buf`.
pub(crate) fn audit_batch_record(buf: &mut Vec<u8>, record: &proto::AuditRecord) -> Range<usize> {
    encode_key(RECORDS, WireType::LengthDelimited, buf);
    encode_varint(record.encoded_len() as u64, buf);
    let at = buf.len();
    // Encoding into a Vec cannot run out of room.
    let _ = record.encode(buf);
    at..buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_the_bytes_prost_would_write_and_each_record_its_own() {
        for first in [0, 1, 127, 128, 1 << 40] {
            let records: Vec<proto::AuditRecord> = (0..3)
                .map(|i| proto::AuditRecord {
                    seq: first + i,
                    time_unix_ms: 1_790_000_000_000,
                    event: proto::AuditEvent::Delivered as i32,
                    partner: "au-dod".into(),
                    bulletin_seqs: vec![i; i as usize],
                    ..Default::default()
                })
                .collect();
            let mut buf = Vec::new();
            audit_batch_start(&mut buf, first);
            let ranges: Vec<_> = records
                .iter()
                .map(|r| audit_batch_record(&mut buf, r))
                .collect();
            let expected = proto::AuditBatch {
                first_seq: first,
                records: records.iter().map(|r| r.encode_to_vec().into()).collect(),
            };
            assert_eq!(buf, expected.encode_to_vec(), "first seq {first}");
            for (r, at) in records.iter().zip(ranges) {
                assert_eq!(buf[at], r.encode_to_vec()[..]);
            }
        }
    }
}
