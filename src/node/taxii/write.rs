//! The TAXII write side: adding objects to a partner's inbox collection, and the status
//! resources that say what became of each object. An envelope goes through
//! `inbox::prepare` under the rules gate and to the storage thread like a publish, and
//! its answer waits until the bulletins are durable and recorded.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::inbox::{self, Failure, Made};
use super::resources::{error, no_collection, own, taxii, Recorded, Which};
use super::{Caller, Gateway};
use crate::identity::PartnerId;
use crate::node::writer::StorageError;
use crate::store::Outcome;
use crate::timestamp::Timestamp;

/// Status resources kept for clients to poll, at most, and their bytes at most: the
/// oldest go first.
const STATUSES_KEPT: usize = 1000;
const STATUS_BYTES_KEPT: usize = 16 << 20;
/// Objects in one envelope, at most: what a status lists stays bounded.
const MAX_OBJECTS: usize = 10_000;

/// A status resource as sent: whose it is, its id, its JSON text.
type Kept = (PartnerId, String, String);

/// The status resources of recent writes, and their bytes in all.
#[derive(Default)]
pub(super) struct Statuses(std::sync::Mutex<(VecDeque<Kept>, usize)>);

impl Statuses {
    fn keep(&self, partner: &PartnerId, id: &str, status: &Value) {
        let text = status.to_string();
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (kept, bytes) = &mut *guard;
        *bytes += text.len();
        kept.push_back((partner.clone(), id.to_owned(), text));
        while kept.len() > STATUSES_KEPT || (*bytes > STATUS_BYTES_KEPT && kept.len() > 1) {
            if let Some((_, _, old)) = kept.pop_front() {
                *bytes -= old.len();
            }
        }
    }

    fn find(&self, partner: &PartnerId, id: &str) -> Option<Value> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .0
            .iter()
            .find(|(p, i, _)| p == partner && i == id)
            .and_then(|(_, _, s)| serde_json::from_str(s).ok())
    }
}

/// `POST …/collections/{id}/objects/`: the envelope's objects become bulletins.
pub(super) async fn add_objects(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match own(&g, &c, &id) {
        Some((Which::Inbox, _)) => {}
        Some((Which::Shared, _)) => {
            return error(
                StatusCode::FORBIDDEN,
                "Read only",
                "this collection is what is shared with you; add objects to your inbox collection",
            )
        }
        None => return no_collection(),
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !media.replace(' ', "").starts_with("application/taxii+json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send an envelope as application/taxii+json;version=2.1",
        );
    }
    let crate::stix::Envelope { objects, audience } = match crate::stix::envelope(&body) {
        Ok(envelope) => envelope,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Bad envelope", &e.to_string()),
    };
    if objects.len() > MAX_OBJECTS {
        return refuse(
            &g,
            &c.who.id,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many objects",
            &format!("an envelope holds at most {MAX_OBJECTS} objects; send several"),
        )
        .await;
    }
    let requested = Timestamp::now();
    let total = objects.len();
    let writer = inbox::Writer {
        who: c.who.clone(),
        audience,
    };
    let (queued, failures) = queue(&g, &writer, objects, requested).await;
    if let Some(first) = failures.first() {
        let why = format!(
            "TAXII inbox: {} of {total} object(s) refused; the first, {}: {}",
            failures.len(),
            crate::text::excerpt(&first.id),
            first.message
        );
        record(&g, &c.who.id, first.code, &why).await;
    }
    let status = status_of(queued, failures, total, requested).await;
    g.statuses
        .keep(&c.who.id, status["id"].as_str().unwrap_or(""), &status);
    taxii(StatusCode::ACCEPTED, &status)
}

/// Records a refused write (within the per-partner refusal limit), as a refused publish.
async fn record(g: &Gateway, writer: &PartnerId, code: crate::proto::ErrorCode, why: &str) {
    let event = crate::audit::record::Event::rejected(writer, None, code, why);
    g.intake.trail.refusal(writer, event).await;
}

/// Records a refused envelope and answers with the TAXII error.
async fn refuse(
    g: &Gateway,
    writer: &PartnerId,
    status: StatusCode,
    title: &str,
    why: &str,
) -> Response {
    let code = crate::proto::ErrorCode::InvalidBulletin;
    record(g, writer, code, &format!("TAXII inbox: {title}: {why}")).await;
    let mut answer = error(status, title, why);
    answer.extensions_mut().insert(Recorded);
    answer
}

/// A bulletin on its way to the storage thread: what the status says of it, and the
/// objects it carries.
struct Sent {
    id: crate::bulletin::BulletinId,
    shared_with: usize,
    objects: Vec<(String, Option<String>)>,
    answer: oneshot::Receiver<Result<Outcome, StorageError>>,
}

type Queued = Vec<Sent>;

/// Prepares the envelope under the rules in force and hands its bulletins to the
/// storage thread before a reload can change the rules (as a publish does).
async fn queue(
    g: &Gateway,
    writer: &inbox::Writer,
    objects: Vec<Value>,
    now: Timestamp,
) -> (Queued, Vec<Failure>) {
    // Made and queued as a publish is: in the writer's turn, under the publish gate.
    let intake = &g.intake;
    let (prepared, _gate) = intake
        .decided(&writer.who.id, |rules| {
            inbox::prepare(objects, writer, rules, &g.own.key, &intake.limits, now)
        })
        .await;
    let mut failures = prepared.failures;
    let mut queued = Vec::with_capacity(prepared.made.len());
    for Made { bulletin, objects } in prepared.made {
        let (id, shared_with) = (bulletin.id, bulletin.shared_with.len());
        let Some(answer) = intake.queue(&writer.who.id, bulletin).await else {
            let why = StorageError::Stopped.to_peer();
            failures.extend(objects.iter().map(|(id, v)| failure(id, v, &why)));
            continue;
        };
        queued.push(Sent {
            id,
            shared_with,
            objects,
            answer,
        });
    }
    (queued, failures)
}

fn failure(id: &str, version: &Option<String>, why: &str) -> Failure {
    Failure {
        id: id.to_owned(),
        version: version.clone(),
        code: crate::proto::ErrorCode::Internal,
        message: why.to_owned(),
    }
}

/// Waits for every bulletin to be stored and writes the status resource.
async fn status_of(
    queued: Queued,
    mut failures: Vec<Failure>,
    total: usize,
    requested: Timestamp,
) -> Value {
    let mut successes = Vec::new();
    for sent in queued {
        let said = match sent.answer.await {
            Ok(Ok(Outcome::Accepted(seq))) => Ok(format!(
                "bulletin {} (seq {seq}), shared with {} partner(s)",
                sent.id, sent.shared_with
            )),
            Ok(Ok(Outcome::Duplicate(seq))) => Ok(format!("already stored as seq {seq}")),
            Ok(Ok(Outcome::Conflict { seq, .. })) => Err(format!("conflicts with seq {seq}")),
            Ok(Err(e)) => Err(e.to_peer()),
            Err(_) => Err(StorageError::Stopped.to_peer()),
        };
        for (id, version) in &sent.objects {
            match &said {
                Ok(message) => {
                    successes.push(json!({"id": id, "version": version, "message": message}))
                }
                Err(why) => failures.push(failure(id, version, why)),
            }
        }
    }
    let failed: Vec<Value> = failures
        .iter()
        .map(|f| json!({"id": f.id, "version": f.version, "message": f.message}))
        .collect();
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "status": "complete",
        "request_timestamp": requested.rfc3339_ms(),
        "total_count": total,
        "success_count": successes.len(),
        "successes": successes,
        "failure_count": failed.len(),
        "failures": failed,
        "pending_count": 0,
    })
}

/// `GET …/status/{id}/`: a status resource of the caller's.
pub(super) async fn status(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match g.statuses.find(&c.who.id, &id) {
        Some(status) => taxii(StatusCode::OK, &status),
        None => error(StatusCode::NOT_FOUND, "Status not found", "no status with this id is yours (statuses are kept for the last 1,000 writes, until the node restarts)"),
    }
}
