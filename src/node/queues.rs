//! A partner's queue as the node reports it (`/metrics`, `renkei status`, a Welcome's
//! `queued_for_you`): its depth from the day counters and the age of its oldest
//! entry. It reads the store; it changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::identity::PartnerId;
use crate::metrics::prometheus::QueueGauge;
use crate::store::{Room, Store};
use crate::timestamp::Timestamp;

/// `partner`'s queue now (empty if it cannot be read), read on the blocking pool.
pub(super) async fn queue_of(store: &Arc<Store>, partner: &PartnerId) -> QueueGauge {
    let (store, partner) = (store.clone(), partner.clone());
    tokio::task::spawn_blocking(move || {
        let totals = store.partner_totals(&partner);
        queue(&store, &totals, &partner, Timestamp::now())
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// A partner's queue: its depth from the counters (shared minus acknowledged, each
/// counted once in the same write as its record), and the age of the oldest entry,
/// found from its cursor only when there is one.
pub(super) fn queue(
    store: &Store,
    totals: &BTreeMap<(String, String), u64>,
    partner: &PartnerId,
    now: Timestamp,
) -> Option<QueueGauge> {
    let name = partner.as_str();
    let count = |f: &dyn Fn(&str) -> bool| -> u64 {
        totals
            .range((name.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == name)
            .filter(|((_, n), _)| f(n))
            .map(|(_, v)| *v)
            .sum()
    };
    let depth = count(&|n| n.starts_with("shared.")).saturating_sub(count(&|n| n == "acked"));
    let mut oldest_age_ms = 0;
    if depth > 0 {
        let cursor = store.cursor(partner).ok()?;
        let page = store
            .pending(partner, cursor.acked_through, &cursor, Room::bulletins(1))
            .ok()?;
        if let Some(first) = page.items.first() {
            oldest_age_ms = now.unix_ms().saturating_sub(first.accepted.unix_ms());
        }
    }
    Some(QueueGauge {
        partner: partner.to_string(),
        depth,
        oldest_age_ms,
    })
}
