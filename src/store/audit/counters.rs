//! The audit log's day counters on disk (`k/` day partner `\0` name → u64 BE): what
//! each commit's records move, held in memory until they are saved, and a report's
//! rows read as saved and merged with what is not saved yet.
//!
//! Why not save them with every commit: a paced commit holds a bulletin or two, and
//! its counters were half of the keys it wrote (about a fifth of the storage thread's
//! time at 1,000 bulletins a second). They are saved with every signed checkpoint, and
//! by a commit once too many are unsaved, in the same batch as `m/counted`, the log
//! size the saved counters count. A store that opens recounts the records past it
//! (a crash's tail, at most [`UNSAVED_RECORDS`]), so no count is ever lost or counted
//! twice.
//!
//! What a record counts is `metrics::each_count`'s to say, not this module's.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use prost::Message as _;

use super::read::AuditReader;
use super::{size, COUNTERS, RECORDS};
use crate::metrics;
use crate::proto;
use crate::store::{be_u64, corrupt, kv, StoreError};

/// The log size the saved counters count (u64 BE). Absent in layouts up to 5, whose
/// commits all saved their counters; [`mark_counted`] writes it before any commit
/// that does not.
const COUNTED: &[u8] = b"m/counted";
/// Counters left unsaved at most: a commit that would leave more saves them all.
const UNSAVED_KEYS: usize = 1024;
/// Records past the saved counters at most: a commit that would leave more saves
/// them. Also what a store opening after a crash recounts at most.
pub(super) const UNSAVED_RECORDS: u64 = 20_000;
/// Day counters kept in [`DayCounters::known`] at most: a few days of every partner's.
const KNOWN_DAYS: usize = 4096;

/// Every counter summed over all days: (partner, name) → total.
pub(super) type Totals = BTreeMap<(String, String), u64>;

/// The writer's view of the day counters.
pub(super) struct DayCounters {
    /// Values committed since the store opened, by key: a batch moves the same few
    /// again and again, and adds to them here without reading the engine.
    known: HashMap<Vec<u8>, u64>,
    /// Counters moved since they were last saved, with their values now.
    unsaved: BTreeMap<Vec<u8>, u64>,
    /// The log size the saved counters count.
    saved_at: u64,
}

/// What one commit's records move.
pub(super) struct Moved {
    /// By how much each (partner, name) grows, for the totals.
    pub(super) totals: Vec<((String, String), u64)>,
    /// Each moved day counter's new value, by key.
    values: Vec<(Vec<u8>, u64)>,
    /// The commit saves every unsaved counter.
    save: bool,
}

/// Marks a store of a layout whose commits all saved their counters (or a new one) as
/// counting its whole log, durably, before this renkei commits without saving them.
pub(in crate::store) fn mark_counted(tree: &kv::Tree) -> Result<(), StoreError> {
    if tree.get(COUNTED)?.is_some() {
        return Ok(());
    }
    tree.insert(COUNTED, size(tree)?.to_be_bytes())?;
    tree.persist()
}

impl DayCounters {
    /// The counters of a log of `size` records: the saved ones, and the records past
    /// them recounted. Also returns the totals over all days.
    pub(super) fn load(
        tree: &kv::Tree,
        reader: &AuditReader<'_>,
        size: u64,
    ) -> Result<(DayCounters, Totals), StoreError> {
        let saved_at = match tree.get(COUNTED)? {
            Some(v) => be_u64(COUNTED, &v)?,
            None => size,
        };
        if saved_at > size {
            return Err(corrupt(
                COUNTED,
                format!("the counters count {saved_at} records, but the log holds {size}"),
            ));
        }
        let mut totals = Totals::new();
        for kv in tree.scan_prefix(COUNTERS) {
            let (k, v) = kv?;
            let (_, partner, name, value) = row(&k, be_u64(&k, &v)?)?;
            *totals.entry((partner, name)).or_default() += value;
        }
        let mut tail: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        if saved_at < size {
            for bytes in reader.records_from(saved_at) {
                let record = proto::AuditRecord::decode(bytes?).map_err(|e| corrupt(RECORDS, e))?;
                metrics::each_count(&record, |c| {
                    *tail
                        .entry(counter_key(c.day, c.partner, &c.name))
                        .or_default() += c.by;
                    let name = c.name.into_owned();
                    *totals.entry((c.partner.to_owned(), name)).or_default() += c.by;
                });
            }
        }
        let mut counters = DayCounters {
            known: HashMap::new(),
            unsaved: BTreeMap::new(),
            saved_at,
        };
        for (key, by) in tail {
            let saved = counters.value(tree, &key)?;
            counters.unsaved.insert(key, saved + by);
        }
        Ok((counters, totals))
    }

    /// The value of the counter at `key` now.
    fn value(&self, tree: &kv::Tree, key: &[u8]) -> Result<u64, StoreError> {
        if let Some(v) = self.unsaved.get(key).or_else(|| self.known.get(key)) {
            return Ok(*v);
        }
        match tree.get(key)? {
            Some(v) => be_u64(key, &v),
            None => Ok(0),
        }
    }

    /// What `records` move, the log then holding `size_after` records, and whether
    /// their commit is to save every unsaved counter.
    pub(super) fn moved(
        &self,
        tree: &kv::Tree,
        records: &[proto::AuditRecord],
        size_after: u64,
    ) -> Result<Moved, StoreError> {
        // A batch moves few distinct counters many times: add up borrowed names first.
        let mut counts: BTreeMap<(u32, &str, Cow<'static, str>), u64> = BTreeMap::new();
        for record in records {
            metrics::each_count(record, |c| {
                *counts.entry((c.day, c.partner, c.name)).or_default() += c.by;
            });
        }
        let mut totals = Vec::with_capacity(counts.len());
        let mut values = Vec::with_capacity(counts.len());
        for ((day, partner, name), by) in counts {
            let key = counter_key(day, partner, &name);
            totals.push(((partner.to_owned(), name.into_owned()), by));
            let now = self.value(tree, &key)? + by;
            values.push((key, now));
        }
        let save = self.unsaved.len() + values.len() > UNSAVED_KEYS
            || size_after.saturating_sub(self.saved_at) > UNSAVED_RECORDS;
        Ok(Moved {
            totals,
            values,
            save,
        })
    }

    /// Adds `moved`'s counters to its commit's `writes` if it saves them, with every
    /// counter unsaved before it.
    pub(super) fn write(&self, moved: &Moved, size_after: u64, writes: &mut kv::Batch) {
        if moved.save {
            // The commit's own values are written last: they are the newer.
            let unsaved = self.unsaved.iter().map(|(k, v)| (k, *v));
            for (key, value) in unsaved.chain(moved.values.iter().map(|(k, v)| (k, *v))) {
                writes.insert(key, value.to_be_bytes());
            }
            writes.insert(COUNTED, size_after.to_be_bytes());
        }
    }

    /// Adds every unsaved counter to `writes`, the log holding `size` records.
    pub(super) fn write_all(&self, size: u64, writes: &mut kv::Batch) {
        if self.saved_at == size {
            return;
        }
        for (key, value) in &self.unsaved {
            writes.insert(key, value.to_be_bytes());
        }
        writes.insert(COUNTED, size.to_be_bytes());
    }

    /// `moved`'s commit is in the database, the log now holding `size` records.
    pub(super) fn applied(&mut self, moved: Moved, size: u64) {
        if moved.save {
            self.saved(size);
        } else {
            self.unsaved.extend(moved.values.iter().cloned());
        }
        if self.known.len() + moved.values.len() > KNOWN_DAYS {
            self.known.clear();
        }
        self.known.extend(moved.values);
    }

    /// Every counter is saved, counting `size` records.
    pub(super) fn saved(&mut self, size: u64) {
        self.unsaved.clear();
        self.saved_at = size;
    }

    /// The unsaved counters of the days before `until_day`.
    pub(super) fn unsaved_before(&self, until_day: u32) -> Vec<(Vec<u8>, u64)> {
        let end = [COUNTERS, &until_day.to_be_bytes()[..]].concat();
        self.unsaved
            .range(..end)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// The counter rows before `until_day`: those saved in `snapshot`, and over them
/// `unsaved` (in key order), taken at the same moment.
pub(super) fn rows(
    snapshot: &kv::Snapshot,
    until_day: u32,
    unsaved: Vec<(Vec<u8>, u64)>,
) -> Result<Vec<metrics::Row>, StoreError> {
    let end = [COUNTERS, &until_day.to_be_bytes()[..]].concat();
    let mut rows = Vec::new();
    let mut unsaved = unsaved.into_iter().peekable();
    // Both in key order: merged as they are read, an unsaved value over a saved one.
    for kv in snapshot.range(COUNTERS.to_vec()..end) {
        let (k, v) = kv?;
        while let Some((key, value)) = unsaved.next_if(|(key, _)| key.as_slice() < &k[..]) {
            rows.push(row(&key, value)?);
        }
        match unsaved.next_if(|(key, _)| key.as_slice() == &k[..]) {
            Some((key, value)) => rows.push(row(&key, value)?),
            None => rows.push(row(&k, be_u64(&k, &v)?)?),
        }
    }
    for (key, value) in unsaved {
        rows.push(row(&key, value)?);
    }
    Ok(rows)
}

/// The row of the counter at `key`.
fn row(key: &[u8], value: u64) -> Result<metrics::Row, StoreError> {
    let rest = &key[COUNTERS.len().min(key.len())..];
    let parsed = rest.get(..4).and_then(|d| {
        let day = u32::from_be_bytes(d.try_into().ok()?);
        let tail = std::str::from_utf8(&rest[4..]).ok()?;
        let (partner, name) = tail.split_once('\0')?;
        Some((day, partner.to_owned(), name.to_owned()))
    });
    let (day, partner, name) = parsed.ok_or_else(|| corrupt(key, "bad counter key"))?;
    Ok((day, partner, name, value))
}

fn counter_key(day: u32, partner: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(COUNTERS.len() + 4 + partner.len() + 1 + name.len());
    k.extend_from_slice(COUNTERS);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(partner.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests;
