//! The admin listener: plain HTTP on a separate (normally loopback) address for
//! monitoring. `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (endpoint
//! bound, database open and its storage thread running, not stopping). Read-only:
//! nothing here changes the node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use crate::identity::{PartnerId, Role};
use crate::metrics::prometheus::{self, FrameTotals, Gauges, LinkGauge, QueueGauge};
use crate::store::Store;
use crate::timestamp::Timestamp;

/// Largest request head accepted.
const MAX_HEAD: usize = 8 << 10;
/// How long a client may take to send its request.
const READ_PATIENCE: Duration = Duration::from_secs(5);

/// Binds the admin listener.
pub(super) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Requests answered at once, at most; more wait in the kernel's backlog.
const MAX_CONCURRENT: usize = 32;

/// Serves requests until the node stops.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    loop {
        // A slot first, so a flood of slow clients holds at most MAX_CONCURRENT tasks.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        answer(stream, shared).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: let the node breathe, do not spin.
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Reads one request head; `None` when it is malformed, too big or too slow.
async fn read_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    return Some((req.method?.to_owned(), req.path?.to_owned()));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(READ_PATIENCE, read)
        .await
        .ok()
        .flatten()
}

async fn answer(mut stream: TcpStream, shared: Arc<Shared>) {
    let head = read_head(&mut stream).await;
    let is_head = matches!(&head, Some((m, _)) if m == "HEAD");
    let (status, content_type, body) = match head {
        None => (400, "text/plain", "bad request\n".to_owned()),
        Some((method, _)) if method != "GET" && method != "HEAD" => {
            (405, "text/plain", "only GET\n".to_owned())
        }
        Some((_, path)) => match path.split('?').next().unwrap_or("") {
            "/healthz" => (200, "text/plain", "ok\n".to_owned()),
            "/readyz" if *shared.shutdown.borrow() => (503, "text/plain", "stopping\n".to_owned()),
            "/readyz" if shared.storage.commits.is_closed() => (
                503,
                "text/plain",
                "the storage thread has stopped\n".to_owned(),
            ),
            "/readyz" => (200, "text/plain", "ready\n".to_owned()),
            "/metrics" => match scrape(&shared).await {
                Some(text) => (200, "text/plain; version=0.0.4; charset=utf-8", text),
                None => (
                    500,
                    "text/plain",
                    "the database could not be read\n".to_owned(),
                ),
            },
            _ => (
                404,
                "text/plain",
                "not found: try /metrics, /healthz or /readyz\n".to_owned(),
            ),
        },
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A client that does not read must not hold the task (and the node) forever.
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        if !is_head {
            stream.write_all(body.as_bytes()).await?;
        }
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(READ_PATIENCE, write).await;
}

async fn scrape(shared: &Arc<Shared>) -> Option<String> {
    let connections_open = {
        let open = shared
            .book
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, u64)> = open
            .iter()
            .map(|(p, n)| (p.to_string(), *n as u64))
            .collect();
        v.sort();
        v
    };
    let store = shared.storage.store.clone();
    let receivers: Vec<PartnerId> = {
        let sharing = shared.rules_in_force();
        let mut ids: Vec<_> = sharing
            .partners
            .values()
            .filter(|p| p.role != Role::Auditor)
            .map(|p| p.id.clone())
            .collect();
        ids.sort();
        ids
    };
    let frames = FrameTotals {
        read: shared.book.frames.read.load(Ordering::Relaxed),
        written: shared.book.frames.written.load(Ordering::Relaxed),
        refused: shared.book.frames.refused.load(Ordering::Relaxed),
    };
    let commit_latency = shared.storage.commit_latency.snapshot();
    let handshakes_retried = shared.book.handshakes.retried.load(Ordering::Relaxed);
    let handshakes_refused = shared.book.handshakes.refused.load(Ordering::Relaxed);
    let links = shared
        .links
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
        .collect();
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
            queues,
            frames,
            handshakes_retried,
            handshakes_refused,
            commit_latency,
            links,
        };
        Some(prometheus::render(&totals, &gauges))
    })
    .await
    .ok()
    .flatten()
}

/// `partner`'s queue now (empty if it cannot be read), read on the blocking pool.
pub(super) async fn queue_of(shared: &Shared, partner: &PartnerId) -> QueueGauge {
    let (store, partner) = (shared.storage.store.clone(), partner.clone());
    tokio::task::spawn_blocking(move || {
        let totals = store.partner_totals(&partner);
        queue(&store, &totals, &partner, Timestamp::now())
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// A partner's queue: its depth from the counters (shared minus acknowledged, each
/// counted once in the same write as its record), and the age of the oldest entry,
/// found from its cursor only when there is one.
fn queue(
    store: &Store,
    totals: &BTreeMap<(String, String), u64>,
    partner: &PartnerId,
    now: Timestamp,
) -> Option<QueueGauge> {
    let name = partner.as_str();
    let count = |f: &dyn Fn(&str) -> bool| -> u64 {
        totals
            .range((name.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == name)
            .filter(|((_, n), _)| f(n))
            .map(|(_, v)| *v)
            .sum()
    };
    let depth = count(&|n| n.starts_with("shared.")).saturating_sub(count(&|n| n == "acked"));
    let mut oldest_age_ms = 0;
    if depth > 0 {
        let cursor = store.cursor(partner).ok()?;
        let page = store
            .pending(partner, cursor.acked_through, &cursor, 1)
            .ok()?;
        if let Some(first) = page.items.first() {
            oldest_age_ms = now.unix_ms().saturating_sub(first.accepted.unix_ms());
        }
    }
    Some(QueueGauge {
        partner: partner.to_string(),
        depth,
        oldest_age_ms,
    })
}
