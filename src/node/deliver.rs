//! A subscribe stream: `Delivery` frames from the partner's queue, oldest first, at most
//! `window` unacknowledged; `Ack` frames move the partner's cursor.
//!
//! The backlog stays in sled: this task holds at most one window of seqs. A subscriber
//! that stops reading blocks only its own task (QUIC flow control), never the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::withdraw::{recheck, Withdrawal};
use super::writer::{Request, StorageError};
use super::{Shared, Sharing};
use crate::audit::record::Event;
use crate::identity::PartnerId;
use crate::proto::{self, client_frame::Frame as Client, ErrorCode};
use crate::store::{Cursor, Page, StoreError};
use crate::timestamp::Timestamp;
use crate::transport;

enum FromClient {
    Acks(Vec<u64>),
    Fatal(ErrorCode, String),
}

/// Largest Ack frame accepted: room for a window's worth of seqs (at most 11 bytes
/// each with their tags) and the envelope.
fn ack_frame_limit(window: usize) -> usize {
    64 + 11 * window
}

async fn read_acks(mut recv: transport::FrameReader, window: usize, out: mpsc::Sender<FromClient>) {
    recv.set_max(ack_frame_limit(window));
    loop {
        let msg = match recv.next::<proto::ClientFrame>().await {
            Ok(Some(proto::ClientFrame {
                frame: Some(Client::Ack(ack)),
            })) if ack.seq.len() <= window => FromClient::Acks(ack.seq),
            Ok(Some(proto::ClientFrame {
                frame: Some(Client::Ack(ack)),
            })) => FromClient::Fatal(
                ErrorCode::MalformedFrame,
                format!(
                    "an Ack may name at most the window of {window} seqs, this one names {}",
                    ack.seq.len()
                ),
            ),
            Ok(Some(proto::ClientFrame { frame: None })) => {
                FromClient::Fatal(ErrorCode::MalformedFrame, "frame has no message set".into())
            }
            Ok(Some(_)) => FromClient::Fatal(
                ErrorCode::UnexpectedFrame,
                "only Ack frames belong on a subscribe stream".into(),
            ),
            Ok(None) => return,
            Err(e) => match e.code() {
                Some(code) => {
                    let _ = recv.stream().stop(quinn::VarInt::from_u32(code as u32));
                    FromClient::Fatal(code, e.to_string())
                }
                None => return,
            },
        };
        let fatal = matches!(msg, FromClient::Fatal(..));
        if out.send(msg).await.is_err() || fatal {
            return;
        }
    }
}

/// A partner's subscription slot: the current generation, and the lock the running
/// subscription holds.
pub(crate) struct Lease {
    generation: watch::Sender<u64>,
    running: Arc<tokio::sync::Mutex<()>>,
}

/// Makes this subscription the partner's current one: an older one sees the change,
/// records its acks and ends; this one starts once it has.
async fn register(
    shared: &Shared,
    partner: &PartnerId,
) -> (u64, watch::Receiver<u64>, tokio::sync::OwnedMutexGuard<()>) {
    let (generation, current, running) = {
        let mut subs = shared
            .subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lease = subs.entry(partner.clone()).or_insert_with(|| Lease {
            generation: watch::channel(0).0,
            running: Arc::new(tokio::sync::Mutex::new(())),
        });
        let generation = *lease.generation.borrow() + 1;
        lease.generation.send_replace(generation);
        (
            generation,
            lease.generation.subscribe(),
            lease.running.clone(),
        )
    };
    (generation, current, running.lock_owned().await)
}

/// The delivery state of one subscription.
struct Progress {
    cursor: Cursor,
    /// Every seq up to here was examined; the shared ones were delivered.
    position: u64,
    /// Delivered, not yet acknowledged: seq → when the node accepted it.
    unacked: BTreeMap<u64, Timestamp>,
}

impl Progress {
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

impl Progress {
    /// Deliveries that may go out now: the window counts everything delivered above
    /// the cursor, acknowledged out of order or not, so `acked_above` stays bounded
    /// even when one delivery is never acknowledged.
    fn room(&self, window: usize) -> usize {
        window.saturating_sub(self.unacked.len() + self.cursor.acked_above.len())
    }
}

/// How long an error frame may take to reach a subscriber that is not reading.
const ERROR_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How the delivery loop ended.
enum End {
    /// The subscriber finished its side: its acks are recorded; end ours cleanly.
    Finished,
    /// Stopping, replaced, or the subscriber is gone: reset, so nobody mistakes a
    /// half-written frame or an unrecorded ack for a clean end.
    Abort,
    /// Tell the subscriber why, then end.
    Error(ErrorCode, String),
}

/// Runs a subscribe stream.
pub(super) async fn run(
    sub: proto::Subscribe,
    mut send: quinn::SendStream,
    recv: transport::FrameReader,
    shared: Arc<Shared>,
    partner: PartnerId,
) {
    let window = match sub.window {
        0 => shared.window,
        w => w.min(shared.window),
    } as usize;
    let (generation, mut current, _running) = register(&shared, &partner).await;
    if *current.borrow() != generation {
        return; // replaced before it started
    }
    let (acks_tx, mut acks) = mpsc::channel(32);
    let reader = tokio::spawn(read_acks(recv, window, acks_tx));
    let cursor = match shared.store.cursor(&partner) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the partner's cursor");
            return transport::send_error(
                &mut send,
                ErrorCode::Internal,
                "delivery failed on the node",
            )
            .await;
        }
    };
    let mut p = Progress {
        position: cursor.acked_through,
        cursor,
        unacked: BTreeMap::new(),
    };
    tracing::info!(from = p.position, window, "subscription started");
    let end = deliver(
        &shared,
        &partner,
        window,
        generation,
        &mut current,
        &mut send,
        &mut acks,
        &mut p,
    )
    .await;
    // Whatever ended it, record the acks that already arrived, and wait until the
    // cursor is durable so that the partner's next subscription starts from it.
    let mut last = Vec::new();
    while let Ok(FromClient::Acks(seqs)) = acks.try_recv() {
        last.extend(p.ack(&seqs, Timestamp::now()));
    }
    let event = (!last.is_empty()).then(|| Event::acked(&partner, last));
    let cursor = Some((partner.clone(), p.cursor.clone()));
    if let Err(e) = shared.commit_event(event, cursor).await {
        tracing::error!(error = %e, "cannot save the partner's cursor");
    }
    match end {
        Ok(End::Finished) => {
            let _ = send.finish();
        }
        Ok(End::Abort) => {
            let _ = send.reset(quinn::VarInt::from_u32(ErrorCode::ShuttingDown as u32));
        }
        Ok(End::Error(code, message)) => {
            let _ = tokio::time::timeout(
                ERROR_PATIENCE,
                transport::send_error(&mut send, code, message),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery stopped");
            let sent = transport::send_error(&mut send, e.code(), "delivery failed on the node");
            let _ = tokio::time::timeout(ERROR_PATIENCE, sent).await;
        }
    }
    reader.abort();
}

/// A page of the partner's queue, screened by the rules in force: what goes out, and
/// what those rules withdraw.
struct Screened {
    page: Page,
    withdrawn: Vec<(u64, Withdrawal)>,
}

/// The next page of the partner's queue, read on the blocking pool (sled is synchronous)
/// and screened by the rules in force now.
async fn next_page(
    shared: &Shared,
    partner: &PartnerId,
    p: &Progress,
    room: usize,
) -> Result<Screened, StorageError> {
    let (store, partner, cursor, after) = (
        shared.store.clone(),
        partner.clone(),
        p.cursor.clone(),
        p.position,
    );
    let (sharing, limits) = (shared.sharing(), shared.limits);
    tokio::task::spawn_blocking(move || {
        let mut page = store.pending(&partner, after, &cursor, room)?;
        cap_bytes(&mut page, PAGE_BYTES);
        screen(&store, &sharing, &limits, &partner, page)
    })
    .await
    // A task that panicked or was cancelled says nothing about the database.
    .map_err(|e| StorageError::Failed(format!("the task reading the queue failed: {e}")))?
}

/// Bytes of bulletins one page of deliveries holds at most (it is copied into one
/// write): a window of large bulletins goes out over several pages.
const PAGE_BYTES: usize = 4 << 20;

/// Cuts `page` after the bulletins that fit in `max` bytes (at least one), so that it
/// says it examined only what it kept.
fn cap_bytes(page: &mut Page, max: usize) {
    let mut total = 0;
    let keep = page
        .items
        .iter()
        .position(|i| {
            total += i.signed.len();
            total > max
        })
        .map_or(page.items.len(), |over| over.max(1));
    if keep < page.items.len() {
        page.items.truncate(keep);
        if let Some(last) = page.items.last() {
            page.scanned_through = last.seq;
        }
    }
}

/// Takes out of `page` what `sharing` no longer shares with `partner`. Only bulletins
/// queued before those rules came into force are checked again: later ones were
/// decided under them.
fn screen(
    store: &crate::store::Store,
    sharing: &Sharing,
    limits: &crate::bulletin::Limits,
    partner: &PartnerId,
    mut page: Page,
) -> Result<Screened, StorageError> {
    let mut withdrawn = Vec::new();
    if page
        .items
        .first()
        .is_none_or(|i| i.seq > sharing.recheck_through)
    {
        return Ok(Screened { page, withdrawn });
    }
    let mut kept = Vec::with_capacity(page.items.len());
    for item in page.items {
        if item.seq > sharing.recheck_through {
            kept.push(item);
            continue;
        }
        let stored = store.get(item.seq)?.ok_or_else(|| StoreError::Corrupt {
            key: "stored bulletin".into(),
            why: format!("bulletin {} is queued but not stored", item.seq),
        })?;
        match recheck(
            item.signed.clone(),
            &stored.received_from,
            partner,
            sharing,
            limits,
        )? {
            None => kept.push(item),
            Some(w) => withdrawn.push((item.seq, w)),
        }
    }
    page.items = kept;
    Ok(Screened { page, withdrawn })
}

#[allow(clippy::too_many_arguments)]
async fn deliver(
    shared: &Shared,
    partner: &PartnerId,
    window: usize,
    generation: u64,
    current: &mut watch::Receiver<u64>,
    send: &mut quinn::SendStream,
    acks: &mut mpsc::Receiver<FromClient>,
    p: &mut Progress,
) -> Result<End, StorageError> {
    let mut head = shared.head.clone();
    let mut stop = shared.shutdown.clone();
    loop {
        let room = p.room(window);
        let mut sent = 0;
        if room > 0 {
            let Screened { page, withdrawn } = next_page(shared, partner, p, room).await?;
            p.position = page.scanned_through;
            // A page withdrawn whole is progress too: go on to the next one.
            sent += withdrawn.len();
            if !withdraw(shared, partner, p, withdrawn).await {
                return Ok(End::Abort);
            }
            // The page goes out as one write; stored envelopes go out as they are.
            // (A delivery's prefix is at most 26 bytes.)
            let size = page.items.iter().map(|i| i.signed.len() + 26).sum();
            let mut outbox = transport::Outbox::with_capacity(size);
            for item in &page.items {
                outbox.push_delivery(item.seq, &item.signed);
            }
            if !outbox.is_empty() {
                // The record goes to the storage thread before any byte goes out: a
                // stop, a replacement or a failed write cannot leave a delivery that
                // reached the peer unrecorded (the storage thread commits everything
                // queued before it ends).
                let seqs = page.items.iter().map(|i| i.seq).collect();
                shared.record(Event::delivered(partner, seqs)).await;
                tokio::select! {
                    r = outbox.write_to(send) => if r.is_err() { return Ok(End::Abort) },
                    _ = stop.changed() => return Ok(End::Abort),
                    _ = current.changed() => return Ok(End::Abort),
                }
            }
            for item in page.items {
                p.unacked.insert(item.seq, item.accepted);
                sent += 1;
            }
        }
        if p.unacked.is_empty() && p.position > p.cursor.acked_through {
            // Nothing in flight: skip what was examined (saved with the next ack).
            p.settle();
        }
        // Something was taken off the queue and there is room for more: the next page.
        if sent > 0 && p.room(window) > 0 && p.position < *head.borrow() {
            continue;
        }
        tokio::select! {
            msg = acks.recv() => match msg {
                Some(FromClient::Acks(seqs)) => {
                    // Every Ack frame already here goes into one record, so a
                    // subscriber acking one delivery at a time costs one record per
                    // wake-up, not one per delivery.
                    let now = Timestamp::now();
                    let mut acked = p.ack(&seqs, now);
                    let mut then = None;
                    while let Ok(more) = acks.try_recv() {
                        match more {
                            FromClient::Acks(seqs) => acked.extend(p.ack(&seqs, now)),
                            fatal => {
                                then = Some(fatal);
                                break;
                            }
                        }
                    }
                    if !acked.is_empty() {
                        // The ack's record and the cursor it moves, in one write.
                        let request = Request::Event {
                            event: Some(Event::acked(partner, acked)),
                            cursor: Some((partner.clone(), p.cursor.clone())),
                            done: None,
                        };
                        if shared.commits.send(request).await.is_err() {
                            return Ok(End::Abort);
                        }
                    }
                    if let Some(FromClient::Fatal(code, message)) = then {
                        return Ok(End::Error(code, message));
                    }
                }
                Some(FromClient::Fatal(code, message)) => return Ok(End::Error(code, message)),
                // The subscriber finished its side; every ack it sent is in.
                None => return Ok(End::Finished),
            },
            changed = head.changed() => if changed.is_err() { return Ok(End::Abort) },
            _ = current.changed() => {
                if *current.borrow() != generation {
                    tracing::info!("subscription replaced by a newer one");
                    return Ok(End::Abort);
                }
            }
            _ = stop.changed() => return Ok(End::Abort),
        }
    }
}

/// Records what the rules in force withdrew from the partner's queue and takes it off
/// the queue (the cursor moves over it with the last record). False if the storage
/// thread has stopped.
async fn withdraw(
    shared: &Shared,
    partner: &PartnerId,
    p: &mut Progress,
    withdrawn: Vec<(u64, Withdrawal)>,
) -> bool {
    let count = withdrawn.len();
    for (i, (seq, w)) in withdrawn.into_iter().enumerate() {
        tracing::info!(seq, why = %w.why, "queued bulletin withdrawn");
        if seq > p.cursor.acked_through {
            p.cursor.acked_above.insert(seq);
        }
        // Marked like an ack (it counts against the window until the cursor passes
        // it), not settled here: the rest of the page is not in flight yet.
        let last = i + 1 == count;
        let request = Request::Event {
            event: Some(w.event(partner, seq)),
            cursor: last.then(|| (partner.clone(), p.cursor.clone())),
            done: None,
        };
        if shared.commits.send(request).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_moves_over_a_prefix_of_acknowledged_deliveries() {
        let t = |ms| Timestamp::from_unix_ms(ms);
        let mut p = Progress {
            cursor: Cursor::default(),
            position: 9,
            unacked: [(3, t(100)), (5, t(100)), (9, t(150))]
                .into_iter()
                .collect(),
        };
        assert_eq!(p.ack(&[5], t(110)), [(5, 10)]);
        assert_eq!(p.cursor.acked_through, 2);
        assert_eq!(p.cursor.acked_above, [5].into_iter().collect());
        assert_eq!(p.ack(&[3, 3], t(120)), [(3, 20)], "counted once");
        assert_eq!(p.cursor.acked_through, 8, "up to the oldest unacked (9)");
        assert!(p.cursor.acked_above.is_empty());
        assert!(
            p.ack(&[42], t(130)).is_empty(),
            "an ack for something not in flight changes nothing"
        );
        assert_eq!(p.ack(&[9], t(140)), [(9, 0)], "a clock step back is 0 ms");
        assert_eq!(p.cursor.acked_through, 9);
    }

    #[test]
    fn a_page_of_large_bulletins_is_cut_where_its_bytes_run_out() {
        let item = |seq, len| crate::store::Pending {
            seq,
            accepted: Timestamp::EPOCH,
            signed: bytes::Bytes::from(vec![0; len]),
        };
        let mut page = Page {
            items: vec![item(3, 600), item(5, 600), item(8, 600)],
            scanned_through: 9,
        };
        cap_bytes(&mut page, 1300);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.scanned_through, 5, "8 and 9 are read again next time");
        let mut huge = Page {
            items: vec![item(4, 5000), item(6, 10)],
            scanned_through: 6,
        };
        cap_bytes(&mut huge, 1300);
        assert_eq!(huge.items.len(), 1, "one bulletin always goes");
        assert_eq!(huge.scanned_through, 4);
        let mut small = Page {
            items: vec![item(1, 10)],
            scanned_through: 7,
        };
        cap_bytes(&mut small, 1300);
        assert_eq!(small.scanned_through, 7, "nothing cut, nothing changed");
    }

    #[test]
    fn one_unacknowledged_delivery_closes_the_window_after_window_more() {
        let now = Timestamp::EPOCH;
        let mut p = Progress {
            cursor: Cursor::default(),
            position: 4,
            unacked: (1..=4).map(|s| (s, now)).collect(),
        };
        assert_eq!(p.room(4), 0);
        // Seq 1 is never acked: the others are, but they still count against the window.
        p.ack(&[2, 3, 4], now);
        assert_eq!(p.cursor.acked_through, 0);
        assert_eq!(p.room(4), 0, "acked_above cannot grow past the window");
        p.ack(&[1], now);
        assert_eq!(p.cursor.acked_through, 4);
        assert_eq!(p.room(4), 4);
    }
}
