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
