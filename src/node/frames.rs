//! Which client frame is which: what a stream's first frame opens for a partner of a
//! given role, and which frames may follow on a publish or a subscribe stream. The one
//! place that tells `ClientFrame`s apart; no I/O.

use crate::identity::{Partner, Role};
use crate::proto::{self, client_frame::Frame, ErrorCode};

/// Longest words of a peer's refusal carried in an Ack (`Refusal.message`): what a
/// puller writes and a deliverer reads.
pub(crate) const REFUSAL_MESSAGE_MAX: usize = 512;

/// What a stream's first frame opens.
#[derive(Debug)]
pub(super) enum Opening {
    /// The session greeting: answer with Welcome.
    Hello,
    /// A publish stream, with its first Publish.
    Publish(proto::Publish),
    /// A subscribe stream.
    Subscribe(proto::Subscribe),
    /// One auditor request.
    Auditor(Frame),
    /// A peer node passing back receipts.
    PassReceipts(proto::PassReceipts),
    /// A peer node asking this node to witness its audit log.
    Witness(proto::WitnessRequest),
    /// Refused: the partner's role does not allow it (recorded as a refusal).
    NotPermitted(String),
    /// Refused: not a frame a stream may open with.
    Refused(ErrorCode, String),
}

/// What `frame`, the first of a stream, opens for `partner` in `role`.
pub(super) fn opening(frame: Option<Frame>, who: &Partner) -> Opening {
    let (role, partner) = (who.role, &who.id);
    let auditor = role == Role::Auditor;
    match frame {
        Some(Frame::Hello(h)) if h.protocol_version == 1 => Opening::Hello,
        Some(Frame::Hello(h)) => Opening::Refused(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not spoken here; use 1",
                h.protocol_version
            ),
        ),
        Some(Frame::Publish(p)) if !auditor => Opening::Publish(p),
        Some(Frame::Subscribe(s)) if !auditor => Opening::Subscribe(s),
        Some(Frame::Publish(_) | Frame::Subscribe(_)) => {
            Opening::NotPermitted("auditors may neither publish nor receive bulletins".into())
        }
        Some(
            f @ (Frame::AuditQuery(_)
            | Frame::CheckpointRequest(_)
            | Frame::InclusionRequest(_)
            | Frame::ConsistencyRequest(_)
            | Frame::MetricsRequest(_)),
        ) => match auditor {
            true => Opening::Auditor(f),
            false => Opening::NotPermitted(format!(
                "only auditors may read the audit log; {partner} is a {role}"
            )),
        },
        Some(Frame::PassReceipts(p)) if role == Role::Relay => Opening::PassReceipts(p),
        Some(Frame::WitnessRequest(w)) if role == Role::Relay => Opening::Witness(w),
        Some(Frame::WitnessRequest(_)) => Opening::NotPermitted(format!(
            "only peer nodes ask to be witnessed; {partner} is a {role}"
        )),
        Some(Frame::PassReceipts(_)) => Opening::NotPermitted(format!(
            "only peer nodes pass receipts back; {partner} is a {role}"
        )),
        Some(Frame::Ack(_)) => Opening::Refused(
            ErrorCode::UnexpectedFrame,
            "a stream must open with Hello, Publish or Subscribe".into(),
        ),
        None => empty(),
    }
}

fn empty() -> Opening {
    Opening::Refused(ErrorCode::MalformedFrame, "frame has no message set".into())
}

fn refused(o: Opening) -> (ErrorCode, String) {
    match o {
        Opening::Refused(code, msg) => (code, msg),
        _ => (ErrorCode::Internal, String::new()),
    }
}

/// A frame that follows on a publish stream: a Publish, or why the stream must end.
pub(super) fn on_publish_stream(
    frame: proto::ClientFrame,
) -> Result<proto::Publish, (ErrorCode, String)> {
    match frame.frame {
        Some(Frame::Publish(p)) => Ok(p),
        None => Err(refused(empty())),
        Some(_) => Err((
            ErrorCode::UnexpectedFrame,
            "only Publish frames belong on a publish stream".into(),
        )),
    }
}

/// A frame that follows on a subscribe stream: the seqs of an Ack naming at most
/// `window` of them, or why the stream must end.
pub(super) fn on_subscribe_stream(
    frame: proto::ClientFrame,
    window: usize,
) -> Result<proto::Ack, (ErrorCode, String)> {
    match frame.frame {
        Some(Frame::Ack(ack)) if ack.seq.len() <= window && ack.refused.len() <= window => {
            Ok(ack)
        }
        Some(Frame::Ack(ack)) => Err((
            ErrorCode::MalformedFrame,
            format!(
                "an Ack may name at most the window of {window} seqs, this one names {} ({} refused)",
                ack.seq.len(),
                ack.refused.len()
            ),
        )),
        None => Err(refused(empty())),
        Some(_) => Err((
            ErrorCode::UnexpectedFrame,
            "only Ack frames belong on a subscribe stream".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
