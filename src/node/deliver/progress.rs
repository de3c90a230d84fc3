//! One subscription's delivery decisions, without the stream: how much the next page of
//! the partner's queue may hold, what a page read comes to (the records to write and
//! the deliveries to send), what acks do to the partner's cursor, and whether to read
//! on or wait. The window counts everything delivered above the cursor, acknowledged
//! out of order or not. No I/O and no clock: the shell reads pages, writes frames and
//! records, and passes the time in.

use std::collections::BTreeMap;

use crate::audit::record::Event;
use crate::identity::PartnerId;
use crate::node::withdraw::Withdrawal;
use crate::store::{Cursor, Page, Pending};
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

    /// After a turn that took `progressed` bulletins off the queue, with `head` the
    /// newest stored seq: whether to read the next page at once instead of waiting.
    pub(super) fn read_on(&mut self, progressed: usize, head: u64) -> bool {
        if self.unacked.is_empty() && self.position > self.cursor.acked_through {
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
                self.cursor.acked_above.insert(*seq);
                let ms = now.saturating_since(accepted).as_millis();
                acked.push((*seq, u64::try_from(ms).unwrap_or(u64::MAX)));
            }
        }
        self.settle();
        acked
    }

    /// Everything examined below the oldest unacked delivery is acknowledged.
    fn settle(&mut self) {
        let through = match self.unacked.keys().next() {
            Some(oldest) => oldest - 1,
            None => self.position,
        };
        if through > self.cursor.acked_through {
            self.cursor.acked_through = through;
            self.cursor.acked_above.retain(|s| *s > through);
        }
    }
}

#[cfg(test)]
mod tests;
