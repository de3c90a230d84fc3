//! The storage thread: the only writer of the database. It takes whatever bulletins and
//! audit events are waiting, commits them as one batch with one flush (group commit),
//! answers each sender, announces the new head to the subscribers, and signs audit
//! checkpoints every N records, on a timer tick, on demand and when it stops. Records
//! nobody waits on wait a little for a commit someone does, to share its flush.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::record::Event;
use crate::identity::PartnerId;
use crate::metrics::prometheus::DurationHistogram;
use crate::store::{BackupError, Cursor, Entry, Manifest, NewBulletin, Outcome, Store, StoreError};
use crate::timestamp::Timestamp;

use super::space::{self, Admit, SpaceGauge, SpaceGuard};

mod pace;
mod staging;

/// Why the storage thread could not do what it was asked, in the terms its callers act
/// on. [`StorageError::code`] and [`StorageError::to_peer`] are the one place that
/// decides what a peer hears of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The storage thread has stopped: the node is stopping.
    #[error("the storage thread has stopped")]
    Stopped,
    /// Written and visible, but the flush to disk failed: it may not survive a crash.
    #[error("stored, but not durable: {0}")]
    NotDurable(Cause),
    /// The data directory's filesystem is full: nothing was stored.
    #[error("not stored, the disk is full: {0}")]
    Full(Cause),
    /// The database refused the write (an I/O error).
    #[error("not stored: {0}")]
    Failed(Cause),
    /// The database contradicts itself.
    #[error("not stored: {0}")]
    Corrupt(Cause),
}

/// What failed underneath a [`StorageError`], kept whole (with its sources) for the
/// node's log, and shared by every caller one failed commit answers.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Of any error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(e))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are the same when they say the same (what tests of a failure compare).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// The disk's free space fell below the reserve kept for the audit log.
#[derive(Debug, thiserror::Error)]
#[error("{free} bytes free, below the reserve of {reserve} bytes")]
pub struct BelowReserve {
    free: u64,
    reserve: u64,
}

/// A task reading the database on the blocking pool panicked or was cancelled: that
/// says nothing about the database.
#[derive(Debug, thiserror::Error)]
#[error("the task reading the queue failed: {0}")]
pub struct ReadTaskFailed(#[from] tokio::task::JoinError);

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        StorageError::of(e)
    }
}

impl From<tokio::task::JoinError> for StorageError {
    fn from(e: tokio::task::JoinError) -> Self {
        StorageError::Failed(Cause::new(ReadTaskFailed(e)))
    }
}

impl StorageError {
    /// The storage error a store failure is to callers.
    fn of(e: StoreError) -> StorageError {
        match &e {
            StoreError::NotDurable(_) => StorageError::NotDurable(Cause::new(e)),
            StoreError::Corrupt { .. } => StorageError::Corrupt(Cause::new(e)),
            _ if e.is_disk_full() => StorageError::Full(Cause::new(e)),
            _ => StorageError::Failed(Cause::new(e)),
        }
    }

    /// The wire code a peer hears.
    pub fn code(&self) -> crate::proto::ErrorCode {
        match self {
            StorageError::Stopped => crate::proto::ErrorCode::ShuttingDown,
            StorageError::Full(_) => crate::proto::ErrorCode::StorageFull,
            _ => crate::proto::ErrorCode::Internal,
        }
    }

    /// What a peer hears: what to do next, not the node's internals (its operator
    /// reads those in the node's log).
    pub fn to_peer(&self) -> String {
        match self {
            StorageError::Stopped => "the node is stopping; publish again later".into(),
            StorageError::NotDurable(_) => "the node stored it but could not flush it to disk; publish again: DUPLICATE means it was kept".into(),
            StorageError::Full(_) => "the node's disk is full and nothing was stored; publish again later (the node resumes by itself when its operator frees space)".into(),
            StorageError::Failed(_) | StorageError::Corrupt(_) => "the node could not store it (its operator finds why in the node's log); publish again later".into(),
        }
    }
}

/// One thing for the storage thread to do.
pub(crate) enum Request {
    /// Store a bulletin; the outcome goes back once it is durable.
    Bulletin {
        bulletin: NewBulletin,
        reply: oneshot::Sender<Result<Outcome, StorageError>>,
        /// Its publisher's place at the storage thread, given back once answered.
        slot: Option<super::fair::Slot>,
    },
    /// Record an event and/or move a cursor; `done` hears when it is durable.
    Event {
        event: Option<Event>,
        cursor: Option<(PartnerId, Cursor)>,
        done: Option<oneshot::Sender<Result<(), StorageError>>>,
    },
    /// Keep or forget a delivery a peer refused, durable with the records after it.
    Refused(crate::store::RefusedChange),
    /// Sign a checkpoint if the log grew since the last; `reply` hears the size.
    Checkpoint {
        reply: Option<oneshot::Sender<Result<Option<u64>, StorageError>>>,
    },
    /// Copy the database into the new directory `out`, after committing what came
    /// before and signing a checkpoint, so the copy ends on a signed log.
    Backup {
        out: std::path::PathBuf,
        taken_at: String,
        reply: oneshot::Sender<Result<Manifest, BackupError>>,
    },
}

impl Request {
    /// Whether someone waits to hear it is durable.
    fn is_awaited(&self) -> bool {
        match self {
            Request::Bulletin { .. } | Request::Backup { .. } => true,
            Request::Event { done, .. } => done.is_some(),
            Request::Checkpoint { reply } => reply.is_some(),
            Request::Refused(_) => false,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Request::Bulletin { bulletin, .. } => prost::Message::encoded_len(&bulletin.signed),
            _ => 0,
        }
    }
}

/// A segment stops growing past this many bytes of bulletins, so one stored value (and
/// what a subscriber reads for one page) stays small.
const MAX_SEGMENT_BYTES: usize = 4 << 20;

/// What the storage thread needs besides its queue.
pub(crate) struct Writer {
    pub store: Arc<Store>,
    pub head: watch::Sender<u64>,
    pub max_batch: usize,
    /// How long a group commit should take: the next ones are sized to it.
    pub commit_target: std::time::Duration,
    pub signer: CheckpointSigner,
    pub checkpoint_every: u64,
    /// How long each group commit takes, for monitoring.
    pub commit_latency: Arc<DurationHistogram>,
    /// The node, named in the record of a gap.
    pub node: PartnerId,
    /// The data directory, whose filesystem's free space is measured before each commit.
    pub data_dir: std::path::PathBuf,
    /// Free space kept for the database: below it new bulletins are refused.
    pub reserve: u64,
    /// The last measurement, for `/metrics`.
    pub space: Arc<SpaceGauge>,
}

/// Audit events a failed group commit could not record, waiting to be named by a gap
/// record in the next commit that succeeds.
#[derive(Default)]
struct Lost {
    events: u64,
    why: Option<String>,
}

impl Lost {
    /// The gap's record, if anything was lost.
    fn record(&self, node: &PartnerId) -> Option<Event> {
        let why = self.why.as_deref()?;
        Some(Event::operator(
            node,
            &format!(
                "GAP: {} audit event(s) could not be recorded because a group commit failed ({why}); the records before and after this one are intact",
                self.events
            ),
        ))
    }
}

/// Who waits for an entry of a group commit, and how to tell them.
enum Waiter {
    Bulletin(oneshot::Sender<Result<Outcome, StorageError>>),
    Event(Option<oneshot::Sender<Result<(), StorageError>>>),
}

/// Starts the storage thread. It ends, after committing everything already sent and
/// signing a last checkpoint, when every sender is dropped.
pub(crate) fn spawn(
    w: Writer,
    requests: mpsc::Receiver<Request>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("renkei-store".into())
        .spawn(move || run(w, requests))
}

/// How long records nobody waits on (deliveries, acks, withdrawals, link events) wait
/// for a commit that someone waits on, to go in its flush rather than one of their own.
/// They were never waited on: a crash within it loses them as it would have lost them
/// on their way to a flush, and the deliveries and acks they record come again.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Records nobody waits on lingering together are committed at once past this many.
const LINGER_MOST: usize = 4096;

/// Takes requests into `waiting` until one that someone waits on comes, [`LINGER`]
/// passes, enough are waiting, or every sender is gone.
fn linger(
    timer: &tokio::runtime::Runtime,
    requests: &mut mpsc::Receiver<Request>,
    waiting: &mut staging::Staging,
) {
    let until = std::time::Instant::now() + LINGER;
    while !waiting.awaited() && waiting.len() < LINGER_MOST {
        // The timeout is made inside, where the thread's timer is the current one.
        let next = async { tokio::time::timeout_at(until.into(), requests.recv()).await };
        match timer.block_on(next) {
            Ok(Some(r)) => waiting.push(r),
            Ok(None) | Err(_) => return,
        }
    }
}

/// A timer of the storage thread's own to let records nobody waits on linger: it does
/// not depend on the node's runtime, which may be going away while the thread ends.
fn own_timer() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
}

/// The storage thread: whatever waits is taken off the channel into the waiting room
/// (fair between partners), and each turn commits one group from it.
fn run(w: Writer, mut requests: mpsc::Receiver<Request>) {
    let timer = own_timer().ok();
    let mut waiting = staging::Staging::default();
    let mut lost = Lost::default();
    let mut guard = SpaceGuard::new(w.reserve);
    let mut pace = pace::Pace::new(w.commit_target, w.max_batch);
    loop {
        if waiting.is_empty() {
            match requests.blocking_recv() {
                Some(r) => waiting.push(r),
                None => break,
            }
        }
        while let Ok(r) = requests.try_recv() {
            waiting.push(r);
        }
        if let Some(timer) = timer.as_ref().filter(|_| !waiting.awaited()) {
            linger(timer, &mut requests, &mut waiting);
        }
        let group = waiting.take(pace.limit(), MAX_SEGMENT_BYTES);
        let bulletins = group
            .iter()
            .filter(|r| matches!(r, Request::Bulletin { .. }))
            .count();
        if let Some(took) = commit_group(&w, group, &mut guard, &mut lost) {
            pace.committed(bulletins, took, waiting.sparse());
        }
    }
    if let Err(e) = w.store.sign_checkpoint(&w.signer) {
        tracing::error!(error = %e, "cannot sign the last audit checkpoint");
    }
}

/// Commits one group of requests with one flush, answers each, then signs a
/// checkpoint if one is asked for or due, and takes the backups asked for. Returns how
/// long the commit itself took (not the checkpoint or the backups), if there was one.
fn commit_group(
    w: &Writer,
    group: Vec<Request>,
    guard: &mut SpaceGuard,
    lost: &mut Lost,
) -> Option<std::time::Duration> {
    let mut entries = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let (mut checkpoints, mut backups, mut slots) = (Vec::new(), Vec::new(), Vec::new());
    for r in group {
        match r {
            Request::Bulletin {
                bulletin,
                reply,
                slot,
            } => {
                entries.push(Entry::Bulletin(bulletin));
                replies.push(Waiter::Bulletin(reply));
                slots.push(slot);
            }
            Request::Event {
                event,
                cursor,
                done,
            } => {
                entries.push(Entry::Event(event, cursor));
                replies.push(Waiter::Event(done));
            }
            Request::Refused(change) => {
                entries.push(Entry::Refused(change));
                replies.push(Waiter::Event(None));
            }
            Request::Checkpoint { reply } => checkpoints.push(reply),
            Request::Backup {
                out,
                taken_at,
                reply,
            } => backups.push((out, taken_at, reply)),
        }
    }
    if !entries.is_empty() {
        make_room(w, guard, &mut entries, &mut replies, lost);
    }
    let took = (!entries.is_empty()).then(|| {
        let started = std::time::Instant::now();
        commit(w, entries, replies, lost);
        started.elapsed()
    });
    drop(slots);
    let (size, signed) = w.store.audit_progress();
    if !checkpoints.is_empty()
        || !backups.is_empty()
        || size >= signed.saturating_add(w.checkpoint_every)
    {
        let result = w.store.sign_checkpoint(&w.signer);
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot sign an audit checkpoint");
        }
        let result = result.map_err(StorageError::of);
        for reply in checkpoints.into_iter().flatten() {
            let _ = reply.send(result.clone());
        }
    }
    for (out, taken_at, reply) in backups {
        take_backup(w, &out, taken_at, reply);
    }
    took
}

/// Copies the database into `out` for a backup request and answers it. Everything
/// waits while the copy runs: that is what makes it consistent.
fn take_backup(
    w: &Writer,
    out: &std::path::Path,
    taken_at: String,
    reply: oneshot::Sender<Result<Manifest, BackupError>>,
) {
    let started = std::time::Instant::now();
    let result = match w.store.audit_progress() {
        (size, signed) if size != signed => Err(BackupError::Unsigned(size - signed)),
        _ => w.store.backup_to(out, taken_at, &w.signer),
    };
    match &result {
        Ok(m) => {
            tracing::info!(out = %out.display(), keys = m.keys, records = m.audit_records, took = ?started.elapsed(), "backup taken")
        }
        Err(e) => tracing::error!(out = %out.display(), error = %e, "backup failed"),
    }
    let _ = reply.send(result);
}

/// Measures the free space and keeps out of the batch what the guard does not admit:
/// new bulletins while the disk is full (answered `STORAGE_FULL`, counted, not
/// recorded one by one), and everything in the last quarter of the reserve (counted
/// as lost events for the gap record). A change of state is recorded at the head of
/// the batch.
fn make_room(
    w: &Writer,
    guard: &mut SpaceGuard,
    entries: &mut Vec<Entry>,
    replies: &mut Vec<Waiter>,
    lost: &mut Lost,
) {
    let free = match space::free_bytes(&w.data_dir) {
        Ok(free) => {
            guard.measured(true);
            free
        }
        Err(e) => {
            if guard.measured(false) {
                tracing::warn!(error = %e, dir = %w.data_dir.display(), "cannot measure the free space of the data directory; the last measurement stands");
            }
            // The last decision stands: a disk that was full is not taken as empty.
            match guard.last() {
                Some(free) => free,
                None => return,
            }
        }
    };
    if let Some(change) = guard.observe(free) {
        let text = change.describe(guard.resume_at());
        tracing::warn!("{text}");
        entries.insert(0, Entry::Event(Some(Event::operator(&w.node, &text)), None));
        replies.insert(0, Waiter::Event(None));
    }
    w.space.set(free, guard.is_full());
    let admit = guard.admit(free);
    if admit == Admit::All {
        return;
    }
    let full = StorageError::Full(Cause::new(BelowReserve {
        free,
        reserve: w.reserve,
    }));
    let mut kept = (Vec::new(), Vec::new());
    for (entry, reply) in entries.drain(..).zip(replies.drain(..)) {
        match (entry, reply, admit) {
            (Entry::Bulletin(_), Waiter::Bulletin(tx), _) => {
                guard.refused(1);
                let _ = tx.send(Err(full.clone()));
            }
            (entry, Waiter::Event(done), Admit::Nothing) => {
                if matches!(entry, Entry::Event(Some(_), _)) {
                    lost.events += 1;
                    lost.why = Some(full.to_string());
                }
                if let Some(tx) = done {
                    let _ = tx.send(Err(full.clone()));
                }
            }
            (entry, reply, _) => {
                kept.0.push(entry);
                kept.1.push(reply);
            }
        }
    }
    (*entries, *replies) = kept;
}

/// Commits one batch and answers its senders. Events a failed commit could not record
/// are counted in `lost` and named by a gap record at the head of the next commit that
/// succeeds, so the log shows that something is missing rather than hiding it.
fn commit(w: &Writer, mut entries: Vec<Entry>, mut replies: Vec<Waiter>, lost: &mut Lost) {
    let gap = lost.record(&w.node);
    let with_gap = gap.is_some();
    if with_gap {
        entries.insert(0, Entry::Event(gap, None));
        replies.insert(0, Waiter::Event(None));
    }
    // What this batch would lose if it failed: its events, not counting the gap record.
    let events = entries
        .iter()
        .filter(|e| matches!(e, Entry::Event(Some(_), _)))
        .count() as u64
        - u64::from(with_gap);
    let started = std::time::Instant::now();
    let committed = w.store.commit(entries, Timestamp::now());
    let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    w.commit_latency.observe(took);
    match committed {
        Ok(done) => {
            *lost = Lost::default();
            // Wake subscribers only when something new was stored.
            let newest = done.outcomes.iter().filter_map(|o| match o {
                Some(Outcome::Accepted(seq)) => Some(*seq),
                _ => None,
            });
            if let Some(h) = newest.max() {
                w.head.send_replace(h);
            }
            for (reply, outcome) in replies.into_iter().zip(done.outcomes) {
                match (reply, outcome) {
                    (Waiter::Bulletin(tx), Some(o)) => {
                        let _ = tx.send(Ok(o));
                    }
                    (Waiter::Event(Some(tx)), _) => {
                        let _ = tx.send(Ok(()));
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            lost.events += events;
            lost.why = Some(e.to_string());
            tracing::error!(error = %e, lost = lost.events, "group commit failed: its audit events are counted and a GAP record will name them");
            // No subscriber can have any of it: a failed commit is cut off the value
            // files, and its batch never reached the engine.
            let failure = StorageError::of(e);
            for reply in replies {
                match reply {
                    Waiter::Bulletin(tx) => {
                        let _ = tx.send(Err(failure.clone()));
                    }
                    Waiter::Event(Some(tx)) => {
                        let _ = tx.send(Err(failure.clone()));
                    }
                    Waiter::Event(None) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
