//! The tamper-evident audit log, Certificate Transparency style (RFC 6962/9162):
//! records are the leaves of a Merkle tree, the node signs checkpoints (C2SP
//! tlog-checkpoint signed notes), and anyone holding the records can prove inclusion
//! and consistency or recompute the whole tree.
//!
//! Pure: hashes are read through the [`merkle::HashStore`] trait and times are passed
//! in; writing them durably, atomically with the state they describe, is `store`'s job.
//! The proof and note formats come from the maintained `tlog_tiles` and `signed_note`
//! crates, kept behind this module so the rest of renkei never names them.

pub mod checkpoint;
pub mod export;
pub mod merkle;
pub mod query;
pub mod record;
pub mod rotation;
pub mod witness;

pub use query::{Query, DEFAULT_PAGE, MAX_PAGE};
