//! A publish stream: pipelined `Publish` frames in, one `PublishResult` per frame out,
//! in order. Each bulletin is verified and decided here, then handed to the storage
//! thread; its result is sent only once the commit is durable. Reading goes on while
//! earlier bulletins wait for their commit, so one stream feeds a whole group commit.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::writer::Request;
use super::Shared;
use crate::audit::record::Event;
use crate::bulletin::{BulletinError, Digest, Header, UnverifiedBulletin};
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

/// A rejection of a bulletin already identified in `r` (keeps its id, origin and digest).
fn reject_identified(
    mut r: proto::PublishResult,
    code: ErrorCode,
    message: String,
) -> proto::PublishResult {
    r.status = PublishStatus::Rejected as i32;
    r.error = code as i32;
    r.message = message;
    r.shared_with.clear();
    r.withheld.clear();
    r
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

/// A refused Publish: the answer, and the audit record of the refusal.
struct Rejection {
    result: Box<proto::PublishResult>,
    audit: Event,
}

/// Verifies, checks the publisher's right to publish it, and decides who gets it.
fn prepare(
    shared: &Shared,
    from: &PartnerId,
    role: Role,
    p: proto::Publish,
) -> Result<(NewBulletin, proto::PublishResult), Box<Rejection>> {
    let mut known: Option<(Header, Digest)> = None;
    prepare_inner(shared, from, role, p, &mut known).map_err(|result| {
        let code = ErrorCode::try_from(result.error).unwrap_or(ErrorCode::Unspecified);
        let audit = Event::rejected(
            from,
            known.as_ref().map(|(h, d)| (h, *d)),
            code,
            &result.message,
        );
        Box::new(Rejection { result, audit })
    })
}

fn prepare_inner(
    shared: &Shared,
    from: &PartnerId,
    role: Role,
    p: proto::Publish,
    known: &mut Option<(Header, Digest)>,
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
    *known = Some((unverified.header().clone(), digest));
    // Rejections after decoding still name the bulletin, for the publisher and the audit.
    let (bulletin_id, origin_text) = (unverified.header().id.to_string(), origin.to_string());
    let describe = |mut r: Box<proto::PublishResult>| {
        r.bulletin_id = bulletin_id.clone();
        r.origin = origin_text.clone();
        r.digest = Bytes::copy_from_slice(&digest.0);
        r
    };
    // The rules in force now: a reload applies from the next decision on.
    let sharing = shared.sharing();
    if !sharing.partners.contains_key(&origin) {
        let msg = format!("origin {origin} is not a partner of this node");
        return Err(describe(rejected(id, ErrorCode::UnknownOrigin, msg)));
    }
    let verified = unverified
        .verify(&sharing.keyring, Timestamp::now(), &shared.limits)
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
    let decisions: Vec<_> = sharing.policy.decide_all(h, from).collect();
    let audit = Event::accepted(from, h, digest, decisions.iter().map(|(p, d)| (*p, d)));
    for (partner, decision) in decisions {
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
        audit,
    };
    Ok((new, result))
}

async fn resolve(reply: Reply) -> Result<proto::PublishResult, (ErrorCode, String)> {
    match reply {
        Reply::Ready(r) => Ok(r),
        Reply::Fatal(code, msg) => Err((code, msg)),
        Reply::Committing(mut r, outcome) => Ok(match outcome.await {
            Ok(Ok(Outcome::Accepted(_))) => r,
            Ok(Ok(Outcome::Duplicate(_))) => {
                r.status = PublishStatus::Duplicate as i32;
                r.shared_with.clear();
                r.withheld.clear();
                r
            }
            Ok(Ok(Outcome::Conflict { existing, .. })) => {
                let msg = format!(
                    "{} from {} was accepted before with digest {existing}; a bulletin id cannot be reused for other content",
                    r.bulletin_id, r.origin
                );
                reject_identified(r, ErrorCode::Conflict, msg)
            }
            Ok(Err(message)) => reject_identified(r, ErrorCode::Internal, message),
            Err(_) => reject_identified(r, ErrorCode::ShuttingDown, "the node is stopping".into()),
        }),
    }
}

/// How long a stopping node keeps reading a publish stream to refuse what is in flight.
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The node is stopping: answer every Publish still arriving with SHUTTING_DOWN, so the
/// publisher has a result for each, until the stream goes quiet.
async fn refuse_remaining(
    recv: &mut quinn::RecvStream,
    replies: &mpsc::Sender<Reply>,
    max_frame: usize,
) {
    loop {
        let read = transport::read_frame::<proto::ClientFrame>(recv, max_frame);
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
        if replies.send(Reply::Ready(*r)).await.is_err() {
            break;
        }
    }
}

/// Writes results in request order as they resolve; ends the stream after the last.
async fn respond(mut send: quinn::SendStream, mut pending: mpsc::Receiver<Reply>) {
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
}

/// The next Publish on the stream, or the reply that ends the stream (`Err(None)`: it
/// simply ended, or the node is stopping).
async fn next_publish(
    recv: &mut quinn::RecvStream,
    shared: &Shared,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    replies: &mpsc::Sender<Reply>,
) -> Result<proto::Publish, Option<Reply>> {
    use proto::client_frame::Frame;
    let frame = tokio::select! {
        f = transport::read_frame::<proto::ClientFrame>(recv, shared.max_frame) => f,
        _ = stop.changed() => {
            refuse_remaining(recv, replies, shared.max_frame).await;
            return Err(None);
        }
    };
    match frame {
        Ok(Some(proto::ClientFrame {
            frame: Some(Frame::Publish(p)),
        })) => Ok(p),
        Ok(None) => Err(None),
        Ok(Some(proto::ClientFrame { frame: None })) => Err(Some(Reply::Fatal(
            ErrorCode::MalformedFrame,
            "frame has no message set".into(),
        ))),
        Ok(Some(_)) => Err(Some(Reply::Fatal(
            ErrorCode::UnexpectedFrame,
            "only Publish frames belong on a publish stream".into(),
        ))),
        Err(e) => match e.code() {
            Some(code) => {
                tracing::warn!(error = %e, "refused a frame on a publish stream");
                let _ = recv.stop(quinn::VarInt::from_u32(code as u32));
                Err(Some(Reply::Fatal(code, e.to_string())))
            }
            None => Err(None),
        },
    }
}

/// Records a stream-level refusal (a frame that could not be taken as a bulletin).
async fn audit_fatal(shared: &Shared, from: &PartnerId, reply: &Reply) {
    if let Reply::Fatal(code, message) = reply {
        shared
            .record(Event::rejected(from, None, *code, message))
            .await;
    }
}

/// Runs a publish stream that opened with `first`.
pub(super) async fn run(
    first: proto::Publish,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
    from: PartnerId,
    role: Role,
) {
    let (replies, pending) = mpsc::channel::<Reply>(PIPELINE);
    let responder = tokio::spawn(respond(send, pending));
    let mut stop = shared.shutdown.clone();
    let mut next = Ok(first);
    loop {
        let publish = match next {
            Ok(p) => p,
            Err(end) => {
                if let Some(reply) = end {
                    audit_fatal(&shared, &from, &reply).await;
                    let _ = replies.send(reply).await;
                }
                break;
            }
        };
        let reply = match prepare(&shared, &from, role, publish) {
            Err(rejection) => {
                let Rejection { result, audit } = *rejection;
                tracing::info!(code = result.error, message = %result.message, "bulletin rejected");
                shared.record(audit).await;
                Reply::Ready(*result)
            }
            Ok((bulletin, result)) => {
                let (tx, rx) = oneshot::channel();
                let request = Request::Bulletin {
                    bulletin,
                    reply: tx,
                };
                if shared.commits.send(request).await.is_err() {
                    Reply::Ready(reject_identified(
                        result,
                        ErrorCode::ShuttingDown,
                        "the node is stopping".into(),
                    ))
                } else {
                    Reply::Committing(result, rx)
                }
            }
        };
        if replies.send(reply).await.is_err() {
            break;
        }
        next = next_publish(&mut recv, &shared, &mut stop, &replies).await;
    }
    drop(replies);
    let _ = responder.await;
}
