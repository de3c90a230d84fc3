//! What a node or a signer accepts of a bulletin's size and age: fixed limits on the
//! small fields, and the configurable limits on the whole bulletin, its body, its
//! creation time's skew and its age.

use std::time::Duration;

/// Fixed limits on the small fields (bytes or entries); see `proto/README.md`.
pub mod field_limits {
    /// `title`, bytes of UTF-8.
    pub const TITLE: usize = 512;
    /// `summary`, bytes of UTF-8.
    pub const SUMMARY: usize = 8 * 1024;
    /// `content_type`, bytes.
    pub const CONTENT_TYPE: usize = 255;
    /// Each tag, bytes of UTF-8.
    pub const TAG: usize = 128;
    /// Number of tags.
    pub const TAGS: usize = 64;
    /// Number of audience entries.
    pub const AUDIENCE: usize = 256;
    /// Number of references.
    pub const REFERENCES: usize = 256;
}

/// Size and clock limits a node (or a signer) enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded `Bulletin` accepted (the signed bytes).
    pub max_bulletin_bytes: usize,
    /// Largest `body` accepted.
    pub max_body_bytes: usize,
    /// How far in the future a bulletin's creation time may lie (clock skew).
    pub max_future_skew: Duration,
    /// How old a bulletin may be when it is received, so that a captured bulletin
    /// cannot be replayed years later; with it, a key must also still be valid at the
    /// time of receipt, so a key past `not_after` cannot sign by backdating. `None`
    /// judges a bulletin at its creation time only: a desk reading its queue, whose
    /// node judged each bulletin when it arrived.
    pub max_age: Option<Duration>,
}

/// Default [`Limits::max_age`]: 30 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulletin_bytes: 1024 * 1024,
            max_body_bytes: 768 * 1024,
            max_future_skew: Duration::from_secs(300),
            max_age: Some(DEFAULT_MAX_AGE),
        }
    }
}
