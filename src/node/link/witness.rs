//! Peer nodes witness each other's audit logs (proto/README.md §8.5). As a witness
//! ([`witness`]) a node cosigns a peer's checkpoint only if it is signed by the peer's
//! key and consistent with the last one it cosigned (`audit::witness::judge`), keeps
//! that checkpoint durably, and on a fork or a rollback records the alarm and cosigns
//! nothing more of that log. As a log ([`get_witnessed`]) a node sends each new
//! checkpoint to every peer with a consistency proof from the size the peer last
//! cosigned, and keeps the cosignatures on its own checkpoints.

use std::sync::Mutex;

use crate::audit::checkpoint::{self, log_origin, Verified};
use crate::audit::merkle::TreeHash;
use crate::audit::record::Event;
use crate::audit::witness::{self, Judgement, WitnessKey};
use crate::identity::Keyring;
use crate::identity::PartnerId;
use crate::proto::{self, ErrorCode};
use crate::store::{Store, StoreError};
use crate::timestamp::Timestamp;
use crate::transport;

use super::exchange::{self, ExchangeError};
use super::Peering;

/// One witness decision at a time: judging and keeping the latest checkpoint are one
/// step, so two requests of one log cannot both pass against the same old checkpoint.
static JUDGING: Mutex<()> = Mutex::new(());

/// What a witness decision uses of the node: its store, the keys in force, and its
/// own id and key to cosign with.
struct Witness<'a> {
    store: &'a Store,
    keys: &'a Keyring,
    me: &'a PartnerId,
    key: &'a ed25519_dalek::SigningKey,
}

/// What this node, as a witness, answers.
enum Answer {
    Cosigned(String),
    Conflict(u64),
    Refused(String),
}

/// Answers a peer's request to witness its log.
pub(crate) async fn witness(
    req: proto::WitnessRequest,
    mut send: quinn::SendStream,
    node: &Peering,
    peer: &PartnerId,
) {
    let frames = &node.frames;
    let rules = node.rules.in_force();
    let w = Witness {
        store: &node.store,
        keys: &rules.keyring,
        me: &node.own.id,
        key: &node.own.key,
    };
    let answer = match judged(&w, peer, &req, Timestamp::now()) {
        Ok((answer, alarm)) => {
            if let Some(event) = alarm {
                node.trail.record(event).await;
            }
            answer
        }
        Err(e) => {
            let why = format!("the witness could not read its store: {e}");
            return transport::send_error(&mut send, ErrorCode::Internal, why, frames).await;
        }
    };
    let mut out = proto::WitnessAnswer::default();
    match answer {
        Answer::Cosigned(line) => out.cosignature = line,
        Answer::Conflict(size) => out.conflict_size = Some(size),
        Answer::Refused(why) => out.refused = why,
    }
    let frame = proto::ServerFrame {
        frame: Some(proto::server_frame::Frame::WitnessAnswer(out)),
    };
    let _ = transport::write_frame(&mut send, &frame, frames).await;
    let _ = send.finish();
}

/// The witness's decision on `req`, kept: a cosigned checkpoint is stored before the
/// cosignature leaves, a caught fork is stored before the refusal does, with the
/// record of the alarm to write.
fn judged(
    w: &Witness<'_>,
    peer: &PartnerId,
    req: &proto::WitnessRequest,
    now: Timestamp,
) -> Result<(Answer, Option<Event>), StoreError> {
    let store = w.store;
    let _one = JUDGING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = store.witness_alarm(peer)? {
        return Ok((Answer::Refused(format!(
            "this node caught {peer}'s audit log forking or rolling back ({why}) and cosigns nothing more of it"
        )), None));
    }
    let Some(new) = signed_by(w.keys, peer, &req.checkpoint) else {
        let why = format!("the checkpoint is not signed by {peer}'s key for its log");
        return Ok((Answer::Refused(why), None));
    };
    let Some(proof) = hashes(&req.proof) else {
        return Ok((Answer::Refused("a proof hash is not 32 bytes".into()), None));
    };
    let latest = store.witnessed(peer)?;
    let latest = latest.and_then(|t| checkpoint::stated(&t).ok());
    match witness::judge(latest, req.old_size, new, &proof) {
        Judgement::Cosign => {
            // The same checkpoint again is cosigned again, without another write.
            if latest != Some(new) {
                store.set_witnessed(peer, &req.checkpoint)?;
            }
            let name = witness::witness_name(w.me.as_str());
            let time = now.unix_ms() / 1000;
            let answer = match witness::cosign(&req.checkpoint, &name, w.key, time) {
                Ok(line) => Answer::Cosigned(line),
                Err(e) => Answer::Refused(e.to_string()),
            };
            Ok((answer, None))
        }
        Judgement::Conflict(size) => Ok((Answer::Conflict(size), None)),
        Judgement::Fork(how) => {
            tracing::error!(%peer, %how, "a peer's audit log forked or rolled back: no more cosignatures for it");
            store.set_witness_alarm(peer, &how)?;
            let refused = Answer::Refused(format!("{peer}'s audit log {how}"));
            Ok((refused, Some(Event::witness_alarm(peer, &how))))
        }
    }
}

/// The checkpoint's size and root if a key of `peer` in `keys` signed it for its log.
fn signed_by(keys: &Keyring, peer: &PartnerId, text: &str) -> Option<Verified> {
    let origin = log_origin(peer.as_str());
    keys.keys_of(peer).iter().find_map(|k| {
        let key = k.verifying_key();
        checkpoint::verify(text, &origin, key).ok()
    })
}

fn hashes(proof: &[bytes::Bytes]) -> Option<Vec<TreeHash>> {
    proof
        .iter()
        .map(|h| <[u8; 32]>::try_from(&h[..]).ok().map(TreeHash))
        .collect()
}

/// Asks `peer`, over `conn`, to cosign each new checkpoint of this node's log, until
/// the link ends or the node stops; after a refusal (or a peer that does not speak
/// WitnessRequest), waits longer each time.
pub(crate) async fn get_witnessed(conn: quinn::Connection, node: Peering, peer: PartnerId) {
    let what = "the peer did not cosign this node's checkpoint";
    let (c, n, p) = (&conn, &node, &peer);
    let ask = move || async move { ask_once(c, n, p).await.map(|()| exchange::Again::Idle) };
    exchange::repeat((&conn, &peer), node.shutdown.clone(), what, ask).await;
}

/// Sends the newest checkpoint if `peer` has not cosigned it; follows one conflict
/// (the peer names the size it last cosigned).
async fn ask_once(
    conn: &quinn::Connection,
    node: &Peering,
    peer: &PartnerId,
) -> Result<(), ExchangeError> {
    let store = &node.store;
    let Some((size, text)) = store.audit().latest_checkpoint()? else {
        return Ok(());
    };
    let mut old = store.cosigned_by(peer)?;
    if old == size {
        return Ok(());
    }
    for _ in 0..2 {
        let proof = match old > 0 && old < size {
            true => store.audit().prove_consistency(size, old)?,
            false => Vec::new(),
        };
        match ask(conn, node.wire(), &text, old, proof).await? {
            proto::WitnessAnswer {
                conflict_size: Some(theirs),
                ..
            } => old = theirs,
            a if !a.cosignature.is_empty() => return keep(node, peer, size, &text, &a.cosignature),
            a => return Err(ExchangeError::Refused(a.refused)),
        }
    }
    Err(ExchangeError::Conflicts)
}

/// Sends one WitnessRequest and reads the answer.
async fn ask(
    conn: &quinn::Connection,
    wire: super::Wire<'_>,
    checkpoint: &str,
    old_size: u64,
    proof: Vec<TreeHash>,
) -> Result<proto::WitnessAnswer, ExchangeError> {
    let request = proto::WitnessRequest {
        checkpoint: checkpoint.to_owned(),
        old_size,
        proof: proof
            .iter()
            .map(|h| bytes::Bytes::copy_from_slice(&h.0))
            .collect(),
    };
    let frame = proto::client_frame::Frame::WitnessRequest(request);
    match exchange::request(conn, wire, frame, "WitnessRequest").await? {
        proto::server_frame::Frame::WitnessAnswer(a) => Ok(a),
        other => Err(ExchangeError::Unexpected(
            format!("{other:?}"),
            "WitnessRequest",
        )),
    }
}

/// Checks `line` is `peer`'s cosignature of the checkpoint and keeps it on it.
fn keep(
    node: &Peering,
    peer: &PartnerId,
    size: u64,
    text: &str,
    line: &str,
) -> Result<(), ExchangeError> {
    let cosigned = witness::with_cosignature(text, line);
    let log = (
        log_origin(node.own.id.as_str()),
        node.own.key.verifying_key(),
    );
    let rules = node.rules.in_force();
    let verifies = rules.keyring.keys_of(peer).iter().any(|k| {
        let w = WitnessKey {
            name: witness::witness_name(peer.as_str()),
            key: *k.verifying_key(),
        };
        witness::verify_cosignature(&cosigned, (&log.0, &log.1), &w).is_ok()
    });
    if !verifies {
        return Err(ExchangeError::BadCosignature);
    }
    let store = &node.store;
    store.add_cosignature(size, line)?;
    store.set_cosigned_by(peer, size)?;
    Ok(())
}
