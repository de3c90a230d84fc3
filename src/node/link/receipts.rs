//! Receipts travel back along the federation path (proto/README.md §4.7): a node
//! passes back to each peer the receipts of bulletins that peer handed it (its desks'
//! receipts, and those its own peers passed back to it), so that they reach the
//! origin's node. The sender ([`pass_back`]) reads them from its log and moves a cursor
//! only once the peer has recorded them (at least once); the receiver
//! ([`take_receipts`]) keeps those of bulletins it sent that peer, verified where it
//! knows the receiver's key, in a RECEIPTS_PASSED record.
//!
//! Whether a passed receipt is taken is decided by [`judge_all`], with no I/O.

use std::sync::Arc;

use prost::Message as _;

use crate::audit::record::Event;
use crate::bulletin::BulletinId;
use crate::identity::{Keyring, PartnerId};
use crate::proto::{self, client_frame, server_frame, AuditEvent, ErrorCode};
use crate::receipt::{Expected, ReceiptError, VerifiedReceipt};
use crate::store::{Store, StoreError};
use crate::transport;

use super::exchange::{self, ExchangeError};
use super::{Peering, Wire};

/// Receipts one PassReceipts carries at most.
pub(crate) const MAX_PASSED: usize = 1000;

/// How long receipts gather after a pass that left none waiting. Passing back is not
/// on anyone's critical path; passing what came since the last pass cost a relay an
/// exchange, a RECEIPTS_PASSED commit at the peer and a cursor sync some eighty times a
/// second at 1,000 bulletins a second.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a receipt a peer passed back is left out.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum LeftOut {
    /// Not a receipt.
    #[error("a receipt that does not decode: {0}")]
    Undecodable(String),
    /// Of a bulletin this node did not send that peer (or with another digest).
    #[error("a receipt of {what}, which this node did not send {peer}")]
    NotSent {
        /// The bulletin it names, origin/id.
        what: String,
        /// The peer that passed it.
        peer: PartnerId,
    },
    /// Given at this node: it comes with its ack.
    #[error("a receipt given at this node, which comes with its ack")]
    GivenHere,
    /// Its receiver or node is not an id.
    #[error("a receipt naming no receiver or node: {0}")]
    Unnamed(String),
    /// It does not verify with the receiver's key, or is of something else.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

/// Why each receipt passed back by `peer` is not taken by node `node` (`ids`), given
/// the bulletin it names as stored here, if it is. A receipt is taken when it is of a
/// bulletin this node sent `peer` (same digest), was not given at this node (those come
/// with their ack), and verifies with the receiver's key when this node knows one; one
/// whose receiver it knows no key of is kept unchecked, for an auditor to check with
/// the key (`audit receipts --key`). The signatures are checked as one batch (a batch
/// receipt's once, however many of its bulletins come back together).
pub(crate) fn judge_all(
    receipts: &[(&proto::SignedReceipt, Option<&proto::StoredBulletin>)],
    ids: (&PartnerId, &PartnerId),
    keys: &Keyring,
) -> Vec<Result<(), LeftOut>> {
    let prechecked: Vec<_> = receipts
        .iter()
        .map(|(signed, stored)| precheck(signed, *stored, ids, keys))
        .collect();
    let to_verify: Vec<proto::SignedReceipt> = receipts
        .iter()
        .zip(&prechecked)
        .filter(|(_, p)| matches!(p, Ok(Some(_))))
        .map(|((signed, _), _)| (*signed).clone())
        .collect();
    let mut verified = VerifiedReceipt::verify_all(&to_verify, keys).into_iter();
    // verify_all answers each receipt it is given, in order.
    let mut check = |of: ToVerify| -> Result<(), LeftOut> {
        let unanswered = || {
            Err(ReceiptError::Malformed(
                "the receipt was not checked".into(),
            ))
        };
        verified
            .next()
            .unwrap_or_else(unanswered)?
            .is_of(&of.expected())?;
        Ok(())
    };
    prechecked
        .into_iter()
        .map(|p| match p? {
            None => Ok(()),
            Some(of) => check(of),
        })
        .collect()
}

/// What a passed receipt must be the receipt of, once only its signature is left to
/// check.
struct ToVerify {
    receiver: PartnerId,
    at: PartnerId,
    origin: String,
    id: String,
    digest: bytes::Bytes,
}

impl ToVerify {
    fn expected(&self) -> Expected<'_> {
        Expected {
            receiver: &self.receiver,
            node: &self.at,
            origin: &self.origin,
            bulletin_id: &self.id,
            digest: &self.digest,
        }
    }
}

/// The checks of [`judge_all`] that need no signature: `None` when the receipt is taken
/// unchecked (its receiver's key is not known here), else what it must verify as.
fn precheck(
    signed: &proto::SignedReceipt,
    stored: Option<&proto::StoredBulletin>,
    (peer, node): (&PartnerId, &PartnerId),
    keys: &Keyring,
) -> Result<Option<ToVerify>, LeftOut> {
    let body = crate::receipt::stated(signed)
        .ok_or_else(|| LeftOut::Undecodable("neither a receipt nor a batch receipt".into()))?;
    let sent = stored.filter(|s| s.shared_with.iter().any(|p| p == peer.as_str()));
    let Some(stored) = sent.filter(|s| s.digest == body.digest) else {
        let what = format!("{}/{}", body.origin, body.bulletin_id);
        let peer = peer.clone();
        return Err(LeftOut::NotSent { what, peer });
    };
    if body.node == node.as_str() {
        return Err(LeftOut::GivenHere);
    }
    let named = |text: &str| {
        text.parse::<PartnerId>()
            .map_err(|e| LeftOut::Unnamed(e.to_string()))
    };
    let (receiver, at) = (named(&body.receiver)?, named(&body.node)?);
    if !keys.knows(&receiver) {
        return Ok(None);
    }
    Ok(Some(ToVerify {
        receiver,
        at,
        origin: stored.origin.clone(),
        id: stored.id.clone(),
        digest: stored.digest.clone(),
    }))
}

/// The stored bulletin a receipt names, with its seq here.
fn named(
    store: &Store,
    signed: &proto::SignedReceipt,
) -> Result<Option<(u64, proto::StoredBulletin)>, StoreError> {
    let Some(body) = crate::receipt::stated(signed) else {
        return Ok(None);
    };
    let (Ok(origin), Some(id)) = (
        body.origin.parse::<PartnerId>(),
        BulletinId::parse_canonical(&body.bulletin_id),
    ) else {
        return Ok(None);
    };
    let Some((seq, _)) = store.lookup(&origin, &id)? else {
        return Ok(None);
    };
    Ok(store.get(seq)?.map(|s| (seq, s)))
}

/// Takes the receipts `peer` passed back: records those [`judge`] takes in one
/// RECEIPTS_PASSED record (durable before the answer), and answers how many.
pub(crate) async fn take_receipts(
    p: proto::PassReceipts,
    mut send: quinn::SendStream,
    node: &Peering,
    peer: &PartnerId,
) {
    let frames = &node.frames;
    if p.receipts.len() > MAX_PASSED {
        let why = format!(
            "at most {MAX_PASSED} receipts at once; this holds {}",
            p.receipts.len()
        );
        let event = Event::rejected(peer, None, ErrorCode::InvalidRequest, &why);
        node.trail.refusal(peer, event).await;
        return transport::send_error(&mut send, ErrorCode::InvalidRequest, why, frames).await;
    }
    let rules = node.rules.in_force();
    let (store, ids) = (&node.store, (peer, &node.own.id));
    let (taken, left_out, why) = match judged(store, &rules.keyring, ids, p.receipts) {
        Ok(judged) => judged,
        Err(e) => {
            let why = format!("the node could not read its store: {e}");
            return transport::send_error(&mut send, ErrorCode::Internal, why, frames).await;
        }
    };
    let recorded = taken.len() as u32;
    if !taken.is_empty() {
        let event = Event::receipts_passed(peer, taken, &why);
        if let Err(e) = node.trail.commit(Some(event), None).await {
            return transport::send_error(&mut send, ErrorCode::Internal, e.to_peer(), frames)
                .await;
        }
    }
    let answer = proto::ServerFrame {
        frame: Some(proto::server_frame::Frame::ReceiptsTaken(
            proto::ReceiptsTaken {
                recorded,
                left_out,
                why,
            },
        )),
    };
    let _ = transport::write_frame(&mut send, &answer, frames).await;
    let _ = send.finish();
}

/// The receipts taken (with this node's seq of their bulletin), how many were left
/// out, and the first reason.
type Judged = (Vec<proto::Receipted>, u32, String);

/// Judges each receipt passed back, `ids` being (the peer, this node), by `keys` and
/// what `store` holds of the bulletins they name.
fn judged(
    store: &Store,
    keys: &Keyring,
    ids: (&PartnerId, &PartnerId),
    receipts: Vec<proto::SignedReceipt>,
) -> Result<Judged, StoreError> {
    let (mut taken, mut left_out, mut why) = (Vec::new(), 0, String::new());
    let found = receipts
        .iter()
        .map(|signed| named(store, signed))
        .collect::<Result<Vec<_>, _>>()?;
    let pairs: Vec<_> = receipts
        .iter()
        .zip(&found)
        .map(|(signed, f)| (signed, f.as_ref().map(|(_, s)| s)))
        .collect();
    let judged = judge_all(&pairs, ids, keys);
    for ((signed, found), judged) in receipts.into_iter().zip(found).zip(judged) {
        match judged {
            Ok(()) => taken.push(proto::Receipted {
                seq: found.map_or(0, |(seq, _)| seq),
                receipt: Some(signed),
            }),
            Err(w) => {
                left_out += 1;
                if why.is_empty() {
                    why = crate::text::bounded(&w.to_string(), 512);
                }
            }
        }
    }
    Ok((taken, left_out, why))
}

/// Passes back to `peer`, over `conn`, the receipts it is owed, until the link ends or
/// the node stops; after a peer could not take them (one that does not speak
/// PassReceipts), waits longer each time.
pub(crate) async fn pass_back(conn: quinn::Connection, node: Peering, peer: PartnerId) {
    let what = "receipts could not be passed back to the peer";
    let (c, store, wire, p) = (&conn, &node.store, node.wire(), &peer);
    let pass = move || pass_once(c, store, wire, p);
    exchange::repeat((&conn, &peer), node.shutdown.clone(), what, pass).await;
}

/// Passes back one batch of what `peer` is owed; says when to pass again: at once if
/// the log holds more to look through, after [`GATHER`] if it passed some.
async fn pass_once(
    conn: &quinn::Connection,
    store: &Arc<Store>,
    wire: Wire<'_>,
    peer: &PartnerId,
) -> Result<exchange::Again, ExchangeError> {
    let next = store.receipts_passed(peer)?;
    let (receipts, through, more) = {
        let (store, peer) = (store.clone(), peer.clone());
        tokio::task::spawn_blocking(move || owed(&store, &peer, next, MAX_PASSED)).await??
    };
    if through <= next {
        return Ok(exchange::Again::Idle);
    }
    let passed = !receipts.is_empty();
    if passed {
        let frame = client_frame::Frame::PassReceipts(proto::PassReceipts { receipts });
        match exchange::request(conn, wire, frame, "PassReceipts").await? {
            server_frame::Frame::ReceiptsTaken(t) if t.left_out > 0 => {
                tracing::info!(left_out = t.left_out, why = %t.why, "the peer left out receipts passed back");
            }
            server_frame::Frame::ReceiptsTaken(_) => {}
            other => {
                let what = format!("{other:?}");
                return Err(ExchangeError::Unexpected(what, "PassReceipts"));
            }
        }
    }
    // Moving the cursor syncs the engine's journal: not on a runtime worker.
    let (store, peer) = (store.clone(), peer.clone());
    tokio::task::spawn_blocking(move || store.set_receipts_passed(&peer, through)).await??;
    Ok(next_pass(more, passed))
}

/// When to pass again after a pass: at once while the log holds `more` to look
/// through, after [`GATHER`] once a pass `passed` some and caught up (so that what
/// comes meanwhile goes back in one exchange), and idly when there was nothing.
fn next_pass(more: bool, passed: bool) -> exchange::Again {
    match (more, passed) {
        (true, _) => exchange::Again::Now,
        (false, true) => exchange::Again::After(GATHER),
        (false, false) => exchange::Again::Idle,
    }
}

/// The receipts on this node's log from audit seq `next` on that `peer` is owed (of
/// bulletins `peer` handed this node), at most `max` (bar one record's); the seq to
/// look from next time, and whether the log holds more after it.
fn owed(
    store: &Store,
    peer: &PartnerId,
    next: u64,
    max: usize,
) -> Result<(Vec<proto::SignedReceipt>, u64, bool), StoreError> {
    let size = store.audit_progress().0;
    // Each event's records are read only as far as a frame's worth of receipts, so a
    // long way behind is caught up a frame at a time, each record read once.
    let (mut records, mut through) = (Vec::new(), size);
    for event in [AuditEvent::Acked, AuditEvent::ReceiptsPassed] {
        let (mut read, read_through) = with_receipts(store, event, (next, size), max)?;
        through = through.min(read_through);
        records.append(&mut read);
    }
    records.retain(|r| r.seq < through);
    records.sort_by_key(|r| r.seq);
    let mut out = Vec::new();
    for r in records {
        let mine = r.receipts.len();
        if out.len() + mine > max && !out.is_empty() {
            return Ok((out, r.seq, true));
        }
        for x in r.receipts {
            let from_peer = store
                .get(x.seq)?
                .is_some_and(|s| s.received_from == peer.as_str());
            out.extend(x.receipt.filter(|_| from_peer));
        }
    }
    Ok((out, through, through < size))
}

/// The records of `event` with seq in `next..size` that hold receipts, in order, read
/// until they hold `enough` receipts; and the seq up to which all were read.
fn with_receipts(
    store: &Store,
    event: AuditEvent,
    (next, size): (u64, u64),
    enough: usize,
) -> Result<(Vec<proto::AuditRecord>, u64), StoreError> {
    let mut q = crate::audit::Query {
        partner: None,
        bulletin: None,
        event: Some(event),
        since: None,
        until: None,
        after: next.checked_sub(1),
        limit: crate::audit::MAX_PAGE,
    };
    let (mut out, mut receipts) = (Vec::new(), 0);
    loop {
        let page = store.audit().query(&q)?;
        for bytes in page.records {
            let r = proto::AuditRecord::decode(bytes).map_err(|e| StoreError::Corrupt {
                key: "audit record".into(),
                why: e.into(),
            })?;
            if r.seq >= size {
                return Ok((out, size));
            }
            if !r.receipts.is_empty() {
                receipts += r.receipts.len();
                let seq = r.seq;
                out.push(r);
                if receipts >= enough {
                    return Ok((out, seq + 1));
                }
            }
        }
        match page.next_after {
            Some(after) if after < size => q.after = Some(after),
            _ => return Ok((out, size)),
        }
    }
}

#[cfg(test)]
mod tests;
