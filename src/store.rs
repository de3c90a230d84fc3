//! Durable node state: accepted bulletins, the (origin, id) index that makes
//! publishing idempotent, and each partner's delivery cursor, in a key-value engine
//! (`kv`, fjall) beside append-only value files.
//!
//! A commit's large values (its bulletin segment and audit record batch) go to the
//! value files (`values`) and the engine holds a pointer to each, so its keyspace
//! stays small and its compactions never rewrite bulletins. The value files also hold
//! each commit's engine batch and are its only sync; the engine's journal is synced
//! only where a write outside a commit asks for it ([`Store::flush`]).
//!
//! Layout: one keyspace, `state`, with prefixed keys, so that every group commit is a
//! single atomic `apply_batch`:
//!
//! | key | value |
//! | --- | --- |
//! | `m/format` | the layout's version (u64 BE), [`FORMAT`] |
//! | `m/head` | last accepted seq (u64 big-endian) |
//! | `m/values` | end of the last commit applied, in the value files (u64 BE), see `values` |
//! | `m/node`, `m/audit_key` | the node's id and checkpoint-signing public key |
//! | `s/` seq (u64 BE) | pointer to a `Segment` in the value files: the bulletins of one group commit, starting at seq |
//! | `d/` id (16 bytes) origin | seq (u64 BE) ‖ digest (32 bytes) ‖ audit seq of its acceptance (u64 BE) |
//! | `c/` partner id | `PartnerCursor` |
//!
//! plus the audit log's keys (see [`audit`]), written in the same batch as the state
//! they describe.
//!
//! A partner's queue is not stored key by key: it is every stored bulletin whose
//! `shared_with` names the partner, after its cursor. That keeps the write path at one
//! value per batch plus one index key per bulletin.
//!
//! Synchronous; the node calls writes from one storage thread. It decides nothing about
//! who receives what (that is `policy`) and never verifies signatures.

use std::collections::BTreeSet;
use std::path::Path;

use prost::Message as _;

use crate::audit::record::Event;
use crate::bulletin::{BulletinId, Digest};
use crate::identity::PartnerId;
use crate::proto;

pub mod audit;
pub mod backup;
mod checkpoints;
mod commit;
mod earlier;
mod error;
pub(crate) mod kv;
mod lock;
mod peers;
mod queue;
mod refused;
mod sled_conf;
mod values;

pub use audit::{AuditPage, AuditReader, Counted};
pub use backup::{BackupError, Manifest};
pub use error::StoreError;
pub use queue::{Page, Pending, Room};
use queue::{SegmentCache, SEGMENT_CACHE_BYTES};
pub use refused::{Refusal, RefusedChange};
use values::ValueLog;

const HEAD: &[u8] = b"m/head";
const FORMAT_KEY: &[u8] = b"m/format";
const VALUES_END: &[u8] = b"m/values";
/// Version of the database layout this renkei reads and writes. 2: large values in
/// value files, not in the engine. 3: no partial chunk of audit hashes stored. 4: full
/// chunks of audit hashes in the value files too. 5: each commit's engine batch framed
/// in the value files after its values, read back when the store opens (a renkei
/// reading layout 4 would cut off the commits its engine lost). 6: the audit log's
/// day counters saved with checkpoints, not with every commit, and `m/counted` naming
/// the log size they count (a renkei reading layout 5 would add to counters that lag).
/// Layouts 2 to 5 are read as they are and marked 6. The layout does not change with
/// the engine: an earlier renkei's sled database is moved as it is, and that renkei is
/// kept out of it after (`earlier`).
pub const FORMAT: u64 = 6;
/// The earlier layouts this renkei upgrades in place.
const FORMAT_UPGRADED: std::ops::RangeInclusive<u64> = 2..=5;
const NODE_ID: &[u8] = b"m/node";
const AUDIT_KEY: &[u8] = b"m/audit_key";
/// The partners of the configuration last put in force, one id per line: a partner
/// missing from the next one had its queue withdrawn.
const ROSTER: &[u8] = b"m/roster";
const SEGMENT: &[u8] = b"s/";
pub(crate) const DEDUPE: &[u8] = b"d/";
const CURSOR: &[u8] = b"c/";
/// Per partner (`w/ID`), the newest seq when its whole queue was last withdrawn (it
/// was removed); per partner and seq (`w/ID\0SEQ`), a bulletin withdrawn from it alone.
/// Every door out reads them, so what was withdrawn stays withdrawn for that id.
const WITHDRAWN: &[u8] = b"w/";

fn corrupt(key: &[u8], why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.into(),
    }
}

/// Refuses a database of another layout; marks a new one with this layout.
fn check_format(state: &kv::Tree) -> Result<(), StoreError> {
    match state.get(FORMAT_KEY)? {
        Some(v) if be_u64(FORMAT_KEY, &v)? == FORMAT => Ok(()),
        Some(v) if FORMAT_UPGRADED.contains(&be_u64(FORMAT_KEY, &v)?) => {
            // Durable before any commit is framed: a renkei reading the old layout
            // must not open what this one wrote.
            state.insert(FORMAT_KEY, &FORMAT.to_be_bytes()[..])?;
            state.persist()
        }
        Some(v) => Err(corrupt(
            FORMAT_KEY,
            format!(
                "layout {} is not the one this renkei reads ({FORMAT})",
                be_u64(FORMAT_KEY, &v)?
            ),
        )),
        None if state.get(HEAD)?.is_some() || state.get(audit::SIZE)?.is_some() => Err(corrupt(
            FORMAT_KEY,
            format!(
                "the database was written by an earlier renkei (layout 1); this one reads layout {FORMAT}"
            ),
        )),
        None => {
            state.insert(FORMAT_KEY, &FORMAT.to_be_bytes()[..])?;
            state.persist()
        }
    }
}

fn seq_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The id comes first, so that the audit log can find a bulletin by id alone.
fn dedupe_key(origin: &PartnerId, id: &BulletinId) -> Vec<u8> {
    let mut k = Vec::with_capacity(DEDUPE.len() + 16 + origin.as_str().len());
    k.extend_from_slice(DEDUPE);
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(origin.as_str().as_bytes());
    k
}

/// Length of a `d/` value: seq, digest, and the seq of the bulletin's accepted record.
pub(crate) const DEDUPE_VALUE: usize = 8 + 32 + 8;

fn cursor_key(partner: &PartnerId) -> Vec<u8> {
    [CURSOR, partner.as_str().as_bytes()].concat()
}

fn withdrawn_key(partner: &PartnerId, seq: Option<u64>) -> Vec<u8> {
    let mut k = [WITHDRAWN, partner.as_str().as_bytes()].concat();
    if let Some(seq) = seq {
        k.push(0);
        k.extend_from_slice(&seq.to_be_bytes());
    }
    k
}

fn encode_cursor(cursor: &Cursor) -> Vec<u8> {
    proto::PartnerCursor {
        acked_through: cursor.acked_through,
        acked_above: cursor.acked_above.iter().copied().collect(),
    }
    .encode_to_vec()
}

fn be_u64(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(key, "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

/// A verified bulletin ready to be stored, with the policy's decision already made.
#[derive(Clone, Debug)]
pub struct NewBulletin {
    /// The received `SignedBulletin`; it is stored in prost's encoding (canonical), so
    /// that a delivery can send the stored bytes as they are.
    pub signed: proto::SignedBulletin,
    /// Its digest.
    pub digest: Digest,
    /// Its origin.
    pub origin: PartnerId,
    /// Its id.
    pub id: BulletinId,
    /// The partner that handed it over.
    pub received_from: PartnerId,
    /// The partners it is shared with.
    pub shared_with: Vec<PartnerId>,
    /// The peer nodes it crossed before this one, first to last.
    pub path: Vec<PartnerId>,
    /// Forwarded by a relay: a copy of what is stored already (same digest) is
    /// acknowledged without a record. In a mesh most bulletins reach a node more than
    /// once, and such a copy changes nothing; a conflicting copy is still recorded.
    pub relayed: bool,
    /// Its audit record (accepted, with every partner's decision); the store fills in
    /// the seq, or records a duplicate or conflict instead.
    pub audit: Event,
}

/// One thing a group commit writes, with its audit record.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A bulletin to store.
    Bulletin(NewBulletin),
    /// An event to record (if any), with the delivery cursor it moves (if any).
    Event(Option<Event>, Option<(PartnerId, Cursor)>),
    /// A delivery a peer refused, kept for another try or forgotten.
    Refused(RefusedChange),
}

/// What a group commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// For each entry: what became of its bulletin (`None` for events).
    pub outcomes: Vec<Option<Outcome>>,
}

/// What a commit did with one bulletin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under this seq.
    Accepted(u64),
    /// The same (origin, id) and digest were stored before, under this seq.
    Duplicate(u64),
    /// The same (origin, id) was stored before with another digest.
    Conflict {
        /// Seq of the stored bulletin.
        seq: u64,
        /// Its digest.
        existing: Digest,
    },
}

/// A partner's delivery progress: everything shared with it up to `acked_through`
/// was acknowledged, and so were the seqs in `acked_above`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// All shared seqs up to here are acknowledged.
    pub acked_through: u64,
    /// Acknowledged seqs above `acked_through`.
    pub acked_above: BTreeSet<u64>,
}

impl Cursor {
    /// Has `seq` been acknowledged?
    pub fn is_acked(&self, seq: u64) -> bool {
        seq <= self.acked_through || self.acked_above.contains(&seq)
    }
}

/// What was withdrawn from one partner: everything up to `through` (its queue when it
/// was last removed), and the bulletins in `seqs` one by one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Every seq up to here was withdrawn (0: none).
    pub through: u64,
    /// Seqs above `through` withdrawn one by one.
    pub seqs: BTreeSet<u64>,
}

impl Withdrawn {
    /// Was `seq` withdrawn from the partner?
    pub fn covers(&self, seq: u64) -> bool {
        seq <= self.through || self.seqs.contains(&seq)
    }
}

/// The node's database.
pub struct Store {
    db: kv::Db,
    state: kv::Tree,
    /// The audit log's append state; held by the one writer for the whole commit.
    audit: std::sync::Mutex<audit::AuditState>,
    /// The audit log's hashes past its last full chunk, as readers see them.
    hash_run: std::sync::Arc<audit::SharedRun>,
    segments: std::sync::Mutex<SegmentCache>,
    values: ValueLog,
    dir: std::path::PathBuf,
    /// Commits still to fail as a full disk would (unit tests of what callers do then).
    #[cfg(test)]
    pub(crate) fail_commits: std::sync::atomic::AtomicU32,
    /// The data directory's lock, released last, after the database is closed.
    _lock: std::fs::File,
}

impl Store {
    /// Whether `dir` holds a database (this renkei's, or an earlier one's to move).
    pub fn is_in(dir: &Path) -> bool {
        dir.join(kv::DIR).exists() || dir.join("db").exists()
    }

    /// Opens (or creates) the database in `dir`. `cache_bytes` bounds the engine's
    /// block cache. A database an earlier renkei wrote with sled is moved into the
    /// engine first (`earlier`).
    ///
    /// Another process holding `dir` is reported at once, with its PID. The engine
    /// releases its own lock a moment after a handle of this process is dropped, so
    /// that conflict is retried for a few seconds.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let lock = lock::lock_dir(dir)?;
        let (db, _) = earlier::open_moving(dir, cache_bytes, lock::LOCK_PATIENCE)?;
        // The entries of the files the engine and the value log created must survive too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::File {
                path: dir.to_owned(),
                source: e,
            })?;
        let state = db.tree("state")?;
        check_format(&state)?;
        let committed = match state.get(VALUES_END)? {
            Some(v) => be_u64(VALUES_END, &v)?,
            None => 0,
        };
        let (values, replays) = ValueLog::open(dir, committed)?;
        apply_again(&db, &state, replays)?;
        audit::upgrade_index(&state, &values)?;
        audit::mark_counted(&state)?;
        let audit = audit::AuditState::load(&state, &values)?;
        let hash_run = audit.shared();
        let audit = std::sync::Mutex::new(audit);
        let segments = std::sync::Mutex::new(SegmentCache::new(SEGMENT_CACHE_BYTES));
        let store = Store {
            db,
            state,
            audit,
            hash_run,
            segments,
            values,
            dir: dir.to_owned(),
            #[cfg(test)]
            fail_commits: Default::default(),
            _lock: lock,
        };
        store.check_head()?;
        Ok(store)
    }

    /// Refuses a database whose head does not match its last segment.
    fn check_head(&self) -> Result<(), StoreError> {
        let head = self.head()?;
        let last = match self.state.scan_prefix(SEGMENT).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let seg = proto::Segment::decode(&*self.values.resolve(&k, &v)?)
                    .map_err(|e| corrupt(&k, e))?;
                seg.bulletins
                    .last()
                    .map(|b| b.seq)
                    .ok_or_else(|| corrupt(&k, "empty segment"))?
            }
            None => 0,
        };
        if last != head {
            return Err(corrupt(
                HEAD,
                format!("head is {head} but the last stored bulletin is {last}"),
            ));
        }
        Ok(())
    }

    /// The last accepted seq (0 when none).
    pub fn head(&self) -> Result<u64, StoreError> {
        match self.state.get(HEAD)? {
            Some(v) => be_u64(HEAD, &v),
            None => Ok(0),
        }
    }

    /// Where (origin, id) is stored, with its digest.
    pub fn lookup(
        &self,
        origin: &PartnerId,
        id: &BulletinId,
    ) -> Result<Option<(u64, Digest)>, StoreError> {
        self.lookup_key(&dedupe_key(origin, id))
    }

    /// [`Store::lookup`] by the index key.
    fn lookup_key(&self, key: &[u8]) -> Result<Option<(u64, Digest)>, StoreError> {
        match self.state.get(key)? {
            None => Ok(None),
            Some(v) if v.len() == DEDUPE_VALUE => {
                let seq = be_u64(key, &v[..8])?;
                let mut d = [0u8; 32];
                d.copy_from_slice(&v[8..40]);
                Ok(Some((seq, Digest(d))))
            }
            Some(_) => Err(corrupt(key, "index entry is not 48 bytes")),
        }
    }

    /// The audit seq of the accepted record a dedupe entry names, if the entry exists.
    fn accepted_record(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        match self.state.get(key)? {
            None => Ok(None),
            Some(v) if v.len() == DEDUPE_VALUE => Ok(Some(be_u64(key, &v[40..])?)),
            Some(_) => Err(corrupt(key, "index entry is not 48 bytes")),
        }
    }

    /// Records in the audit log, and how many the last checkpoint covers.
    pub fn audit_progress(&self) -> (u64, u64) {
        let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        (log.size, log.checkpointed)
    }

    /// Records who keeps this database and the key that signs its audit checkpoints, so
    /// an export from a stopped node's data directory can name them.
    pub fn set_identity(
        &self,
        node: &PartnerId,
        audit_key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), StoreError> {
        let mut writes = kv::Batch::default();
        writes.insert(NODE_ID, node.as_str().as_bytes());
        writes.insert(AUDIT_KEY, &audit_key.as_bytes()[..]);
        self.state.apply_batch(writes)?;
        self.flush_durably()?;
        Ok(())
    }

    /// The node id and audit key recorded by [`Store::set_identity`].
    pub fn identity(&self) -> Result<Option<(PartnerId, ed25519_dalek::VerifyingKey)>, StoreError> {
        let (Some(id), Some(key)) = (self.state.get(NODE_ID)?, self.state.get(AUDIT_KEY)?) else {
            return Ok(None);
        };
        let id = std::str::from_utf8(&id)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(NODE_ID, "not a partner id"))?;
        let key = <[u8; 32]>::try_from(&key[..])
            .ok()
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| corrupt(AUDIT_KEY, "not an Ed25519 public key"))?;
        Ok(Some((id, key)))
    }

    /// The partners of the configuration last put in force ([`Store::set_roster`]).
    pub fn roster(&self) -> Result<Vec<PartnerId>, StoreError> {
        let Some(v) = self.state.get(ROSTER)? else {
            return Ok(Vec::new());
        };
        let text = std::str::from_utf8(&v).map_err(|e| corrupt(ROSTER, e))?;
        text.lines()
            .map(|id| id.parse().map_err(|e| corrupt(ROSTER, format!("{e}"))))
            .collect()
    }

    /// Records the partners of the configuration now in force, durably.
    pub fn set_roster(&self, partners: &[PartnerId]) -> Result<(), StoreError> {
        let text: Vec<&str> = partners.iter().map(|p| p.as_str()).collect();
        self.state.insert(ROSTER, text.join("\n").as_bytes())?;
        self.flush_durably()?;
        Ok(())
    }

    /// Every metric counter summed over all days, (partner, name) → total: what a
    /// monitoring scrape reads, without touching the database.
    pub fn counter_totals(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        log.totals.clone()
    }

    /// The counters of one partner, summed over days: (partner, name) → total.
    pub fn partner_totals(
        &self,
        partner: &PartnerId,
    ) -> std::collections::BTreeMap<(String, String), u64> {
        let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let name = partner.as_str();
        log.totals
            .range((name.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == name)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Reads the audit log.
    pub fn audit(&self) -> AuditReader<'_> {
        AuditReader {
            tree: &self.state,
            values: &self.values,
            run: &self.hash_run,
        }
    }

    /// The partner's saved cursor (all zero for a partner never seen).
    pub fn cursor(&self, partner: &PartnerId) -> Result<Cursor, StoreError> {
        let key = cursor_key(partner);
        match self.state.get(&key)? {
            None => Ok(Cursor::default()),
            Some(v) => {
                let c = proto::PartnerCursor::decode(&*v).map_err(|e| corrupt(&key, e))?;
                Ok(Cursor {
                    acked_through: c.acked_through,
                    acked_above: c.acked_above.into_iter().collect(),
                })
            }
        }
    }

    /// What was withdrawn from `partner` (see [`Withdrawn`]).
    pub fn withdrawn(&self, partner: &PartnerId) -> Result<Withdrawn, StoreError> {
        let mut w = Withdrawn::default();
        let whole = withdrawn_key(partner, None);
        if let Some(v) = self.state.get(&whole)? {
            w.through = be_u64(&whole, &v)?;
        }
        let mut one = whole.clone();
        one.push(0);
        for entry in self.state.scan_prefix(&one) {
            let (k, _) = entry?;
            w.seqs.insert(be_u64(&k, &k[one.len()..])?);
        }
        Ok(w)
    }

    /// Makes every write so far survive a crash of the process, of the OS or of power.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_durably()
    }

    /// Makes every batch applied so far survive a power cut: the engine's journal is
    /// fsynced. (A commit needs none: its batch is synced in the value files, which
    /// are read back when the store opens.)
    pub(crate) fn flush_durably(&self) -> Result<(), StoreError> {
        self.db.persist()
    }
}

/// Applies again, in order, the commits the engine lost and the value files kept, each
/// with the end of its frame, then makes the engine durable: an open store's engine
/// holds every synced commit.
fn apply_again(
    db: &kv::Db,
    state: &kv::Tree,
    replays: Vec<values::Replay>,
) -> Result<(), StoreError> {
    if replays.is_empty() {
        return Ok(());
    }
    let (count, end) = (replays.len(), replays.last().map_or(0, |r| r.end));
    for replay in replays {
        let mut batch = kv::Batch::decode(&replay.batch).ok_or_else(|| {
            corrupt(
                VALUES_END,
                format!(
                    "the commit ending at byte {} of the value files is not an engine batch",
                    replay.end
                ),
            )
        })?;
        batch.insert(VALUES_END, replay.end.to_be_bytes());
        state.apply_batch(batch)?;
    }
    db.persist()?;
    tracing::info!(
        commits = count,
        end,
        "applied again the commits the engine had not kept"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
