//! Fairness between partners for the node's shared work. Verifying a batch of
//! publishes takes a *turn*; there are as many turns as cores, handed out round-robin
//! by partner rather than first come, so a partner with forty busy streams gets no more
//! turns than a desk with one, and the desk waits for at most one batch per turn
//! holder. Each partner's bulletins waiting on the storage thread are capped
//! (*slots*), so the commit queue ahead of anyone's bulletin holds a bounded number of
//! each other partner's.
//!
//! No I/O and no clock: a mutex-guarded queue and tokio channels and semaphores.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::identity::PartnerId;

/// Turns and slots for every partner.
pub(crate) struct Fair {
    turns: Arc<Turns>,
    slots: Mutex<HashMap<PartnerId, Arc<Semaphore>>>,
    slots_each: usize,
}

/// A partner's bulletin on its way to the storage thread; its place is given back when
/// dropped (once the storage thread has answered).
pub(crate) type Slot = OwnedSemaphorePermit;

impl Fair {
    /// `turns` batches verified at once; at most `slots` bulletins of each partner
    /// handed to the storage thread and not yet answered.
    pub(crate) fn new(turns: usize, slots: usize) -> Fair {
        Fair {
            turns: Arc::new(Turns {
                state: Mutex::new(State {
                    free: turns.max(1),
                    waiting: HashMap::new(),
                    order: VecDeque::new(),
                }),
            }),
            slots: Mutex::new(HashMap::new()),
            slots_each: slots.max(1),
        }
    }

    /// Waits for `partner`'s next turn.
    pub(crate) async fn turn(&self, partner: &PartnerId) -> Turn {
        let rx = {
            let mut s = self.turns.lock();
            if s.free > 0 && s.order.is_empty() {
                s.free -= 1;
                return Turn(self.turns.clone());
            }
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(partner.clone()).or_default();
            queue.push_back(tx);
            if queue.len() == 1 {
                s.order.push_back(partner.clone());
            }
            rx
        };
        let mut pending = Pending {
            rx: Some(rx),
            turns: self.turns.clone(),
        };
        if let Some(rx) = pending.rx.as_mut() {
            // A waiter's sender is only dropped after the turn was sent, or once its
            // receiver is gone: this wait ends with the turn.
            let _ = rx.await;
        }
        pending.rx = None;
        Turn(self.turns.clone())
    }

    /// Waits for room for one more of `partner`'s bulletins at the storage thread.
    pub(crate) async fn slot(&self, partner: &PartnerId) -> Option<Slot> {
        let sem = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partner.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.slots_each)))
            .clone();
        sem.acquire_owned().await.ok()
    }
}

struct Turns {
    state: Mutex<State>,
}

struct State {
    /// Turns nobody holds.
    free: usize,
    /// Who waits, per partner, first come first served within a partner.
    waiting: HashMap<PartnerId, VecDeque<oneshot::Sender<()>>>,
    /// Partners with someone waiting, in the order their turns come.
    order: VecDeque<PartnerId>,
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A turn is over: the next partner in order gets it (its first waiter still
    /// waiting), and goes to the back of the line if it has more waiting.
    fn hand_on(&self) {
        let mut s = self.lock();
        while let Some(partner) = s.order.pop_front() {
            let Some(queue) = s.waiting.get_mut(&partner) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&partner);
            } else {
                s.order.push_back(partner);
            }
            if let Some(tx) = next {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        s.free += 1;
    }
}

/// A turn to verify a batch; handed on when dropped.
pub(crate) struct Turn(Arc<Turns>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

/// A wait for a turn. If the waiting task is dropped after the turn was handed to it,
/// the turn goes on to the next rather than being lost.
struct Pending {
    rx: Option<oneshot::Receiver<()>>,
    turns: Arc<Turns>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.turns.hand_on();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    async fn granted(f: impl std::future::Future<Output = Turn>) -> Option<Turn> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn turns_go_round_the_partners_not_to_whoever_asked_most() {
        let fair = Arc::new(Fair::new(1, 8));
        let held = fair.turn(&pid("xx-mod")).await;
        // The flooder queues five more turns, then the desk asks for one.
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for who in ["xx-mod"; 5].into_iter().chain(["jp-mod"]) {
            let (fair, tx) = (fair.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let turn = fair.turn(&pid(who)).await;
                tx.send(who).unwrap();
                drop(turn);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let first_two = [order.recv().await.unwrap(), order.recv().await.unwrap()];
        assert_eq!(
            first_two,
            ["xx-mod", "jp-mod"],
            "the desk's turn comes second"
        );
    }

    #[tokio::test]
    async fn a_turn_handed_to_a_waiter_that_gave_up_goes_on() {
        let fair = Fair::new(1, 8);
        let held = fair.turn(&pid("xx-mod")).await;
        assert!(granted(fair.turn(&pid("jp-mod"))).await.is_none());
        drop(held);
        // The desk gave up waiting; the next asker still gets the turn.
        assert!(granted(fair.turn(&pid("uk-mod"))).await.is_some());
        assert!(granted(fair.turn(&pid("uk-mod"))).await.is_some());
    }

    #[tokio::test]
    async fn slots_cap_each_partner_alone() {
        let fair = Fair::new(1, 2);
        let xx = pid("xx-mod");
        let held = [fair.slot(&xx).await, fair.slot(&xx).await];
        let third = tokio::time::timeout(Duration::from_millis(50), fair.slot(&xx)).await;
        assert!(third.is_err(), "two of its bulletins wait already");
        assert!(fair.slot(&pid("jp-mod")).await.is_some());
        drop(held);
        assert!(fair.slot(&xx).await.is_some());
    }
}
