//! The storage thread's waiting room: requests taken off its channel wait here until
//! a group commit takes them. Events, checkpoints and backups are taken in the order
//! they came, all at once; bulletins are taken round-robin by the partner that handed
//! them over, so one partner's flood cannot fill the group commits ahead of another
//! partner's bulletin. Within a partner, bulletins keep their order.
//!
//! No I/O: a queue per partner and the order their turns come in.

use std::collections::{HashMap, VecDeque};

use super::Request;
use crate::identity::PartnerId;

/// Requests waiting for a group commit.
#[derive(Default)]
pub(super) struct Staging {
    bulletins: HashMap<PartnerId, VecDeque<Request>>,
    /// Partners with bulletins waiting, in the order their turns come.
    order: VecDeque<PartnerId>,
    /// Everything else, in the order it came.
    others: Vec<Request>,
    waiting: usize,
    /// Requests other than bulletins that someone waits on (bulletins always have).
    awaited_others: usize,
    /// Whether the last group taken held a light partner's few bulletins beside a
    /// heavy partner's, some left for a later group: a light partner behind a heavy.
    sparse: bool,
}

/// At most this many bulletins waiting make a partner light: a desk publishing as it
/// writes, not a flood.
const LIGHT: usize = 4;

impl Staging {
    /// Puts a request in the waiting room.
    pub(super) fn push(&mut self, r: Request) {
        self.waiting += 1;
        let Request::Bulletin { bulletin, .. } = &r else {
            self.awaited_others += usize::from(r.is_awaited());
            self.others.push(r);
            return;
        };
        let from = bulletin.received_from.clone();
        let queue = self.bulletins.entry(from.clone()).or_default();
        if queue.is_empty() {
            self.order.push_back(from);
        }
        queue.push_back(r);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Requests waiting.
    pub(super) fn len(&self) -> usize {
        self.waiting
    }

    /// Whether anyone waits on a request here (a bulletin's publisher, an event's
    /// `done`, a checkpoint or backup asked for), rather than only records nobody
    /// waits on.
    pub(super) fn awaited(&self) -> bool {
        !self.order.is_empty() || self.awaited_others > 0
    }

    /// The next group commit: everything but bulletins, then bulletins one partner at
    /// a time, round and round, until `max_batch` of them or `max_bytes`. A backup
    /// waiting takes everything, so that it covers what came before it.
    pub(super) fn take(&mut self, max_batch: usize, max_bytes: usize) -> Vec<Request> {
        let mut batch = std::mem::take(&mut self.others);
        self.awaited_others = 0;
        let everything = batch.iter().any(|r| matches!(r, Request::Backup { .. }));
        let (mut taken, mut bytes) = (0, 0);
        let (partners, mut visits) = (self.order.len(), 0);
        let (mut light, mut heavy) = (false, false);
        while everything || (taken < max_batch && bytes < max_bytes) {
            let Some(partner) = self.order.pop_front() else {
                break;
            };
            visits += 1;
            let Some(queue) = self.bulletins.get_mut(&partner) else {
                continue;
            };
            if visits <= partners {
                // The first round: how many each partner has waiting.
                light |= queue.len() <= LIGHT;
                heavy |= queue.len() > LIGHT;
            }
            if let Some(r) = queue.pop_front() {
                bytes += r.bytes();
                taken += 1;
                batch.push(r);
            }
            if queue.is_empty() {
                self.bulletins.remove(&partner);
            } else {
                self.order.push_back(partner);
            }
        }
        self.sparse = light && heavy && !self.order.is_empty();
        self.waiting -= batch.len();
        batch
    }

    /// Whether the last group held a light partner's bulletins beside a heavy
    /// partner's, some of which had to wait for a later group: then short commits are
    /// what the light partner's latency needs.
    pub(super) fn sparse(&self) -> bool {
        self.sparse
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::audit::record::Event;
    use crate::bulletin::{BulletinId, Digest};
    use crate::store::NewBulletin;
    use crate::timestamp::Timestamp;

    fn bulletin(from: &str, n: u64) -> Request {
        let from: PartnerId = from.parse().unwrap();
        let id = BulletinId::new_v7(Timestamp::from_unix_ms(n));
        let (reply, _) = oneshot::channel();
        Request::Bulletin {
            bulletin: NewBulletin {
                signed: Default::default(),
                digest: Digest::of(&n.to_be_bytes()),
                origin: from.clone(),
                id,
                received_from: from.clone(),
                shared_with: vec![],
                path: vec![],
                relayed: false,
                audit: Event::operator(&from, "test"),
            },
            reply,
            slot: None,
        }
    }

    fn senders(batch: &[Request]) -> Vec<String> {
        batch
            .iter()
            .map(|r| match r {
                Request::Bulletin { bulletin, .. } => bulletin.received_from.to_string(),
                _ => "event".into(),
            })
            .collect()
    }

    #[test]
    fn a_flood_does_not_fill_the_commit_ahead_of_another_partner() {
        let mut s = Staging::default();
        for n in 0..10 {
            s.push(bulletin("xx-mod", n));
        }
        s.push(bulletin("jp-mod", 100));
        s.push(Request::Checkpoint { reply: None });
        let first = s.take(4, usize::MAX);
        assert_eq!(
            senders(&first),
            ["event", "xx-mod", "jp-mod", "xx-mod", "xx-mod"],
            "the desk's bulletin goes in the first commit"
        );
        assert_eq!(senders(&s.take(100, usize::MAX)).len(), 7);
        assert!(s.is_empty());
    }

    #[test]
    fn records_nobody_waits_on_are_told_apart_from_what_someone_awaits() {
        let mut s = Staging::default();
        let lazy = |n: &str| Request::Event {
            event: Some(Event::operator(&n.parse().unwrap(), "delivered")),
            cursor: None,
            done: None,
        };
        s.push(lazy("jp-mod"));
        s.push(Request::Checkpoint { reply: None });
        assert!(!s.awaited(), "records and a timed checkpoint: nobody waits");
        let (done, _) = oneshot::channel();
        s.push(Request::Event {
            event: None,
            cursor: None,
            done: Some(done),
        });
        assert!(s.awaited());
        assert_eq!(s.take(8, usize::MAX).len(), 3);
        assert!(!s.awaited());
        s.push(bulletin("jp-mod", 1));
        assert!(s.awaited(), "a bulletin's publisher waits");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_light_partner_behind_a_heavy_one_is_sparse_and_heavy_ones_alone_are_not() {
        let mut s = Staging::default();
        for n in 0..20 {
            s.push(bulletin("xx-mod", n));
            s.push(bulletin("yy-mod", 100 + n));
        }
        s.take(8, usize::MAX);
        assert!(!s.sparse(), "two floods");
        s.push(bulletin("jp-mod", 200));
        s.take(8, usize::MAX);
        assert!(s.sparse(), "the desk's one bulletin behind two floods");
        s.take(100, usize::MAX);
        assert!(!s.sparse(), "nothing left waiting behind anyone");
        for n in 0..20 {
            s.push(bulletin(&format!("d{n}-mod"), 300 + n));
        }
        s.take(8, usize::MAX);
        assert!(!s.sparse(), "light partners alone, however many");
    }
}
