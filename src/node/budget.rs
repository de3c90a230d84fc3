//! Memory budgets for publishes in flight: the bytes a partner's publishes hold from the
//! moment a frame is read until its result has been written back, bounded per stream,
//! per partner (all its connections together) and for the whole node. A stream that
//! has used its share stops reading, so QUIC flow control pushes back on that
//! publisher alone: a partner that pipelines large publishes and never reads its
//! results holds at most its share, and the others keep being served.
//!
//! Room for the largest frame is taken before a frame is read (so a half-received frame
//! is inside the budget too) and cut to the frame's real size once it is decoded.
//! Budgets count KiB. No I/O, no clock: tokio semaphores only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::identity::PartnerId;

/// The node's budgets, in KiB.
pub(crate) struct Budgets {
    node: Arc<Semaphore>,
    node_kib: usize,
    partners: Mutex<HashMap<PartnerId, Arc<Semaphore>>>,
    partner_kib: usize,
    stream_kib: usize,
    /// Room taken before each frame is read: the largest frame.
    frame_kib: usize,
}

/// Sizes of the budgets, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BudgetSizes {
    pub node: usize,
    pub partner: usize,
    pub stream: usize,
    pub max_frame: usize,
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
            stream_kib: kib(sizes.stream),
            frame_kib: kib(sizes.max_frame),
        }
    }

    /// A new publish stream's budget, within its partner's and the node's.
    pub(crate) fn stream(&self, partner: &PartnerId) -> StreamBudget {
        let partner = self
            .partners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partner.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.partner_kib)))
            .clone();
        StreamBudget {
            levels: [
                (Arc::new(Semaphore::new(self.stream_kib)), self.stream_kib),
                (partner, self.partner_kib),
                (self.node.clone(), self.node_kib),
            ],
            frame_kib: self.frame_kib,
        }
    }

    /// KiB of the node's budget not in use.
    #[cfg(test)]
    fn node_free(&self) -> usize {
        self.node.available_permits()
    }
}

/// One publish stream's share, with its partner's and the node's behind it, each with
/// its size (a reservation never asks any level for more than it has in all).
pub(crate) struct StreamBudget {
    levels: [(Arc<Semaphore>, usize); 3],
    frame_kib: usize,
}

/// Room held in every level for one publish in flight; given back when dropped.
pub(crate) struct Held(Vec<OwnedSemaphorePermit>);

impl StreamBudget {
    /// Room for one more frame of the largest size, taken stream first, then partner,
    /// then node (always in that order, so reservations cannot wait on each other in
    /// a cycle). Waits until there is room; `None` if the node is stopping (closed).
    pub(crate) async fn reserve(&self) -> Option<Held> {
        let mut held = Vec::with_capacity(self.levels.len());
        for (sem, size) in &self.levels {
            let want = self.frame_kib.min(*size);
            let n = u32::try_from(want).unwrap_or(u32::MAX);
            held.push(sem.clone().acquire_many_owned(n).await.ok()?);
        }
        Some(Held(held))
    }
}

impl Held {
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

    fn budgets() -> Budgets {
        Budgets::new(BudgetSizes {
            node: 64 * KIB,
            partner: 16 * KIB,
            stream: 8 * KIB,
            max_frame: 4 * KIB,
        })
    }

    #[tokio::test]
    async fn a_stream_holds_its_share_and_no_more() {
        let b = budgets();
        let hostile: PartnerId = "xx-mod".parse().unwrap();
        let s = b.stream(&hostile);
        // Two frames of the largest size fill the stream's 8 KiB.
        let first = s.reserve().await.unwrap();
        let second = s.reserve().await.unwrap();
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), s.reserve()).await;
        assert!(third.is_err(), "the stream's share is used: it waits");
        // A small frame gives back what it does not need: 3 of its 4 KiB.
        let mut second = second;
        second.shrink_to(100);
        assert_eq!(b.node_free(), 64 - 4 - 1);
        drop(first);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), s.reserve())
            .await
            .expect("room again once the first is answered");
        drop((second, third));
        assert_eq!(b.node_free(), 64, "all given back");
    }

    #[tokio::test]
    async fn one_partner_cannot_take_the_node_from_the_others() {
        let b = budgets();
        let hostile: PartnerId = "xx-mod".parse().unwrap();
        // Its streams together stop at the partner's 16 KiB.
        let streams: Vec<_> = (0..4).map(|_| b.stream(&hostile)).collect();
        let mut held = Vec::new();
        for s in &streams {
            held.push(s.reserve().await.unwrap());
        }
        let more = streams[0].reserve();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), more).await;
        assert!(waited.is_err(), "16 KiB held: the partner waits");
        assert_eq!(b.node_free(), 64 - 16);
        // An honest partner still gets room at once.
        let honest = b.stream(&"jp-mod".parse().unwrap());
        assert!(honest.reserve().await.is_some());
    }
}
