//! The acks of a subscription: Ack frames read off the stream within their size,
//! their receipts checked, the peer's refusals recorded and counted, and the cursor
//! they move recorded with them.

use tokio::sync::mpsc;

use super::progress::Progress;
use super::receipts::{refuse_acks, verified_receipts};
use super::{Delivering, End, Stream};
use crate::identity::PartnerId;
use crate::node::frames::REFUSAL_MESSAGE_MAX;
use crate::node::link_book::LinkBook;
use crate::node::writer::Request;
use crate::proto::{self, ErrorCode};
use crate::timestamp::Timestamp;
use crate::transport;

/// What the ack reader hands the delivery loop.
pub(super) enum FromClient {
    Acks(proto::Ack),
    Fatal(ErrorCode, String),
}

/// Room an Ack gives one receipt (two ids, an origin, a bulletin id, a digest, a time,
/// a signature and a key id, with their tags): ids are at most 64 bytes.
const RECEIPT_BYTES_MAX: usize = 512;

/// Largest Ack frame accepted: room for a window's worth of seqs (at most 11 bytes
/// each with their tags), as many refusals with their words and receipts, and the
/// envelope.
fn ack_frame_limit(window: usize) -> usize {
    64 + window * (11 + 32 + REFUSAL_MESSAGE_MAX + RECEIPT_BYTES_MAX)
}

pub(super) async fn read_acks(
    mut recv: transport::FrameReader,
    window: usize,
    out: mpsc::Sender<FromClient>,
) {
    recv.set_max(ack_frame_limit(window));
    loop {
        let msg = match recv.next::<proto::ClientFrame>().await {
            Ok(Some(f)) => match crate::node::frames::on_subscribe_stream(f, window) {
                Ok(ack) => FromClient::Acks(ack),
                Err((code, why)) => FromClient::Fatal(code, why),
            },
            Ok(None) => return,
            Err(e) => match e.code() {
                Some(code) => {
                    let _ = recv.stream().stop(quinn::VarInt::from_u32(code as u32));
                    FromClient::Fatal(code, e.to_string())
                }
                None => return,
            },
        };
        let fatal = matches!(msg, FromClient::Fatal(..));
        if out.send(msg).await.is_err() || fatal {
            return;
        }
    }
}

/// The record of the acks that arrived before the subscription ended (none if one of
/// their receipts is bad: that refusal is recorded instead, and they come again), with
/// the peer's refusals among them recorded first.
pub(super) async fn last_acks(
    node: &Delivering,
    partner: &PartnerId,
    p: &mut Progress,
    acks: &mut mpsc::Receiver<FromClient>,
    declared: &[u8],
) -> Option<crate::audit::record::Event> {
    let mut last = Vec::new();
    while let Ok(FromClient::Acks(ack)) = acks.try_recv() {
        last.push(ack);
    }
    let receipts = match verified_receipts(node, partner, p, &last) {
        Ok(receipts) => receipts,
        Err(why) => {
            refuse_acks(&node.trail, partner, &last, why).await;
            return None;
        }
    };
    for refusal in refusals(&node.links, partner, p, &last) {
        node.trail.record(refusal).await;
    }
    let own = node.rules.in_force().digest;
    for change in p.refused_changes(&last, own, declared) {
        let _ = node.storage.commits.send(Request::Refused(change)).await;
    }
    let event = p.take_acks(last.into_iter().map(|a| a.seq), Timestamp::now());
    event.map(|e| e.with_receipts(receipts))
}

/// Takes `ack` and every other Ack frame already here into one record with the cursor
/// it moves, so a subscriber acking one delivery at a time costs one record per
/// wake-up, not one per delivery; a peer's refusals among them are recorded first,
/// and kept for another try where a configuration could change them.
/// `Some` when the subscription must end.
pub(super) async fn take_acks(
    node: &Delivering,
    partner: &PartnerId,
    stream: &mut Stream<'_>,
    p: &mut Progress,
    ack: proto::Ack,
) -> Option<End> {
    let mut batches = vec![ack];
    let mut then = None;
    while let Ok(more) = stream.acks.try_recv() {
        match more {
            FromClient::Acks(ack) => batches.push(ack),
            FromClient::Fatal(code, message) => {
                then = Some(End::Error(code, message));
                break;
            }
        }
    }
    let receipts = match verified_receipts(node, partner, p, &batches) {
        Ok(receipts) => receipts,
        Err(why) => return Some(refuse_acks(&node.trail, partner, &batches, why).await),
    };
    let refused = refusals(&node.links, partner, p, &batches);
    let own = node.rules.in_force().digest;
    let changes = p.refused_changes(&batches, own, &stream.declared);
    for event in refused {
        if !node.trail.append(event, None).await {
            return Some(End::Abort);
        }
    }
    for change in changes {
        if node
            .storage
            .commits
            .send(Request::Refused(change))
            .await
            .is_err()
        {
            return Some(End::Abort);
        }
    }
    let seqs = batches.into_iter().map(|a| a.seq);
    if let Some(event) = p.take_acks(seqs, Timestamp::now()) {
        let event = event.with_receipts(receipts);
        let cursor = Some((partner.clone(), p.cursor.clone()));
        if !node.trail.append(event, cursor).await {
            return Some(End::Abort);
        }
    }
    then
}

/// The records of a peer's refusals in `acks`: only of deliveries in flight to it that
/// the same Ack acknowledges (anything else is not the peer's to refuse). Counted on
/// the peer's link.
fn refusals(
    links: &LinkBook,
    peer: &PartnerId,
    p: &Progress,
    acks: &[proto::Ack],
) -> Vec<crate::audit::record::Event> {
    let mut events = Vec::new();
    let mut last = None;
    for ack in acks {
        for r in &ack.refused {
            if !ack.seq.contains(&r.seq) || !p.in_flight(r.seq) {
                continue;
            }
            let code = ErrorCode::try_from(r.code).map_or("unknown code", |c| c.as_str_name());
            let why = format!(
                "{code}: {}",
                crate::text::bounded(&r.message, REFUSAL_MESSAGE_MAX)
            );
            events.push(crate::audit::record::Event::peer_refused(
                peer, r.seq, r.code, &why,
            ));
            last = Some(why);
        }
    }
    if let Some(why) = last {
        tracing::warn!(%peer, refused = events.len(), last = %why, "the peer refused deliveries it took");
        links.count_refused(peer, events.len() as u64, why);
    }
    events
}
