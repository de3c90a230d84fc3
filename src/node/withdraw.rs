//! Withdrawal: a bulletin queued under earlier rules goes out only if the rules in force
//! when it goes out still share it with that partner (its clearance, groups, kinds,
//! denied tags, the origin's key and the partner itself). What they no longer share is
//! recorded as WITHDRAWN and taken off the queue instead of delivered.
//!
//! [`recheck`] decides, with no I/O: the stored envelope, who handed it over and the
//! rules in force go in, a withdrawal or nothing comes out. The delivery loop asks it for
//! every queued bulletin accepted before the rules it holds came into force; a partner
//! removed from the configuration has its whole queue withdrawn at once
//! ([`withdraw_removed`]), so that a partner id added again later starts afresh.

use bytes::Bytes;

use super::{Shared, Sharing};
use crate::audit::record::Event;
use crate::bulletin::{Digest, Header, Limits, UnverifiedBulletin};
use crate::identity::PartnerId;
use crate::policy::{Decision, Withhold};
use crate::store::{Cursor, StoreError};

/// A queued bulletin the rules in force no longer share with the partner.
#[derive(Debug)]
pub(crate) struct Withdrawal {
    pub header: Header,
    pub digest: Digest,
    pub why: Withhold,
}

impl Withdrawal {
    /// Its audit record: `partner` no longer gets `seq`.
    pub fn event(&self, partner: &PartnerId, seq: u64) -> Event {
        Event::withdrawn(
            partner,
            Some((&self.header, self.digest)),
            vec![seq],
            &self.why,
        )
    }
}

/// Limits for reading back what the node itself stored: it passed the limits in force
/// when it was accepted, and a smaller limit set since must not make it unreadable.
fn stored_limits(limits: &Limits) -> Limits {
    Limits {
        max_bulletin_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
        ..*limits
    }
}

/// Whether the rules in `sharing` still share the stored bulletin `signed`, received
/// from `received_from`, with `partner`: `None` if they do, the withdrawal if not.
pub(crate) fn recheck(
    signed: Bytes,
    received_from: &str,
    partner: &PartnerId,
    sharing: &Sharing,
    limits: &Limits,
) -> Result<Option<Withdrawal>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        key: "stored bulletin".into(),
        why,
    };
    let b = UnverifiedBulletin::decode(signed, &stored_limits(limits))
        .map_err(|e| corrupt(e.to_string()))?;
    let from: PartnerId = received_from
        .parse()
        .map_err(|e| corrupt(format!("received_from: {e}")))?;
    let h = b.header();
    let why = match sharing.keyring.lookup(&h.origin, &b.key_id(), h.created) {
        Err(_) => Some(Withhold::OriginKey),
        Ok(_) => match sharing.policy.still_shared(h, &from, partner) {
            Decision::Share => None,
            Decision::Withhold(w) => Some(w),
        },
    };
    Ok(why.map(|why| Withdrawal {
        header: h.clone(),
        digest: b.digest(),
        why,
    }))
}

/// Withdraws the whole queue of every partner that the last configuration put in force
/// named and `sharing` does not, then records `sharing`'s partners as the ones in force.
/// Called when a node starts and after each reload (one at a time).
pub(super) async fn withdraw_removed(shared: &Shared, sharing: &Sharing) -> Result<(), String> {
    let store = &shared.store;
    let now: Vec<PartnerId> = sharing
        .config
        .partners
        .iter()
        .map(|p| p.id.clone())
        .collect();
    let before = store.roster().map_err(|e| e.to_string())?;
    for gone in before.iter().filter(|p| !now.contains(p)) {
        let head = store.head().map_err(|e| e.to_string())?;
        let cursor = store.cursor(gone).map_err(|e| e.to_string())?;
        let mut after = cursor.acked_through;
        let mut seqs = Vec::new();
        while after < head {
            let page = store
                .pending(gone, after, &cursor, 1000)
                .map_err(|e| e.to_string())?;
            seqs.extend(page.items.iter().map(|i| i.seq));
            if page.scanned_through <= after {
                break;
            }
            after = page.scanned_through;
        }
        tracing::info!(partner = %gone, withdrawn = seqs.len(), "the queue of a removed partner is withdrawn");
        let mut chunks: Vec<Vec<u64>> = seqs.chunks(1000).map(<[u64]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // An empty queue is recorded too: the auditor sees the partner's queue end.
            let event = Event::withdrawn(gone, None, chunk, &Withhold::PartnerRemoved);
            let done = Cursor {
                acked_through: head,
                acked_above: Default::default(),
            };
            let cursor = (i == last).then(|| (gone.clone(), done));
            shared.commit_event(Some(event), cursor).await?;
        }
    }
    if before != now {
        store.set_roster(&now).map_err(|e| e.to_string())?;
    }
    Ok(())
}
