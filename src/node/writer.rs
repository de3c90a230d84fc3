//! The storage thread: the only writer of bulletins. It takes whatever accepted
//! bulletins are waiting, commits them as one segment with one flush (group commit),
//! answers each publisher, and announces the new head to the subscribers.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{NewBulletin, Outcome, Store, StoreError};
use crate::timestamp::Timestamp;

/// One bulletin to commit and where to send the outcome.
pub(crate) struct CommitRequest {
    pub bulletin: NewBulletin,
    pub reply: oneshot::Sender<Result<Outcome, String>>,
}

/// A segment stops growing past this many bytes of bulletins, so one sled value (and
/// what a subscriber reads for one page) stays small.
const MAX_SEGMENT_BYTES: usize = 4 << 20;

/// Starts the storage thread. It ends, after committing everything already sent, when
/// every sender is dropped.
pub(crate) fn spawn(
    store: Arc<Store>,
    mut requests: mpsc::Receiver<CommitRequest>,
    head: watch::Sender<u64>,
    max_batch: usize,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("renkei-store".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(max_batch);
            while let Some(first) = requests.blocking_recv() {
                let mut bytes = first.bulletin.signed.len();
                batch.push(first);
                while batch.len() < max_batch && bytes < MAX_SEGMENT_BYTES {
                    match requests.try_recv() {
                        Ok(r) => {
                            bytes += r.bulletin.signed.len();
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
                let (bulletins, replies): (Vec<_>, Vec<_>) =
                    batch.drain(..).map(|r| (r.bulletin, r.reply)).unzip();
                match store.commit(bulletins, Timestamp::now()) {
                    Ok(outcomes) => {
                        // Wake subscribers only when something new was stored.
                        let newest = outcomes.iter().filter_map(|o| match o {
                            Outcome::Accepted(seq) => Some(*seq),
                            _ => None,
                        });
                        if let Some(h) = newest.max() {
                            head.send_replace(h);
                        }
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        let message = match &e {
                            // Visible to subscribers already; say so, and how to find out.
                            StoreError::NotDurable(_) => {
                                if let Ok(h) = store.head() {
                                    head.send_replace(h);
                                }
                                format!("{e}; publish again: DUPLICATE means it was kept")
                            }
                            _ => format!("not stored: {e}"),
                        };
                        tracing::error!(error = %e, "group commit failed");
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        })
}
