//! One stream of an admitted partner's connection: its first frame read within the
//! partner's budget and deadline, and the stream handed to what it opens (publishing,
//! delivery, the auditor's questions, a peer's receipts or witness request), or
//! refused and recorded. It decides nothing about bulletins.

use std::sync::Arc;

use super::frames::{self, Opening};
use super::shared::Shared;
use super::shared::Trail;
use super::{auditor, deliver, link, publish};
use crate::audit::record::Event;
use crate::identity::{Partner, PartnerId, Role};
use crate::proto;
use crate::transport::{self, FrameCounts, FrameError};

/// Answers a frame error on a stream the peer can still hear, and records it.
async fn refuse(
    trail: &Trail,
    frames: &FrameCounts,
    partner: &PartnerId,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    err: &FrameError,
) {
    if let Some(code) = err.code() {
        tracing::warn!(error = %err, "refused a frame");
        trail
            .refusal(
                partner,
                Event::rejected(partner, None, code, &err.to_string()),
            )
            .await;
        let _ = recv.stop(quinn::VarInt::from_u32(code as u32));
        transport::send_error(send, code, err.to_string(), frames).await;
    }
}

/// Serves one stream the partner opened.
pub(super) async fn stream_task(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    conn: quinn::Connection,
    shared: Arc<Shared>,
    who: Partner,
) {
    let partner = &who.id;
    let mut stop = shared.shutdown.clone();
    // The stream's frames after the first may already be in the buffer: it goes on to
    // the stream's handler.
    let mut recv =
        transport::FrameReader::new(recv, shared.limits.max_frame, shared.book.frames.clone());
    let announced = tokio::select! {
        r = tokio::time::timeout(shared.limits.first_frame, recv.next_len()) => r,
        _ = stop.changed() => return,
    };
    if announced.is_err() {
        let msg = format!(
            "no frame within {:?} of opening the stream",
            shared.limits.first_frame
        );
        let code = proto::ErrorCode::UnexpectedFrame;
        return transport::send_error(&mut send, code, msg, &shared.book.frames).await;
    }
    // Every stream's first frame is read within the partner's budget, so opening every
    // stream it may gives a partner no more room than one stream.
    let budget = shared.book.budgets.stream(partner);
    let first = tokio::select! {
        r = budget.next::<proto::ClientFrame>(&mut recv) => r,
        _ = stop.changed() => return,
        _ = conn.closed() => return,
    };
    let (first, held) = match first {
        Ok(Some((f, mut held))) => {
            held.shrink_to(prost::Message::encoded_len(&f));
            (f, held)
        }
        Ok(None) => return,
        Err(e) => {
            return refuse(
                &shared.trail,
                &shared.book.frames,
                partner,
                &mut send,
                recv.stream(),
                &e,
            )
            .await
        }
    };
    match frames::opening(first.frame, &who) {
        Opening::Publish(p) => {
            let stream = publish::Stream {
                budget,
                send,
                recv,
                conn,
            };
            publish::run((p, held), stream, publish::Intake::of(&shared), who).await
        }
        // Only a publish keeps its first frame's room: the others hold what they read.
        other => {
            drop(held);
            serve_opening(other, send, recv, shared, who).await
        }
    }
}

/// Serves a stream that opened with anything but a Publish.
async fn serve_opening(
    opening: Opening,
    mut send: quinn::SendStream,
    recv: transport::FrameReader,
    shared: Arc<Shared>,
    who: Partner,
) {
    let (partner, role) = (who.id, who.role);
    match opening {
        Opening::Hello => {
            // A Hello also tells a peer that this end of a link is alive: it must not
            // wait behind a long group commit.
            let queued = tokio::time::timeout(
                std::time::Duration::from_millis(250),
                super::queues::queue_of(&shared.storage.store, &partner),
            )
            .await
            .ok();
            let welcome = proto::ServerFrame {
                frame: Some(proto::server_frame::Frame::Welcome(proto::Welcome {
                    protocol_version: 1,
                    node_id: shared.own.id.to_string(),
                    partner_id: partner.to_string(),
                    role: role_to_proto(role) as i32,
                    max_frame_bytes: shared.limits.max_frame as u64,
                    max_bulletin_bytes: shared.limits.bulletin.max_bulletin_bytes as u64,
                    max_body_bytes: shared.limits.bulletin.max_body_bytes as u64,
                    server_time_unix_ms: crate::timestamp::Timestamp::now().unix_ms(),
                    software: concat!("renkei ", env!("CARGO_PKG_VERSION")).into(),
                    queued_for_you: queued.as_ref().map(|q| q.depth),
                    oldest_queued_ms: queued.as_ref().map(|q| q.oldest_age_ms),
                    takes_batch_receipts: true,
                })),
            };
            let _ = transport::write_frame(&mut send, &welcome, &shared.book.frames).await;
            let _ = send.finish();
        }
        Opening::Publish(_) => {}
        Opening::Subscribe(s) => {
            deliver::run(s, send, recv, deliver::Delivering::of(&shared), partner).await
        }
        Opening::Auditor(frame) => {
            auditor::answer(frame, send, auditor::Answering::of(&shared), &partner).await
        }
        Opening::PassReceipts(p) => {
            link::take_receipts(p, send, &link::Peering::of(&shared), &partner).await
        }
        Opening::Witness(w) => link::witness(w, send, &link::Peering::of(&shared), &partner).await,
        Opening::NotPermitted(msg) => {
            not_permitted(
                &shared.trail,
                &shared.book.frames,
                &partner,
                &mut send,
                &msg,
            )
            .await
        }
        Opening::Refused(code, msg) => {
            transport::send_error(&mut send, code, msg, &shared.book.frames).await
        }
    }
}

/// Refuses what the partner's role does not allow, and records the attempt.
async fn not_permitted(
    trail: &Trail,
    frames: &FrameCounts,
    partner: &PartnerId,
    send: &mut quinn::SendStream,
    msg: &str,
) {
    let code = proto::ErrorCode::NotPermitted;
    trail
        .refusal(partner, Event::rejected(partner, None, code, msg))
        .await;
    transport::send_error(send, code, msg, frames).await;
}

fn role_to_proto(role: Role) -> proto::Role {
    match role {
        Role::Liaison => proto::Role::Liaison,
        Role::Relay => proto::Role::Relay,
        Role::Auditor => proto::Role::Auditor,
    }
}
