//! One page of a partner's TAXII collection: the index brought up to the store's head,
//! the page the query asks for screened through the one delivery screen (what was
//! shared with the partner, not withdrawn from its id, still shared under the rules in
//! force), and its objects read back, each marked with its bulletin's TLP, bounded in
//! bytes as well as in objects. Runs on the blocking pool; the routes record and send.

use serde_json::Value;

use super::index::{self, Entry, Index, Page, Query};
use super::Gateway;
use crate::bulletin::Tlp;
use crate::identity::PartnerId;
use crate::store::Store;

/// One page of the caller's objects: the entries and their objects as JSON.
pub(super) struct Served {
    pub(super) page: Page,
    pub(super) items: Vec<(Entry, Value)>,
}

/// Bytes of objects one page carries, at most (one object more than this is sent
/// alone): a client asking for 10,000 large objects gets them over several pages.
const PAGE_BYTES: usize = 4 << 20;

/// A bulletin's TLP and its STIX objects.
type Marked = (Tlp, Vec<crate::stix::StixObject>);

/// Who may read what on a gateway read, under one set of rules: what was shared with
/// the partner, not withdrawn from its id, still shared under the rules in force (the
/// one delivery screen). A TAXII page and a MISP feed read through it alike.
pub(super) struct Screen<'a> {
    store: &'a Store,
    rules: std::sync::Arc<crate::node::shared::RuleSet>,
    limits: crate::bulletin::Limits,
    partner: &'a PartnerId,
    withdrawn: crate::store::Withdrawn,
}

impl<'a> Screen<'a> {
    /// The screen of `partner` under the rules in force now.
    pub(super) fn new(
        g: &'a Gateway,
        partner: &'a PartnerId,
    ) -> Result<Screen<'a>, crate::store::StoreError> {
        let store = &g.intake.storage.store;
        Ok(Screen {
            store,
            rules: g.intake.rules.in_force(),
            limits: g.intake.limits,
            partner,
            // What was withdrawn from this partner id (its queue when it was removed,
            // a bulletin the rules stopped sharing) stays withdrawn here as on QUIC.
            withdrawn: store.withdrawn(partner)?,
        })
    }

    /// Whether the partner may read the stored bulletin `seq`, shared with `shared_with`
    /// when it was accepted.
    pub(super) fn admits(&self, seq: u64, shared_with: &[PartnerId]) -> bool {
        shared_with.contains(self.partner)
            && !self.withdrawn.covers(seq)
            && still_shared(self.store, &self.rules, self.partner, seq, &self.limits)
    }

    /// The rules it screens by.
    pub(super) fn rules(&self) -> &crate::node::shared::RuleSet {
        &self.rules
    }
}

/// Brings the index up to the store's head, takes the page `q` asks for under the rules
/// in force, and reads its objects back.
pub(super) fn read_page(
    g: &Gateway,
    partner: &PartnerId,
    q: &Query,
) -> Result<Served, crate::store::StoreError> {
    let store = &g.intake.storage.store;
    let screen = Screen::new(g, partner)?;
    let mut index = g.index.lock().unwrap_or_else(|p| p.into_inner());
    refresh(&mut index, store)?;
    let visible = |e: &Entry| screen.admits(e.seq, &e.shared_with);
    let mut page = index.page(q, &visible);
    let mut items = Vec::with_capacity(page.positions.len());
    // Each served object carries its bulletin's TLP marking: a CTI tool that finds
    // none applies its own default, which may be far looser.
    let mut bulletin: Option<(u64, Option<Marked>)> = None;
    let mut bytes = 0;
    for &p in &page.positions {
        let Some(e) = index.get(p) else { continue };
        if bulletin.as_ref().is_none_or(|(seq, _)| *seq != e.seq) {
            let read = store.get(e.seq)?.as_ref().and_then(index::marked_objects);
            bulletin = Some((e.seq, read));
        }
        let json = bulletin
            .as_ref()
            .and_then(|(_, read)| read.as_ref())
            .and_then(|(tlp, objects)| {
                let o = objects.get(e.index as usize)?;
                Some(crate::stix::with_tlp(o.json.clone(), *tlp))
            });
        let Some(json) = json else { continue };
        // Pages are bounded in bytes as well as objects: the rest follows with `next`.
        bytes += json.to_string().len();
        if bytes > PAGE_BYTES && !items.is_empty() {
            page.next = items.last().map(|(at, _, _)| *at);
            break;
        }
        items.push((p, e.clone(), json));
    }
    let items = items.into_iter().map(|(_, e, json)| (e, json)).collect();
    Ok(Served { page, items })
}

fn refresh(index: &mut Index, store: &Store) -> Result<(), crate::store::StoreError> {
    let head = store.head()?;
    for seq in index.through() + 1..=head {
        match store.get(seq)? {
            Some(stored) => index.add(&stored),
            None => index.reached(seq),
        }
    }
    Ok(())
}

/// Whether the rules in force still share the stored bulletin `seq` with `partner`, by
/// the screen a subscription reads through.
fn still_shared(
    store: &Store,
    rules: &crate::node::shared::RuleSet,
    partner: &PartnerId,
    seq: u64,
    limits: &crate::bulletin::Limits,
) -> bool {
    let screened = super::super::withdraw::screen_stored(store, rules, limits, partner, seq);
    matches!(screened, Ok(None))
}
