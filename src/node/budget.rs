//! Memory budgets for frames in flight from a partner: the bytes its publishes (or a
//! peer's deliveries) hold from the moment a frame's length is known until its result
//! has been written back, bounded per stream, per partner (all its connections
//! together) and for the whole node. A stream that has used its share stops reading, so
//! QUIC flow control pushes back on that partner alone.
//!
//! Room is taken as bytes arrive: once a frame's length prefix is in, for that length
//! (a stream idle between frames holds nothing), and the frame must then arrive whole
//! within a deadline, so a partner that trickles bytes holds its room for a bounded
//! time and then loses the stream. Room is cut to the decoded size once decoded.
//!
//! Fairness: beyond the shared node budget, every partner has a floor of one largest
//! frame that no other partner can take, so partners that fill the node cannot stop
//! another from publishing. The node holds at most its budget plus one frame per
//! partner with a frame in flight. Budgets count KiB.
//!
//! Each partner's frames are also read no faster than its rates (`rate`), of bytes
//! and of publishes: memory is not the only thing a partner can take, the CPU that
//! decrypts its bytes and verifies, records and commits its bulletins is another. A
//! peer's deliveries count against its bytes but not its publishes: the node pulls
//! them itself, a window at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::identity::PartnerId;
use crate::transport::{FrameError, FrameReader};

mod rate;
use rate::Rate;

/// The node's budgets, in KiB.
pub(crate) struct Budgets {
    node: Arc<Semaphore>,
    node_kib: usize,
    /// Each partner's share, its floor beside the node's budget, and its rate.
    partners: Mutex<HashMap<PartnerId, PartnerRoom>>,
    partner_kib: usize,
    partner_rate: u64,
    partner_publishes: u64,
    stream_kib: usize,
    /// The largest frame: the most one frame asks for, and each partner's floor.
    frame_kib: usize,
    /// How long a frame may take to arrive once its length has.
    deadline: Duration,
}

/// A partner's share of the node's budget, its own floor beside it, and how fast its
/// frames are read.
#[derive(Clone)]
struct PartnerRoom {
    share: Arc<Semaphore>,
    floor: Arc<Semaphore>,
    rate: Arc<Mutex<Rate>>,
    publishes: Arc<Mutex<Rate>>,
}

/// Sizes of the budgets, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BudgetSizes {
    pub node: usize,
    pub partner: usize,
    pub stream: usize,
    pub max_frame: usize,
    /// How long a frame may take to arrive once its length prefix has.
    pub frame_deadline: Duration,
    /// Bytes a second read of each partner's frames, all its streams together.
    pub partner_rate: u64,
    /// Frames a second read of each partner's publish streams (each stream's first
    /// frame included), all its streams together.
    pub partner_publishes: u64,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

impl Budgets {
    pub(crate) fn new(sizes: BudgetSizes) -> Budgets {
        Budgets {
            node: Arc::new(Semaphore::new(kib(sizes.node))),
            node_kib: kib(sizes.node),
            partners: Mutex::new(HashMap::new()),
            partner_kib: kib(sizes.partner),
            partner_rate: sizes.partner_rate,
            partner_publishes: sizes.partner_publishes,
            stream_kib: kib(sizes.stream),
            frame_kib: kib(sizes.max_frame),
            deadline: sizes.frame_deadline,
        }
    }

    /// A new stream's budget, within its partner's and the node's, its frames read
    /// within the partner's rates of bytes and of publishes.
    pub(crate) fn stream(&self, partner: &PartnerId) -> StreamBudget {
        self.budget(partner, true)
    }

    /// The budget of a stream of deliveries pulled from `peer`: as `stream`, but its
    /// frames count against the peer's bytes only, since the node's own window and
    /// acks pace them.
    pub(crate) fn pull(&self, peer: &PartnerId) -> StreamBudget {
        self.budget(peer, false)
    }

    fn budget(&self, partner: &PartnerId, publishes: bool) -> StreamBudget {
        let room = self
            .partners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partner.clone())
            .or_insert_with(|| PartnerRoom {
                share: Arc::new(Semaphore::new(self.partner_kib)),
                floor: Arc::new(Semaphore::new(self.frame_kib)),
                rate: Arc::new(Mutex::new(Rate::new(self.partner_rate))),
                publishes: Arc::new(Mutex::new(Rate::new(self.partner_publishes))),
            })
            .clone();
        StreamBudget {
            stream: (Arc::new(Semaphore::new(self.stream_kib)), self.stream_kib),
            partner: (room.share, self.partner_kib),
            node: self.node.clone(),
            floor: room.floor,
            rate: room.rate,
            publishes: publishes.then_some(room.publishes),
            frame_kib: self.frame_kib,
            deadline: self.deadline,
        }
    }

    /// KiB in use now: of the node's budget (partners' floors aside), and per partner
    /// (all it holds, floor included), for `/metrics`.
    pub(crate) fn in_use(&self) -> (u64, Vec<(String, u64)>) {
        let node = self.node_kib.saturating_sub(self.node.available_permits());
        let partners = self.partners.lock().unwrap_or_else(|p| p.into_inner());
        let mut each: Vec<(String, u64)> = partners
            .iter()
            .map(|(id, room)| {
                let used = self
                    .partner_kib
                    .saturating_sub(room.share.available_permits());
                (id.to_string(), used as u64)
            })
            .collect();
        each.sort();
        (node as u64, each)
    }

    /// Milliseconds each partner's frames waited for its rates so far, of bytes and of
    /// publishes (summed over its streams), for `/metrics`.
    pub(crate) fn held_back(&self) -> Vec<(String, [u64; 2])> {
        let partners = self.partners.lock().unwrap_or_else(|p| p.into_inner());
        let waited = |rate: &Mutex<Rate>| {
            rate.lock()
                .unwrap_or_else(|p| p.into_inner())
                .waited()
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX)
        };
        let mut each: Vec<_> = partners
            .iter()
            .map(|(id, room)| {
                (
                    id.to_string(),
                    [waited(&room.rate), waited(&room.publishes)],
                )
            })
            .collect();
        each.sort_by(|a, b| a.0.cmp(&b.0));
        each
    }

    /// KiB of the node's budget not in use.
    #[cfg(test)]
    fn node_free(&self) -> usize {
        self.node.available_permits()
    }
}

/// One stream's share, with its partner's and the node's behind it, each with its
/// size (a reservation never asks any level for more than it has in all).
pub(crate) struct StreamBudget {
    stream: (Arc<Semaphore>, usize),
    partner: (Arc<Semaphore>, usize),
    node: Arc<Semaphore>,
    /// The partner's own room beside the node's.
    floor: Arc<Semaphore>,
    /// How fast the partner's frames are read: bytes, and publishes if this stream's
    /// frames count as publishes.
    rate: Arc<Mutex<Rate>>,
    publishes: Option<Arc<Mutex<Rate>>>,
    frame_kib: usize,
    deadline: Duration,
}

/// Room held in every level for one frame in flight; given back when dropped.
pub(crate) struct Held(Vec<OwnedSemaphorePermit>);

async fn take(sem: &Arc<Semaphore>, kib: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(kib).unwrap_or(u32::MAX);
    sem.clone().acquire_many_owned(n).await.ok()
}

impl StreamBudget {
    /// Room for a frame of `bytes`, taken stream first, then partner, then the node's
    /// budget or the partner's floor, whichever has room first (always in that order,
    /// so reservations cannot wait on each other in a cycle). Waits until there is
    /// room; `None` if the budgets are closed.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<Held> {
        let want = kib(bytes).min(self.frame_kib);
        let mut held = Vec::with_capacity(3);
        for (sem, size) in [&self.stream, &self.partner] {
            held.push(take(sem, want.min(*size)).await?);
        }
        let node = tokio::select! {
            biased;
            p = take(&self.floor, want) => p?,
            p = take(&self.node, want) => p?,
        };
        held.push(node);
        Some(Held(held))
    }

    /// The next frame of `recv`, with the room it holds: once the prefix has arrived,
    /// the frame waits for its partner's rates, room for its length is taken, and from
    /// then the frame must arrive whole within the deadline (`FrameError::TooSlow`).
    /// `None` when the stream ended between frames (or the budgets are closed).
    pub(crate) async fn next<M: prost::Message + Default>(
        &self,
        recv: &mut FrameReader,
    ) -> Result<Option<(M, Held)>, FrameError> {
        let Some(len) = recv.next_len().await? else {
            return Ok(None);
        };
        let wait = self.wait_for_rates(len);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(held) = self.reserve(len).await else {
            return Ok(None);
        };
        match tokio::time::timeout(self.deadline, recv.next::<M>()).await {
            Ok(frame) => Ok(frame?.map(|m| (m, held))),
            Err(_) => Err(FrameError::TooSlow {
                len,
                within: self.deadline,
            }),
        }
    }

    /// Takes a frame of `len` bytes from the partner's rates; how long to wait before
    /// reading it.
    fn wait_for_rates(&self, len: usize) -> Duration {
        let now = tokio::time::Instant::now().into_std();
        let take = |rate: &Mutex<Rate>, units| {
            rate.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(units, now)
        };
        let bytes = take(&self.rate, len);
        let publishes = self
            .publishes
            .as_deref()
            .map_or(Duration::ZERO, |r| take(r, 1));
        bytes.max(publishes)
    }
}

impl Held {
    /// Room in no budget, for tests of what carries it.
    #[cfg(test)]
    pub(crate) fn nothing() -> Held {
        Held(Vec::new())
    }

    /// Keeps only the room a frame of `bytes` needs; the rest is given back now.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let keep = kib(bytes);
        for permit in &mut self.0 {
            let excess = permit.num_permits().saturating_sub(keep);
            if excess > 0 {
                drop(permit.split(excess));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const FRAME: usize = 4 * KIB;

    fn sizes(node_kib: usize) -> BudgetSizes {
        BudgetSizes {
            node: node_kib * KIB,
            partner: 16 * KIB,
            stream: 8 * KIB,
            max_frame: FRAME,
            frame_deadline: Duration::from_secs(1),
            partner_rate: u64::MAX,
            partner_publishes: u64::MAX,
        }
    }

    fn budgets(node_kib: usize) -> Budgets {
        Budgets::new(sizes(node_kib))
    }

    async fn waits(reserve: impl std::future::Future<Output = Option<Held>>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), reserve)
            .await
            .is_err()
    }

    #[test]
    fn a_partners_publish_streams_share_its_publish_rate_and_pulls_do_not_count() {
        let b = Budgets::new(BudgetSizes {
            partner_publishes: 8,
            ..sizes(64)
        });
        let peer: PartnerId = "xx-mod".parse().unwrap();
        let (one, two, pull) = (b.stream(&peer), b.stream(&peer), b.pull(&peer));
        // Deliveries pulled from the peer never wait for its publish rate.
        for _ in 0..100 {
            assert_eq!(pull.wait_for_rates(100), Duration::ZERO);
        }
        // Its two publish streams share one bucket: the burst (an eighth of a second's
        // worth, one publish) and one more, the debt it leaves, pass at once; after
        // them each publish waits an eighth of a second.
        assert_eq!(one.wait_for_rates(100), Duration::ZERO);
        assert_eq!(two.wait_for_rates(100), Duration::ZERO);
        let third = one.wait_for_rates(100);
        assert!(third > Duration::from_millis(100));
        // The clock moved between the takes: the wait told is what is counted.
        let told = third.as_millis() as u64;
        assert_eq!(b.held_back(), vec![("xx-mod".into(), [0, told])]);
    }

    #[tokio::test]
    async fn a_stream_holds_its_share_and_no_more() {
        let b = budgets(64);
        let s = b.stream(&"xx-mod".parse().unwrap());
        // Two frames of the largest size fill the stream's 8 KiB: the first from the
        // partner's floor, the second from the node's budget.
        let first = s.reserve(FRAME).await.unwrap();
        let mut second = s.reserve(FRAME).await.unwrap();
        assert_eq!(b.node_free(), 64 - 4);
        assert!(waits(s.reserve(FRAME)).await, "the stream's share is used");
        // A small frame gives back what it does not need: 3 of its 4 KiB.
        second.shrink_to(100);
        assert_eq!(b.node_free(), 64 - 1);
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), s.reserve(FRAME))
            .await
            .expect("room again once the first is answered");
        drop((second, third));
        assert_eq!(b.node_free(), 64, "all given back");
    }

    #[tokio::test]
    async fn room_is_taken_for_the_frame_announced_not_the_largest() {
        let b = budgets(64);
        let s = b.stream(&"xx-mod".parse().unwrap());
        let held: Vec<_> = [
            s.reserve(FRAME).await, // the floor
            s.reserve(1000).await,
            s.reserve(1500).await,
        ]
        .into_iter()
        .map(Option::unwrap)
        .collect();
        assert_eq!(b.node_free(), 64 - 1 - 2);
        drop(held);
        assert_eq!(b.node_free(), 64);
    }

    #[tokio::test]
    async fn one_partner_cannot_take_the_node_from_the_others() {
        let b = budgets(64);
        let hostile: PartnerId = "xx-mod".parse().unwrap();
        // Its streams together stop at the partner's 16 KiB.
        let streams: Vec<_> = (0..4).map(|_| b.stream(&hostile)).collect();
        let mut held = Vec::new();
        for s in &streams {
            held.push(s.reserve(FRAME).await.unwrap());
        }
        assert!(waits(streams[0].reserve(FRAME)).await, "16 KiB held");
        assert_eq!(b.node_free(), 64 - 12, "4 KiB of it from its floor");
        let honest = b.stream(&"jp-mod".parse().unwrap());
        assert!(!waits(honest.reserve(FRAME)).await);
    }

    #[tokio::test]
    async fn partners_that_fill_the_node_cannot_stop_another_publishing() {
        // Five partners hold every byte of the node's budget.
        let b = budgets(16);
        let mut held = Vec::new();
        for p in ["aa-mod", "bb-mod", "cc-mod", "dd-mod", "ee-mod"] {
            let s = b.stream(&p.parse().unwrap());
            held.push(s.reserve(FRAME).await.unwrap());
            if let Ok(Some(h)) =
                tokio::time::timeout(Duration::from_millis(50), s.reserve(FRAME)).await
            {
                held.push(h);
            }
        }
        assert_eq!(b.node_free(), 0, "the node's budget is all taken");
        let honest = b.stream(&"jp-mod".parse().unwrap());
        let first = tokio::time::timeout(Duration::from_secs(5), honest.reserve(FRAME))
            .await
            .expect("the sixth partner's floor is its own");
        assert!(
            waits(honest.reserve(FRAME)).await,
            "beyond its floor it waits"
        );
        drop(first);
        assert!(!waits(honest.reserve(FRAME)).await);
    }
}
