//! The TAXII 2.1 gateway: HTTPS for the CTI tools partners already run (OpenCTI, MISP,
//! taxii2-client). A client presents a partner's certificate from the federation CA and
//! is admitted by the same rules as a QUIC connection (`admission`: a configured
//! partner, its pin, revocations, the per-partner connection limit); the refusal or the
//! admission is on the log. It then reads, as STIX 2.1 objects, the bulletins shared
//! with it whose bodies are STIX bundles, or its MISP feed of them all; each page it is
//! handed is recorded as a delivery before it is sent.
//!
//! This module moves bytes and admits connections. The pages are decided by `index`
//! (pure) and read by `page`, who may see what by the withdrawal records and the policy
//! in force (`page::Screen`), and the TAXII resources are written by `routes`; what a
//! desk adds goes through `inbox` and `write`. The MISP feed and inbox are `misp`, its
//! listing `feed`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::admission::{self, Admitted, MAX_CONNECTIONS_PER_PARTNER};
use super::shared::{Own, Trail};
use super::shared::{RuleSet, Shared};
use super::NodeError;
use crate::audit::record::Event;
use crate::config::NodeConfig;
use crate::identity::{CertFingerprint, Partner, PartnerId, Role};
use crate::transport::{self, TransportError};

mod feed;
mod inbox;
mod index;
mod misp;
mod page;
mod resources;
mod routes;
mod write;

/// How long a client may take to send a request's headers: a client that trickles
/// them would otherwise hold a task and a connection slot for as long as it likes.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the gateway's requests share: the parts of the node they use (all but the
/// links, which TAXII clients never reach), and the gateway's own index and listing.
pub(super) struct Gateway {
    /// Signs the bulletins the inboxes make.
    own: Arc<Own>,
    /// What taking bulletins in uses (the inboxes take them in as a publish does), and
    /// what reading them out needs too: the rules, the trail, the store, the
    /// connection limit per partner, the bulletin limits, the stop signal.
    intake: super::publish::Intake,
    index: Mutex<index::Index>,
    /// What the partners' MISP feeds list.
    listing: Mutex<feed::Listing>,
    /// The base URL clients reach the gateway at, without a trailing slash.
    base: String,
    statuses: write::Statuses,
}

impl Gateway {
    /// The gateway of the running node, reached at `base`, its index holding at most
    /// `index_objects` objects.
    fn new(shared: &Shared, index_objects: usize, base: String) -> Gateway {
        Gateway {
            own: shared.own.clone(),
            intake: super::publish::Intake::of(shared),
            index: Mutex::new(index::Index::holding_at_most(index_objects)),
            listing: Mutex::new(feed::Listing::default()),
            base,
            statuses: write::Statuses::default(),
        }
    }
}

/// The partner a connection was admitted as, with the certificate it presented (each
/// request is admitted again under the rules then in force).
#[derive(Clone, Debug)]
pub(super) struct Caller {
    pub who: Partner,
    pub cert: CertFingerprint,
}

/// Starts the gateway if `[taxii] listen` is set; returns the address it is bound to.
pub(super) async fn start(
    cfg: &NodeConfig,
    shared: &Shared,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Option<SocketAddr>, NodeError> {
    let Some(at) = cfg.taxii.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(at).await.map_err(TransportError::Io)?;
    let bound = listener.local_addr().map_err(TransportError::Io)?;
    let base = match &cfg.taxii.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://{bound}"),
    };
    tracing::info!(%bound, %base, "TAXII 2.1 gateway (discovery at {base}/taxii2/)");
    let gateway = Arc::new(Gateway::new(shared, cfg.taxii.index_objects, base));
    let handshakes = Handshakes {
        timeout: Duration::from_secs(cfg.transport.handshake_timeout_secs),
        slots: Arc::new(tokio::sync::Semaphore::new(cfg.transport.max_handshakes)),
    };
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        gateway,
        handshakes,
    ));
    Ok(Some(bound))
}

/// How long a TLS handshake may take, and how many may run at once: strangers can
/// open TCP connections for free, and each handshake holds a task and a descriptor.
#[derive(Clone)]
struct Handshakes {
    timeout: Duration,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Accepts connections until the node stops; each is served in its own task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    gateway: Arc<Gateway>,
    handshakes: Handshakes,
) {
    let mut stop = gateway.intake.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Ok(slot) = handshakes.slots.clone().try_acquire_owned() else {
                        let why = format!("TAXII: {remote}: refused before the handshake, too many handshakes in progress");
                        gateway.intake.trail.anonymous_refusal(why).await;
                        continue;
                    };
                    let job = connection(stream, remote, acceptor.clone(), gateway.clone(), (handshakes.timeout, slot));
                    connections.spawn(job);
                }
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin on the error.
                    tracing::warn!(error = %e, "TAXII gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// One client connection: the TLS handshake, admission, then HTTP/1.1 until either
/// side closes or the node stops.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    gateway: Arc<Gateway>,
    (handshake, slot): (Duration, tokio::sync::OwnedSemaphorePermit),
) {
    let g = &gateway;
    let done = tokio::time::timeout(handshake, acceptor.accept(stream)).await;
    drop(slot);
    let tls = match done {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let why = format!("TAXII: TLS handshake from {remote} failed: {e}");
            return g.intake.trail.anonymous_refusal(why).await;
        }
        Err(_) => {
            let why = format!("TAXII: TLS handshake from {remote} took longer than {handshake:?}");
            return g.intake.trail.anonymous_refusal(why).await;
        }
    };
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let named = leaf
        .ok_or_else(|| TransportError::NoPartnerId("no certificate presented".into()))
        .and_then(|der| {
            Ok((
                transport::partner_from_cert(der)?,
                CertFingerprint::of_der(der),
            ))
        });
    let (partner, cert) = match named {
        Ok(named) => named,
        Err(e) => {
            return g
                .intake
                .trail
                .anonymous_refusal(format!("TAXII: {remote}: {e}"))
                .await
        }
    };
    let Some(role) = admit(
        &g.intake.rules.in_force(),
        &g.intake.trail,
        &partner,
        &cert,
        remote,
    )
    .await
    else {
        return;
    };
    let Some(_admitted) = Admitted::new(&g.intake.book, &partner) else {
        let why = format!(
            "TAXII: {remote}: at most {MAX_CONNECTIONS_PER_PARTNER} connections per partner"
        );
        return g
            .intake
            .trail
            .record(Event::connection_refused(Some(&partner), &why))
            .await;
    };
    g.intake
        .trail
        .record(Event::connection_accepted(&partner))
        .await;
    let caller = Caller {
        who: Partner::new(partner.clone(), role),
        cert,
    };
    serve(
        TokioIo::new(tls),
        routes::router(gateway.clone(), caller),
        g.intake.shutdown.clone(),
    )
    .await;
}

/// The role `partner` is admitted with, or `None` after recording why it is not.
async fn admit(
    rules: &RuleSet,
    trail: &Trail,
    partner: &PartnerId,
    cert: &CertFingerprint,
    remote: SocketAddr,
) -> Option<Role> {
    match admission::admit(&rules.config, partner, cert) {
        Ok(role) => Some(role),
        Err(why) => {
            tracing::warn!(%remote, %partner, %why, "TAXII: refused");
            let reason = format!("TAXII: {remote}: {why}");
            trail
                .record(Event::connection_refused(Some(partner), &reason))
                .await;
            None
        }
    }
}

/// Serves HTTP/1.1 on `io` with `router` until the connection ends or the node stops.
async fn serve<I>(io: I, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "TAXII connection ended");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}
