//! Pulling from a peer node over its link: a subscribe stream to the peer, each
//! delivery taken in as a publish from the peer (verified, decided by this node's
//! policy, committed), and acknowledged only once its answer is final: stored, a
//! duplicate, or refused for a reason that sending it again would not change. What is
//! not acknowledged the peer delivers again on the next subscription. What it holds
//! of the peer's deliveries counts against the peer's memory budget, as a publish
//! stream's publishes do (`budget`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::identity::PartnerId;
use crate::node::budget::Held;
use crate::node::frames::REFUSAL_MESSAGE_MAX;
use crate::node::publish::{self, Forwarded};
use crate::node::shared::Shared;
use crate::node::shared::Trail;
use crate::proto::{self, client_frame::Frame as ClientFrame, server_frame::Frame as ServerFrame};
use crate::receipt::Receipt;
use crate::store::Outcome;
use crate::timestamp::Timestamp;
use crate::transport::FrameCounts;
use crate::transport::{self, FrameReader};

use super::Peering;
use crate::node::link_book::LinkBook;
use crate::node::link_rules as rules;

/// What pulling from a peer uses of the node: taking its deliveries in as publishes
/// ([`publish::Intake`]), the link's other exchanges and the key receipts are signed
/// with ([`Peering`]), the book of links, and the window it subscribes with.
#[derive(Clone)]
pub(crate) struct Pulling {
    intake: publish::Intake,
    peering: Peering,
    links: Arc<LinkBook>,
    window: u32,
}

impl Pulling {
    /// The running node's.
    pub(crate) fn of(shared: &Shared) -> Pulling {
        Pulling {
            intake: publish::Intake::of(shared),
            peering: Peering::of(shared),
            links: shared.links.clone(),
            window: shared.limits.window,
        }
    }

    fn frames(&self) -> &Arc<FrameCounts> {
        &self.peering.frames
    }
}

/// Deliveries taken in as one batch at most (their signatures checked together).
const BATCH: usize = 64;

/// How long to wait before subscribing again after a subscription ended early; it
/// doubles, up to [`RESUBSCRIBE_AT_MOST`], while subscriptions take nothing in.
const RESUBSCRIBE: Duration = Duration::from_secs(1);
const RESUBSCRIBE_AT_MOST: Duration = Duration::from_secs(60);

/// Why one subscription ended.
enum Ended {
    /// The connection is gone or the node is stopping: the link is over.
    Over,
    /// Something was not stored (or the peer ended the stream): subscribe again.
    Again(String),
    /// This node's rules changed: subscribe again at once, declaring them, so that
    /// what the peer kept of this node's refusals comes again.
    Reconfigured,
}

/// Subscribes to `peer`'s queue for this node over `conn` until the connection ends or
/// the node stops.
pub(crate) async fn pull(conn: quinn::Connection, node: Pulling, peer: PartnerId) {
    let mut stop = node.intake.shutdown.clone();
    let asking = tokio::spawn(ask_queue(conn.clone(), node.clone(), peer.clone()));
    let _asking = AbortOnDrop(asking);
    let peering = node.peering.clone();
    let passing = super::receipts::pass_back(conn.clone(), peering.clone(), peer.clone());
    let _passing = AbortOnDrop(tokio::spawn(passing));
    let witnessed = super::witness::get_witnessed(conn.clone(), peering, peer.clone());
    let _witnessed = AbortOnDrop(tokio::spawn(witnessed));
    let mut pause = RESUBSCRIBE;
    loop {
        let acked_before = node.links.acked(&peer);
        match subscribe_once(&conn, &node, &peer).await {
            Ended::Over => return,
            Ended::Reconfigured => {
                tracing::info!(%peer, "subscribing to the peer again under the new rules");
                pause = RESUBSCRIBE;
                continue;
            }
            Ended::Again(why) => {
                tracing::info!(%peer, %why, ?pause, "subscribing to the peer again");
            }
        }
        // A subscription that took nothing in (one delivery the peer keeps sending
        // first and this node cannot take) is tried ever more slowly.
        pause = if node.links.acked(&peer) > acked_before {
            RESUBSCRIBE
        } else {
            (pause * 2).min(RESUBSCRIBE_AT_MOST)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
            _ = conn.closed() => return,
        }
    }
}

/// How often a peer is asked for its queue towards this node, for `/metrics`.
const ASK_QUEUE_EVERY: Duration = Duration::from_secs(10);

/// Asks the peer for its queue towards this node now and every [`ASK_QUEUE_EVERY`].
async fn ask_queue(conn: quinn::Connection, node: Pulling, peer: PartnerId) {
    let mut every = tokio::time::interval(ASK_QUEUE_EVERY);
    loop {
        every.tick().await;
        if let Some(w) = super::hello(&conn, node.peering.wire()).await {
            node.links.heard(&peer, &conn, &w);
        }
    }
}

/// Aborts a task when the pull that started it ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn subscribe_once(conn: &quinn::Connection, node: &Pulling, peer: &PartnerId) -> Ended {
    let frames = node.frames().clone();
    let Ok((mut send, recv)) = conn.open_bi().await else {
        return Ended::Over;
    };
    let window = node.window;
    let mut rules = node.intake.rules.current.subscribe();
    let declared = rules.borrow_and_update().digest;
    let subscribe = proto::ClientFrame {
        frame: Some(ClientFrame::Subscribe(proto::Subscribe {
            window,
            config_digest: declared.to_vec().into(),
        })),
    };
    if transport::write_frame(&mut send, &subscribe, &frames)
        .await
        .is_err()
    {
        return Ended::Over;
    }
    let (deliveries, mut incoming) = mpsc::channel(window as usize);
    let reader = FrameReader::new(recv, node.peering.max_frame, frames.clone());
    let budget = node.intake.book.budgets.pull(peer);
    let mut reading = tokio::spawn(read_deliveries(reader, budget, deliveries));
    let (verdicts, taken) = mpsc::channel(4);
    let acking = tokio::spawn(acknowledge(send, taken, node.clone(), peer.clone()));
    let mut stop = node.intake.shutdown.clone();
    let ended = loop {
        let first = tokio::select! {
            d = incoming.recv() => d,
            _ = stop.changed() => break Ended::Over,
            changed = rules.changed() => match changed {
                Ok(()) if rules.borrow_and_update().digest != declared => break Ended::Reconfigured,
                Ok(()) => continue,
                Err(_) => break Ended::Over,
            },
        };
        let Some(first) = first else {
            break ended_by_reader(&node.intake.trail, peer, &mut reading).await;
        };
        // The batch is taken in this peer's turn at verifying: what arrived while it
        // waited is checked with it.
        let gather = || gathered(first, &mut incoming, &node.peering.own.id, peer);
        let (answers, (seqs, held, receipts)) =
            publish::take_forwarded(&node.intake, peer, gather).await;
        // Each holds its budget until its answer is final: on its way to the storage
        // thread it is still in this node's memory.
        let verdict = seqs.into_iter().zip(answers).zip(held).zip(receipts);
        let verdict = verdict.map(|(((seq, answer), held), receipt)| Verdict {
            seq,
            answer,
            _held: held,
            receipt,
        });
        if verdicts.send(verdict.collect()).await.is_err() {
            break Ended::Again("a bulletin from the peer was not stored".into());
        }
    };
    reading.abort();
    drop(verdicts);
    match acking.await {
        Ok(Some(why)) if !matches!(ended, Ended::Over) => Ended::Again(why),
        _ => ended,
    }
}

/// What goes with a batch of deliveries taken in: their seqs, the budget each holds
/// and this node's receipt of each.
type Taken = (Vec<u64>, Vec<Held>, Vec<Option<Receipt>>);

/// `first` and the deliveries queued behind it, up to [`BATCH`], as publishes from
/// `peer`, with what goes with them.
fn gathered(
    first: (proto::Delivery, Held),
    incoming: &mut mpsc::Receiver<(proto::Delivery, Held)>,
    receiver: &PartnerId,
    peer: &PartnerId,
) -> (Vec<proto::Publish>, Taken) {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match incoming.try_recv() {
            Ok(d) => batch.push(d),
            Err(_) => break,
        }
    }
    let seqs = batch.iter().map(|(d, _)| d.seq).collect();
    // One time for the batch, so that its receipts can be signed as one.
    let now = Timestamp::now();
    let receipts = batch
        .iter()
        .map(|(d, _)| receipt_of(receiver, peer, d, now))
        .collect();
    let (publishes, held) = batch.into_iter().map(|(d, h)| (as_publish(d), h)).unzip();
    (publishes, (seqs, held, receipts))
}

/// One delivery's answer on its way to being acknowledged, with the budget it holds
/// until then and what this node's receipt of it would state.
struct Verdict {
    seq: u64,
    answer: Forwarded,
    _held: Held,
    receipt: Option<Receipt>,
}

/// What this node's receipt of the delivery `d` from `peer` states (proto/README.md
/// §4.7), if `d` names a bulletin at all (a malformed one is refused, unsigned for).
fn receipt_of(
    receiver: &PartnerId,
    peer: &PartnerId,
    d: &proto::Delivery,
    received: Timestamp,
) -> Option<Receipt> {
    use prost::Message as _;
    let signed = d.bulletin.as_ref()?;
    let b = proto::Bulletin::decode(signed.bulletin.clone()).ok()?;
    Some(Receipt {
        receiver: receiver.clone(),
        node: peer.clone(),
        origin: b.origin.parse().ok()?,
        bulletin_id: crate::bulletin::BulletinId::parse_canonical(&b.id)?,
        digest: crate::bulletin::Digest::of(&signed.bulletin),
        received,
    })
}

/// A delivery taken as a Publish from the peer: its seq is the request id, and the
/// path it names (ending with the peer) goes with it.
fn as_publish(d: proto::Delivery) -> proto::Publish {
    proto::Publish {
        request_id: d.seq,
        bulletin: d.bulletin,
        allow_unknown_audience: false,
        path: d.path,
    }
}

/// Why the subscription to the peer ended, once its reader has: a frame the peer
/// should not have sent is recorded as its refusal, counted per partner like a
/// publisher's.
async fn ended_by_reader(
    trail: &Trail,
    peer: &PartnerId,
    reading: &mut tokio::task::JoinHandle<Option<(proto::ErrorCode, String)>>,
) -> Ended {
    match reading.await {
        Ok(Some((code, why))) => {
            let event = crate::audit::record::Event::rejected(peer, None, code, &why);
            trail.refusal(peer, event).await;
            Ended::Again(format!("the peer's subscription was refused: {why}"))
        }
        _ => Ended::Again("the peer ended the subscription".into()),
    }
}

/// Reads Delivery frames into `out` until the stream ends or fails. Each is read once
/// the peer's budget (its partner's share and the node's, as for a publish stream) has
/// room for it, and holds what it counts until it is decided: a peer that delivers
/// faster than this node decides waits, held back by QUIC flow control, and cannot
/// make the node hold more than the budgets allow. Ends with the refusal a frame
/// earned, if one did.
async fn read_deliveries(
    mut recv: FrameReader,
    budget: crate::node::budget::StreamBudget,
    out: mpsc::Sender<(proto::Delivery, Held)>,
) -> Option<(proto::ErrorCode, String)> {
    loop {
        match budget.next::<proto::ServerFrame>(&mut recv).await {
            Ok(Some((
                proto::ServerFrame {
                    frame: Some(ServerFrame::Delivery(mut d)),
                },
                mut held,
            ))) => {
                if let Some(b) = d.bulletin.as_mut() {
                    crate::wire::detach(b);
                }
                held.shrink_to(prost::Message::encoded_len(&d));
                if out.send((d, held)).await.is_err() {
                    return None;
                }
            }
            Ok(Some((
                proto::ServerFrame {
                    frame: Some(ServerFrame::Error(e)),
                },
                _,
            ))) => {
                tracing::warn!(code = e.code, message = %e.message, "the peer ended the subscription");
                return None;
            }
            Ok(Some((other, _))) => {
                tracing::warn!(frame = ?other.frame.map(|_| ()), "unexpected frame on a subscription to a peer");
                return None;
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "reading from the peer failed");
                let code = e.code()?;
                let _ = recv.stream().stop(quinn::VarInt::from_u32(code as u32));
                return Some((code, e.to_string()));
            }
        }
    }
}

/// Acknowledges each batch's deliveries once their answers are final, in order; stops
/// at the first that is not (the peer delivers it again) and says why.
async fn acknowledge(
    mut send: quinn::SendStream,
    mut taken: mpsc::Receiver<Vec<Verdict>>,
    node: Pulling,
    peer: PartnerId,
) -> Option<String> {
    let frames = node.frames().clone();
    while let Some(batch) = taken.recv().await {
        let mut ack = Acking::default();
        let mut stopped = None;
        for verdict in batch {
            let seq = verdict.seq;
            if !ack.take(verdict).await {
                stopped = Some(format!("delivery {seq} from the peer was not stored"));
                break;
            }
        }
        node.links.count_copies(&peer, ack.copies);
        // A refusal's record is only queued for the storage thread: it must be durable
        // before the peer, told the delivery was taken, drops it.
        if !ack.frame.refused.is_empty() && node.intake.trail.commit(None, None).await.is_err() {
            return Some("a refusal could not be recorded".into());
        }
        node.links.count_acked(&peer, ack.frame.seq.len() as u64);
        let batch = node.links.takes_batch_receipts(&peer);
        ack.sign(&node.peering.own.key, batch);
        if !ack.frame.seq.is_empty() {
            let frame = proto::ClientFrame {
                frame: Some(ClientFrame::Ack(ack.frame)),
            };
            if transport::write_frame(&mut send, &frame, &frames)
                .await
                .is_err()
            {
                return Some("the acknowledgement did not reach the peer".into());
            }
        }
        if stopped.is_some() {
            let _ = send.finish();
            return stopped;
        }
    }
    let _ = send.finish();
    None
}

/// One Ack to the peer being made: what it acknowledges and refuses, the receipts it
/// will sign (with their seqs), and how many of its deliveries were copies already
/// stored.
#[derive(Default)]
struct Acking {
    frame: proto::Ack,
    receipts: Vec<(u64, Receipt)>,
    copies: u64,
}

impl Acking {
    /// Takes one delivery's answer once it is final (false, and nothing taken, if it is
    /// not: the peer delivers it again). A final refusal tells the sender why; a
    /// bulletin stored here (now or before) is to be signed for.
    async fn take(&mut self, v: Verdict) -> bool {
        let seq = v.seq;
        let (final_, stored) = match v.answer {
            Forwarded::Rejected(code, message) => {
                let final_ = rules::is_final(Some(code));
                if final_ {
                    // The sender hears why: taken, but not shared on from here.
                    self.frame.refused.push(proto::Refusal {
                        seq,
                        code: code as i32,
                        message: cut(&message, REFUSAL_MESSAGE_MAX),
                    });
                }
                (final_, false)
            }
            // A conflicting copy is final but not stored.
            Forwarded::Committing(outcome) => match outcome.await {
                Ok(Ok(Outcome::Duplicate(_))) => {
                    self.copies += 1;
                    (true, true)
                }
                Ok(Ok(Outcome::Accepted(_))) => (true, true),
                Ok(Ok(_)) => (true, false),
                _ => (false, false),
            },
        };
        if let Some(r) = v.receipt.filter(|_| stored) {
            self.receipts.push((seq, r));
        }
        if final_ {
            self.frame.seq.push(seq);
        }
        final_
    }

    /// Signs the receipts taken, with one signature for them all when the peer takes
    /// batch receipts (`batch`), each alone otherwise.
    fn sign(&mut self, key: &ed25519_dalek::SigningKey, batch: bool) {
        let receipts = std::mem::take(&mut self.receipts);
        let receipted = Receipt::sign_for_ack(receipts, key, batch);
        self.frame.receipts.extend(receipted);
    }
}

/// `text` cut at a character boundary to at most `max` bytes.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}
