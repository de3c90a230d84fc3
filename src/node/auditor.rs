//! An auditor's stream: one request (a log query, the latest checkpoint, an inclusion
//! or consistency proof, a metrics report), one answer. Every request is itself recorded
//! in the audit log before it is answered. Reads run on the blocking pool (the store is
//! synchronous); the answers come from `store` and `metrics`, nothing is decided here.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::shared::Shared;
use super::shared::{Rules, StorageHandle, Trail};
use super::writer::{Request, StorageError};
use crate::audit::record::Event;
use crate::audit::Query;
use crate::identity::PartnerId;
use crate::metrics::{self, Period};
use crate::proto::{self, client_frame::Frame as Client, server_frame::Frame as Server};
use crate::store::Store;
use crate::timestamp::Timestamp;
use crate::transport;

/// Why an auditor's request gets an error instead of an answer.
#[derive(Debug)]
enum Refusal {
    /// The request cannot be answered as asked.
    Invalid(String),
    /// The node failed.
    Internal(String),
}

/// An auditor's request as its record of the request says it.
fn request_text(frame: &Client) -> String {
    match frame {
        Client::AuditQuery(q) => match Query::from_wire(q) {
            Ok(q) => q.to_string(),
            Err(e) => format!("audit query (invalid: {e})"),
        },
        Client::CheckpointRequest(r) if r.witnessed => "latest witnessed checkpoint".into(),
        Client::CheckpointRequest(_) => "latest checkpoint".into(),
        Client::InclusionRequest(r) => {
            format!(
                "inclusion proof of record {} in tree size {}",
                r.seq, r.tree_size
            )
        }
        Client::ConsistencyRequest(r) => format!(
            "consistency proof from tree size {} to {}",
            r.old_size, r.new_size
        ),
        Client::MetricsRequest(r) => format!(
            "metrics fiscal_year={} since_day={} until_day={} view={}",
            r.fiscal_year,
            r.since_day,
            r.until_day,
            r.view().as_str_name()
        ),
        _ => "unexpected request".into(),
    }
}

/// What an auditor's request uses of the node: the trail it is recorded on before
/// it is answered, the store and storage thread it reads and checkpoints, and the
/// rules that say how the node counts.
#[derive(Clone, Copy)]
pub(super) struct Answering<'a> {
    pub node_id: &'a PartnerId,
    pub rules: &'a Rules,
    pub trail: &'a Trail,
    pub storage: &'a StorageHandle,
    pub frames: &'a transport::FrameCounts,
}

impl<'a> Answering<'a> {
    /// The running node's.
    pub(super) fn of(shared: &'a Shared) -> Answering<'a> {
        Answering {
            node_id: &shared.own.id,
            rules: &shared.rules,
            trail: &shared.trail,
            storage: &shared.storage,
            frames: &shared.book.frames,
        }
    }
}

/// Answers one auditor request on its stream.
pub(super) async fn answer(
    frame: Client,
    mut send: quinn::SendStream,
    node: Answering<'_>,
    auditor: &PartnerId,
) {
    // On the record, durably, before anything is answered.
    let event = Event::auditor_query(auditor, request_text(&frame));
    if let Err(e) = node.trail.commit(Some(event), None).await {
        tracing::error!(error = %e, "cannot record an auditor's request");
        let why = format!("the request could not be recorded: {}", e.to_peer());
        return refuse(&mut send, Refusal::Internal(why), node.frames).await;
    }
    let answer = match frame {
        Client::CheckpointRequest(r) if r.witnessed => witnessed(node.storage).await,
        Client::CheckpointRequest(_) => checkpoint(node.storage).await,
        other => {
            // The query is recorded before it runs; a fresh checkpoint first, if a proof
            // is to be taken against "the latest".
            let needs_checkpoint = matches!(
                &other,
                Client::InclusionRequest(proto::InclusionRequest { tree_size: 0, .. })
                    | Client::ConsistencyRequest(proto::ConsistencyRequest { new_size: 0, .. })
            );
            if needs_checkpoint {
                if let Err(e) = sign_now(node.storage).await {
                    return refuse(&mut send, Refusal::Internal(e.to_peer()), node.frames).await;
                }
            }
            let store = node.storage.store.clone();
            let rules = node.rules.in_force();
            let n = &rules.config.node;
            let facts = Facts {
                node: node.node_id.to_string(),
                fiscal_start: rules.config.metrics.fiscal_year_start_month,
                domestic: crate::identity::Affiliation::of(n.country, n.organisation.as_ref())
                    .map(|a| a.to_string()),
                targets: rules.config.targets.clone(),
            };
            let now = Timestamp::now();
            tokio::task::spawn_blocking(move || read(&store, other, &facts, now))
                .await
                .unwrap_or_else(|e| Err(Refusal::Internal(e.to_string())))
        }
    };
    match answer {
        Ok(frame) => {
            let frame = proto::ServerFrame { frame: Some(frame) };
            if transport::write_frame(&mut send, &frame, node.frames)
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
        Err(r) => refuse(&mut send, r, node.frames).await,
    }
}

async fn refuse(send: &mut quinn::SendStream, r: Refusal, frames: &crate::transport::FrameCounts) {
    let (code, msg) = match r {
        Refusal::Invalid(m) => (proto::ErrorCode::InvalidRequest, m),
        Refusal::Internal(m) => {
            tracing::error!(error = %m, "an auditor request failed");
            (proto::ErrorCode::Internal, m)
        }
    };
    transport::send_error(send, code, msg, frames).await;
}

/// Has the storage thread sign a checkpoint of everything appended so far.
async fn sign_now(storage: &StorageHandle) -> Result<(), StorageError> {
    let (tx, rx) = oneshot::channel();
    let request = Request::Checkpoint { reply: Some(tx) };
    let stopped = |_| StorageError::Stopped;
    storage.commits.send(request).await.map_err(stopped)?;
    rx.await.map_err(|_| StorageError::Stopped)?.map(|_| ())
}

async fn checkpoint(storage: &StorageHandle) -> Result<Server, Refusal> {
    sign_now(storage)
        .await
        .map_err(|e| Refusal::Internal(e.to_peer()))?;
    let store = storage.store.clone();
    let latest = tokio::task::spawn_blocking(move || store.audit().latest_checkpoint())
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let Some((_, note)) = latest else {
        return Err(Refusal::Invalid("the audit log is empty".into()));
    };
    Ok(Server::Checkpoint(proto::SignedCheckpoint {
        note,
        public_key: Bytes::copy_from_slice(storage.audit_key.as_bytes()),
    }))
}

/// The newest stored checkpoint that carries a cosignature besides the node's own
/// signature.
async fn witnessed(storage: &StorageHandle) -> Result<Server, Refusal> {
    let store = storage.store.clone();
    let found = tokio::task::spawn_blocking(move || {
        let cosigned =
            |note: &String| note.lines().filter(|l| l.starts_with('\u{2014}')).count() > 1;
        for c in store.audit().checkpoints().rev() {
            let (_, note) = c?;
            if cosigned(&note) {
                return Ok(Some(note));
            }
        }
        Ok::<_, crate::store::StoreError>(None)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let Some(note) = found else {
        return Err(Refusal::Invalid(
            "no checkpoint carries a witness's cosignature yet".into(),
        ));
    };
    Ok(Server::Checkpoint(proto::SignedCheckpoint {
        note,
        public_key: Bytes::copy_from_slice(storage.audit_key.as_bytes()),
    }))
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::Internal(e.to_string())
}

fn hashes(h: Vec<crate::audit::merkle::TreeHash>) -> Vec<Bytes> {
    h.into_iter()
        .map(|h| Bytes::copy_from_slice(&h.0))
        .collect()
}

/// The latest checkpoint's size and note, or an error if there is none yet.
fn latest(store: &Store) -> Result<(u64, String), Refusal> {
    store
        .audit()
        .latest_checkpoint()
        .map_err(internal)?
        .ok_or_else(|| Refusal::Invalid("no checkpoint has been signed yet".into()))
}

/// What a report needs to know of the node besides its log.
struct Facts {
    node: String,
    /// First month of the fiscal year.
    fiscal_start: u8,
    /// Its own country or organisation: the domestic row.
    domestic: Option<String>,
    /// The programme's targets per fiscal year.
    targets: Vec<metrics::YearTargets>,
}

/// Answers a read-only request from the database.
fn read(store: &Store, frame: Client, facts: &Facts, now: Timestamp) -> Result<Server, Refusal> {
    let log = store.audit();
    match frame {
        Client::AuditQuery(q) => {
            let query = Query::from_wire(&q).map_err(|e| Refusal::Invalid(e.to_string()))?;
            let page = log.query(&query).map_err(internal)?;
            let bulletins = store.bulletin_names(&page.records).map_err(internal)?;
            Ok(Server::AuditPage(proto::AuditPage {
                records: page.records,
                next_after: page.next_after,
                log_size: page.log_size,
                bulletins,
            }))
        }
        Client::InclusionRequest(r) => {
            let (size, note) = match r.tree_size {
                0 => latest(store)?,
                n => (n, String::new()),
            };
            let log_size = log.size().map_err(internal)?;
            if size > log_size || r.seq >= size {
                return Err(Refusal::Invalid(format!(
                    "record {} is not in a tree of {size} (the log holds {log_size})",
                    r.seq
                )));
            }
            let proof = log
                .prove_inclusion(size, r.seq)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            let record = log
                .record(r.seq)
                .map_err(internal)?
                .ok_or_else(|| Refusal::Invalid(format!("no record {}", r.seq)))?;
            Ok(Server::InclusionProof(proto::InclusionProof {
                seq: r.seq,
                tree_size: size,
                record,
                hashes: hashes(proof),
                checkpoint: note,
            }))
        }
        Client::ConsistencyRequest(r) => {
            let new = match r.new_size {
                0 => latest(store)?.0,
                n => n,
            };
            let log_size = log.size().map_err(internal)?;
            if new > log_size || r.old_size == 0 || r.old_size > new {
                return Err(Refusal::Invalid(format!(
                    "no consistency proof from {} to {new}: need 1 <= old <= new <= {log_size}",
                    r.old_size
                )));
            }
            let proof = log
                .prove_consistency(new, r.old_size)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            Ok(Server::ConsistencyProof(proto::ConsistencyProof {
                old_size: r.old_size,
                new_size: new,
                hashes: hashes(proof),
                old_root: Bytes::copy_from_slice(&log.root(r.old_size).map_err(internal)?.0),
                new_root: Bytes::copy_from_slice(&log.root(new).map_err(internal)?.0),
            }))
        }
        Client::MetricsRequest(r) => metrics_report(store, &r, facts, now),
        _ => Err(Refusal::Invalid("not an auditor request".into())),
    }
}

/// The metrics report a request asks for, cut per partner or per country, naming the
/// log size its counters were read at.
fn metrics_report(
    store: &Store,
    r: &proto::MetricsRequest,
    facts: &Facts,
    now: Timestamp,
) -> Result<Server, Refusal> {
    let today = metrics::day_of(now.unix_ms());
    let period = Period::requested(r, facts.fiscal_start, today)
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    let counted = store.counted(period.until).map_err(internal)?;
    let programme = metrics::Programme {
        domestic: facts.domestic.as_deref(),
        fiscal_start: facts.fiscal_start,
        targets: &facts.targets,
    };
    let report = metrics::report_in_view(r.view(), &facts.node, programme, &period, counted.into());
    Ok(Server::MetricsReport(report))
}

#[cfg(test)]
mod tests;
