//! The running broker: accepts partners over QUIC + mTLS, hands each stream to the
//! publish or delivery loop, and shuts down cleanly.
//!
//! This is the shell. Decisions are made by `bulletin` (verification), `policy`
//! (who receives what) and `store` (what is durable); this module only wires them to
//! the transport and keeps one slow partner from holding up another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::audit::checkpoint::{CheckpointError, CheckpointSigner};
use crate::audit::record::Event;
use crate::config::NodeConfig;
use crate::identity::{self, PartnerId};
use crate::proto;
use crate::store::{Store, StoreError};
use crate::transport::{self, Timers, TlsIdentity, TransportError};
use shared::{Shared, StorageParts};

pub use crate::config::ConfigChange;
pub use admission::MAX_CONNECTIONS_PER_PARTNER;
pub use refusals::{ANONYMOUS_REFUSALS_PER_MINUTE, PARTNER_REFUSALS_PER_MINUTE};
pub use reload::ReloadError;
pub use writer::{BelowReserve, Cause, ReadTaskFailed, StorageError};

mod admin;
mod admission;
mod auditor;
mod budget;
mod connection;
mod deliver;
mod fair;
mod frames;
mod link;
mod link_book;
mod link_rules;
#[cfg(unix)]
pub mod operator;
mod publish;
mod queues;
mod refusals;
mod reload;
mod shared;
mod space;
mod streams;
mod taxii;
#[cfg(test)]
mod testing;
mod withdraw;
mod writer;

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// TLS files or the endpoint.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node's certificate names another partner than the configuration.
    #[error("the TLS certificate names {cert}, but node.id is {config}")]
    WrongCertificate {
        /// Name in the certificate.
        cert: PartnerId,
        /// Name in the configuration.
        config: PartnerId,
    },
    /// The storage thread could not start or died.
    #[error("storage thread: {0}")]
    Thread(String),
    /// The node's signing key cannot be read.
    #[error("signing key {file}: {why}")]
    SigningKey {
        /// The file named by `node.signing_key`.
        file: std::path::PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The audit log's name cannot be a checkpoint origin.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// The audit log's checkpoint origin (and key name) for a node.
pub fn audit_origin(node: &PartnerId) -> String {
    crate::audit::checkpoint::log_origin(node.as_str())
}

/// A node that is running. [`RunningNode::shutdown`] stops it cleanly; dropping it
/// instead makes its tasks wind down without waiting for them or flushing.
pub struct RunningNode {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    taxii: Option<SocketAddr>,
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    links: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
    store: Arc<Store>,
    shared: Arc<Shared>,
    operator: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's TCP address, when `[admin] listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The TAXII gateway's TCP address, when `[taxii] listen` is set.
    pub fn taxii_addr(&self) -> Option<SocketAddr> {
        self.taxii
    }

    /// Reads the configuration file again and puts its partners, keys, revocations and
    /// rules in force; `who` asked for it (for the audit log). Connections of partners
    /// removed or given another role are closed; the others stay. An invalid file is
    /// refused and the running configuration stays in force.
    pub async fn reload(&self, who: &str) -> Result<ConfigChange, ReloadError> {
        reload::reload(&reload::Reloading::of(&self.shared), who).await
    }

    /// Stops accepting, lets in-flight publishes finish (up to `grace`), closes every
    /// connection, commits and flushes what was accepted, and returns.
    pub async fn shutdown(self, grace: Duration) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        // The storage thread ends when the last sender goes; this one is ours.
        drop(self.shared);
        if let Some(operator) = self.operator {
            // An operation in progress is abandoned (a backup the storage thread has
            // started still finishes before it stops).
            if tokio::time::timeout(grace, operator).await.is_err() {
                tracing::warn!("the operator socket did not close within {grace:?}");
            }
        }
        // The accept task waits for its connection tasks, which finish their streams;
        // the links task for the links this node dialled.
        let connections = async {
            let _ = self.accept.await;
            let _ = self.links.await;
        };
        if tokio::time::timeout(grace, connections).await.is_err() {
            tracing::warn!("connections did not finish within {grace:?}; closing them");
        }
        self.endpoint.close(
            quinn::VarInt::from_u32(proto::CloseCode::ShuttingDown as u32),
            b"node shutting down",
        );
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| NodeError::Thread(e.to_string()))?
            .map_err(|_| NodeError::Thread("the storage thread panicked".into()))?;
        self.store.flush()?;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        Ok(())
    }
}

/// Starts a node: opens its database, binds its endpoint and starts accepting.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    let n = &cfg.node;
    let t = &cfg.transport;
    let (tls, signer) = load_keys(&cfg)?;
    let audit_key = signer.verifying_key();
    let node_key = signer.key().clone();
    let store = Arc::new(Store::open(&n.data_dir, cfg.storage.cache_mib << 20)?);
    // Never append to (or sign for) a log that does not match what the node signed.
    store
        .audit()
        .check_checkpoint(&audit_origin(&n.id), &audit_key)?;
    store.set_identity(&n.id, &audit_key)?;
    let endpoint = crate::transport::endpoint(n.listen, Some(tls.server))?;
    let addr = endpoint.local_addr().map_err(TransportError::Io)?;
    let storage = start_storage(&cfg, store.clone(), signer)?;
    record_start(&cfg, &storage.commits).await;
    tokio::spawn(checkpoint_timer(
        storage.commits.downgrade(),
        Duration::from_secs(cfg.audit.checkpoint_interval_secs),
    ));
    let (stop, shutdown) = watch::channel(false);
    let writer = storage.thread;
    let shared = Arc::new(Shared::new(
        &cfg,
        store.clone(),
        storage.parts,
        node_key,
        shutdown,
    )?);
    // Partners removed while the node was down lose their queues before anyone connects.
    withdraw::withdraw_removed(
        &shared.storage.store,
        &shared.trail,
        &shared.rules.in_force(),
    )
    .await
    .map_err(|e| NodeError::Thread(format!("withdrawing removed partners' queues: {e}")))?;
    let admin = start_admin(&cfg, &shared).await?;
    let taxii = taxii::start(&cfg, &shared, tls.https).await?;
    let operator = start_operator(&n.data_dir, &shared);
    tracing::info!(node = %n.id, %addr, partners = cfg.partners.len(), "node listening");
    let greeting = admission::HandshakeLimits {
        retry_above: t.retry_above_handshakes,
        max: t.max_handshakes,
    };
    let handshake = Duration::from_secs(t.handshake_timeout_secs);
    let accept = tokio::spawn(connection::accept_loop(
        endpoint.clone(),
        shared.clone(),
        handshake,
        greeting,
    ));
    let links = tokio::spawn(link::supervise(
        endpoint.clone(),
        tls.client,
        shared.clone(),
        handshake,
        |conn, shared, admitted| Box::pin(connection::serve_partner(conn, shared, admitted)),
    ));
    Ok(RunningNode {
        addr,
        admin,
        taxii,
        endpoint,
        stop,
        accept,
        links,
        writer,
        store,
        shared,
        operator,
    })
}

/// The node's TLS configurations: as a server, and as a client dialling peer nodes.
struct NodeTls {
    server: quinn::ServerConfig,
    /// The TAXII gateway's HTTPS.
    https: Arc<rustls::ServerConfig>,
    client: quinn::ClientConfig,
}

/// The node's TLS server configuration and its checkpoint signer, from the files the
/// configuration names; the certificate must name this node.
fn load_keys(cfg: &NodeConfig) -> Result<(NodeTls, CheckpointSigner), NodeError> {
    let n = &cfg.node;
    let identity = TlsIdentity::load(&n.ca_cert, &n.tls_cert, &n.tls_key)?;
    let cert_id = identity.partner_id()?;
    if cert_id != n.id {
        return Err(NodeError::WrongCertificate {
            cert: cert_id,
            config: n.id.clone(),
        });
    }
    let t = &cfg.transport;
    let timers = Timers {
        keep_alive: Duration::from_secs(t.keep_alive_secs),
        idle_timeout: Duration::from_secs(t.idle_timeout_secs),
    };
    let server = transport::server_config(&identity, timers)?;
    let https = transport::https_server_config(&identity)?;
    let client = transport::client_config(&identity, timers)?;
    let signing = crate::files::read_text(&n.signing_key)
        .map_err(|e| e.to_string())
        .and_then(|pem| identity::signing_key_from_pem(&pem).map_err(|e| e.to_string()))
        .map_err(|why| NodeError::SigningKey {
            file: n.signing_key.clone(),
            why,
        })?;
    let signer = CheckpointSigner::new(&audit_origin(&n.id), signing)?;
    Ok((
        NodeTls {
            server,
            https,
            client,
        },
        signer,
    ))
}

/// The running storage thread and what the node holds of it.
struct Storage {
    thread: std::thread::JoinHandle<()>,
    commits: mpsc::Sender<writer::Request>,
    parts: StorageParts,
}

/// Starts the storage thread, the database's only writer.
fn start_storage(
    cfg: &NodeConfig,
    store: Arc<Store>,
    signer: CheckpointSigner,
) -> Result<Storage, NodeError> {
    let t = &cfg.transport;
    let (commits, requests) = mpsc::channel(t.commit_batch * 4);
    let (head_tx, head) = watch::channel(store.head()?);
    let commit_latency = Arc::new(crate::metrics::prometheus::DurationHistogram::default());
    let space = Arc::new(space::SpaceGauge::default());
    let thread = writer::spawn(
        writer::Writer {
            store,
            head: head_tx,
            max_batch: t.commit_batch,
            commit_target: std::time::Duration::from_millis(t.commit_target_ms),
            signer,
            checkpoint_every: cfg.audit.checkpoint_every,
            commit_latency: commit_latency.clone(),
            node: cfg.node.id.clone(),
            data_dir: cfg.node.data_dir.clone(),
            reserve: cfg.storage.reserve_mib.saturating_mul(1 << 20),
            space: space.clone(),
        },
        requests,
    )
    .map_err(|e| NodeError::Thread(e.to_string()))?;
    Ok(Storage {
        thread,
        commits: commits.clone(),
        parts: StorageParts {
            commits,
            head,
            commit_latency,
            space,
        },
    })
}

/// Records the configuration in force, and the revocations it holds, as the first
/// things of this run.
async fn record_start(cfg: &NodeConfig, commits: &mpsc::Sender<writer::Request>) {
    let n = &cfg.node;
    let own = crate::identity::Affiliation::of(n.country, n.organisation.as_ref());
    let loaded = Event::config_loaded(&n.id, cfg.policy_digest(), "node started")
        .with_affiliations(own.as_ref(), |_| None);
    let revoked = cfg.revoked.iter().map(|r| {
        let why = format!("in force at start: {}", r.reason);
        Event::key_revoked(&n.id, &r.what.to_string(), &why)
    });
    for event in std::iter::once(loaded).chain(revoked) {
        let request = writer::Request::Event {
            event: Some(event),
            cursor: None,
            done: None,
        };
        let _ = commits.send(request).await;
    }
}

/// Starts the admin listener (`/metrics`, `/healthz`, `/readyz`) if one is configured.
async fn start_admin(
    cfg: &NodeConfig,
    shared: &Arc<Shared>,
) -> Result<Option<std::net::SocketAddr>, NodeError> {
    let Some(at) = cfg.admin.listen else {
        return Ok(None);
    };
    let listener = admin::bind(at).await.map_err(TransportError::Io)?;
    let bound = listener.local_addr().map_err(TransportError::Io)?;
    tokio::spawn(admin::serve(listener, admin::Monitored::of(shared)));
    tracing::info!(%bound, "admin listener (/metrics, /healthz, /readyz)");
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the admin listener is not on loopback: /metrics tells whoever reaches it who your partners are and how much you exchange");
    }
    Ok(Some(bound))
}

/// Starts the operator socket in the data directory; the node serves without it.
#[cfg(unix)]
fn start_operator(
    data_dir: &std::path::Path,
    shared: &Arc<Shared>,
) -> Option<tokio::task::JoinHandle<()>> {
    match operator::bind(data_dir) {
        Ok(listener) => {
            let path = operator::socket_path(data_dir);
            let node = operator::Operating::of(shared);
            Some(tokio::spawn(operator::serve(listener, node, path)))
        }
        Err(e) => {
            // The node still serves; only `renkei reload` and `renkei backup` are lost.
            tracing::error!(error = %e, "no operator socket: `renkei reload` and `renkei backup` will not reach this node (SIGHUP still reloads)");
            None
        }
    }
}

#[cfg(not(unix))]
fn start_operator(
    _data_dir: &std::path::Path,
    _shared: &Arc<Shared>,
) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// Asks the storage thread for a checkpoint every `every`; ends with the node.
/// (A weak sender, so the storage thread still ends when the node lets go of it.)
async fn checkpoint_timer(commits: mpsc::WeakSender<writer::Request>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(commits) = commits.upgrade() else {
            return;
        };
        let request = writer::Request::Checkpoint { reply: None };
        if commits.send(request).await.is_err() {
            return;
        }
    }
}
