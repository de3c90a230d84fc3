//! Writing a group commit's bulletins as one `Segment` value: each received envelope is
//! encoded straight into the segment's buffer, and the cached copy of the segment points
//! into that buffer, so an accepted bulletin's bytes are not encoded into a buffer of
//! their own first and copied again. Reading segments back is the store's (`store::queue`).
//!
//! The bytes are exactly prost's encoding of the `Segment` with every
//! `StoredBulletin.signed` holding its envelope's encoding (a unit test holds it to that).

use std::ops::Range;

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;

use crate::proto;

/// `Segment.bulletins`.
const BULLETINS: u32 = 1;
/// `StoredBulletin.seq`.
const SEQ: u32 = 1;
/// `StoredBulletin.signed`.
const SIGNED: u32 = 2;

/// Encodes `bulletins` (their `signed` left empty) with their envelopes, and returns the
/// encoding and the segment decoded, whose `signed` fields are slices of it.
pub(crate) fn encode(
    bulletins: Vec<(proto::StoredBulletin, proto::SignedBulletin)>,
) -> (Bytes, proto::Segment) {
    let size: usize = bulletins
        .iter()
        .map(|(b, env)| b.encoded_len() + env.encoded_len() + 16)
        .sum();
    let mut buf = Vec::with_capacity(size);
    let mut stored = Vec::with_capacity(bulletins.len());
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(bulletins.len());
    for (mut b, env) in bulletins {
        // Fields in number order, as prost writes them: seq (1), signed (2), and the
        // rest, encoded by prost with the first two at their defaults (omitted).
        let seq = std::mem::take(&mut b.seq);
        b.signed = Bytes::new();
        let seq_len = if seq == 0 {
            0
        } else {
            1 + encoded_len_varint(seq)
        };
        let env_len = env.encoded_len();
        let signed_len = if env_len == 0 {
            0
        } else {
            1 + encoded_len_varint(env_len as u64) + env_len
        };
        let body = seq_len + signed_len + b.encoded_len();
        encode_key(BULLETINS, WireType::LengthDelimited, &mut buf);
        encode_varint(body as u64, &mut buf);
        if seq != 0 {
            encode_key(SEQ, WireType::Varint, &mut buf);
            encode_varint(seq, &mut buf);
        }
        let mut at = buf.len()..buf.len();
        if env_len != 0 {
            encode_key(SIGNED, WireType::LengthDelimited, &mut buf);
            encode_varint(env_len as u64, &mut buf);
            at = buf.len()..buf.len() + env_len;
            // Encoding into a Vec cannot run out of room.
            let _ = env.encode(&mut buf);
        }
        let _ = b.encode(&mut buf);
        b.seq = seq;
        stored.push(b);
        ranges.push(at);
    }
    let bytes = Bytes::from(buf);
    for (b, at) in stored.iter_mut().zip(ranges) {
        b.signed = bytes.slice(at);
    }
    (bytes, proto::Segment { bulletins: stored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulletin(seq: u64, shared: &[&str]) -> proto::StoredBulletin {
        proto::StoredBulletin {
            seq,
            signed: Bytes::new(),
            digest: Bytes::from(vec![seq as u8; 32]),
            origin: "us-dod".into(),
            id: format!("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a{seq:02x}"),
            received_from: "us-dod".into(),
            accepted_unix_ms: 1_790_000_000_000 + seq,
            shared_with: shared.iter().map(|s| s.to_string()).collect(),
            path: if seq.is_multiple_of(2) {
                vec!["jp-mod".into()]
            } else {
                vec![]
            },
        }
    }

    fn envelope(len: usize) -> proto::SignedBulletin {
        proto::SignedBulletin {
            bulletin: Bytes::from(vec![7; len]),
            signature: Bytes::from(vec![9; if len == 0 { 0 } else { 64 }]),
            key_id: Bytes::from(vec![3; if len == 0 { 0 } else { 8 }]),
        }
    }

    #[test]
    fn the_bytes_are_prosts_and_the_cached_envelopes_are_slices_of_them() {
        // Seqs around the varint steps, an empty envelope, one whose length needs three
        // bytes, bulletins shared with nobody or many.
        let cases = [
            (0, 0, vec![]),
            (1, 0, vec!["uk-mod"]),
            (127, 1, vec![]),
            (
                128,
                1_200,
                vec!["uk-mod", "ee-mod", "fr-minarm", "nato-ccdcoe"],
            ),
            (1 << 40, 20_000, vec!["uk-mod"]),
        ];
        let input: Vec<_> = cases
            .iter()
            .map(|(seq, len, shared)| (bulletin(*seq, shared), envelope(*len)))
            .collect();
        let expected = proto::Segment {
            bulletins: input
                .iter()
                .map(|(b, env)| proto::StoredBulletin {
                    signed: Bytes::from(env.encode_to_vec()),
                    ..b.clone()
                })
                .collect(),
        };
        let (bytes, decoded) = encode(input);
        assert_eq!(bytes, expected.encode_to_vec());
        assert_eq!(decoded, expected);
        assert_eq!(proto::Segment::decode(bytes.clone()).unwrap(), expected);
        for b in decoded.bulletins.iter().filter(|b| !b.signed.is_empty()) {
            let (start, end) = (
                bytes.as_ptr() as usize,
                bytes.as_ptr() as usize + bytes.len(),
            );
            let at = b.signed.as_ptr() as usize;
            assert!(
                at >= start && at + b.signed.len() <= end,
                "a slice of the value"
            );
        }
    }

    #[test]
    fn an_empty_segment_is_empty() {
        let (bytes, decoded) = encode(vec![]);
        assert!(bytes.is_empty());
        assert!(decoded.bulletins.is_empty());
    }
}
