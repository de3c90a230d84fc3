//! One subscription's delivery decisions, without the stream: how much the next page of
//! the partner's queue may hold, what a page read comes to (the records to write and
//! the deliveries to send), what acks do to the partner's cursor, and whether to read
//! on or wait. The window counts everything delivered above the cursor, acknowledged
//! out of order or not. No I/O and no clock: the shell reads pages, writes frames and
//! records, and passes the time in.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::record::Event;
use crate::identity::PartnerId;
use crate::node::withdraw::Withdrawal;
use crate::proto::{self, ErrorCode};
use crate::store::{Cursor, Page, Pending, Refusal, RefusedChange};
use crate::timestamp::Timestamp;

/// The delivery state of one subscription.
pub(super) struct Progress {
    partner: PartnerId,
    window: usize,
    /// Where the partner's next subscription starts; saved with each ack.
    pub(super) cursor: Cursor,
    /// Every seq up to here was examined; the shared ones were delivered.
    pub(super) position: u64,
    /// Delivered, not yet acknowledged: seq → when the node accepted it.
    unacked: BTreeMap<u64, Timestamp>,
    /// Delivered again after the peer refused them before (all below the cursor).
    retried: BTreeSet<u64>,
}

/// What a page read comes to, in the order the shell must act on it.
pub(super) struct PageOut {
    /// Records of what the rules in force withdrew; the last carries the cursor that
    /// takes them off the queue.
    pub(super) withdrawn: Vec<(Event, Option<Cursor>)>,
    /// The record of the deliveries: to the storage thread before any byte goes out,
    /// so no delivery that reached the peer goes unrecorded.
    pub(super) delivered: Option<Event>,
    /// The deliveries to send, ascending seq, envelopes as stored.
    pub(super) items: Vec<Pending>,
    /// Bulletins this page took off the queue (sent or withdrawn).
    pub(super) progressed: usize,
}

impl Progress {
    /// A subscription starting from the partner's saved cursor.
    pub(super) fn new(partner: PartnerId, cursor: Cursor, window: usize) -> Progress {
        Progress {
            partner,
            window,
            position: cursor.acked_through,
            cursor,
            unacked: BTreeMap::new(),
            retried: BTreeSet::new(),
        }
    }

    /// Whether `seq` was delivered and is not acknowledged yet.
    pub(super) fn in_flight(&self, seq: u64) -> bool {
        self.unacked.contains_key(&seq)
    }

    /// How many bulletins the next page may hold (0: the window is full).
    pub(super) fn room(&self) -> usize {
        self.window
            .saturating_sub(self.unacked.len() + self.cursor.acked_above.len())
    }

    /// Takes a page read after [`Progress::position`] and screened by the rules in force
    /// (`withdrawn`: what they no longer share, by seq).
    pub(super) fn take_page(&mut self, page: Page, withdrawn: Vec<(u64, Withdrawal)>) -> PageOut {
        self.position = page.scanned_through;
        let count = withdrawn.len();
        let mut records = Vec::with_capacity(count);
        for (i, (seq, w)) in withdrawn.into_iter().enumerate() {
            // Marked like an ack: it counts against the window until the cursor passes
            // it, and is not settled here, since the rest of the page is not in flight.
            if seq > self.cursor.acked_through {
                self.cursor.acked_above.insert(seq);
            }
            let last = i + 1 == count;
            records.push((
                w.event(&self.partner, seq),
                last.then(|| self.cursor.clone()),
            ));
        }
        let seqs: Vec<u64> = page.items.iter().map(|i| i.seq).collect();
        let delivered = (!seqs.is_empty()).then(|| Event::delivered(&self.partner, seqs));
        // In flight from here on: a page whose write does not complete (a stop, a
        // replacement, a lost connection) stays unacknowledged and comes again.
        for item in &page.items {
            self.unacked.insert(item.seq, item.accepted);
        }
        PageOut {
            withdrawn: records,
            delivered,
            progressed: count + page.items.len(),
            items: page.items,
        }
    }

    /// Takes deliveries the peer refused before, offered again before any page of the
    /// queue (their seqs are below the cursor, so a subscription's seqs still rise):
    /// in flight from here on, and the record of their delivery.
    pub(super) fn take_retries(&mut self, items: &[Pending]) -> Option<Event> {
        for item in items {
            self.unacked.insert(item.seq, item.accepted);
            self.retried.insert(item.seq);
        }
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        (!seqs.is_empty()).then(|| Event::delivered(&self.partner, seqs))
    }

    /// Whether `seq` is a delivery offered again and not acknowledged yet.
    #[cfg(test)]
    pub(super) fn is_retry_in_flight(&self, seq: u64) -> bool {
        self.retried.contains(&seq) && self.in_flight(seq)
    }

    /// What the peer's answers in `acks` do to the refusals kept for it, before they
    /// are taken ([`Progress::take_acks`]): a refusal a configuration could change is
    /// kept, with this node's policy digest `own` and the one the peer's subscription
    /// `declared`; a delivery offered again and taken, or refused for good, is
    /// forgotten. Nothing is kept for a peer that declared no digest: it could not say
    /// when its configuration changed.
    pub(super) fn refused_changes(
        &self,
        acks: &[proto::Ack],
        own: [u8; 32],
        declared: &[u8],
    ) -> Vec<RefusedChange> {
        let mut out = Vec::new();
        if declared.is_empty() {
            return out;
        }
        let mut seen = BTreeSet::new();
        for ack in acks {
            for &seq in ack.seq.iter().filter(|s| self.in_flight(**s)) {
                if !seen.insert(seq) {
                    continue;
                }
                let code = ack.refused.iter().find(|r| r.seq == seq).map(|r| r.code);
                let fixable = code
                    .and_then(|c| ErrorCode::try_from(c).ok())
                    .is_some_and(may_change_with_configuration);
                let partner = self.partner.clone();
                match code {
                    Some(code) if fixable => out.push(RefusedChange::Keep(
                        partner,
                        Refusal {
                            seq,
                            code,
                            own_digest: own,
                            peer_digest: declared.to_vec(),
                        },
                    )),
                    _ if self.retried.contains(&seq) => {
                        out.push(RefusedChange::Forget(partner, seq));
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// After a turn that took `progressed` bulletins off the queue, with `head` the
    /// newest stored seq: whether to read the next page at once instead of waiting.
    pub(super) fn read_on(&mut self, progressed: usize, head: u64) -> bool {
        if self.unacked_ahead().is_none() && self.position > self.cursor.acked_through {
            // Nothing in flight: skip what was examined (saved with the next ack).
            self.settle();
        }
        progressed > 0 && self.room() > 0 && self.position < head
    }

    /// The acks that arrived together: their record, if any was new; the cursor moves
    /// as far as they allow (save [`Progress::cursor`] with the record).
    pub(super) fn take_acks(
        &mut self,
        batches: impl IntoIterator<Item = Vec<u64>>,
        now: Timestamp,
    ) -> Option<Event> {
        let mut acked = Vec::new();
        for seqs in batches {
            acked.extend(self.ack(&seqs, now));
        }
        (!acked.is_empty()).then(|| Event::acked(&self.partner, acked))
    }

    /// Records acks and moves the cursor as far as they allow. Returns the newly
    /// acknowledged seqs with their acceptance-to-ack latency (ms) at `now`.
    fn ack(&mut self, seqs: &[u64], now: Timestamp) -> Vec<(u64, u64)> {
        let mut acked = Vec::new();
        for seq in seqs {
            if let Some(accepted) = self.unacked.remove(seq) {
                // A retried delivery is below the cursor already.
                if *seq > self.cursor.acked_through {
                    self.cursor.acked_above.insert(*seq);
                }
                let ms = now.saturating_since(accepted).as_millis();
                acked.push((*seq, u64::try_from(ms).unwrap_or(u64::MAX)));
            }
        }
        self.settle();
        acked
    }

    /// The oldest delivery in flight above the cursor (retried ones are below it).
    fn unacked_ahead(&self) -> Option<u64> {
        let above = self.cursor.acked_through.saturating_add(1);
        self.unacked.range(above..).next().map(|(seq, _)| *seq)
    }

    /// Everything examined below the oldest unacked delivery is acknowledged.
    fn settle(&mut self) {
        let through = match self.unacked_ahead() {
            Some(oldest) => oldest - 1,
            None => self.position,
        };
        if through > self.cursor.acked_through {
            self.cursor.acked_through = through;
            self.cursor.acked_above.retain(|s| *s > through);
        }
    }
}

/// Whether a peer's refusal with `code` could end otherwise once a configuration
/// changes (the peer learns the origin, the key, the path or the audience; this node's
/// rules change what it sends), so the delivery is kept and offered again then. A
/// malformed, forged, conflicting or stale bulletin stays refused whatever changes.
pub(super) fn may_change_with_configuration(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UnknownKey
            | ErrorCode::KeyRevoked
            | ErrorCode::KeyNotValid
            | ErrorCode::OriginMismatch
            | ErrorCode::UnknownOrigin
            | ErrorCode::UnknownAudience
            | ErrorCode::NotViaPeer
            | ErrorCode::BadPath
            | ErrorCode::NotPermitted
    )
}

#[cfg(test)]
mod tests;
