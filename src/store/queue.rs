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
/// the head do not re-read and re-decode the same sled values page after page.
pub(super) struct SegmentCache {
    pub(super) by_first: std::collections::BTreeMap<u64, Arc<proto::Segment>>,
    pub(super) bytes: usize,
    pub(super) limit: usize,
}

impl SegmentCache {
    pub(super) fn holding(&self, seq: u64) -> Option<Arc<proto::Segment>> {
        let (_, seg) = self.by_first.range(..=seq).next_back()?;
        let last = seg.bulletins.last()?.seq;
        (seq <= last).then(|| seg.clone())
    }

    pub(super) fn insert(&mut self, seg: Arc<proto::Segment>) {
        let Some(first) = seg.bulletins.first().map(|b| b.seq) else {
            return;
        };
        let size: usize = seg.bulletins.iter().map(|b| b.signed.len() + 256).sum();
        if self.by_first.insert(first, seg).is_none() {
            self.bytes += size;
        }
        // The oldest go first: subscribers that keep up read the newest.
        while self.bytes > self.limit {
            let Some((_, old)) = self.by_first.pop_first() else {
                break;
            };
            self.bytes = self
                .bytes
                .saturating_sub(old.bulletins.iter().map(|b| b.signed.len() + 256).sum());
        }
    }
}

/// Bytes of decoded segments kept in memory.
pub(super) const SEGMENT_CACHE_BYTES: usize = 32 << 20;

impl Store {
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
                .map_err(|e| corrupt(&k, e.to_string()))?,
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

    /// Up to `max` bulletins shared with `partner` with seq above `after`, skipping
    /// those the cursor marks acknowledged.
    pub fn pending(
        &self,
        partner: &PartnerId,
        after: u64,
        cursor: &Cursor,
        max: usize,
    ) -> Result<Page, StoreError> {
        let head = self.head()?;
        let mut page = Page {
            items: Vec::new(),
            scanned_through: after,
        };
        if after >= head || max == 0 {
            return Ok(page);
        }
        let name = partner.as_str();
        let mut next = after + 1;
        while next <= head {
            let Some(seg) = self.segment_holding(next)? else {
                return Err(corrupt(
                    SEGMENT,
                    format!("no segment holds bulletin {next}"),
                ));
            };
            for b in seg.bulletins.iter().filter(|b| b.seq >= next) {
                if page.items.len() == max {
                    return Ok(page);
                }
                page.scanned_through = b.seq;
                if !cursor.is_acked(b.seq) && b.shared_with.iter().any(|p| p == name) {
                    page.items.push(Pending {
                        seq: b.seq,
                        accepted: Timestamp::from_unix_ms(b.accepted_unix_ms),
                        signed: b.signed.clone(),
                    });
                }
            }
            match seg.bulletins.last() {
                Some(last) if last.seq >= next => next = last.seq + 1,
                _ => return Err(corrupt(SEGMENT, format!("segment before {next} is empty"))),
            }
        }
        Ok(page)
    }
}
