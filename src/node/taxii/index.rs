//! The TAXII gateway's index of the STIX objects in stored bulletins, in acceptance
//! order, and the pages TAXII asks of it (`added_after`, `match[id]`, `match[type]`,
//! `match[version]`, `limit`, `next`). Pure: stored bulletins go in, positions come out;
//! who may see what is a predicate the caller passes, and the objects themselves are
//! read back from the store by the shell.
//!
//! Kept in memory because TAXII's filters and "latest version" rule need to see the
//! whole collection, which the store's segments cannot answer without decoding every
//! bulletin. It holds only what some partner may read (bulletins shared with no one are
//! left out), each id and type name once, the newest [`MAX_OBJECTS`] at most, and is
//! rebuilt from the store on the first request after a start (benches/README.md gives
//! its size and the rebuild's time).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message as _;

use crate::identity::PartnerId;
use crate::proto;
use crate::stix;

/// One object of one stored bulletin.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The bulletin's seq.
    pub seq: u64,
    /// The object's place in the bulletin's bundle.
    pub index: u32,
    /// TAXII's date_added, in microseconds since the epoch: when the node accepted the
    /// bulletin, plus the entry's place among those accepted in the same millisecond,
    /// so that every object has its own and `added_after` never splits a millisecond.
    pub added_us: u64,
    pub id: Arc<str>,
    pub kind: Arc<str>,
    pub version: Option<Arc<str>>,
    /// The version as a time (ms), for ordering versions written with different
    /// precisions; `None` when it does not parse.
    pub version_ms: Option<u64>,
    /// Who the bulletin was shared with when it was accepted.
    pub shared_with: Arc<[PartnerId]>,
}

impl Entry {
    /// Its version as TAXII states it: the object's own, or when it was added.
    pub fn version_or(&self, added: &str) -> String {
        self.version.as_deref().unwrap_or(added).to_owned()
    }

    /// What versions are ordered by: the version's time, else when it was added.
    fn version_key(&self) -> u64 {
        self.version_ms.unwrap_or(self.added_us / 1000)
    }
}

/// Which versions of each object a page holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Versions {
    /// The latest of each (TAXII's default).
    Last,
    /// The earliest of each.
    First,
    /// Every version.
    All,
    /// Only these versions (ms since the epoch).
    Exactly(Vec<u64>),
}

/// What a TAXII request asks for.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    /// Only objects added after this (µs since the epoch).
    pub added_after: Option<u64>,
    /// Only these object ids (empty: any).
    pub ids: Vec<String>,
    /// Only these types (empty: any).
    pub types: Vec<String>,
    pub versions: Versions,
    /// Continue after this position (the previous page's `next`).
    pub after: Option<usize>,
    pub limit: usize,
}

/// A page: positions of the matching entries, and where the next page starts if more
/// match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    pub positions: Vec<usize>,
    pub next: Option<usize>,
}

/// Objects the index holds at most unless `[taxii] index_objects` says otherwise (about
/// 550 bytes each with what reading them costs: some 270 MiB). Beyond it the oldest
/// leave the index, and TAXII serves the newest this many; QUIC subscriptions are not
/// affected.
pub(crate) const MAX_OBJECTS: usize = 500_000;

/// The newest [`MAX_OBJECTS`] STIX objects of the stored bulletins indexed so far.
/// Positions are absolute: an object keeps its position when older ones leave, so a
/// `next` stays valid (a page after evicted ones starts at the oldest held).
pub(crate) struct Index {
    entries: std::collections::VecDeque<Entry>,
    /// The position of `entries[0]`.
    base: usize,
    by_id: HashMap<Arc<str>, Vec<usize>>,
    /// Object types, each held once: there are few, and an entry names one.
    kinds: std::collections::HashSet<Arc<str>>,
    through: u64,
    most: usize,
}

impl Default for Index {
    fn default() -> Self {
        Index::holding_at_most(MAX_OBJECTS)
    }
}

impl Index {
    /// An empty index that holds `most` objects at most.
    pub fn holding_at_most(most: usize) -> Index {
        Index {
            entries: Default::default(),
            base: 0,
            by_id: HashMap::new(),
            kinds: Default::default(),
            through: 0,
            most: most.max(1),
        }
    }

    /// The last seq indexed.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// The entry at `position`, if the index still holds it.
    pub fn get(&self, position: usize) -> Option<&Entry> {
        self.entries.get(position.checked_sub(self.base)?)
    }

    /// The entry at `position`, which the index holds (a position it handed out).
    fn at(&self, position: usize) -> &Entry {
        &self.entries[position - self.base]
    }

    /// One past the newest position.
    fn end(&self) -> usize {
        self.base + self.entries.len()
    }

    /// Lets the oldest objects go while there are more than the index holds.
    fn evict(&mut self) {
        while self.entries.len() > self.most {
            let Some(old) = self.entries.pop_front() else {
                return;
            };
            if let Some(at) = self.by_id.get_mut(&old.id) {
                at.retain(|p| *p != self.base);
                if at.is_empty() {
                    self.by_id.remove(&old.id);
                }
            }
            self.base += 1;
        }
    }

    /// Notes that `seq` was looked at and holds nothing to index.
    pub fn reached(&mut self, seq: u64) {
        self.through = self.through.max(seq);
    }

    /// Indexes a stored bulletin (seqs in ascending order); one whose body is not a
    /// STIX bundle, or that was shared with no one (no partner may ever read it here),
    /// adds nothing.
    pub fn add(&mut self, stored: &proto::StoredBulletin) {
        self.through = self.through.max(stored.seq);
        if stored.shared_with.is_empty() {
            return;
        }
        let Some(objects) = stix_objects(stored) else {
            return;
        };
        let shared_with: Arc<[PartnerId]> = stored
            .shared_with
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        for (index, o) in objects.into_iter().enumerate() {
            // Every version of an object shares one copy of its id.
            let id: Arc<str> = match self.by_id.get_key_value(o.id.as_str()) {
                Some((known, _)) => known.clone(),
                None => o.id.into(),
            };
            let at_ms = stored.accepted_unix_ms.saturating_mul(1000);
            // After the previous entry, within this millisecond while there is room.
            let added_us = match self.entries.back() {
                Some(prev) if prev.added_us >= at_ms => (prev.added_us + 1).min(at_ms + 999),
                _ => at_ms,
            };
            let version_ms = o
                .version
                .as_deref()
                .and_then(|v| v.parse::<crate::timestamp::Timestamp>().ok())
                .map(|t| t.unix_ms());
            let kind = self.kind(o.kind);
            let position = self.end();
            self.by_id.entry(id.clone()).or_default().push(position);
            self.entries.push_back(Entry {
                seq: stored.seq,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                added_us,
                id,
                kind,
                version: o.version.map(Into::into),
                version_ms,
                shared_with: shared_with.clone(),
            });
        }
        self.evict();
    }

    /// The one copy of type name `kind`.
    fn kind(&mut self, kind: String) -> Arc<str> {
        if let Some(k) = self.kinds.get(kind.as_str()) {
            return k.clone();
        }
        let k: Arc<str> = kind.into();
        self.kinds.insert(k.clone());
        k
    }

    /// The page `q` asks for, of the entries `visible` lets through. `visible` must
    /// depend on an entry's bulletin only (its seq): it is asked once per bulletin,
    /// and each object id's latest or first version is chosen once, so a page costs
    /// what it examines, however many versions an object has.
    pub fn page(&self, q: &Query, visible: &dyn Fn(&Entry) -> bool) -> Page {
        let start = q.after.map_or(0, |a| a.saturating_add(1)).max(self.base);
        let start = match q.added_after {
            Some(t) => start.max(self.base + self.entries.partition_point(|e| e.added_us <= t)),
            None => start,
        };
        let candidates: Box<dyn Iterator<Item = usize>> = if q.ids.is_empty() {
            Box::new(start..self.end())
        } else {
            let mut at: Vec<usize> = q
                .ids
                .iter()
                .filter_map(|id| self.by_id.get(id.as_str()))
                .flatten()
                .copied()
                .filter(|p| *p >= start)
                .collect();
            at.sort_unstable();
            at.dedup();
            Box::new(at.into_iter())
        };
        let mut memo = Memo {
            visible,
            by_seq: HashMap::new(),
            chosen: HashMap::new(),
        };
        let mut page = Page::default();
        for p in candidates {
            if !self.matches(p, q, &mut memo) {
                continue;
            }
            if page.positions.len() == q.limit.max(1) {
                page.next = page.positions.last().copied();
                break;
            }
            page.positions.push(p);
        }
        page
    }

    fn matches(&self, p: usize, q: &Query, memo: &mut Memo) -> bool {
        let e = self.at(p);
        if !q.types.is_empty() && !q.types.iter().any(|t| **t == *e.kind) {
            return false;
        }
        if q.added_after.is_some_and(|t| e.added_us <= t) || !memo.visible(e) {
            return false;
        }
        match &q.versions {
            Versions::All => true,
            Versions::Exactly(v) => v.contains(&e.version_key()),
            Versions::Last => self.chosen(p, memo).0 == Some(p),
            Versions::First => self.chosen(p, memo).1 == Some(p),
        }
    }

    /// Of the visible entries with `p`'s id, the latest version (the later position
    /// winning a tie) and the first; worked out once per id and page.
    fn chosen(&self, p: usize, memo: &mut Memo) -> (Option<usize>, Option<usize>) {
        let id = &self.at(p).id;
        if let Some(known) = memo.chosen.get(id) {
            return *known;
        }
        let (mut last, mut first): (Option<usize>, Option<usize>) = (None, None);
        for &at in self.by_id.get(id).into_iter().flatten() {
            let e = self.at(at);
            if !memo.visible(e) {
                continue;
            }
            let key = e.version_key();
            if last.is_none_or(|b| key >= self.at(b).version_key()) {
                last = Some(at);
            }
            if first.is_none_or(|b| key < self.at(b).version_key()) {
                first = Some(at);
            }
        }
        memo.chosen.insert(id.clone(), (last, first));
        (last, first)
    }
}

/// What one page has worked out: each bulletin's visibility, each id's chosen versions.
struct Memo<'a> {
    visible: &'a dyn Fn(&Entry) -> bool,
    by_seq: HashMap<u64, bool>,
    chosen: HashMap<Arc<str>, (Option<usize>, Option<usize>)>,
}

impl Memo<'_> {
    fn visible(&mut self, e: &Entry) -> bool {
        let visible = self.visible;
        *self.by_seq.entry(e.seq).or_insert_with(|| visible(e))
    }
}

/// The objects of a stored bulletin whose body is a STIX bundle.
pub(crate) fn stix_objects(stored: &proto::StoredBulletin) -> Option<Vec<stix::StixObject>> {
    let b = stix_bulletin(stored)?;
    stix::bundle_objects(&b.body).ok()
}

/// The bulletin's TLP and the STIX objects of its body, if it holds a bundle.
pub(crate) fn marked_objects(
    stored: &proto::StoredBulletin,
) -> Option<(crate::bulletin::Tlp, Vec<stix::StixObject>)> {
    let b = stix_bulletin(stored)?;
    let tlp = crate::bulletin::Tlp::from_proto(b.tlp)?;
    Some((tlp, stix::bundle_objects(&b.body).ok()?))
}

/// The stored bulletin, if its body is STIX.
fn stix_bulletin(stored: &proto::StoredBulletin) -> Option<proto::Bulletin> {
    let signed = proto::SignedBulletin::decode(stored.signed.clone()).ok()?;
    let b = proto::Bulletin::decode(signed.bulletin).ok()?;
    b.content_type
        .starts_with("application/stix+json")
        .then_some(b)
}

#[cfg(test)]
mod tests;
