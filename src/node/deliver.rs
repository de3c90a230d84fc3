//! A subscribe stream: `Delivery` frames from the partner's queue, oldest first, at most
//! `window` unacknowledged; `Ack` frames move the partner's cursor.
//!
//! The backlog stays in the store: this task holds at most one window of seqs. A subscriber
//! that stops reading blocks only its own task (QUIC flow control), never the others.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::withdraw::{screen_stored, Withdrawal};

mod acks;
mod progress;
mod receipts;
mod retry;
use super::link_book::LinkBook;
use super::shared::{ConnectionBook, Rules, StorageHandle, Trail};
use super::shared::{RuleSet, Shared};
use super::writer::StorageError;
use crate::identity::PartnerId;
use crate::proto::{self, ErrorCode};
use crate::store::{Page, Room};
use crate::transport;
use acks::{last_acks, read_acks, take_acks, FromClient};
use progress::{PageOut, Progress};

/// Makes this subscription the partner's current one: an older one sees the change,
/// records its acks and ends; this one starts once it has.
async fn register(
    book: &ConnectionBook,
    partner: &PartnerId,
) -> (u64, watch::Receiver<u64>, tokio::sync::OwnedMutexGuard<()>) {
    let (generation, current, running) = {
        let mut subs = book
            .subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lease = subs.entry(partner.clone()).or_default();
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
    /// This node's rules changed and the peer has refused deliveries kept: end
    /// cleanly, so that its next subscription starts with them.
    Refresh,
}

/// What a subscription uses of the node: the rules deliveries are screened by, the
/// trail they are recorded on, the store and storage thread, the partners' slots and
/// frame counts, the links (a peer's largest frame, its refusals counted), and the
/// limits deliveries go out within.
pub(super) struct Delivering {
    /// Named on the path of each delivery.
    node_id: PartnerId,
    rules: Arc<Rules>,
    trail: Arc<Trail>,
    storage: Arc<StorageHandle>,
    book: Arc<ConnectionBook>,
    links: Arc<LinkBook>,
    window: u32,
    limits: crate::bulletin::Limits,
    shutdown: watch::Receiver<bool>,
}

impl Delivering {
    /// The running node's.
    pub(super) fn of(shared: &Shared) -> Delivering {
        Delivering {
            node_id: shared.own.id.clone(),
            rules: shared.rules.clone(),
            trail: shared.trail.clone(),
            storage: shared.storage.clone(),
            book: shared.book.clone(),
            links: shared.links.clone(),
            window: shared.limits.window,
            limits: shared.limits.bulletin,
            shutdown: shared.shutdown.clone(),
        }
    }
}

/// Runs a subscribe stream.
pub(super) async fn run(
    sub: proto::Subscribe,
    mut send: quinn::SendStream,
    recv: transport::FrameReader,
    node: Delivering,
    partner: PartnerId,
) {
    let declared = sub.config_digest.to_vec();
    let window = match sub.window {
        0 => node.window,
        w => w.min(node.window),
    } as usize;
    let (generation, mut current, _running) = register(&node.book, &partner).await;
    if *current.borrow() != generation {
        return; // replaced before it started
    }
    let (acks_tx, mut acks) = mpsc::channel(32);
    let reader = tokio::spawn(read_acks(recv, window, acks_tx));
    let cursor = match node.storage.store.cursor(&partner) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the partner's cursor");
            return transport::send_error(
                &mut send,
                ErrorCode::Internal,
                "delivery failed on the node",
                &node.book.frames,
            )
            .await;
        }
    };
    let mut p = Progress::new(partner.clone(), cursor, window);
    tracing::info!(from = p.position, window, "subscription started");
    let mut stream = Stream {
        send: &mut send,
        acks: &mut acks,
        generation,
        current: &mut current,
        declared,
    };
    let end = deliver(&node, &partner, &mut stream, &mut p).await;
    let declared = std::mem::take(&mut stream.declared);
    // Whatever ended it, record the acks that already arrived, and wait until the
    // cursor is durable so that the partner's next subscription starts from it.
    let event = last_acks(&node, &partner, &mut p, &mut acks, &declared).await;
    let cursor = Some((partner.clone(), p.cursor.clone()));
    if let Err(e) = node.trail.commit(event, cursor).await {
        tracing::error!(error = %e, "cannot save the partner's cursor");
    }
    match end {
        Ok(End::Finished | End::Refresh) => {
            let _ = send.finish();
        }
        Ok(End::Abort) => {
            let _ = send.reset(quinn::VarInt::from_u32(ErrorCode::ShuttingDown as u32));
        }
        Ok(End::Error(code, message)) => {
            let _ = tokio::time::timeout(
                ERROR_PATIENCE,
                transport::send_error(&mut send, code, message, &node.book.frames),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery stopped");
            let sent = transport::send_error(
                &mut send,
                e.code(),
                "delivery failed on the node",
                &node.book.frames,
            );
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

/// The next page of the partner's queue, screened by the rules in force now. A partner
/// keeping up reads what was just committed, which the store still holds decoded: that
/// page is read here. Any other is read on the blocking pool (the store is synchronous
/// and may read the disk), as is a page the rules must check again.
async fn next_page(
    node: &Delivering,
    partner: &PartnerId,
    p: &Progress,
    room: usize,
) -> Result<Screened, StorageError> {
    let room = Room {
        bulletins: room,
        bytes: PAGE_BYTES,
    };
    let (rules, limits) = (node.rules.in_force(), node.limits);
    let peer_reads = node.links.max_frame(partner);
    let store = node.storage.store.clone();
    // The head announced, not the store's: this loop waits on its announcements.
    let head = *node.storage.head.borrow();
    let recent = store.pending_in_memory(partner, p.position, head, &p.cursor, room)?;
    if let Some(page) = recent.filter(|page| !rechecked(page, &rules)) {
        let withdrawn = Vec::new();
        return fitted(Screened { page, withdrawn }, peer_reads, &limits);
    }
    let (partner, cursor, after) = (partner.clone(), p.cursor.clone(), p.position);
    tokio::task::spawn_blocking(move || {
        let page = store.pending(&partner, after, &cursor, room)?;
        let screened = screen(&store, &rules, &limits, &partner, page)?;
        fitted(screened, peer_reads, &limits)
    })
    .await?
}

/// `screened` without what the receiving peer could never read, if it is a peer.
fn fitted(
    mut screened: Screened,
    peer_reads: Option<usize>,
    limits: &crate::bulletin::Limits,
) -> Result<Screened, StorageError> {
    if let Some(max) = peer_reads {
        too_large_for(&mut screened, max, limits)?;
    }
    Ok(screened)
}

/// Bytes of bulletins one page of deliveries holds at most (it is copied into one
/// write): a window of large bulletins goes out over several pages.
const PAGE_BYTES: usize = 4 << 20;

/// Whether `rules` check `page` again: it starts with a bulletin queued before they
/// came into force.
fn rechecked(page: &Page, rules: &RuleSet) -> bool {
    page.items
        .first()
        .is_some_and(|i| i.seq <= rules.recheck_through)
}

/// Takes out of `page` what `rules` no longer share with `partner`. Only bulletins
/// queued before those rules came into force are checked again: later ones were
/// decided under them.
fn screen(
    store: &crate::store::Store,
    rules: &RuleSet,
    limits: &crate::bulletin::Limits,
    partner: &PartnerId,
    mut page: Page,
) -> Result<Screened, StorageError> {
    let mut withdrawn = Vec::new();
    if !rechecked(&page, rules) {
        return Ok(Screened { page, withdrawn });
    }
    let mut kept = Vec::with_capacity(page.items.len());
    for item in page.items {
        match screen_stored(store, rules, limits, partner, item.seq)? {
            None => kept.push(item),
            Some(w) => withdrawn.push((item.seq, w)),
        }
    }
    page.items = kept;
    Ok(Screened { page, withdrawn })
}

/// Takes out of `screened` what the receiving peer could never read, a delivery above
/// the frames it reads (`max`): it would stay first in the queue and hold back
/// everything after it. Each is withdrawn, and recorded with the sizes.
fn too_large_for(
    screened: &mut Screened,
    max: usize,
    limits: &crate::bulletin::Limits,
) -> Result<(), StorageError> {
    let (fit, over): (Vec<_>, Vec<_>) = std::mem::take(&mut screened.page.items)
        .into_iter()
        .partition(|i| super::withdraw::delivery_bytes(&i.signed, &i.path) <= max);
    screened.page.items = fit;
    for item in over {
        let bytes = super::withdraw::delivery_bytes(&item.signed, &item.path);
        let w = super::withdraw::too_large(item.signed, bytes, max, limits)?;
        screened.withdrawn.push((item.seq, w));
    }
    screened.withdrawn.sort_by_key(|(seq, _)| *seq);
    Ok(())
}

/// The stream side of a subscription: frames out, acks in, and the partner's slot,
/// which a newer subscription takes over.
struct Stream<'a> {
    send: &'a mut quinn::SendStream,
    acks: &'a mut mpsc::Receiver<FromClient>,
    generation: u64,
    current: &'a mut watch::Receiver<u64>,
    /// The peer's configuration digest, as its Subscribe declared it (empty: none).
    declared: Vec<u8>,
}

/// Runs the delivery loop: [`Progress`] decides, this reads pages, writes frames and
/// records, and waits. Deliveries the peer refused before and that are due again go
/// first, then the queue after the cursor.
async fn deliver(
    node: &Delivering,
    partner: &PartnerId,
    stream: &mut Stream<'_>,
    p: &mut Progress,
) -> Result<End, StorageError> {
    let mut head = node.storage.head.clone();
    let mut stop = node.shutdown.clone();
    let mut rules = node.rules.current.subscribe();
    let own = rules.borrow().digest;
    let mut retries = retry::due(
        &node.storage,
        node.rules.in_force().digest,
        partner,
        p,
        &stream.declared,
    )
    .await?;
    loop {
        let mut progressed = 0;
        let room = p.room();
        if room > 0 {
            let turn = match retries.is_empty() {
                true => queue_turn(node, partner, p, room).await?,
                false => retry::turn(node, partner, p, &mut retries, room).await?,
            };
            progressed = turn.progressed;
            if let Some(end) = send_turn(node, partner, stream, &mut stop, turn).await {
                return Ok(end);
            }
        }
        if (!retries.is_empty() && p.room() > 0) || p.read_on(progressed, *head.borrow()) {
            continue;
        }
        tokio::select! {
            msg = stream.acks.recv() => match msg {
                Some(FromClient::Acks(ack)) => {
                    if let Some(end) = take_acks(node, partner, stream, p, ack).await {
                        return Ok(end);
                    }
                }
                Some(FromClient::Fatal(code, message)) => return Ok(End::Error(code, message)),
                // The subscriber finished its side; every ack it sent is in.
                None => return Ok(End::Finished),
            },
            changed = head.changed() => if changed.is_err() { return Ok(End::Abort) },
            changed = rules.changed() => {
                if changed.is_err() {
                    return Ok(End::Abort);
                }
                let now = rules.borrow_and_update().digest;
                if now != own && retry::has_refusals(&node.storage.store, partner, &stream.declared).await? {
                    return Ok(End::Refresh);
                }
            }
            _ = stream.current.changed() => {
                if *stream.current.borrow() != stream.generation {
                    tracing::info!("subscription replaced by a newer one");
                    return Ok(End::Abort);
                }
            }
            _ = stop.changed() => return Ok(End::Abort),
        }
    }
}

/// The next page of the queue after the cursor, as [`Progress`] takes it.
async fn queue_turn(
    node: &Delivering,
    partner: &PartnerId,
    p: &mut Progress,
    room: usize,
) -> Result<PageOut, StorageError> {
    let Screened { page, withdrawn } = next_page(node, partner, p, room).await?;
    Ok(p.take_page(page, withdrawn))
}

/// Writes one turn: the records of what the rules withdrew and of the deliveries, then
/// the deliveries as one write. `Some` when the subscription must end.
async fn send_turn(
    node: &Delivering,
    partner: &PartnerId,
    stream: &mut Stream<'_>,
    stop: &mut watch::Receiver<bool>,
    out: PageOut,
) -> Option<End> {
    for (event, cursor) in out.withdrawn {
        tracing::info!(seqs = ?event.record().bulletin_seqs, "queued bulletin withdrawn");
        let cursor = cursor.map(|c| (partner.clone(), c));
        if !node.trail.append(event, cursor).await {
            return Some(End::Abort);
        }
    }
    let delivered = out.delivered?;
    // The record goes to the storage thread before any byte goes out: a stop, a
    // replacement or a failed write cannot leave a delivery that reached the peer
    // unrecorded (the storage thread commits everything queued before it ends). The
    // page goes out as one write, stored envelopes as they are (room for the prefix
    // and a short path).
    node.trail.record(delivered).await;
    let size = out.items.iter().map(|i| i.signed.len() + 64).sum();
    let mut outbox = transport::Outbox::with_capacity(size);
    for item in &out.items {
        outbox.push_delivery(item.seq, &item.signed, &item.path, node.node_id.as_str());
    }
    tokio::select! {
        r = outbox.write_to(stream.send, &node.book.frames) => r.is_err().then_some(End::Abort),
        _ = stop.changed() => Some(End::Abort),
        _ = stream.current.changed() => Some(End::Abort),
    }
}
