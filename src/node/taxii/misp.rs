//! The gateway's MISP doors, beside TAXII on the same admitted connection. A partner's
//! **feed** (`/misp/feed/manifest.json`, `hashes.csv`, `UUID.json`, the layout a MISP
//! instance subscribes to by URL) lists the bulletins it may read, screened as a TAXII
//! page is (`page::Screen`) and recorded as a delivery before it is sent. A desk's
//! **inbox** (`POST /misp/events`) turns a MISP event into a bulletin of this node, as
//! the TAXII inbox does an envelope (`inbox::prepare_event`); a refused event is
//! recorded with its error code and a bounded reason.
//!
//! Events are made from verified bulletins only (`withdraw::verify_stored`); the
//! listing of what the feed holds is `feed`'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Map, Value};

use super::feed::{Listed, Listing, Made};
use super::page::Screen;
use super::resources::Recorded;
use super::{Caller, Gateway};
use crate::audit::record::Event;
use crate::identity::{PartnerId, Role};
use crate::misp::inbound::{self, Drafting, Form, MispError, MAX_EVENT_BYTES};
use crate::proto::ErrorCode;
use crate::store::{Outcome, StoreError};
use crate::timestamp::Timestamp;

/// Bulletins one record of a feed read names at most: a manifest of many events is
/// recorded in several.
const SEQS_PER_RECORD: usize = 1000;

/// The MISP routes.
pub(super) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/misp/feed/manifest.json", get(manifest))
        .route("/misp/feed/hashes.csv", get(hashes))
        .route("/misp/feed/{file}", get(event))
        .route("/misp/events", post(add_event))
}

/// A JSON answer.
fn answer(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A MISP-style error (`name`, `message`, as MISP's API answers).
fn error(status: StatusCode, name: &str, message: &str) -> Response {
    answer(status, &json!({"name": name, "message": message}))
}

/// What of the feed is asked for.
enum Part {
    Manifest,
    Hashes,
    Event(String),
}

/// What a feed read hands over: the bulletins it discloses and the body.
struct Read {
    seqs: Vec<u64>,
    body: String,
    content_type: &'static str,
}

async fn manifest(State(g): State<Arc<Gateway>>, Extension(c): Extension<Caller>) -> Response {
    serve(g, c, Part::Manifest).await
}

async fn hashes(State(g): State<Arc<Gateway>>, Extension(c): Extension<Caller>) -> Response {
    serve(g, c, Part::Hashes).await
}

async fn event(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(file): Path<String>,
) -> Response {
    match file.strip_suffix(".json") {
        Some(uuid) => serve(g, c, Part::Event(uuid.to_owned())).await,
        None => error(
            StatusCode::NOT_FOUND,
            "Not found",
            "a feed holds manifest.json, hashes.csv and UUID.json",
        ),
    }
}

/// Reads the part of the caller's feed on the blocking pool, records what it hands
/// over, then sends it: screened and recorded under one set of rules.
async fn serve(g: Arc<Gateway>, c: Caller, part: Part) -> Response {
    if c.who.role == Role::Auditor {
        let why = "an auditor receives no bulletins: it reads the log";
        return error(StatusCode::FORBIDDEN, "Not permitted", why);
    }
    let what = match &part {
        Part::Manifest => "MISP feed: manifest.json",
        Part::Hashes => "MISP feed: hashes.csv",
        Part::Event(_) => "MISP feed: event",
    };
    let gate = g.intake.rules.gate.read().await;
    let job = {
        let (g, partner) = (g.clone(), c.who.id.clone());
        tokio::task::spawn_blocking(move || read(&g, &partner, &part, Timestamp::now()))
    };
    let read = match job.await {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) => {
            let why = "no event with this uuid is shared with you";
            return error(StatusCode::NOT_FOUND, "Event not found", why);
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "MISP feed: reading the store failed");
            let why = "the node could not read its store; its operator finds why in its log";
            return error(StatusCode::INTERNAL_SERVER_ERROR, "Storage error", why);
        }
        Err(_) => {
            let why = "the request failed; the node's operator finds why in its log";
            return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", why);
        }
    };
    for seqs in read.seqs.chunks(SEQS_PER_RECORD) {
        let event = Event::gateway_read(&c.who.id, seqs.to_vec(), what);
        if let Err(e) = g.intake.trail.commit(Some(event), None).await {
            let why = format!(
                "this access could not be recorded, so nothing is served: {}",
                e.to_peer()
            );
            return error(StatusCode::SERVICE_UNAVAILABLE, "Not recorded", &why);
        }
    }
    drop(gate);
    let mut r = (StatusCode::OK, read.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(read.content_type),
    );
    r
}

/// The part of `partner`'s feed asked for, or `None` for an event it may not read.
fn read(
    g: &Gateway,
    partner: &PartnerId,
    part: &Part,
    now: Timestamp,
) -> Result<Option<Read>, StoreError> {
    let screen = Screen::new(g, partner)?;
    let mut listing = g.listing.lock().unwrap_or_else(|p| p.into_inner());
    refresh(&mut listing, &g.intake.storage.store)?;
    let visible = |l: &Listed| screen.admits(l.seq, &l.shared_with);
    if let Part::Event(uuid) = part {
        let Some(seq) = listing.find(uuid, &visible).map(|l| l.seq) else {
            return Ok(None);
        };
        let Some(event) = make(g, &screen, seq, now)? else {
            return Ok(None);
        };
        return Ok(Some(Read {
            seqs: vec![seq],
            body: event.to_string(),
            content_type: "application/json",
        }));
    }
    let seen: Vec<u64> = listing.visible(&visible).map(|l| l.seq).collect();
    for &seq in &seen {
        if listing.get(seq).is_some_and(|l| l.made.is_none()) {
            if let Some(made) = make(g, &screen, seq, now)?.as_ref().and_then(Made::of) {
                listing.made(seq, made);
            }
        }
    }
    let listed: Vec<&Listed> = seen.iter().filter_map(|s| listing.get(*s)).collect();
    let listed: Vec<(&Listed, &Made)> = listed
        .into_iter()
        .filter_map(|l| Some((l, l.made.as_ref()?)))
        .collect();
    let seqs = listed.iter().map(|(l, _)| l.seq).collect();
    Ok(Some(match part {
        Part::Hashes => Read {
            seqs,
            body: listed
                .iter()
                .flat_map(|(l, m)| m.hash_lines(&l.uuid).map(|line| line + "\n"))
                .collect(),
            content_type: "text/csv",
        },
        _ => {
            let entries: Map<String, Value> = listed
                .iter()
                .map(|(l, m)| (l.uuid.to_string(), m.entry.clone()))
                .collect();
            Read {
                seqs,
                body: Value::Object(entries).to_string(),
                content_type: "application/json",
            }
        }
    }))
}

/// Lists the bulletins stored since the listing last looked.
fn refresh(listing: &mut Listing, store: &crate::store::Store) -> Result<(), StoreError> {
    let head = store.head()?;
    for seq in listing.through() + 1..=head {
        match store.get(seq)? {
            Some(stored) => {
                let shared_with = stored
                    .shared_with
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                listing.add(seq, &stored.id, shared_with);
            }
            None => listing.reached(seq),
        }
    }
    Ok(())
}

/// The MISP event of the stored bulletin `seq`, verified again by the origin's key in
/// force; `None` (and a warning) if it no longer verifies.
fn make(
    g: &Gateway,
    screen: &Screen,
    seq: u64,
    now: Timestamp,
) -> Result<Option<Value>, StoreError> {
    let Some(stored) = g.intake.storage.store.get(seq)? else {
        return Ok(None);
    };
    let limits = &g.intake.limits;
    match crate::node::withdraw::verify_stored(stored.signed, screen.rules(), limits, now) {
        Ok(verified) => Ok(Some(crate::misp::event(&verified, &stored.path))),
        Err(e) => {
            tracing::warn!(seq, error = %e, "MISP feed: a stored bulletin no longer verifies; left out");
            Ok(None)
        }
    }
}

/// How a desk wants its event carried, from the query string.
#[derive(serde::Deserialize, Default)]
struct Asked {
    /// `stix` (the default) or `event`.
    body: Option<String>,
    /// Partner ids and `group:NAME`s, comma-separated.
    audience: Option<String>,
}

/// `POST /misp/events`: a desk's MISP event becomes a bulletin of this node.
async fn add_event(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    UrlQuery(asked): UrlQuery<Asked>,
    body: Body,
) -> Response {
    if c.who.role != Role::Liaison {
        let why = "only a desk adds events; a peer node forwards bulletins over QUIC";
        return error(StatusCode::FORBIDDEN, "Not permitted", why);
    }
    let bytes = match read_event(body).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(&g, &c.who.id, &e.to_string(), e.code()).await,
    };
    let form = match asked.body.as_deref() {
        None | Some("stix") => Form::Stix,
        Some("event") => Form::Event,
        Some(other) => {
            let why = format!("body={other:?}: say stix or event");
            return refuse(&g, &c.who.id, &why, ErrorCode::InvalidBulletin).await;
        }
    };
    let added = inbound::read(&bytes).and_then(|event| {
        let audience = audience_of(&g, &event, asked.audience.as_deref());
        let drafting = Drafting {
            origin: g.own.id.to_string(),
            created: Timestamp::now(),
            tlp: None,
            kind: None,
            form,
            audience,
        };
        inbound::draft(&event, &bytes, &drafting)
    });
    match added {
        Ok(b) => store_event(&g, &c, b).await,
        Err(e) => refuse(&g, &c.who.id, &e.to_string(), e.code()).await,
    }
}

/// Bytes of an over-size event read on (and dropped) before the connection is closed:
/// a sender that gets its answer after its upload reads a 413, not a reset.
const DRAIN_BYTES: usize = 4 * MAX_EVENT_BYTES;

/// How long an event may take to arrive.
const EVENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// An event's bytes, at most [`MAX_EVENT_BYTES`] of them held.
async fn read_event(mut body: Body) -> Result<axum::body::Bytes, MispError> {
    use http_body_util::BodyExt as _;
    let read = async {
        let (mut kept, mut seen) = (Vec::new(), 0usize);
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| MispError::NotAnEvent(format!("not received whole: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            match seen <= MAX_EVENT_BYTES {
                true => kept.extend_from_slice(&data),
                false if seen > DRAIN_BYTES => return Err(MispError::TooLarge(seen)),
                false => kept = Vec::new(),
            }
        }
        match seen <= MAX_EVENT_BYTES {
            true => Ok(kept.into()),
            false => Err(MispError::TooLarge(seen)),
        }
    };
    let late = || MispError::NotAnEvent(format!("not received within {EVENT_DEADLINE:?}"));
    tokio::time::timeout(EVENT_DEADLINE, read)
        .await
        .map_err(|_| late())?
}

/// The audience asked for, and the sharing group's organisations this node knows.
fn audience_of(g: &Gateway, event: &inbound::Inbound, asked: Option<&str>) -> Vec<String> {
    let rules = g.intake.rules.in_force();
    let known = |n: &str| {
        n.parse::<PartnerId>()
            .is_ok_and(|p| rules.partners.contains_key(&p))
    };
    let (mut audience, _) = inbound::sharing_group_audience(event, known);
    let asked = asked.unwrap_or_default().split(',').map(str::trim);
    audience.extend(asked.filter(|a| !a.is_empty()).map(str::to_owned));
    audience
}

/// A bulletin handed to the storage thread: its id, who it is shared with, and where
/// its outcome comes.
type Queued = (
    crate::bulletin::BulletinId,
    Vec<PartnerId>,
    tokio::sync::oneshot::Receiver<Result<Outcome, crate::node::writer::StorageError>>,
);

/// Signs and decides the event's bulletin under the rules gate, in the partner's fair
/// turn, and hands it to the storage thread, as a publish is; or the refusal.
async fn queue_event(
    g: &Gateway,
    c: &Caller,
    b: crate::proto::Bulletin,
) -> Result<Queued, Response> {
    let writer = super::inbox::Writer {
        who: c.who.clone(),
        audience: b.audience.clone(),
    };
    // Made and queued as a publish is: in the writer's turn, under the publish gate.
    let intake = &g.intake;
    let now = Timestamp::now();
    let (prepared, _gate) = intake
        .decided(&c.who.id, |rules| {
            super::inbox::prepare_event(b, &writer, rules, &g.own.key, &intake.limits, now)
        })
        .await;
    let bulletin = match prepared {
        Ok(bulletin) => bulletin,
        Err((code, why)) => return Err(refuse(g, &c.who.id, &why, code).await),
    };
    let (id, shared_with) = (bulletin.id, bulletin.shared_with.clone());
    match intake.queue(&c.who.id, bulletin).await {
        Some(outcome) => Ok((id, shared_with, outcome)),
        None => Err(stopping()),
    }
}

fn stopping() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Stopping",
        "the node is stopping",
    )
}

/// Stores the event's bulletin and answers with what became of it, once it is durable
/// and recorded.
async fn store_event(g: &Gateway, c: &Caller, b: crate::proto::Bulletin) -> Response {
    let (id, shared_with, outcome) = match queue_event(g, c, b).await {
        Ok(queued) => queued,
        Err(refused) => return refused,
    };
    let (status, seq) = match outcome.await {
        Ok(Ok(Outcome::Accepted(seq))) => ("accepted", seq),
        Ok(Ok(Outcome::Duplicate(seq))) => ("duplicate", seq),
        Ok(Ok(Outcome::Conflict { seq, .. })) => {
            let why = format!("bulletin {id} was stored as seq {seq} with other content");
            return error(StatusCode::CONFLICT, "Conflict", &why);
        }
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "Not stored", &e.to_peer()),
        Err(_) => return stopping(),
    };
    let shared_with: Vec<String> = shared_with.iter().map(|p| p.to_string()).collect();
    let body = json!({
        "Event": {"uuid": id.to_string()},
        "renkei": {"status": status, "bulletin_id": id.to_string(), "seq": seq, "shared_with": shared_with},
    });
    answer(StatusCode::OK, &body)
}

/// Records a refused event (within the partner's per-minute limit of refusals) with its
/// error code and a bounded reason, and answers with its MISP error.
async fn refuse(g: &Gateway, writer: &PartnerId, why: &str, code: ErrorCode) -> Response {
    let why = crate::text::bounded(why, 300);
    let reason = format!("MISP inbox: {why}");
    let event = Event::rejected(writer, None, code, &reason);
    g.intake.trail.refusal(writer, event).await;
    let status = match code {
        ErrorCode::BulletinTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotPermitted | ErrorCode::OriginMismatch => StatusCode::FORBIDDEN,
        ErrorCode::UnknownAudience => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    let name = code.as_str_name();
    let mut answer = error(status, name, &format!("{why} ({name})"));
    answer.extensions_mut().insert(Recorded);
    answer
}
