//! The TAXII 2.1 resources (OASIS TAXII 2.1, §4–§5): discovery, the API root, the
//! caller's collection, its objects, one object's versions and the manifest, each as
//! `application/taxii+json;version=2.1`, errors as TAXII error messages (made by
//! `resources`). A partner reads one collection: what is shared with it.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query as UrlQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::index::{Entry, Query, Versions};
use super::page::{read_page, Served};
use super::resources::{
    collections_of, error, no_collection, own, taxii, Recorded, Which, STIX, TAXII,
};
use super::{Caller, Gateway};
use crate::timestamp::Timestamp;

/// Objects on a page when the client asks for none, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The gateway's routes for one admitted connection.
pub(super) fn router(gateway: Arc<Gateway>, caller: Caller) -> Router {
    Router::new()
        .route("/taxii2/", get(discovery))
        .route("/api/", get(api_root))
        .route("/api/collections/", get(collections))
        .route("/api/collections/{id}/", get(collection))
        .route(
            "/api/collections/{id}/objects/",
            get(objects).post(super::write::add_objects),
        )
        .route("/api/collections/{id}/objects/{object}/", get(object))
        .route("/api/collections/{id}/manifest/", get(manifest))
        .route("/api/status/{id}/", get(super::write::status))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "Not found",
                "no such TAXII resource; discovery is at /taxii2/",
            )
        })
        .layer(middleware::from_fn(accept_taxii))
        .merge(super::misp::routes())
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            record_refused,
        ))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            still_admitted,
        ))
        .layer(DefaultBodyLimit::max(
            gateway.intake.limits.max_bulletin_bytes,
        ))
        .layer(Extension(caller))
        .with_state(gateway)
}

/// Records every request refused with a 4xx answer that its handler did not record
/// (a wrong Accept, an unknown collection or object, a malformed query), as a QUIC
/// stream's refusal is: within the partner's per-minute limit of refusals.
async fn record_refused(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    request: Request,
    next: Next,
) -> Response {
    let door = match request.uri().path().starts_with("/misp/") {
        true => "MISP",
        false => "TAXII",
    };
    let asked = format!(
        "{door}: {} {}",
        request.method(),
        crate::text::excerpt(request.uri().path())
    );
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() && response.extensions().get::<Recorded>().is_none() {
        let code = match status {
            StatusCode::FORBIDDEN => crate::proto::ErrorCode::NotPermitted,
            _ => crate::proto::ErrorCode::InvalidRequest,
        };
        let why = format!("{asked}: refused with {status}");
        let event = crate::audit::record::Event::rejected(&c.who.id, None, code, &why);
        g.intake.trail.refusal(&c.who.id, event).await;
    }
    response
}

/// Admits each request again under the rules in force, as a reload closes a QUIC
/// connection: a partner removed, revoked, re-pinned or given another role since the
/// connection was made is refused (and recorded), and the connection closed.
async fn still_admitted(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    request: Request,
    next: Next,
) -> Response {
    let why = match crate::node::admission::admit(
        &g.intake.rules.in_force().config,
        &c.who.id,
        &c.cert,
    ) {
        Ok(role) if role == c.who.role => return next.run(request).await,
        Ok(role) => format!("its role is now {role}; connect again"),
        Err(why) => why.to_string(),
    };
    let reason = format!(
        "TAXII: {} is no longer admitted on this connection: {why}",
        c.who.id
    );
    let event = crate::audit::record::Event::connection_refused(Some(&c.who.id), &reason);
    g.intake.trail.refusal(&c.who.id, event).await;
    let mut r = error(StatusCode::FORBIDDEN, "No longer admitted", &why);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 406 unless the client accepts TAXII 2.1 (or anything).
async fn accept_taxii(request: Request, next: Next) -> Response {
    let accepts = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.replace(' ', "").to_ascii_lowercase())
        .collect::<Vec<_>>();
    let ok = accepts.is_empty()
        || accepts.iter().any(|a| {
            a == "*/*"
                || a == "application/taxii+json"
                || a.starts_with("application/taxii+json;version=2.1")
        });
    if !ok {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            "Not acceptable",
            &format!("this server answers {TAXII} only"),
        );
    }
    next.run(request).await
}

async fn discovery(State(g): State<Arc<Gateway>>) -> Response {
    let root = format!("{}/api/", g.base);
    let node = &g.own.id;
    taxii(
        StatusCode::OK,
        &json!({
            "title": format!("renkei node {node}"),
            "description": "Bulletins shared with you through this renkei node, as STIX 2.1 objects",
            "default": root,
            "api_roots": [root],
        }),
    )
}

async fn api_root(State(g): State<Arc<Gateway>>) -> Response {
    taxii(
        StatusCode::OK,
        &json!({
            "title": format!("renkei node {}", g.own.id),
            "versions": [TAXII],
            "max_content_length": g.intake.limits.max_bulletin_bytes,
        }),
    )
}

async fn collections(State(g): State<Arc<Gateway>>, Extension(c): Extension<Caller>) -> Response {
    let list: Vec<Value> = collections_of(&g, &c).into_iter().map(|(_, v)| v).collect();
    taxii(StatusCode::OK, &json!({ "collections": list }))
}

async fn collection(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match own(&g, &c, &id) {
        Some((_, col)) => taxii(StatusCode::OK, &col),
        None => no_collection(),
    }
}

/// Why a TAXII request's filters or paging cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum QueryError {
    /// A time that is not RFC 3339, or before 1970, in the parameter named.
    #[error("{0}: {1}")]
    Time(&'static str, TimeError),
    /// `limit` is not a number.
    #[error("limit: {0:?} is not a number")]
    Limit(String),
    /// `next` is not a token this server gave.
    #[error("next: {0:?} is not a token this server gave")]
    Next(String),
}

/// Why a TAXII timestamp cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum TimeError {
    /// Not RFC 3339.
    #[error("{0:?} is not an RFC 3339 time")]
    NotRfc3339(String),
    /// Before the epoch.
    #[error("{0:?} is before 1970")]
    Before1970(String),
}

/// A request's filters and paging, or why they cannot be read.
fn parse_query(params: &[(String, String)]) -> Result<Query, QueryError> {
    let mut q = Query {
        added_after: None,
        ids: vec![],
        types: vec![],
        versions: Versions::Last,
        after: None,
        limit: DEFAULT_LIMIT,
    };
    let list = |v: &str| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let mut other_spec = false;
    for (k, v) in params {
        match k.as_str() {
            "added_after" => {
                let at = micros(v).map_err(|e| QueryError::Time("added_after", e))?;
                q.added_after = Some(at);
            }
            "limit" => {
                let n: usize = v.parse().map_err(|_| QueryError::Limit(v.clone()))?;
                q.limit = n.clamp(1, MAX_LIMIT);
            }
            "next" => q.after = Some(v.parse().map_err(|_| QueryError::Next(v.clone()))?),
            "match[id]" => q.ids.extend(list(v)),
            "match[type]" => q.types.extend(list(v)),
            "match[version]" => q.versions = versions(v, &list)?,
            "match[spec_version]" => other_spec |= !list(v).iter().any(|s| s == "2.1"),
            _ => {}
        }
    }
    if other_spec {
        // Only STIX 2.1 is carried: nothing matches another version.
        q.types = vec![String::new()];
    }
    Ok(q)
}

/// The versions `match[version]` asks for.
fn versions(v: &str, list: &dyn Fn(&str) -> Vec<String>) -> Result<Versions, QueryError> {
    Ok(match v {
        "last" => Versions::Last,
        "first" => Versions::First,
        "all" => Versions::All,
        _ => Versions::Exactly(
            list(v)
                .iter()
                .map(|t| micros(t).map(|us| us / 1000))
                .collect::<Result<_, _>>()
                .map_err(|e| QueryError::Time("match[version]", e))?,
        ),
    })
}

/// An RFC 3339 time in microseconds since the epoch (TAXII's timestamps carry up to
/// six fractional digits).
fn micros(text: &str) -> Result<u64, TimeError> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| TimeError::NotRfc3339(text.to_owned()))?;
    u64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| TimeError::Before1970(text.to_owned()))
}

/// A date_added in microseconds as TAXII writes it: `2026-11-30T09:00:00.123456Z`.
fn micros_text(us: u64) -> String {
    let ms = Timestamp::from_unix_ms(us / 1000).rfc3339_ms();
    format!("{}{:03}Z", ms.trim_end_matches('Z'), us % 1000)
}

/// Serves a page to the caller: checks the collection, reads the page on the blocking
/// pool, records what it hands over, then writes the body `shape` makes of it.
async fn page_response(
    g: Arc<Gateway>,
    c: Caller,
    id: String,
    q: Query,
    what: &'static str,
    shape: fn(&Served) -> Value,
) -> Response {
    match own(&g, &c, &id) {
        Some((Which::Shared, _)) => {}
        Some((Which::Inbox, _)) => {
            return error(StatusCode::FORBIDDEN, "Write only", "this is your inbox: what you add becomes bulletins; read what is shared with you from the other collection")
        }
        None => return no_collection(),
    }
    // Screened and recorded under one set of rules: a reload's CONFIG_LOADED comes
    // before or after both, never between (as for a publish).
    let gate = g.intake.rules.gate.read().await;
    let job = {
        let (g, partner) = (g.clone(), c.who.id.clone());
        tokio::task::spawn_blocking(move || read_page(&g, &partner, &q))
    };
    let served = match job.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "TAXII: reading the store failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Storage error",
                "the node could not read its store; its operator finds why in its log",
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the request failed",
            )
        }
    };
    if what == "object" && served.items.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "Object not found",
            "no object with this id is shared with you",
        );
    }
    let mut seqs: Vec<u64> = served.items.iter().map(|(e, _)| e.seq).collect();
    seqs.dedup();
    if !seqs.is_empty() {
        let what = format!("TAXII: {what}");
        let event = crate::audit::record::Event::gateway_read(&c.who.id, seqs, &what);
        if let Err(e) = g.intake.trail.commit(Some(event), None).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not recorded",
                &format!(
                    "this access could not be recorded, so nothing is served: {}",
                    e.to_peer()
                ),
            );
        }
    }
    drop(gate);
    let mut r = taxii(StatusCode::OK, &shape(&served));
    date_headers(r.headers_mut(), &served);
    r
}

/// `X-TAXII-Date-Added-First` and `-Last` of a page.
fn date_headers(h: &mut HeaderMap, s: &Served) {
    let stamp = |e: &Entry| micros_text(e.added_us);
    for (name, e) in [
        ("x-taxii-date-added-first", s.items.first()),
        ("x-taxii-date-added-last", s.items.last()),
    ] {
        if let Some(v) = e.and_then(|(e, _)| HeaderValue::from_str(&stamp(e)).ok()) {
            h.insert(name, v);
        }
    }
}

fn envelope(s: &Served) -> Value {
    paged(s, s.items.iter().map(|(_, o)| o.clone()).collect())
}

/// A page's body: its objects, whether more follow, and where they start.
fn paged(s: &Served, objects: Vec<Value>) -> Value {
    let mut body = json!({ "more": s.page.next.is_some(), "objects": objects });
    if let Some(next) = s.page.next {
        body["next"] = json!(next.to_string());
    }
    body
}

fn manifest_body(s: &Served) -> Value {
    let objects: Vec<Value> = s
        .items
        .iter()
        .map(|(e, _)| {
            let added = micros_text(e.added_us);
            json!({"id": &*e.id, "date_added": added, "version": e.version_or(&added), "media_type": STIX})
        })
        .collect();
    paged(s, objects)
}

async fn objects(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    match parse_query(&params) {
        Ok(q) => page_response(g, c, id, q, "objects", envelope).await,
        Err(why) => error(StatusCode::BAD_REQUEST, "Bad request", &why.to_string()),
    }
}

async fn object(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path((id, object)): Path<(String, String)>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    match parse_query(&params) {
        Ok(mut q) => {
            q.ids = vec![object];
            page_response(g, c, id, q, "object", envelope).await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, "Bad request", &why.to_string()),
    }
}

async fn manifest(
    State(g): State<Arc<Gateway>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    match parse_query(&params) {
        Ok(q) => page_response(g, c, id, q, "manifest", manifest_body).await,
        Err(why) => error(StatusCode::BAD_REQUEST, "Bad request", &why.to_string()),
    }
}

#[cfg(test)]
mod tests;
