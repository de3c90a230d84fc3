//! The frames a node writes most: a `Delivery` around a stored envelope (copied in as
//! it is, never decoded and encoded again) and a `PublishResult` with its partner lists
//! encoded once per answer. Each function writes prost's bytes for its message with the
//! envelope or the lists decoded into it (the tests below hold it to that).

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;

use crate::proto;

/// The field of `ServerFrame` that holds a `Delivery`.
const DELIVERY_FIELD: u32 = 3;
/// The field of `ServerFrame` that holds a `PublishResult`.
const PUBLISH_RESULT_FIELD: u32 = 2;
/// `PublishResult.shared_with`.
const SHARED_WITH: u32 = 6;
/// `PublishResult.withheld`.
const WITHHELD: u32 = 7;

/// Appends a length-delimited `ServerFrame` holding the `Delivery` of `seq` whose
/// bulletin is `envelope`, an encoded `SignedBulletin` as the store keeps it, and whose
/// path is `path` (the nodes it crossed before this one) then `node` (this one).
pub(crate) fn delivery_frame(
    buf: &mut Vec<u8>,
    seq: u64,
    envelope: &[u8],
    path: &[String],
    node: &str,
) {
    // Delivery { seq = 1 (omitted when 0, as proto3 does); bulletin = 2; path = 3 }
    let seq_len = if seq == 0 {
        0
    } else {
        1 + encoded_len_varint(seq)
    };
    let env = envelope.len() as u64;
    let hops = || path.iter().map(String::as_str).chain([node]);
    let path_len: usize = hops()
        .map(|n| 1 + encoded_len_varint(n.len() as u64) + n.len())
        .sum();
    let delivery = seq_len as u64 + 1 + encoded_len_varint(env) as u64 + env + path_len as u64;
    // ServerFrame { delivery = 3 }
    let frame = 1 + encoded_len_varint(delivery) as u64 + delivery;
    encode_varint(frame, buf);
    encode_key(DELIVERY_FIELD, WireType::LengthDelimited, buf);
    encode_varint(delivery, buf);
    if seq != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(seq, buf);
    }
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(env, buf);
    buf.extend_from_slice(envelope);
    for n in hops() {
        encode_key(3, WireType::LengthDelimited, buf);
        encode_varint(n.len() as u64, buf);
        buf.extend_from_slice(n.as_bytes());
    }
}

/// Appends a length-delimited `ServerFrame` holding `result` followed by `tail`, fields
/// already encoded that come after every field `result` sets (an accepted answer's
/// partner lists, [`publish_result_lists`]).
pub(crate) fn publish_result_frame(buf: &mut Vec<u8>, result: &proto::PublishResult, tail: &[u8]) {
    debug_assert!(
        tail.is_empty()
            || (result.shared_with.is_empty()
                && result.withheld.is_empty()
                && result.error == 0
                && result.message.is_empty()),
        "a tail must come after every field the result sets"
    );
    let body = result.encoded_len() + tail.len();
    // ServerFrame { publish_result = 2 }
    let frame = 1 + encoded_len_varint(body as u64) + body;
    buf.reserve(frame + 10);
    encode_varint(frame as u64, buf);
    encode_key(PUBLISH_RESULT_FIELD, WireType::LengthDelimited, buf);
    encode_varint(body as u64, buf);
    // Encoding into a Vec cannot run out of room.
    let _ = result.encode(buf);
    buf.extend_from_slice(tail);
}

/// The encoded length of a length-delimited field of `len` bytes, or 0 if proto3 omits
/// it (an empty singular field).
fn omitted_if_empty(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

/// `PublishResult.shared_with` then `withheld`, as prost writes them: the `shared`
/// partners' ids, then each `told` decision as a `Withheld`.
pub(crate) fn publish_result_lists<'a>(
    shared: impl Iterator<Item = &'a proto::Decision>,
    told: impl Iterator<Item = &'a proto::Decision>,
    room: usize,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(room);
    for d in shared {
        encode_key(SHARED_WITH, WireType::LengthDelimited, &mut buf);
        encode_varint(d.partner.len() as u64, &mut buf);
        buf.extend_from_slice(d.partner.as_bytes());
    }
    for d in told {
        // Withheld { partner = 1; reason = 2; detail = 3 }; an enum is encoded as an
        // int32, so a negative value is sign-extended to ten bytes.
        let reason = d.reason as i64 as u64;
        let reason_len = if d.reason == 0 {
            0
        } else {
            1 + encoded_len_varint(reason)
        };
        let len = omitted_if_empty(d.partner.len()) + reason_len + omitted_if_empty(d.detail.len());
        encode_key(WITHHELD, WireType::LengthDelimited, &mut buf);
        encode_varint(len as u64, &mut buf);
        if !d.partner.is_empty() {
            encode_key(1, WireType::LengthDelimited, &mut buf);
            encode_varint(d.partner.len() as u64, &mut buf);
            buf.extend_from_slice(d.partner.as_bytes());
        }
        if d.reason != 0 {
            encode_key(2, WireType::Varint, &mut buf);
            encode_varint(reason, &mut buf);
        }
        if !d.detail.is_empty() {
            encode_key(3, WireType::LengthDelimited, &mut buf);
            encode_varint(d.detail.len() as u64, &mut buf);
            buf.extend_from_slice(d.detail.as_bytes());
        }
    }
    buf
}

#[cfg(test)]
mod tests;
