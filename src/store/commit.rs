//! A group commit: the bulletins, audit events and cursor moves of one batch planned
//! entry by entry (duplicates and conflicts recorded, not stored), then written to the
//! value files with the engine batch that points into them, synced once, and applied
//! to the engine (`values` says how a crash is recovered from).

use crate::store::kv;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    cursor_key, dedupe_key, encode_cursor, seq_key, withdrawn_key, Committed, Cursor, Entry,
    NewBulletin, Outcome, Store, StoreError, DEDUPE_VALUE, HEAD, SEGMENT, VALUES_END,
};
use crate::audit::record::Event;
use crate::bulletin::Digest;
use crate::identity::PartnerId;
use crate::proto;
use crate::timestamp::Timestamp;

/// What a group commit will write, built entry by entry before anything is.
struct Plan {
    /// The newest seq, counting the bulletins planned so far.
    head: u64,
    outcomes: Vec<Option<Outcome>>,
    events: Vec<Event>,
    /// Dedupe keys of the bulletins planned so far, with their seq, digest and the
    /// audit seq of their first acceptance.
    in_batch: HashMap<Vec<u8>, (u64, Digest, u64)>,
    bulletins: Vec<(proto::StoredBulletin, proto::SignedBulletin)>,
    writes: kv::Batch,
    /// Whether a cursor moves or a kept refusal changes (a commit with no record may
    /// still have to be written).
    cursors: bool,
}

impl Plan {
    fn new(head: u64, entries: usize) -> Plan {
        Plan {
            head,
            outcomes: Vec::with_capacity(entries),
            events: Vec::with_capacity(entries),
            in_batch: HashMap::new(),
            bulletins: Vec::new(),
            writes: kv::Batch::default(),
            cursors: false,
        }
    }

    /// An event to record, and the cursor it moves.
    fn event(&mut self, event: Option<Event>, cursor: Option<(PartnerId, Cursor)>) {
        if let Some((partner, cursor)) = cursor {
            self.writes
                .insert(cursor_key(&partner), encode_cursor(&cursor));
            self.cursors = true;
        }
        if let Some(w) = event.as_ref().and_then(Event::withdrawal) {
            // With the record, so no door out can read what the log says was withdrawn.
            if w.whole_queue {
                let through = self.head.to_be_bytes();
                self.writes
                    .insert(withdrawn_key(&w.partner, None), &through[..]);
            } else {
                for seq in w.seqs {
                    self.writes
                        .insert(withdrawn_key(&w.partner, Some(seq)), &b""[..]);
                }
            }
            self.cursors = true;
        }
        self.events.extend(event);
        self.outcomes.push(None);
    }
}

impl Store {
    /// Writes a group commit as one atomic batch and flushes: the new bulletins as one
    /// segment with their index entries and the new head, every entry's audit record
    /// (with its hashes, index entries and counters), and the cursors acks move.
    /// Duplicates and conflicts (against the store and within the batch) are recorded,
    /// not stored. Record times never go back, and accepted bulletins carry the same time.
    pub fn commit(&self, entries: Vec<Entry>, now: Timestamp) -> Result<Committed, StoreError> {
        let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let now = log.clock(now);
        let mut plan = Plan::new(self.head()?, entries.len());
        let first = plan.head + 1;
        for entry in entries {
            match entry {
                Entry::Event(event, cursor) => plan.event(event, cursor),
                Entry::Refused(change) => {
                    super::refused::plan(&mut plan.writes, change);
                    plan.cursors = true;
                    plan.outcomes.push(None);
                }
                Entry::Bulletin(b) => self.plan_bulletin(&mut plan, b, log.size, now)?,
            }
        }
        let Plan {
            head,
            outcomes,
            events,
            bulletins,
            mut writes,
            cursors,
            ..
        } = plan;
        let before = self.values.end();
        let (encoded, segment) = crate::wire::segment(bulletins);
        let written = (|| -> Result<_, StoreError> {
            if !segment.bulletins.is_empty() {
                let ptr = self.values.append(&encoded)?;
                writes.insert(seq_key(SEGMENT, first), &ptr.encode()[..]);
                writes.insert(HEAD, &head.to_be_bytes()[..]);
            }
            let appended = log.append(&self.state, &self.values, &mut writes, events, now)?;
            if appended.is_some() || cursors {
                self.write_ahead(writes)?;
            }
            Ok(appended)
        })();
        let appended = match written {
            Ok(appended) => appended,
            Err(e) => {
                self.values.roll_back(before);
                return Err(e);
            }
        };
        if !segment.bulletins.is_empty() && (appended.is_some() || cursors) {
            // Subscribers read it next: hand it over decoded.
            self.segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(Arc::new(segment));
        }
        if let Some(appended) = appended {
            log.applied(appended);
        }
        Ok(Committed { outcomes })
    }

    /// Makes a commit durable with one sync: its batch is appended after its values,
    /// the value files are synced, and only then is the batch applied to the engine
    /// (which must never point past what is on disk). The engine's journal is left to
    /// sync later: after a crash, the store reads the batch back from the value files.
    fn write_ahead(&self, mut writes: kv::Batch) -> Result<(), StoreError> {
        // A full disk is met here in tests: after the commit's values and records.
        #[cfg(test)]
        self.fail_if_asked()?;
        let end = self.values.append_batch(&writes.encode())?;
        if self.values.sync()? != end {
            return Err(StoreError::Corrupt {
                key: "values".into(),
                why: "the value files grew during a commit".into(),
            });
        }
        writes.insert(VALUES_END, &end.to_be_bytes()[..]);
        self.state.apply_batch(writes)
    }

    /// Fails as a full disk would, while [`Store::fail_commits`] says so.
    #[cfg(test)]
    fn fail_if_asked(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let due = self
            .fail_commits
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        match due {
            Ok(_) => Err(StoreError::Values {
                path: self.dir.clone(),
                source: std::io::ErrorKind::StorageFull.into(),
            }),
            Err(_) => Ok(()),
        }
    }

    /// Places one bulletin in the commit: a duplicate or a conflict (against the store
    /// or an earlier entry of the batch) is recorded, not stored; a new one gets the next
    /// seq, its dedupe entry and its accepted record (which follows `log_size` and the
    /// events planned so far).
    fn plan_bulletin(
        &self,
        plan: &mut Plan,
        b: NewBulletin,
        log_size: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = dedupe_key(&b.origin, &b.id);
        let earlier = match plan.in_batch.get(&key) {
            Some(&(seq, digest, _)) => Some((seq, digest)),
            None => self.lookup_key(&key)?,
        };
        if let Some((seq, existing)) = earlier {
            if existing == b.digest {
                if let Some((relay, extra)) = self.origin_adds(plan, &b, seq) {
                    let event = b.audit.clone().into_reshared(seq, &relay, &extra);
                    let b = NewBulletin {
                        shared_with: extra,
                        path: Vec::new(),
                        audit: event,
                        ..b
                    };
                    return self.plan_new(plan, b, &key, log_size, now);
                }
            }
            if existing == b.digest {
                if !b.relayed {
                    plan.events.push(b.audit.into_duplicate(seq));
                }
                plan.outcomes.push(Some(Outcome::Duplicate(seq)));
            } else {
                plan.events.push(b.audit.into_conflict(seq, existing));
                plan.outcomes
                    .push(Some(Outcome::Conflict { seq, existing }));
            }
            return Ok(());
        }
        self.plan_new(plan, b, &key, log_size, now)
    }

    /// When its origin publishes a bulletin first stored from a relay's copy (as
    /// `seq`), the relay and the partners the origin's route adds: the copy was decided
    /// as relayed (RED and AMBER+STRICT stop at a first relay), the origin's publish is
    /// not. Those already queued, on the copy's path or its sender have it.
    ///
    /// The stored copy is in this commit or read from the store; one that cannot be
    /// read leaves the publish an ordinary duplicate rather than fail the commit.
    fn origin_adds(
        &self,
        plan: &Plan,
        b: &NewBulletin,
        seq: u64,
    ) -> Option<(String, Vec<PartnerId>)> {
        if b.relayed || b.received_from != b.origin {
            return None;
        }
        let planned = plan.bulletins.iter().map(|(s, _)| s).find(|s| s.seq == seq);
        let stored = match planned {
            Some(s) => s.clone(),
            None => match self.get(seq) {
                Ok(Some(s)) => s,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(seq, error = %e, "cannot read a stored bulletin: its origin's publish is taken as a duplicate");
                    return None;
                }
            },
        };
        if stored.received_from == b.origin.as_str() {
            return None;
        }
        let has = |p: &PartnerId| {
            let p = p.as_str();
            stored.shared_with.iter().any(|s| s == p)
                || stored.path.iter().any(|s| s == p)
                || stored.received_from == p
        };
        let extra: Vec<PartnerId> = b.shared_with.iter().filter(|p| !has(p)).cloned().collect();
        (!extra.is_empty()).then_some((stored.received_from, extra))
    }

    /// Stores `b` under the next seq with its dedupe entry and its record (which follows
    /// `log_size` and the events planned so far). A reshare keeps the dedupe entry's
    /// record: the first acceptance.
    fn plan_new(
        &self,
        plan: &mut Plan,
        b: NewBulletin,
        key: &[u8],
        log_size: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        plan.head += 1;
        let head = plan.head;
        // Its accepted record is the next one sealed: the events planned so far come first.
        let first = match plan.in_batch.get(key) {
            Some(&(_, _, first)) => Some(first),
            None => self.accepted_record(key)?,
        };
        let audit_seq = first.unwrap_or(log_size + plan.events.len() as u64);
        let mut value = Vec::with_capacity(DEDUPE_VALUE);
        value.extend_from_slice(&head.to_be_bytes());
        value.extend_from_slice(&b.digest.0);
        value.extend_from_slice(&audit_seq.to_be_bytes());
        plan.writes.insert(key, value);
        plan.in_batch
            .insert(key.to_vec(), (head, b.digest, audit_seq));
        let stored = proto::StoredBulletin {
            seq: head,
            signed: Bytes::new(),
            digest: Bytes::copy_from_slice(&b.digest.0),
            origin: b.origin.into(),
            id: b.id.to_text(),
            received_from: b.received_from.into(),
            accepted_unix_ms: now.unix_ms(),
            shared_with: b.shared_with.into_iter().map(String::from).collect(),
            path: b.path.into_iter().map(String::from).collect(),
        };
        plan.bulletins.push((stored, b.signed));
        plan.events.push(b.audit.stored_as(head));
        plan.outcomes.push(Some(Outcome::Accepted(head)));
        Ok(())
    }
}
