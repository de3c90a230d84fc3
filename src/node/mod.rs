//! The running broker: accepts partners over QUIC + mTLS, hands each stream to the
//! publish or delivery loop, and shuts down cleanly.
//!
//! This is the shell. Decisions are made by `bulletin` (verification), `policy`
//! (who receives what) and `store` (what is durable); this module only wires them to
//! the transport and keeps one slow partner from holding up another.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::audit::checkpoint::{CheckpointError, CheckpointSigner};
use crate::audit::record::Event;
use crate::bulletin::Limits;
use crate::config::{NodeConfig, PartnerConfig};
use crate::identity::{self, Keyring, PartnerId};
use crate::policy::Policy;
use crate::proto;
use crate::store::{Store, StoreError};
use crate::transport::{self, Timers, TlsIdentity, TransportError};

pub use crate::config::ConfigChange;
use admission::RefusalWindow;
pub use admission::{
    ANONYMOUS_REFUSALS_PER_MINUTE, MAX_CONNECTIONS_PER_PARTNER, PARTNER_REFUSALS_PER_MINUTE,
};
pub use reload::ReloadError;
pub use writer::StorageError;

mod admin;
mod admission;
mod auditor;
mod budget;
mod connection;
mod deliver;
mod frames;
#[cfg(unix)]
pub mod operator;
mod publish;
mod reload;
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

/// Everything the connection tasks share.
pub(crate) struct Shared {
    pub node_id: PartnerId,
    /// The partners, keys and rules in force; a reload replaces them whole, and
    /// connections watch it to close when their partner is removed.
    pub sharing: watch::Sender<Arc<Sharing>>,
    /// One reload at a time, so their records come in the order they took effect.
    pub reloading: tokio::sync::Mutex<()>,
    /// Held (read) by a publish from taking the rules until its bulletins and refusals
    /// are queued for the storage thread, and (write) by a reload from its CONFIG_LOADED
    /// record until the new rules are in force: every accept decided under the old rules
    /// is recorded before that record, every one decided under the new rules after it.
    pub rules_gate: tokio::sync::RwLock<()>,
    pub limits: Limits,
    pub max_frame: usize,
    pub window: u32,
    /// How long a new stream may wait before its first frame.
    pub first_frame: Duration,
    pub store: Arc<Store>,
    pub commits: mpsc::Sender<writer::Request>,
    /// The key that signs the audit log's checkpoints.
    pub audit_key: ed25519_dalek::VerifyingKey,
    /// First month of the fiscal year, for metrics.
    pub fiscal_start_month: u8,
    /// How long group commits take, filled by the storage thread.
    pub commit_latency: Arc<crate::metrics::prometheus::DurationHistogram>,
    pub head: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
    /// Refusals of peers that named no partner, so that strangers cannot flood the log.
    pub anonymous_refusals: Mutex<RefusalWindow>,
    /// Refusals of each partner, so that an authenticated partner cannot either.
    pub partner_refusals: Mutex<admission::PartnerRefusals>,
    /// Connection attempts asked to prove their address, and refused, before any
    /// handshake work.
    pub handshakes: HandshakeCounts,
    /// Bytes publishes may hold in flight, per stream, per partner and in all.
    pub budgets: budget::Budgets,
    /// Open connections per partner, to bound what one partner can make the node hold.
    pub connections: Mutex<HashMap<PartnerId, usize>>,
    /// Per partner, the generation of its current subscription (a new one replaces the
    /// old) and the lease a subscription holds while it runs, so the next one starts
    /// from the cursor the previous one left.
    pub subscriptions: Mutex<HashMap<PartnerId, deliver::Lease>>,
}

/// Connection attempts handled before any handshake work (see `admission::greet`).
#[derive(Default)]
pub(crate) struct HandshakeCounts {
    pub retried: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

/// The partners, their keys and the sharing rules of one configuration.
pub(crate) struct Sharing {
    /// The configuration in force: the sharing policy of the last reload, everything
    /// else as the node started (see `ConfigChange::in_force`).
    pub config: NodeConfig,
    pub partners: HashMap<PartnerId, PartnerConfig>,
    pub keyring: Keyring,
    pub policy: Policy,
    /// Bulletins up to this seq were queued under earlier rules (or before this run):
    /// each is checked against these rules again before it goes out.
    pub recheck_through: u64,
}

impl Sharing {
    pub(crate) fn new(config: NodeConfig, recheck_through: u64) -> Sharing {
        Sharing {
            recheck_through,
            partners: config
                .partners
                .iter()
                .map(|p| (p.id.clone(), p.clone()))
                .collect(),
            keyring: config.keyring(),
            policy: Policy::from_config(&config),
            config,
        }
    }
}

impl Shared {
    /// The sharing rules in force now.
    pub fn sharing(&self) -> Arc<Sharing> {
        self.sharing.borrow().clone()
    }

    /// Appends an event and/or moves a cursor, and waits until it is durable.
    pub async fn commit_event(
        &self,
        event: Option<Event>,
        cursor: Option<(PartnerId, crate::store::Cursor)>,
    ) -> Result<(), writer::StorageError> {
        let stopped = || writer::StorageError::Stopped;
        let (done, saved) = tokio::sync::oneshot::channel();
        let request = writer::Request::Event {
            event,
            cursor,
            done: Some(done),
        };
        self.commits.send(request).await.map_err(|_| stopped())?;
        saved.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Records the refusal of a peer that named no partner, within the per-minute limit.
    async fn record_anonymous_refusal(&self, why: String) {
        let admitted = self
            .anonymous_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(Instant::now());
        if let Some(before) = admitted {
            let why = if before > 0 {
                format!(
                    "{why} ({before} more refusals before this one were not recorded one by one)"
                )
            } else {
                why
            };
            self.record(Event::connection_refused(None, &why)).await;
        }
    }

    /// Records a refusal of `partner` (a REJECTED event) within the partner's
    /// per-minute limit; beyond it the refusal is counted, and the counts recorded later
    /// (`admission::PartnerRefusals`).
    pub async fn record_refusal(&self, partner: &PartnerId, event: Event) {
        let code = event.record().error;
        let verdict = self
            .partner_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(partner, code, Instant::now());
        for (code, n) in verdict.counted {
            self.record(Event::refusals_counted(partner, code, n)).await;
        }
        if verdict.record_it {
            self.record(event).await;
        }
    }

    /// Records the refusals of `partner` counted but not recorded yet (its connection
    /// ended).
    pub async fn record_counted_refusals(&self, partner: &PartnerId) {
        let counted = self
            .partner_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(partner);
        for (code, n) in counted {
            self.record(Event::refusals_counted(partner, code, n)).await;
        }
    }

    /// Appends an event to the audit log (durable with the next group commit). Only
    /// fails if the node is stopping, when there is nothing left to do about it.
    pub async fn record(&self, event: Event) {
        let request = writer::Request::Event {
            event: Some(event),
            cursor: None,
            done: None,
        };
        if self.commits.send(request).await.is_err() {
            tracing::warn!("audit record dropped: the storage thread has stopped");
        }
    }
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
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
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

    /// Reads the configuration file again and puts its partners, keys, revocations and
    /// rules in force; `who` asked for it (for the audit log). Connections of partners
    /// removed or given another role are closed; the others stay. An invalid file is
    /// refused and the running configuration stays in force.
    pub async fn reload(&self, who: &str) -> Result<ConfigChange, ReloadError> {
        reload::reload(&self.shared, who).await
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
        // The accept task waits for its connection tasks, which finish their streams.
        let accept = self.accept;
        if tokio::time::timeout(grace, accept).await.is_err() {
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
    let (server, signer) = load_keys(&cfg)?;
    let audit_key = signer.verifying_key();
    let store = Arc::new(Store::open(&n.data_dir, cfg.storage.cache_mib << 20)?);
    // Never append to (or sign for) a log that does not match what the node signed.
    store
        .audit()
        .check_checkpoint(&audit_origin(&n.id), &audit_key)?;
    store.set_identity(&n.id, &audit_key)?;
    let endpoint = crate::transport::endpoint(n.listen, Some(server))?;
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
        audit_key,
        shutdown,
    )?);
    // Partners removed while the node was down lose their queues before anyone connects.
    withdraw::withdraw_removed(&shared, &shared.sharing())
        .await
        .map_err(|e| NodeError::Thread(format!("withdrawing removed partners' queues: {e}")))?;
    let admin = start_admin(&cfg, &shared).await?;
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
    Ok(RunningNode {
        addr,
        admin,
        endpoint,
        stop,
        accept,
        writer,
        store,
        shared,
        operator,
    })
}

/// The node's TLS server configuration and its checkpoint signer, from the files the
/// configuration names; the certificate must name this node.
fn load_keys(cfg: &NodeConfig) -> Result<(quinn::ServerConfig, CheckpointSigner), NodeError> {
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
    let signing = crate::files::read_text(&n.signing_key)
        .map_err(|e| e.to_string())
        .and_then(|pem| identity::signing_key_from_pem(&pem).map_err(|e| e.to_string()))
        .map_err(|why| NodeError::SigningKey {
            file: n.signing_key.clone(),
            why,
        })?;
    let signer = CheckpointSigner::new(&audit_origin(&n.id), signing)?;
    Ok((server, signer))
}

/// What the connection tasks hold of the storage thread.
pub(crate) struct StorageParts {
    pub commits: mpsc::Sender<writer::Request>,
    pub head: watch::Receiver<u64>,
    pub commit_latency: Arc<crate::metrics::prometheus::DurationHistogram>,
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
    let thread = writer::spawn(
        writer::Writer {
            store,
            head: head_tx,
            max_batch: t.commit_batch,
            signer,
            checkpoint_every: cfg.audit.checkpoint_every,
            commit_latency: commit_latency.clone(),
            node: cfg.node.id.clone(),
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
        },
    })
}

/// Records the configuration in force, and the revocations it holds, as the first
/// things of this run.
async fn record_start(cfg: &NodeConfig, commits: &mpsc::Sender<writer::Request>) {
    let n = &cfg.node;
    let loaded = Event::config_loaded(&n.id, cfg.policy_digest(), "node started");
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
    tokio::spawn(admin::serve(listener, shared.clone()));
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
            Some(tokio::spawn(operator::serve(
                listener,
                shared.clone(),
                path,
            )))
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

impl Shared {
    /// The state the connection tasks share, for a node started on `cfg`.
    fn new(
        cfg: &NodeConfig,
        store: Arc<Store>,
        storage: StorageParts,
        audit_key: ed25519_dalek::VerifyingKey,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Shared, NodeError> {
        let t = &cfg.transport;
        let l = &cfg.limits;
        Ok(Shared {
            node_id: cfg.node.id.clone(),
            sharing: watch::Sender::new(Arc::new(Sharing::new(cfg.clone(), store.head()?))),
            reloading: tokio::sync::Mutex::new(()),
            rules_gate: tokio::sync::RwLock::new(()),
            limits: l.bulletin_limits(),
            max_frame: l.max_frame_bytes,
            window: t.delivery_window,
            first_frame: Duration::from_secs(t.handshake_timeout_secs),
            store,
            commits: storage.commits,
            audit_key,
            fiscal_start_month: cfg.metrics.fiscal_year_start_month,
            commit_latency: storage.commit_latency,
            head: storage.head,
            shutdown,
            subscriptions: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            handshakes: HandshakeCounts::default(),
            budgets: budget::Budgets::new(budget::BudgetSizes {
                node: l.node_in_flight_mib << 20,
                partner: l.partner_in_flight_mib << 20,
                stream: l.stream_in_flight_mib << 20,
                max_frame: l.max_frame_bytes,
            }),
            anonymous_refusals: Mutex::new(RefusalWindow::new(Instant::now())),
            partner_refusals: Mutex::new(admission::PartnerRefusals::default()),
        })
    }
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
