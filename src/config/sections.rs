//! The optional tables of a node configuration, each with its defaults: `[limits]`,
//! `[transport]`, `[storage]`, `[audit]`, `[metrics]` and `[admin]`. Validation that
//! spans tables stays with `NodeConfig`.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::bulletin::Limits;

/// The optional `[limits]` table.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest frame accepted on any stream, length prefix excluded.
    pub max_frame_bytes: usize,
    /// Largest encoded bulletin.
    pub max_bulletin_bytes: usize,
    /// Largest bulletin body.
    pub max_body_bytes: usize,
    /// How far in the future a bulletin's creation time may lie, in seconds.
    pub max_clock_skew_secs: u64,
    /// How old a bulletin may be when the node receives it, in days (replay
    /// protection); a signing key must also still be valid when it arrives.
    pub max_age_days: u64,
    /// MiB that one publish stream's publishes may hold from being read until their
    /// results are written; beyond it the stream is not read (QUIC flow control).
    pub stream_in_flight_mib: usize,
    /// The same for all of one partner's streams and connections together.
    pub partner_in_flight_mib: usize,
    /// The same for the whole node.
    pub node_in_flight_mib: usize,
    /// Seconds a frame may take to arrive whole once its length prefix has; a stream
    /// whose frame is slower is closed with FRAME_TOO_SLOW (its room in the budgets
    /// must not be held by a partner trickling bytes).
    pub frame_deadline_secs: u64,
    /// MiB a second the node reads of one partner's frames on QUIC, all its
    /// connections together (an eighth of a second's worth may come at once); beyond
    /// it the partner is read more slowly and QUIC flow control holds it back, so no
    /// partner can keep the node decrypting its bytes, nor committing its bulletins
    /// one by one, while others wait. A peer node's deliveries count too: raise it for
    /// a relay that carries many bulletins (at 8, about 6,000 of 1 KiB a second).
    /// (The TAXII gateway's requests are bounded by their own size limits instead.)
    pub partner_mib_per_sec: u64,
    /// Publishes a second the node reads of one partner, all its streams together
    /// (each stream's opening frame counts as one; an eighth of a second's worth may
    /// come at once). Beyond it the partner waits, as for its bytes: the CPU that
    /// verifies, records and commits its bulletins stays shared, so partners flooding
    /// small bulletins leave room for another's. A peer's deliveries do not count (the
    /// node pulls them a window at a time).
    pub partner_publishes_per_sec: u64,
}

/// Room for the SignedBulletin and frame envelopes around the largest bulletin.
pub const FRAME_OVERHEAD: usize = 1024;

impl Default for LimitsSection {
    fn default() -> Self {
        let l = Limits::default();
        LimitsSection {
            max_frame_bytes: l.max_bulletin_bytes + FRAME_OVERHEAD,
            max_bulletin_bytes: l.max_bulletin_bytes,
            max_body_bytes: l.max_body_bytes,
            max_clock_skew_secs: l.max_future_skew.as_secs(),
            max_age_days: crate::bulletin::DEFAULT_MAX_AGE.as_secs() / (24 * 3600),
            stream_in_flight_mib: 16,
            partner_in_flight_mib: 64,
            node_in_flight_mib: 256,
            frame_deadline_secs: 30,
            partner_mib_per_sec: 8,
            partner_publishes_per_sec: 1_000,
        }
    }
}

impl LimitsSection {
    /// The bulletin limits a node applies to what it receives.
    pub fn bulletin_limits(&self) -> Limits {
        Limits {
            max_bulletin_bytes: self.max_bulletin_bytes,
            max_body_bytes: self.max_body_bytes,
            max_future_skew: std::time::Duration::from_secs(self.max_clock_skew_secs),
            max_age: Some(std::time::Duration::from_secs(
                self.max_age_days.saturating_mul(24 * 3600),
            )),
        }
    }

    /// Checks the settings against each other: the body within the bulletin, the
    /// bulletin within a frame, each budget able to hold the largest frame and the level
    /// below it. The error names the field.
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        let l = self;
        if l.max_body_bytes == 0 || l.max_body_bytes > l.max_bulletin_bytes {
            return Err((
                "limits.max_body_bytes".into(),
                format!(
                    "must be between 1 and max_bulletin_bytes ({})",
                    l.max_bulletin_bytes
                ),
            ));
        }
        if l.max_frame_bytes < l.max_bulletin_bytes + FRAME_OVERHEAD {
            return Err((
            "limits.max_frame_bytes".into(),
            format!(
                "must be at least max_bulletin_bytes + {FRAME_OVERHEAD} ({}) so the largest bulletin fits in a frame",
                l.max_bulletin_bytes + FRAME_OVERHEAD
            ),
        ));
        }
        if l.frame_deadline_secs == 0 {
            return Err((
                "limits.frame_deadline_secs".into(),
                "must be at least 1 second".into(),
            ));
        }
        if l.partner_mib_per_sec == 0 {
            return Err((
                "limits.partner_mib_per_sec".into(),
                "must be at least 1 MiB a second".into(),
            ));
        }
        if l.partner_publishes_per_sec == 0 {
            return Err((
                "limits.partner_publishes_per_sec".into(),
                "must be at least 1 publish a second".into(),
            ));
        }
        // Each budget must hold the largest frame, and each level the one below it.
        let frame_mib = l.max_frame_bytes.div_ceil(1 << 20);
        for (field, value, floor, what) in [
            (
                "stream_in_flight_mib",
                l.stream_in_flight_mib,
                frame_mib,
                "the largest frame (max_frame_bytes)",
            ),
            (
                "partner_in_flight_mib",
                l.partner_in_flight_mib,
                l.stream_in_flight_mib,
                "stream_in_flight_mib",
            ),
            (
                "node_in_flight_mib",
                l.node_in_flight_mib,
                l.partner_in_flight_mib,
                "partner_in_flight_mib",
            ),
        ] {
            if value < floor {
                return Err((
                    format!("limits.{field}"),
                    format!("must be at least {floor} MiB, to hold {what}"),
                ));
            }
        }
        Ok(())
    }

    /// The limits a desk applies to its deliveries: no age limit, since its node judged
    /// each bulletin's age and keys when it arrived, and a desk that was away for
    /// weeks must still read what was queued for it.
    pub fn delivery_limits(&self) -> Limits {
        Limits {
            max_age: None,
            ..self.bulletin_limits()
        }
    }
}

/// The optional `[transport]` table: QUIC timers and delivery flow control.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    /// Seconds between QUIC keep-alive pings on an idle connection.
    pub keep_alive_secs: u64,
    /// Seconds without any packet before a connection is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds a TLS handshake may take before the node gives up on it.
    pub handshake_timeout_secs: u64,
    /// Deliveries in flight to one subscriber without an Ack, at most. The node holds
    /// only their seqs (a page's bytes are capped apart, and QUIC bounds what is in
    /// transit), so the window costs a subscriber memory, not the node; too small a
    /// window leaves a catching-up subscriber waiting on its own acks.
    pub delivery_window: u32,
    /// Bulletins per group commit, at most.
    pub commit_batch: usize,
    /// Milliseconds a group commit should take while a partner with a few bulletins
    /// waits behind heavier ones (within `commit_batch`): a bulletin that arrives
    /// during a commit waits for it and then for its own. Smaller favours such a
    /// partner's latency, larger throughput. A commit never takes fewer than 16
    /// bulletins, so on a disk whose flush alone takes longer, commits stay at 16.
    pub commit_target_ms: u64,
    /// Handshakes in progress above which a new connection attempt must first prove its
    /// address with a QUIC Retry (a stateless round trip that costs the node no
    /// signature work); 0 validates every address.
    pub retry_above_handshakes: usize,
    /// Handshakes in progress at most; further attempts are refused until some end.
    pub max_handshakes: usize,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            keep_alive_secs: 5,
            idle_timeout_secs: 30,
            handshake_timeout_secs: 10,
            // A backlog of a million drained at 48,600–53,100/s with 256 and at
            // 67,800–69,100/s with 1,024 (JetStream's consumers default to 1,000).
            // A subscriber verifying on two cores still waited on its acks with
            // 1,024 (62,900–78,300/s, median 73,500); with 4,096, 74,200–100,100/s
            // (median 89,400).
            delivery_window: 4096,
            commit_batch: 512,
            commit_target_ms: 1,
            retry_above_handshakes: 16,
            max_handshakes: 128,
        }
    }
}

/// The optional `[storage]` table.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The store engine's block cache, MiB. Bounded so memory does not grow with the database.
    pub cache_mib: u64,
    /// Free space (MiB) kept in the data directory's filesystem: below it the node
    /// refuses new bulletins with `STORAGE_FULL`, and takes them again a quarter above
    /// it. 0 turns the guard off.
    pub reserve_mib: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            cache_mib: 64,
            reserve_mib: 64,
        }
    }
}

/// The optional `[audit]` table: how often the node signs a checkpoint of its log.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Sign a checkpoint once this many records were appended since the last.
    pub checkpoint_every: u64,
    /// Sign one at least this often (seconds) while records are appended.
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            checkpoint_every: 10_000,
            checkpoint_interval_secs: 60,
        }
    }
}

/// The optional `[metrics]` table.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// First month of the fiscal year (1 = January; 4 = April, Japan's and the UK's).
    pub fiscal_year_start_month: u8,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            fiscal_year_start_month: 4,
        }
    }
}

/// The optional `[disclosure]` table: what a publisher learns about the other partners.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureSection {
    /// Whether an accepted answer lists the partners a bulletin was withheld from, with
    /// the reason (which tells the publisher their clearances and denied tags). Off by
    /// default: the answer names who received the bulletin and no one else. Auditors
    /// are never listed.
    pub withheld: bool,
}

/// The optional `[taxii]` table: a TAXII 2.1 gateway over HTTPS with the federation's
/// certificates. Off unless `listen` is set.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TaxiiSection {
    /// TCP address to serve HTTPS on.
    pub listen: Option<SocketAddr>,
    /// The base URL clients reach it at (`https://taxii.example.org:9443`), which
    /// discovery advertises; `https://` and the bound address when absent.
    pub url: Option<String>,
    /// STIX objects the gateway's index holds at most (about 550 bytes of memory each):
    /// TAXII serves the newest this many; QUIC subscriptions are not affected.
    pub index_objects: usize,
}

impl Default for TaxiiSection {
    fn default() -> Self {
        TaxiiSection {
            listen: None,
            url: None,
            index_objects: 500_000,
        }
    }
}

/// The optional `[admin]` table: the monitoring listener.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// TCP address for `/metrics`, `/healthz` and `/readyz` (plain HTTP, read-only);
    /// none when absent. Keep it on loopback or a monitoring network.
    pub listen: Option<SocketAddr>,
}
