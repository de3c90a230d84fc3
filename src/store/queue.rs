//! Partners' queues, read from the stored segments: the page of bulletins waiting for
//! a partner after its cursor, and the cache of recent segments that keeps subscribers
//! following the head from re-reading and re-decoding the same values.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

use super::{corrupt, seq_key, Cursor, Store, StoreError, SEGMENT};
use crate::identity::PartnerId;
use crate::proto;
use crate::timestamp::Timestamp;

/// One bulletin waiting for a partner.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// Its seq.
    pub seq: u64,
    /// When the node accepted it.
    pub accepted: Timestamp,
    /// The encoded `SignedBulletin`.
    pub signed: Bytes,
    /// The nodes it crossed before this one.
    pub path: Vec<String>,
}

/// How much one page of a partner's queue may hold: at most `bulletins`, and only as
/// many as fit in `bytes` (but always one). The bytes matter because each bulletin on a
/// page keeps its whole segment in memory until the page is dropped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Room {
    /// Bulletins at most.
    pub bulletins: usize,
    /// Encoded bulletins' bytes at most, once there is one.
    pub bytes: usize,
}

impl Room {
    /// At most `n` bulletins, whatever their size.
    pub fn bulletins(n: usize) -> Room {
        Room {
            bulletins: n,
            bytes: usize::MAX,
        }
    }
}

/// A page of a partner's queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// Bulletins for the partner, ascending seq.
    pub items: Vec<Pending>,
    /// Every seq up to here has been examined; continue after it.
    pub scanned_through: u64,
}

/// Recently written or read segments, decoded and shared, so that subscribers following
/// the head do not re-read and re-decode the same values page after page. The least
/// recently used go first: subscribers that fell behind read the same old segments one
/// after another, and evicting by age of the bulletins would throw out what the first of
/// them just read before the others get to it.
pub(super) struct SegmentCache {
    /// By first seq: the segment, and when it was last used.
    by_first: std::collections::BTreeMap<u64, (Arc<proto::Segment>, u64)>,
    /// By last use: the first seq.
    by_use: std::collections::BTreeMap<u64, u64>,
    uses: u64,
    bytes: usize,
    limit: usize,
}

fn cost(seg: &proto::Segment) -> usize {
    seg.bulletins.iter().map(|b| b.signed.len() + 256).sum()
}

impl SegmentCache {
    pub(super) fn new(limit: usize) -> SegmentCache {
        SegmentCache {
            by_first: Default::default(),
            by_use: Default::default(),
            uses: 0,
            bytes: 0,
            limit,
        }
    }

    pub(super) fn holding(&mut self, seq: u64) -> Option<Arc<proto::Segment>> {
        let (first, (seg, used)) = self.by_first.range_mut(..=seq).next_back()?;
        let last = seg.bulletins.last()?.seq;
        if seq > last {
            return None;
        }
        self.uses += 1;
        self.by_use.remove(used);
        *used = self.uses;
        self.by_use.insert(self.uses, *first);
        Some(seg.clone())
    }

    pub(super) fn insert(&mut self, seg: Arc<proto::Segment>) {
        let Some(first) = seg.bulletins.first().map(|b| b.seq) else {
            return;
        };
        self.uses += 1;
        let size = cost(&seg);
        if let Some((old, used)) = self.by_first.insert(first, (seg, self.uses)) {
            self.by_use.remove(&used);
            self.bytes = self.bytes.saturating_sub(cost(&old));
        }
        self.bytes += size;
        self.by_use.insert(self.uses, first);
        while self.bytes > self.limit && self.by_first.len() > 1 {
            let Some((_, first)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.by_first.remove(&first) {
                self.bytes = self.bytes.saturating_sub(cost(&old));
            }
        }
    }
}

/// Bytes of decoded segments kept in memory.
pub(super) const SEGMENT_CACHE_BYTES: usize = 16 << 20;

impl Store {
    /// Names (origin, id, title) for the bulletin seqs that `records` (encoded audit
    /// records) hold without a bulletin id: deliveries, acks and withdrawals. A seq
    /// no longer stored is left out.
    pub fn bulletin_names(
        &self,
        records: &[Bytes],
    ) -> Result<Vec<proto::BulletinName>, StoreError> {
        let mut seqs = std::collections::BTreeSet::new();
        for bytes in records {
            let r = proto::AuditRecord::decode(bytes.clone()).map_err(|e| corrupt(b"a/", e))?;
            if r.bulletin_id.is_empty() {
                seqs.extend(r.bulletin_seqs);
            }
        }
        let mut names = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(stored) = self.get(seq)? else {
                continue;
            };
            let title = proto::SignedBulletin::decode(stored.signed)
                .and_then(|s| proto::Bulletin::decode(s.bulletin))
                .map(|b| b.title)
                .unwrap_or_default();
            names.push(proto::BulletinName {
                seq,
                origin: stored.origin,
                id: stored.id,
                title,
            });
        }
        Ok(names)
    }

    /// The stored bulletin with this seq.
    pub fn get(&self, seq: u64) -> Result<Option<proto::StoredBulletin>, StoreError> {
        match self.segment_holding(seq)? {
            Some(seg) => Ok(seg.bulletins.iter().find(|b| b.seq == seq).cloned()),
            None => Ok(None),
        }
    }

    /// The segment that holds `seq`, from the cache of recent segments or the database.
    fn segment_holding(&self, seq: u64) -> Result<Option<Arc<proto::Segment>>, StoreError> {
        if let Some(seg) = self
            .segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holding(seq)
        {
            return Ok(Some(seg));
        }
        // The segment holding `seq` starts at or before it.
        let found = self
            .state
            .range(SEGMENT.to_vec()..=seq_key(SEGMENT, seq))
            .next_back()
            .transpose()?;
        let Some((k, v)) = found else { return Ok(None) };
        if !k.starts_with(SEGMENT) {
            return Ok(None);
        }
        let seg = Arc::new(
            proto::Segment::decode(Bytes::from(self.values.resolve(&k, &v)?))
                .map_err(|e| corrupt(&k, e))?,
        );
        let holds = seg.bulletins.first().is_some_and(|b| b.seq <= seq)
            && seg.bulletins.last().is_some_and(|b| b.seq >= seq);
        if !holds {
            return Ok(None);
        }
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seg.clone());
        Ok(Some(seg))
    }

    /// The bulletins shared with `partner` with seq above `after` that fit in `room`,
    /// skipping those the cursor marks acknowledged.
    pub fn pending(
        &self,
        partner: &PartnerId,
        after: u64,
        cursor: &Cursor,
        room: Room,
    ) -> Result<Page, StoreError> {
        let holding = |seq| {
            let seg = self.segment_holding(seq)?;
            seg.map(Some)
                .ok_or_else(|| corrupt(SEGMENT, format!("no segment holds bulletin {seq}")))
        };
        let page = self.page(partner, after, self.head()?, cursor, room, holding)?;
        page.ok_or_else(|| corrupt(SEGMENT, "a segment was found, then not found"))
    }

    /// [`Store::pending`] up to `head`, from the segments held decoded in memory only:
    /// `None` if the page needs one that is not (a partner behind the recent commits).
    /// What a partner keeping up reads, without touching the disk.
    pub fn pending_in_memory(
        &self,
        partner: &PartnerId,
        after: u64,
        head: u64,
        cursor: &Cursor,
        room: Room,
    ) -> Result<Option<Page>, StoreError> {
        let cached = |seq| {
            let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            Ok(segments.holding(seq))
        };
        self.page(partner, after, head, cursor, room, cached)
    }

    /// A page through `head`, each segment from `holding` (`None`: this reading cannot
    /// have it, and there is no page).
    fn page(
        &self,
        partner: &PartnerId,
        after: u64,
        head: u64,
        cursor: &Cursor,
        room: Room,
        mut holding: impl FnMut(u64) -> Result<Option<Arc<proto::Segment>>, StoreError>,
    ) -> Result<Option<Page>, StoreError> {
        let mut page = Page {
            items: Vec::with_capacity(room.bulletins.min(256)),
            scanned_through: after,
        };
        if after >= head || room.bulletins == 0 {
            return Ok(Some(page));
        }
        let name = partner.as_str();
        let (mut next, mut bytes) = (after + 1, 0usize);
        while next <= head {
            let Some(seg) = holding(next)? else {
                return Ok(None);
            };
            let through_head = seg.bulletins.iter().take_while(|b| b.seq <= head);
            for b in through_head.filter(|b| b.seq >= next) {
                if page.items.len() == room.bulletins {
                    return Ok(Some(page));
                }
                if !cursor.is_acked(b.seq) && b.shared_with.iter().any(|p| p == name) {
                    bytes = bytes.saturating_add(b.signed.len());
                    if bytes > room.bytes && !page.items.is_empty() {
                        return Ok(Some(page));
                    }
                    page.items.push(Pending {
                        seq: b.seq,
                        accepted: Timestamp::from_unix_ms(b.accepted_unix_ms),
                        signed: b.signed.clone(),
                        path: b.path.clone(),
                    });
                }
                page.scanned_through = b.seq;
            }
            match seg.bulletins.last() {
                Some(last) if last.seq >= next => next = last.seq + 1,
                _ => return Err(corrupt(SEGMENT, format!("segment before {next} is empty"))),
            }
        }
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, n: u64) -> Arc<proto::Segment> {
        Arc::new(proto::Segment {
            bulletins: (first..first + n)
                .map(|seq| proto::StoredBulletin {
                    seq,
                    signed: Bytes::from(vec![0; 744]),
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn the_least_recently_used_segment_goes_first_not_the_oldest_bulletins() {
        // Room for three segments of ten bulletins (1,000 bytes each as counted).
        let mut cache = SegmentCache::new(30_000);
        cache.insert(segment(1, 10));
        cache.insert(segment(11, 10));
        cache.insert(segment(21, 10));
        // A subscriber behind reads the oldest; the head moves on.
        assert!(cache.holding(5).is_some());
        cache.insert(segment(31, 10));
        assert!(cache.holding(15).is_none(), "the least recently used went");
        assert!(cache.holding(5).is_some(), "what was just read stays");
        assert_eq!(cache.holding(25).map(|s| s.bulletins.len()), Some(10));
        assert!(cache.holding(35).is_some());
        assert!(cache.holding(41).is_none(), "past every segment");
        assert_eq!(cache.bytes, 30_000);
        assert_eq!(cache.by_use.len(), cache.by_first.len());
    }
}
