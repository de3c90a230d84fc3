//! A publish stream: pipelined `Publish` frames in, one `PublishResult` per frame out,
//! in order. One task reads the frames; another verifies and decides them in batches of
//! whatever arrived meanwhile (the signatures checked together), then hands each
//! bulletin to the storage thread; a result is sent only once its commit is durable.
//! Reading goes on while earlier bulletins are verified and committed, so one stream
//! feeds a whole group commit.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::budget::{Held, StreamBudget};
use super::shared::Shared;
use super::shared::{ConnectionBook, RuleSet, Rules, StorageHandle, Trail};
use super::writer::{Request, StorageError};
use crate::audit::record::Event;
use crate::identity::{Partner, PartnerId, Role};
use crate::proto::{self, ErrorCode};
use crate::store::{NewBulletin, Outcome};
use crate::timestamp::Timestamp;
use crate::transport::{self, FrameReader};

pub(super) mod decide;
mod result;
use decide::Rejection;
use result::{reject_identified, rejected, Answer};

/// What taking bulletins in uses of the node: the rules and the gate that orders
/// decisions with reloads, the trail refusals go on, the storage thread, the book's
/// fair turns and frame counts, the bulletin limits, and the stop signal.
#[derive(Clone)]
pub(crate) struct Intake {
    pub rules: Arc<Rules>,
    pub trail: Arc<Trail>,
    pub storage: Arc<StorageHandle>,
    pub book: Arc<ConnectionBook>,
    pub limits: crate::bulletin::Limits,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Intake {
    /// The running node's.
    pub(crate) fn of(shared: &Shared) -> Intake {
        Intake {
            rules: shared.rules.clone(),
            trail: shared.trail.clone(),
            storage: shared.storage.clone(),
            book: shared.book.clone(),
            limits: shared.limits.bulletin,
            shutdown: shared.shutdown.clone(),
        }
    }

    /// Runs `decide` on the rules in force, in `from`'s turn at verifying (the node's
    /// shared work, `fair::Turn`), and hands back the publish gate with what it came
    /// to: held until its bulletins are queued, so a reload (`Rules::gate`) cannot put
    /// other rules in force between a decision and its queueing. The steps every door
    /// that takes bulletins in (QUIC, peers, the TAXII and MISP inboxes) takes.
    pub(crate) async fn decided<T>(
        &self,
        from: &PartnerId,
        decide: impl FnOnce(&RuleSet) -> T,
    ) -> (T, tokio::sync::RwLockReadGuard<'_, ()>) {
        let gate = self.rules.gate.read().await;
        let rules = self.rules.in_force();
        let _turn = self.book.fair.turn(from).await;
        (decide(&rules), gate)
    }

    /// Queues `bulletin` for the storage thread in `from`'s place among the partners
    /// waiting (`fair::Slot`); its commit's answer, or `None` if the storage thread
    /// has stopped.
    pub(crate) async fn queue(
        &self,
        from: &PartnerId,
        bulletin: NewBulletin,
    ) -> Option<oneshot::Receiver<Result<Outcome, StorageError>>> {
        let (reply, answer) = oneshot::channel();
        let slot = self.book.fair.slot(from).await;
        let request = Request::Bulletin {
            bulletin,
            reply,
            slot,
        };
        self.storage.commits.send(request).await.ok()?;
        Some(answer)
    }
}

/// Results waiting to be written, in request order.
const PIPELINE: usize = 1024;

/// A reply waiting for the responder, with the room its publish holds in the budgets.
type Queued = (Pending, Option<Held>);

/// A publish's result, ready or waiting for its commit.
enum Pending {
    /// Known now (a rejection).
    Ready(proto::PublishResult),
    /// Accepted by verification and policy; waiting for the commit.
    Committing(Answer, oneshot::Receiver<Result<Outcome, StorageError>>),
    /// A stream-level error: write it and end the stream.
    Fatal(ErrorCode, String),
}

/// How long a stopping node keeps reading a publish stream to refuse what is in flight.
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The node is stopping: answer every Publish still arriving with SHUTTING_DOWN, so the
/// publisher has a result for each, until the stream goes quiet.
async fn reject_remaining(recv: &mut FrameReader, out: &mpsc::Sender<FromPublisher>) {
    loop {
        let read = recv.next::<proto::ClientFrame>();
        let Ok(Ok(Some(frame))) = tokio::time::timeout(DRAIN_IDLE, read).await else {
            break;
        };
        let Some(proto::client_frame::Frame::Publish(p)) = frame.frame else {
            break;
        };
        let r = rejected(
            p.request_id,
            ErrorCode::ShuttingDown,
            "the node is stopping; publish again later".into(),
        );
        if out.send(FromPublisher::Rejected(*r)).await.is_err() {
            break;
        }
    }
}

/// Results written together at most (bytes), so a long run of ready results still
/// reaches the publisher in pieces.
const OUTBOX_BYTES: usize = 64 * 1024;

/// Writes results in request order as they resolve; ends the stream after the last.
/// Results that are ready together go out in one write.
async fn respond(
    mut send: quinn::SendStream,
    mut pending: mpsc::Receiver<Queued>,
    counts: Arc<transport::FrameCounts>,
) {
    let frames = &*counts;
    use tokio::sync::mpsc::error::TryRecvError;
    use tokio::sync::oneshot::error::TryRecvError as Waiting;
    let mut outbox = transport::Outbox::default();
    // Room in the budgets held by the results in the outbox, given back once written.
    let mut holding: Vec<Held> = Vec::new();
    loop {
        if outbox.len() >= OUTBOX_BYTES {
            if outbox.write_to(&mut send, frames).await.is_err() {
                return;
            }
            holding.clear();
        }
        let (reply, held) = match pending.try_recv() {
            Ok(reply) => reply,
            Err(TryRecvError::Empty) => {
                // Nothing more is ready: send what is, before waiting.
                if !outbox.is_empty() {
                    if outbox.write_to(&mut send, frames).await.is_err() {
                        return;
                    }
                    holding.clear();
                }
                match pending.recv().await {
                    Some(reply) => reply,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let answer = match reply {
            Pending::Ready(r) => Answer::plain(r),
            Pending::Committing(a, mut outcome) => match outcome.try_recv() {
                Ok(o) => a.settle(Some(o)),
                Err(Waiting::Closed) => a.settle(None),
                Err(Waiting::Empty) => {
                    if !outbox.is_empty() {
                        if outbox.write_to(&mut send, frames).await.is_err() {
                            return;
                        }
                        holding.clear();
                    }
                    a.settle(outcome.await.ok())
                }
            },
            Pending::Fatal(code, msg) => {
                if outbox.write_to(&mut send, frames).await.is_ok() {
                    transport::send_error(&mut send, code, msg, frames).await;
                }
                return;
            }
        };
        answer.push_to(&mut outbox);
        holding.extend(held);
    }
    if outbox.write_to(&mut send, frames).await.is_ok() {
        let _ = send.finish();
    }
}

/// What the reading half of a publish stream hands to the preparing half, in order.
enum FromPublisher {
    /// A Publish to verify and decide, with the room it holds in the budgets.
    Publish(proto::Publish, Held),
    /// A Publish rejected unread because the node is stopping.
    Rejected(proto::PublishResult),
    /// The stream ended; with the error that ends it, if any.
    End(Option<(ErrorCode, String)>),
}

/// What the reading half has handed over and the preparing half not yet taken: the
/// stream's queue, and what ended the last batch (a rejection or the stream's end,
/// taken next, in order).
struct Incoming {
    queue: mpsc::Receiver<FromPublisher>,
    carried: Option<FromPublisher>,
}

impl Incoming {
    async fn next(&mut self) -> Option<FromPublisher> {
        match self.carried.take() {
            Some(item) => Some(item),
            None => self.queue.recv().await,
        }
    }

    /// `first` and the publishes queued behind it, up to [`BATCH`]: one when the node
    /// keeps up, more as it falls behind, which is when batches pay. Anything else
    /// ends the batch and is carried to the next [`Incoming::next`].
    fn batch(&mut self, first: (proto::Publish, Held)) -> (Vec<proto::Publish>, Vec<Held>) {
        let (mut publishes, mut held) = (vec![first.0], vec![first.1]);
        while publishes.len() < BATCH {
            match self.queue.try_recv() {
                Ok(FromPublisher::Publish(p, h)) => {
                    publishes.push(p);
                    held.push(h);
                }
                Ok(other) => {
                    self.carried = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        (publishes, held)
    }
}

/// Reads a publish stream's frames into `out` until it ends, the node stops, the
/// connection is lost or the preparing half is gone. Reading apart from preparing is
/// what makes batches: the publishes that arrive while one batch is verified are the
/// next batch.
async fn read_publishes(
    mut recv: FrameReader,
    budget: StreamBudget,
    conn: quinn::Connection,
    mut stop: tokio::sync::watch::Receiver<bool>,
    out: mpsc::Sender<FromPublisher>,
) {
    loop {
        // Room for each frame once its length is known: a publisher whose publishes
        // hold its share waits here, and QUIC flow control holds it back. A lost
        // connection ends the wait, so its slot is free again.
        let frame = tokio::select! {
            f = budget.next::<proto::ClientFrame>(&mut recv) => f,
            _ = conn.closed() => return,
            _ = stop.changed() => {
                reject_remaining(&mut recv, &out).await;
                let _ = out.send(FromPublisher::End(None)).await;
                return;
            }
        };
        let item = match as_publish(&mut recv, frame) {
            Ok((mut p, mut held)) => {
                // What it holds is what it counts: its own bytes, not the frame's.
                if let Some(b) = p.bulletin.as_mut() {
                    crate::wire::detach(b);
                }
                held.shrink_to(prost::Message::encoded_len(&p));
                FromPublisher::Publish(p, held)
            }
            Err(end) => {
                let _ = out.send(FromPublisher::End(end)).await;
                return;
            }
        };
        if out.send(item).await.is_err() {
            return;
        }
    }
}

/// What a frame read from a publish stream means for it.
fn as_publish(
    recv: &mut FrameReader,
    frame: Result<Option<(proto::ClientFrame, Held)>, transport::FrameError>,
) -> Result<(proto::Publish, Held), Option<(ErrorCode, String)>> {
    match frame {
        Ok(Some((f, held))) => super::frames::on_publish_stream(f)
            .map(|p| (p, held))
            .map_err(Some),
        Ok(None) => Err(None),
        Err(e) => match e.code() {
            Some(code) => {
                tracing::warn!(error = %e, "refused a frame on a publish stream");
                let _ = recv.stream().stop(quinn::VarInt::from_u32(code as u32));
                Err(Some((code, e.to_string())))
            }
            None => Err(None),
        },
    }
}

/// Publishes verified as one batch at most.
const BATCH: usize = 64;

/// A publish stream, as its first frame left it.
pub(super) struct Stream {
    /// The stream's room in its partner's and the node's budgets.
    pub budget: StreamBudget,
    pub send: quinn::SendStream,
    pub recv: FrameReader,
    /// The connection it belongs to: once lost, the stream stops waiting for room.
    pub conn: quinn::Connection,
}

/// Runs a publish stream that opened with `first`.
pub(super) async fn run(
    first: (proto::Publish, Held),
    stream: Stream,
    node: Intake,
    from: Partner,
) {
    let Stream {
        budget,
        send,
        recv,
        conn,
    } = stream;
    let (replies, pending) = mpsc::channel::<Queued>(PIPELINE);
    let responder = tokio::spawn(respond(send, pending, node.book.frames.clone()));
    let (queue, incoming) = mpsc::channel::<FromPublisher>(PIPELINE);
    let _ = queue.send(FromPublisher::Publish(first.0, first.1)).await;
    let stop = node.shutdown.clone();
    let reader = tokio::spawn(read_publishes(recv, budget, conn, stop, queue));
    let mut incoming = Incoming {
        queue: incoming,
        carried: None,
    };
    while let Some(item) = incoming.next().await {
        let go_on = match item {
            FromPublisher::Publish(p, held) => {
                queue_answers(&node, &from, (p, held), &mut incoming, &replies).await
            }
            FromPublisher::Rejected(r) => replies.send((Pending::Ready(r), None)).await.is_ok(),
            FromPublisher::End(end) => {
                // A frame that could not be taken as a bulletin ends the stream.
                if let Some((code, message)) = end {
                    let refusal = Event::rejected(&from.id, None, code, &message);
                    node.trail.refusal(&from.id, refusal).await;
                    let _ = replies.send((Pending::Fatal(code, message), None)).await;
                }
                false
            }
        };
        if !go_on {
            break;
        }
    }
    reader.abort();
    drop(replies);
    let _ = responder.await;
}

/// What a bulletin a peer node forwarded came to, as far as its acknowledgement needs.
pub(super) enum Forwarded {
    /// Rejected now, with this code and these words.
    Rejected(ErrorCode, String),
    /// Accepted by verification and policy; waiting for its commit.
    Committing(oneshot::Receiver<Result<Outcome, StorageError>>),
}

/// Takes in the deliveries from peer node `from` that `gather` takes in its turn, as
/// its publishes: decided and queued for the storage thread as a publish stream's would
/// be, one answer each, in order, with what goes with them.
pub(super) async fn take_forwarded<T>(
    node: &Intake,
    from: &PartnerId,
    gather: impl FnOnce() -> (Vec<proto::Publish>, T),
) -> (Vec<Forwarded>, T) {
    let rejected_now = |r: proto::PublishResult| {
        let code = ErrorCode::try_from(r.error).unwrap_or(ErrorCode::Internal);
        Forwarded::Rejected(code, r.message)
    };
    let peer = Partner::new(from.clone(), Role::Relay);
    let (pending, with) = queue_batch(node, &peer, gather).await;
    let forwarded = pending.into_iter().map(|p| match p {
        Pending::Ready(r) => rejected_now(r),
        Pending::Committing(_, outcome) => Forwarded::Committing(outcome),
        Pending::Fatal(code, message) => Forwarded::Rejected(code, message),
    });
    (forwarded.collect(), with)
}

/// Prepares `first` and the publishes behind it as one batch and queues their
/// replies: rejections at once, the rest once the storage thread has them. False if
/// the responder is gone.
async fn queue_answers(
    node: &Intake,
    from: &Partner,
    first: (proto::Publish, Held),
    incoming: &mut Incoming,
    replies: &mpsc::Sender<Queued>,
) -> bool {
    // The batch is taken once the partner's turn at verifying has come, so what
    // arrived while it waited is checked with it. The replies go out after the gate
    // is let go: a publisher that does not read its results must not hold up a
    // reload. Each keeps its room in the budgets until its result is written.
    let (prepared, held) = queue_batch(node, from, || incoming.batch(first)).await;
    for (reply, held) in prepared.into_iter().zip(held) {
        if replies.send((reply, Some(held))).await.is_err() {
            return false;
        }
    }
    true
}

/// Decides the batch `gather` takes (in the partner's turn, with what goes with it)
/// under the rules in force, and queues what it came to for the storage thread before
/// a reload can put other rules in force (`Rules::gate`).
async fn queue_batch<T>(
    node: &Intake,
    from: &Partner,
    gather: impl FnOnce() -> (Vec<proto::Publish>, T),
) -> (Vec<Pending>, T) {
    let ((decided, with), _gate) = node
        .decided(&from.id, |rules| {
            let (batch, with) = gather();
            let now = Timestamp::now();
            (
                decide::decide_batch(rules, &node.limits, from, batch, now),
                with,
            )
        })
        .await;
    let mut replies = Vec::with_capacity(decided.len());
    for prepared in decided {
        let reply = match prepared {
            Err(rejection) => {
                let Rejection { result, audit } = *rejection;
                tracing::info!(code = result.error, message = %result.message, "bulletin rejected");
                node.trail.refusal(&from.id, audit).await;
                Pending::Ready(*result)
            }
            Ok((bulletin, answer)) => match node.queue(&from.id, bulletin).await {
                Some(rx) => Pending::Committing(answer, rx),
                None => {
                    let stopped = StorageError::Stopped;
                    Pending::Ready(reject_identified(
                        answer.into_result(),
                        stopped.code(),
                        stopped.to_peer(),
                    ))
                }
            },
        };
        replies.push(reply);
    }
    (replies, with)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(id: u64) -> (proto::Publish, Held) {
        let p = proto::Publish {
            request_id: id,
            ..Default::default()
        };
        (p, Held::nothing())
    }

    fn publish(id: u64) -> FromPublisher {
        let (p, held) = first(id);
        FromPublisher::Publish(p, held)
    }

    fn ids(batch: &[proto::Publish]) -> Vec<u64> {
        batch.iter().map(|p| p.request_id).collect()
    }

    async fn incoming(items: Vec<FromPublisher>) -> Incoming {
        let (tx, queue) = mpsc::channel(BATCH * 2);
        for item in items {
            assert!(tx.send(item).await.is_ok());
        }
        Incoming {
            queue,
            carried: None,
        }
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_and_leaves_a_rejection_for_after_it() {
        let rejected = proto::PublishResult {
            request_id: 4,
            ..Default::default()
        };
        let items = vec![
            publish(2),
            publish(3),
            FromPublisher::Rejected(rejected),
            publish(5),
        ];
        let mut incoming = incoming(items).await;
        let (batch, held) = incoming.batch(first(1));
        assert_eq!((ids(&batch), held.len()), (vec![1, 2, 3], 3));
        let next = incoming.next().await;
        assert!(matches!(next, Some(FromPublisher::Rejected(r)) if r.request_id == 4));
        let next = incoming.next().await;
        assert!(matches!(next, Some(FromPublisher::Publish(p, _)) if p.request_id == 5));
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_batch_publishes() {
        let mut incoming = incoming((2..=BATCH as u64 + 5).map(publish).collect()).await;
        let (batch, _) = incoming.batch(first(1));
        assert_eq!(ids(&batch), (1..=BATCH as u64).collect::<Vec<_>>());
        let next = incoming.next().await;
        assert!(
            matches!(next, Some(FromPublisher::Publish(p, _)) if p.request_id == BATCH as u64 + 1)
        );
    }
}
