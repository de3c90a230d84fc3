//! A publish stream: pipelined `Publish` frames in, one `PublishResult` per frame out,
//! in order. Each bulletin is verified and decided here, then handed to the storage
//! thread; its result is sent only once the commit is durable. Reading goes on while
//! earlier bulletins wait for their commit, so one stream feeds a whole group commit.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::writer::CommitRequest;
use super::Shared;
use crate::bulletin::{BulletinError, UnverifiedBulletin};
use crate::identity::{PartnerId, Role};
use crate::policy::Decision;
use crate::proto::{self, server_frame::Frame as Server, ErrorCode, PublishStatus};
use crate::store::{NewBulletin, Outcome};
use crate::timestamp::Timestamp;
use crate::transport;

/// Results waiting to be written, in request order.
const PIPELINE: usize = 1024;

enum Reply {
    /// Known now (a rejection).
    Ready(proto::PublishResult),
    /// Accepted by verification and policy; waiting for the commit.
    Committing(
        proto::PublishResult,
        oneshot::Receiver<Result<Outcome, String>>,
    ),
    /// A stream-level error: write it and end the stream.
    Fatal(ErrorCode, String),
}

fn rejected(request_id: u64, code: ErrorCode, message: String) -> Box<proto::PublishResult> {
    Box::new(proto::PublishResult {
        request_id,
        status: PublishStatus::Rejected as i32,
        error: code as i32,
        message,
        ..Default::default()
    })
}

/// Verifies, checks the publisher's right to publish it, and decides who gets it.
fn prepare(
    shared: &Shared,
    from: &PartnerId,
    role: Role,
    p: proto::Publish,
) -> Result<(NewBulletin, proto::PublishResult), Box<proto::PublishResult>> {
    let id = p.request_id;
    let signed = p.bulletin.ok_or_else(|| {
        rejected(
            id,
            ErrorCode::InvalidBulletin,
            "Publish carries no bulletin".into(),
        )
    })?;
    let envelope = Bytes::from(signed.encode_to_vec());
    let reject = |e: BulletinError| rejected(id, e.code(), e.to_string());
    let unverified = UnverifiedBulletin::from_signed(signed, &shared.limits).map_err(reject)?;
    let origin = unverified.header().origin.clone();
    let digest = unverified.digest();
    // Rejections after decoding still name the bulletin, for the publisher and the audit.
    let (bulletin_id, origin_text) = (unverified.header().id.to_string(), origin.to_string());
    let describe = |mut r: Box<proto::PublishResult>| {
        r.bulletin_id = bulletin_id.clone();
        r.origin = origin_text.clone();
        r.digest = Bytes::copy_from_slice(&digest.0);
        r
    };
    if !shared.partners.contains_key(&origin) {
        let msg = format!("origin {origin} is not a partner of this node");
        return Err(describe(rejected(id, ErrorCode::UnknownOrigin, msg)));
    }
    let verified = unverified
        .verify(&shared.keyring, Timestamp::now(), &shared.limits)
        .map_err(|e| describe(reject(e)))?;
    if role == Role::Liaison && origin != *from {
        let msg = format!(
            "{from} is a liaison and may only publish its own bulletins, not those of {origin}"
        );
        return Err(describe(rejected(id, ErrorCode::OriginMismatch, msg)));
    }
    let h = verified.header();
    let mut result = *describe(Box::new(proto::PublishResult {
        request_id: id,
        status: PublishStatus::Accepted as i32,
        ..Default::default()
    }));
    let mut shared_with = Vec::new();
    for (partner, decision) in shared.policy.decide_all(h, from) {
        match decision {
            Decision::Share => {
                shared_with.push(partner.clone());
                result.shared_with.push(partner.to_string());
            }
            Decision::Withhold(w) => result.withheld.push(proto::Withheld {
                partner: partner.to_string(),
                reason: w.code() as i32,
                detail: w.to_string(),
            }),
        }
    }
    let new = NewBulletin {
        signed: envelope,
        digest,
        origin,
        id: h.id,
        received_from: from.clone(),
        shared_with,
    };
    Ok((new, result))
}

async fn resolve(reply: Reply) -> Result<proto::PublishResult, (ErrorCode, String)> {
    match reply {
        Reply::Ready(r) => Ok(r),
        Reply::Fatal(code, msg) => Err((code, msg)),
        Reply::Committing(mut r, outcome) => {
            match outcome.await {
                Ok(Ok(Outcome::Accepted(_))) => {}
                Ok(Ok(Outcome::Duplicate(_))) => {
                    r.status = PublishStatus::Duplicate as i32;
                    r.shared_with.clear();
                    r.withheld.clear();
                }
                Ok(Ok(Outcome::Conflict { existing, .. })) => {
                    let msg = format!(
                        "{} from {} was accepted before with digest {existing}; a bulletin id cannot be reused for other content",
                        r.bulletin_id, r.origin
                    );
                    return Ok(*rejected(r.request_id, ErrorCode::Conflict, msg));
                }
                Ok(Err(e)) => {
                    return Ok(*rejected(
                        r.request_id,
                        ErrorCode::Internal,
                        format!("not stored: {e}"),
                    ))
                }
                Err(_) => {
                    return Ok(*rejected(
                        r.request_id,
                        ErrorCode::ShuttingDown,
                        "the node is stopping".into(),
                    ))
                }
            }
            Ok(r)
        }
    }
}

/// Runs a publish stream that opened with `first`.
pub(super) async fn run(
    first: proto::Publish,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
    from: PartnerId,
    role: Role,
) {
    let (replies, mut pending) = mpsc::channel::<Reply>(PIPELINE);
    let responder = tokio::spawn(async move {
        while let Some(reply) = pending.recv().await {
            match resolve(reply).await {
                Ok(result) => {
                    let frame = proto::ServerFrame {
                        frame: Some(Server::PublishResult(result)),
                    };
                    if transport::write_frame(&mut send, &frame).await.is_err() {
                        return;
                    }
                }
                Err((code, msg)) => {
                    transport::send_error(&mut send, code, msg).await;
                    return;
                }
            }
        }
        let _ = send.finish();
    });

    let mut stop = shared.shutdown.clone();
    let mut next = Some(first);
    loop {
        let publish = match next.take() {
            Some(p) => p,
            None => {
                let frame = tokio::select! {
                    f = transport::read_frame::<proto::ClientFrame>(&mut recv, shared.max_frame) => f,
                    _ = stop.changed() => break,
                };
                match frame {
                    Ok(None) => break,
                    Ok(Some(proto::ClientFrame {
                        frame: Some(proto::client_frame::Frame::Publish(p)),
                    })) => p,
                    Ok(Some(_)) => {
                        let msg = "only Publish frames belong on a publish stream".to_string();
                        let _ = replies
                            .send(Reply::Fatal(ErrorCode::UnexpectedFrame, msg))
                            .await;
                        break;
                    }
                    Err(e) => {
                        if let Some(code) = e.code() {
                            tracing::warn!(error = %e, "refused a frame on a publish stream");
                            let _ = recv.stop(quinn::VarInt::from_u32(code as u32));
                            let _ = replies.send(Reply::Fatal(code, e.to_string())).await;
                        }
                        break;
                    }
                }
            }
        };
        let reply = match prepare(&shared, &from, role, publish) {
            Err(rejection) => {
                tracing::info!(code = rejection.error, message = %rejection.message, "bulletin rejected");
                Reply::Ready(*rejection)
            }
            Ok((bulletin, result)) => {
                let (tx, rx) = oneshot::channel();
                let request = CommitRequest {
                    bulletin,
                    reply: tx,
                };
                if shared.commits.send(request).await.is_err() {
                    let r = rejected(
                        result.request_id,
                        ErrorCode::ShuttingDown,
                        "the node is stopping".into(),
                    );
                    Reply::Ready(*r)
                } else {
                    Reply::Committing(result, rx)
                }
            }
        };
        if replies.send(reply).await.is_err() {
            break;
        }
    }
    drop(replies);
    let _ = responder.await;
}
