//! The protobuf encodings renkei writes by hand, on its hot path: a `Delivery` frame
//! around a stored envelope, a `PublishResult` frame with its partner lists, a
//! `Segment` of stored bulletins, an `AuditBatch` of records. Each writes exactly the
//! bytes prost would for its message (one test per message holds it to that); they
//! exist so that envelopes are never decoded and encoded again, nor copied twice.
//!
//! A change to one of these messages in `proto/` comes here, and nowhere else.

mod audit_batch;
mod frames;
mod segment;

pub(crate) use audit_batch::{audit_batch_record, audit_batch_start};
pub(crate) use frames::{delivery_frame, publish_result_frame, publish_result_lists};
pub(crate) use segment::encode as segment;

/// Copies a signed bulletin's bytes out of the frame they were decoded from. prost
/// decodes `bytes` fields as slices of the frame's buffer, so a kept bulletin would keep
/// its whole frame alive, padding (unknown fields) and all, while memory budgets count
/// only what decoded: after this, the bulletin holds what it counts and nothing more.
pub(crate) fn detach(signed: &mut crate::proto::SignedBulletin) {
    for field in [
        &mut signed.bulletin,
        &mut signed.signature,
        &mut signed.key_id,
    ] {
        *field = bytes::Bytes::copy_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use crate::proto;

    #[test]
    fn a_detached_bulletin_no_longer_holds_its_frame() {
        let signed = proto::SignedBulletin {
            bulletin: vec![1; 100].into(),
            signature: vec![2; 64].into(),
            key_id: vec![3; 8].into(),
        };
        // A frame padded with a megabyte the decoder skips (an unknown field 15).
        let mut frame = signed.encode_to_vec();
        frame.extend_from_slice(&[0x7a, 0x80, 0x80, 0x40]);
        frame.extend(std::iter::repeat_n(0u8, 1 << 20));
        let frame = bytes::Bytes::from(frame);
        let mut decoded = proto::SignedBulletin::decode(frame.clone()).expect("decodes");
        assert_eq!(decoded, signed);
        let frame_at = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(
            frame_at.contains(&(decoded.bulletin.as_ptr() as usize)),
            "a slice of the frame"
        );
        super::detach(&mut decoded);
        assert_eq!(decoded, signed);
        for field in [&decoded.bulletin, &decoded.signature, &decoded.key_id] {
            assert!(
                !frame_at.contains(&(field.as_ptr() as usize)),
                "its own copy"
            );
        }
    }
}
