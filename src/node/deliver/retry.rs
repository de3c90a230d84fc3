//! Offering again what a peer node refused: the deliveries it refused for a reason a
//! configuration could change are kept (`store::refused`), and once this node's policy
//! digest or the one the peer's subscription declares differs from when it refused
//! them, a subscription starts with them, ascending, before the queue after the cursor.
//! They pass the rules in force again on the way out, as any queued bulletin does.

use std::collections::VecDeque;
use std::sync::Arc;

use super::progress::{PageOut, Progress};
use super::{Screened, PAGE_BYTES};
use crate::identity::PartnerId;
use crate::node::shared::StorageHandle;
use crate::node::writer::{Request, StorageError};
use crate::store::{Page, Pending, RefusedChange, Store, StoreError};
use crate::timestamp::Timestamp;

/// The kept refusals of `peer` due on a subscription that declared `declared`: either
/// configuration changed since, the bulletin is behind the cursor (what is not is still
/// queued and goes out anyway) and not withdrawn from the peer. Those withdrawn are
/// forgotten.
pub(super) async fn due(
    storage: &StorageHandle,
    own: [u8; 32],
    peer: &PartnerId,
    p: &Progress,
    declared: &[u8],
) -> Result<VecDeque<u64>, StorageError> {
    if declared.is_empty() {
        return Ok(VecDeque::new());
    }
    let (store, who, cursor, declared) = (
        storage.store.clone(),
        peer.clone(),
        p.cursor.clone(),
        declared.to_vec(),
    );
    let (due, gone) = blocking(move || {
        let withdrawn = store.withdrawn(&who)?;
        let (mut due, mut gone) = (VecDeque::new(), Vec::new());
        for r in store.refused(&who)? {
            if withdrawn.covers(r.seq) {
                gone.push(r.seq);
            } else if r.due(&own, &declared) && cursor.is_acked(r.seq) {
                due.push_back(r.seq);
            }
        }
        Ok((due, gone))
    })
    .await?;
    if !due.is_empty() {
        tracing::info!(%peer, due = due.len(), "offering again deliveries the peer refused");
    }
    forget(storage, peer, gone).await;
    Ok(due)
}

/// Whether `peer`, subscribed with a digest, has refused deliveries kept.
pub(super) async fn has_refusals(
    store: &Arc<Store>,
    peer: &PartnerId,
    declared: &[u8],
) -> Result<bool, StorageError> {
    if declared.is_empty() {
        return Ok(false);
    }
    let (store, peer) = (store.clone(), peer.clone());
    blocking(move || Ok(!store.refused(&peer)?.is_empty())).await
}

/// The next of `due` that fit in `room` and one page's bytes, screened by the rules in
/// force, as [`Progress`] takes them. What the rules withdraw now is forgotten too.
pub(super) async fn turn(
    node: &super::Delivering,
    peer: &PartnerId,
    p: &mut Progress,
    due: &mut VecDeque<u64>,
    room: usize,
) -> Result<PageOut, StorageError> {
    let seqs: Vec<u64> = due.iter().take(room).copied().collect();
    let (store, who) = (node.storage.store.clone(), peer.clone());
    let (rules, limits) = (node.rules.in_force(), node.limits);
    let peer_reads = node.links.max_frame(peer);
    let (screened, examined, missing) = blocking(move || {
        let (page, examined, missing) = read(&store, &seqs)?;
        let mut screened = super::screen(&store, &rules, &limits, &who, page)?;
        if let Some(max) = peer_reads {
            super::too_large_for(&mut screened, max, &limits)?;
        }
        Ok((screened, examined, missing))
    })
    .await?;
    due.drain(..examined.min(due.len()));
    let Screened { page, withdrawn } = screened;
    let mut gone = missing;
    gone.extend(withdrawn.iter().map(|(seq, _)| *seq));
    forget(&node.storage, peer, gone).await;
    let delivered = p.take_retries(&page.items);
    let withdrawn: Vec<_> = withdrawn
        .into_iter()
        .map(|(seq, w)| (w.event(peer, seq), None))
        .collect();
    Ok(PageOut {
        progressed: examined,
        withdrawn,
        delivered,
        items: page.items,
    })
}

/// The stored bulletins of `seqs`, up to one page's bytes (at least one): the page,
/// how many of `seqs` it examined, and those no longer stored.
fn read(store: &Store, seqs: &[u64]) -> Result<(Page, usize, Vec<u64>), StoreError> {
    let (mut items, mut missing, mut bytes) = (Vec::new(), Vec::new(), 0);
    let mut examined = 0;
    for &seq in seqs {
        if !items.is_empty() && bytes >= PAGE_BYTES {
            break;
        }
        examined += 1;
        let Some(b) = store.get(seq)? else {
            missing.push(seq);
            continue;
        };
        bytes += b.signed.len();
        items.push(Pending {
            seq,
            accepted: Timestamp::from_unix_ms(b.accepted_unix_ms),
            signed: b.signed,
            path: b.path,
        });
    }
    let scanned_through = items.last().map_or(0, |i: &Pending| i.seq);
    Ok((
        Page {
            items,
            scanned_through,
        },
        examined,
        missing,
    ))
}

/// Forgets the kept refusals of `seqs`, with the records that follow.
async fn forget(storage: &StorageHandle, peer: &PartnerId, seqs: Vec<u64>) {
    for seq in seqs {
        let change = RefusedChange::Forget(peer.clone(), seq);
        let _ = storage.commits.send(Request::Refused(change)).await;
    }
}

/// Runs a read of the database on the blocking pool (the store is synchronous).
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(read).await?
}
