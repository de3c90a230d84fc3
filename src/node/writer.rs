//! The storage thread: the only writer of the database. It takes whatever bulletins and
//! audit events are waiting, commits them as one batch with one flush (group commit),
//! answers each sender, announces the new head to the subscribers, and signs audit
//! checkpoints every N records, on a timer tick, on demand and when it stops.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::record::Event;
use crate::identity::PartnerId;
use crate::metrics::prometheus::DurationHistogram;
use crate::store::{Cursor, Entry, Manifest, NewBulletin, Outcome, Store, StoreError};
use crate::timestamp::Timestamp;

/// One thing for the storage thread to do.
pub(crate) enum Request {
    /// Store a bulletin; the outcome goes back once it is durable.
    Bulletin {
        bulletin: NewBulletin,
        reply: oneshot::Sender<Result<Outcome, String>>,
    },
    /// Record an event and/or move a cursor; `done` hears when it is durable.
    Event {
        event: Option<Event>,
        cursor: Option<(PartnerId, Cursor)>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Sign a checkpoint if the log grew since the last; `reply` hears the size.
    Checkpoint {
        reply: Option<oneshot::Sender<Result<Option<u64>, String>>>,
    },
    /// Copy the database into the new directory `out`, after committing what came
    /// before and signing a checkpoint, so the copy ends on a signed log.
    Backup {
        out: std::path::PathBuf,
        taken_at: String,
        reply: oneshot::Sender<Result<Manifest, String>>,
    },
}

impl Request {
    fn bytes(&self) -> usize {
        match self {
            Request::Bulletin { bulletin, .. } => prost::Message::encoded_len(&bulletin.signed),
            _ => 0,
        }
    }
}

/// A segment stops growing past this many bytes of bulletins, so one sled value (and
/// what a subscriber reads for one page) stays small.
const MAX_SEGMENT_BYTES: usize = 4 << 20;

/// What the storage thread needs besides its queue.
pub(crate) struct Writer {
    pub store: Arc<Store>,
    pub head: watch::Sender<u64>,
    pub max_batch: usize,
    pub signer: CheckpointSigner,
    pub checkpoint_every: u64,
    /// How long each group commit takes, for monitoring.
    pub commit_latency: Arc<DurationHistogram>,
}

enum Reply {
    Bulletin(oneshot::Sender<Result<Outcome, String>>),
    Event(Option<oneshot::Sender<Result<(), String>>>),
}

/// Starts the storage thread. It ends, after committing everything already sent and
/// signing a last checkpoint, when every sender is dropped.
pub(crate) fn spawn(
    w: Writer,
    mut requests: mpsc::Receiver<Request>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("renkei-store".into())
        .spawn(move || {
            let mut checkpoints = Vec::new();
            let mut backups = Vec::new();
            while let Some(first) = requests.blocking_recv() {
                let mut entries = Vec::with_capacity(w.max_batch);
                let mut replies = Vec::with_capacity(w.max_batch);
                let mut bytes = 0;
                let mut next = Some(first);
                while let Some(r) = next.take() {
                    bytes += r.bytes();
                    match r {
                        Request::Bulletin { bulletin, reply } => {
                            entries.push(Entry::Bulletin(bulletin));
                            replies.push(Reply::Bulletin(reply));
                        }
                        Request::Event {
                            event,
                            cursor,
                            done,
                        } => {
                            entries.push(Entry::Event(event, cursor));
                            replies.push(Reply::Event(done));
                        }
                        Request::Checkpoint { reply } => checkpoints.push(reply),
                        Request::Backup {
                            out,
                            taken_at,
                            reply,
                        } => backups.push((out, taken_at, reply)),
                    }
                    // A backup covers exactly what was sent before it.
                    if backups.is_empty()
                        && entries.len() < w.max_batch
                        && bytes < MAX_SEGMENT_BYTES
                    {
                        next = requests.try_recv().ok();
                    }
                }
                if !entries.is_empty() {
                    commit(&w, entries, replies);
                }
                let (size, signed) = w.store.audit_progress();
                if !checkpoints.is_empty()
                    || !backups.is_empty()
                    || size >= signed.saturating_add(w.checkpoint_every)
                {
                    let result = w.store.sign_checkpoint(&w.signer);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "cannot sign an audit checkpoint");
                    }
                    for reply in checkpoints.drain(..).flatten() {
                        let _ = reply.send(result.as_ref().map(|s| *s).map_err(|e| e.to_string()));
                    }
                }
                for (out, taken_at, reply) in backups.drain(..) {
                    // Everything waits while the copy runs: that is what makes it consistent.
                    let started = std::time::Instant::now();
                    let result = match w.store.audit_progress() {
                        (size, signed) if size != signed => {
                            Err(crate::store::BackupError::Unsigned(size - signed))
                        }
                        _ => w.store.backup_to(&out, taken_at),
                    };
                    match &result {
                        Ok(m) => tracing::info!(out = %out.display(), keys = m.keys, records = m.audit_records, took = ?started.elapsed(), "backup taken"),
                        Err(e) => tracing::error!(out = %out.display(), error = %e, "backup failed"),
                    }
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
            }
            if let Err(e) = w.store.sign_checkpoint(&w.signer) {
                tracing::error!(error = %e, "cannot sign the last audit checkpoint");
            }
        })
}

fn commit(w: &Writer, entries: Vec<Entry>, replies: Vec<Reply>) {
    let started = std::time::Instant::now();
    let committed = w.store.commit(entries, Timestamp::now());
    let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    w.commit_latency.observe(took);
    match committed {
        Ok(done) => {
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
                    (Reply::Bulletin(tx), Some(o)) => {
                        let _ = tx.send(Ok(o));
                    }
                    (Reply::Event(Some(tx)), _) => {
                        let _ = tx.send(Ok(()));
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            let message = match &e {
                // Visible to subscribers already; say so, and how to find out.
                StoreError::NotDurable(_) => {
                    if let Ok(h) = w.store.head() {
                        w.head.send_replace(h);
                    }
                    format!("{e}; publish again: DUPLICATE means it was kept")
                }
                _ => format!("not stored: {e}"),
            };
            tracing::error!(error = %e, "group commit failed");
            for reply in replies {
                match reply {
                    Reply::Bulletin(tx) => {
                        let _ = tx.send(Err(message.clone()));
                    }
                    Reply::Event(Some(tx)) => {
                        let _ = tx.send(Err(message.clone()));
                    }
                    Reply::Event(None) => {}
                }
            }
        }
    }
}
