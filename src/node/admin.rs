//! The admin listener: plain HTTP (axum on hyper) on a separate, normally loopback,
//! address for monitoring. `/metrics` (Prometheus text), `/healthz` (alive) and
//! `/readyz` (endpoint bound, database open and its storage thread running, not
//! stopping). Read-only: nothing here changes the node.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::link_book::LinkBook;
use super::queues::queue;
use super::shared::Shared;
use super::shared::{ConnectionBook, Rules, StorageHandle};
use crate::identity::{PartnerId, Role};
use crate::metrics::prometheus::{self, FrameTotals, Gauges, LinkGauge};
use crate::timestamp::Timestamp;

/// Binds the admin listener.
pub(super) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// What the listener reads of the node: the rules (who has a queue), the storage
/// thread's gauges, the book of connections and budgets, and the links.
#[derive(Clone)]
pub(super) struct Monitored {
    rules: Arc<Rules>,
    storage: Arc<StorageHandle>,
    book: Arc<ConnectionBook>,
    links: Arc<LinkBook>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Monitored {
    /// The running node's.
    pub(super) fn of(shared: &Shared) -> Monitored {
        Monitored {
            rules: shared.rules.clone(),
            storage: shared.storage.clone(),
            book: shared.book.clone(),
            links: shared.links.clone(),
            shutdown: shared.shutdown.clone(),
        }
    }
}

/// The routes: anything else is 404, another method than GET (or HEAD) 405.
fn router(node: Monitored) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n",
            )
        })
        .layer(axum::middleware::from_fn(address_host))
        // One request per connection: scrapers and probes connect each time, and a
        // connection that stays open holds a task for nothing.
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            },
        ))
        .with_state(node)
}

/// Only requests whose Host names an address: a web page that points a name of its own
/// at this listener (DNS rebinding) cannot read `/metrics` through a browser.
async fn address_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if crate::transport::host_is_an_address(host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this listener answers only requests addressed to an IP address or localhost\n",
        )
            .into_response()
    }
}

/// Serves requests until the node stops.
pub(super) async fn serve(listener: TcpListener, node: Monitored) {
    let mut stop = node.shutdown.clone();
    let stopped = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    let app = router(node);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "the admin listener stopped");
    }
}

async fn readyz(State(node): State<Monitored>) -> (StatusCode, &'static str) {
    if *node.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    } else if node.storage.commits.is_closed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the storage thread has stopped\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(node): State<Monitored>) -> Response {
    match scrape(&node).await {
        Some(text) => {
            let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
            ([(header::CONTENT_TYPE, kind)], text).into_response()
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the database could not be read\n",
        )
            .into_response(),
    }
}

async fn scrape(node: &Monitored) -> Option<String> {
    let connections_open = connections_open(&node.book);
    let in_flight_kib = node.book.budgets.in_use();
    let held_back_ms = node.book.budgets.held_back();
    let store = node.storage.store.clone();
    let receivers: Vec<PartnerId> = {
        let rules = node.rules.in_force();
        let mut ids: Vec<_> = rules
            .partners
            .values()
            .filter(|p| p.role != Role::Auditor)
            .map(|p| p.id.clone())
            .collect();
        ids.sort();
        ids
    };
    let frames = FrameTotals {
        read: node.book.frames.read.load(Ordering::Relaxed),
        written: node.book.frames.written.load(Ordering::Relaxed),
        refused: node.book.frames.refused.load(Ordering::Relaxed),
    };
    let commit_latency = node.storage.commit_latency.snapshot();
    let space = &node.storage.space;
    let storage_free = (
        space.free.load(Ordering::Relaxed),
        space.full.load(Ordering::Relaxed),
    );
    let handshakes_retried = node.book.handshakes.retried.load(Ordering::Relaxed);
    let handshakes_refused = node.book.handshakes.refused.load(Ordering::Relaxed);
    let links = link_gauges(&node.links);
    tokio::task::spawn_blocking(move || {
        let (audit_records, audit_checkpointed) = store.audit_progress();
        let totals = store.counter_totals();
        let now = Timestamp::now();
        let queues = receivers
            .iter()
            .map(|p| queue(&store, &totals, p, now))
            .collect::<Option<Vec<_>>>()?;
        let gauges = Gauges {
            audit_records,
            audit_checkpointed,
            bulletins_stored: store.head().ok()?,
            connections_open,
            in_flight_kib,
            held_back_ms,
            queues,
            frames,
            handshakes_retried,
            handshakes_refused,
            commit_latency,
            links,
            storage_free,
        };
        Some(prometheus::render(&totals, &gauges))
    })
    .await
    .ok()
    .flatten()
}

/// Open connections per partner, by partner.
fn connections_open(book: &ConnectionBook) -> Vec<(String, u64)> {
    let open = book.connections.lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, u64)> = open
        .iter()
        .map(|(p, n)| (p.to_string(), *n as u64))
        .collect();
    v.sort();
    v
}

/// Each peer link's state, as `/metrics` shows it.
fn link_gauges(links: &LinkBook) -> Vec<LinkGauge> {
    links
        .statuses()
        .into_iter()
        .map(|l| LinkGauge {
            peer: l.peer.to_string(),
            up: l.up,
            since_unix_ms: l.since.unix_ms(),
            dial_failures: u64::from(l.failures),
            copies: l.copies,
            from_peer: l.from_peer,
        })
        .collect()
}
