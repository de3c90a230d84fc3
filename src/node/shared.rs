//! What the connection tasks of a running node share: the rules in force and what
//! orders their changes, the storage thread's handle, the limits, and the book of
//! connections, subscriptions, budgets and refusals; and the few steps every task
//! takes through them (recording an event, a refusal, reading the rules in force).
//!
//! It holds state and hands it out; the decisions are the other modules'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::refusals::{PartnerRefusals, RefusalWindow};
use super::{budget, writer, NodeError};
use crate::audit::record::Event;
use crate::bulletin::Limits;
use crate::config::{NodeConfig, PartnerConfig};
use crate::identity::{Keyring, PartnerId};
use crate::policy::Policy;
use crate::store::Store;

/// Everything the connection tasks share, in parts each task takes only what it uses
/// of: who the node is, the rules in force, the audit trail, the storage thread's
/// handle, the limits, the book of connections, subscriptions and budgets, and the
/// links. Only the tasks that hand work out (the accept loop, a partner's connection
/// and its streams' dispatcher, the link supervisor) hold all of it.
pub(crate) struct Shared {
    pub own: Arc<Own>,
    pub rules: Arc<Rules>,
    /// Where every task records what it did or refused.
    pub trail: Arc<Trail>,
    pub storage: Arc<StorageHandle>,
    pub limits: NodeLimits,
    pub book: Arc<ConnectionBook>,
    /// The links with peer nodes.
    pub links: Arc<super::link_book::LinkBook>,
    pub shutdown: watch::Receiver<bool>,
}

/// Who this node is.
pub(crate) struct Own {
    pub id: PartnerId,
    /// The node's signing key (`node.signing_key`): it signs what the node itself
    /// states, its receipts of peers' deliveries and the bulletins its inboxes make.
    pub key: ed25519_dalek::SigningKey,
}

/// The sharing rules in force and what orders their changes.
pub(crate) struct Rules {
    /// The partners, keys and rules in force; a reload replaces them whole, and
    /// connections watch it to close when their partner is removed.
    pub current: watch::Sender<Arc<RuleSet>>,
    /// One reload at a time, so their records come in the order they took effect.
    pub reloading: tokio::sync::Mutex<()>,
    /// Held (read) by a publish from taking the rules until its bulletins and refusals
    /// are queued for the storage thread, and (write) by a reload from its CONFIG_LOADED
    /// record until the new rules are in force: every accept decided under the old rules
    /// is recorded before that record, every one decided under the new rules after it.
    pub gate: tokio::sync::RwLock<()>,
}

/// The database and the storage thread, its only writer.
pub(crate) struct StorageHandle {
    pub store: Arc<Store>,
    pub commits: mpsc::Sender<writer::Request>,
    /// The newest stored seq, announced by the storage thread.
    pub head: watch::Receiver<u64>,
    /// How long group commits take, filled by the storage thread.
    pub commit_latency: Arc<crate::metrics::prometheus::DurationHistogram>,
    /// Free space in the data directory and whether bulletins are refused for it.
    pub space: Arc<super::space::SpaceGauge>,
    /// The key that signs the audit log's checkpoints.
    pub audit_key: ed25519_dalek::VerifyingKey,
}

/// The audit trail's writer: events appended through the storage thread, and
/// refusals within their per-minute limits (so that no peer can flood the log).
pub(crate) struct Trail {
    commits: mpsc::Sender<writer::Request>,
    /// Refusals of peers that named no partner.
    anonymous: Mutex<RefusalWindow>,
    /// Refusals of each partner.
    partners: Mutex<PartnerRefusals>,
}

impl Trail {
    /// Appends an event to the audit log (durable with the next group commit). Only
    /// fails if the node is stopping, when there is nothing left to do about it.
    pub async fn record(&self, event: Event) {
        if !self.append(event, None).await {
            tracing::warn!("audit record dropped: the storage thread has stopped");
        }
    }

    /// Appends an event, moving a cursor with it, without waiting for it to be
    /// durable; false if the storage thread has stopped.
    pub async fn append(
        &self,
        event: Event,
        cursor: Option<(PartnerId, crate::store::Cursor)>,
    ) -> bool {
        let request = writer::Request::Event {
            event: Some(event),
            cursor,
            done: None,
        };
        self.commits.send(request).await.is_ok()
    }

    /// Appends an event and/or moves a cursor, and waits until it is durable.
    pub async fn commit(
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
    pub(super) async fn anonymous_refusal(&self, why: String) {
        let admitted = self
            .anonymous
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
    /// (`PartnerRefusals`).
    pub async fn refusal(&self, partner: &PartnerId, event: Event) {
        let code = event.record().error;
        let verdict = self
            .partners
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
    pub async fn counted_refusals(&self, partner: &PartnerId) {
        let counted = self
            .partners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(partner);
        for (code, n) in counted {
            self.record(Event::refusals_counted(partner, code, n)).await;
        }
    }
}

/// The limits a stream works within.
#[derive(Clone, Copy)]
pub(crate) struct NodeLimits {
    /// What a bulletin may be.
    pub bulletin: Limits,
    pub max_frame: usize,
    /// Deliveries in flight to one subscriber, at most.
    pub window: u32,
    /// How long a new stream may wait before its first frame.
    pub first_frame: Duration,
}

/// Who is connected and subscribed, what they hold, and what was refused.
pub(crate) struct ConnectionBook {
    /// Open connections per partner, to bound what one partner can make the node hold.
    pub connections: Mutex<HashMap<PartnerId, usize>>,
    /// Per partner, the generation of its current subscription (a new one replaces the
    /// old) and the lease a subscription holds while it runs, so the next one starts
    /// from the cursor the previous one left.
    pub subscriptions: Mutex<HashMap<PartnerId, Lease>>,
    /// Bytes publishes may hold in flight, per stream, per partner and in all.
    pub budgets: budget::Budgets,
    /// Turns at verifying and places at the storage thread, fair between partners.
    pub fair: super::fair::Fair,
    /// Connection attempts asked to prove their address, and refused, before any
    /// handshake work.
    pub handshakes: HandshakeCounts,
    /// Frames this node's streams have read, written and refused.
    pub frames: Arc<crate::transport::FrameCounts>,
}

/// A partner's subscription slot: the current generation, and the lock the running
/// subscription holds (`deliver` takes it over for each new subscription).
pub(crate) struct Lease {
    pub generation: watch::Sender<u64>,
    pub running: Arc<tokio::sync::Mutex<()>>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            generation: watch::channel(0).0,
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// Connection attempts handled before any handshake work (see `admission::greet`).
#[derive(Default)]
pub(crate) struct HandshakeCounts {
    pub retried: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

/// The partners, their keys and the sharing rules of one configuration.
pub(crate) struct RuleSet {
    /// The configuration in force: the sharing policy of the last reload, everything
    /// else as the node started (see `ConfigChange::in_force`).
    pub config: NodeConfig,
    pub partners: HashMap<PartnerId, PartnerConfig>,
    pub keyring: Keyring,
    pub policy: Policy,
    /// Bulletins up to this seq were queued under earlier rules (or before this run):
    /// each is checked against these rules again before it goes out.
    pub recheck_through: u64,
    /// The digest of the sharing policy, as CONFIG_LOADED records it.
    pub digest: [u8; 32],
    /// Whose each partner and origin is, as the configuration says, for the records.
    pub affiliations: HashMap<PartnerId, crate::identity::Affiliation>,
}

impl RuleSet {
    pub(crate) fn new(config: NodeConfig, recheck_through: u64) -> RuleSet {
        RuleSet {
            recheck_through,
            digest: config.policy_digest(),
            affiliations: config
                .partners
                .iter()
                .filter_map(|p| Some((p.id.clone(), p.affiliation()?)))
                .chain(
                    config
                        .origins
                        .iter()
                        .filter_map(|o| Some((o.id.clone(), o.affiliation()?))),
                )
                .collect(),
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

    /// With the node's own signing key in the keyring, under the node's id: the
    /// bulletins the node signs itself (its TAXII inbox's) verify like anyone's, here
    /// and whenever they are checked again.
    pub(crate) fn with_own_key(mut self, key: &ed25519_dalek::VerifyingKey) -> RuleSet {
        if let Some(key) = crate::identity::PublicKey::new(*key) {
            let id = self.config.node.id.clone();
            self.keyring
                .insert(id, key, crate::identity::Validity::default());
        }
        self
    }
}

impl Rules {
    /// The sharing rules in force now.
    pub fn in_force(&self) -> Arc<RuleSet> {
        self.current.borrow().clone()
    }
}

/// What the connection tasks hold of the storage thread.
pub(crate) struct StorageParts {
    pub commits: mpsc::Sender<writer::Request>,
    pub head: watch::Receiver<u64>,
    pub commit_latency: Arc<crate::metrics::prometheus::DurationHistogram>,
    pub space: Arc<super::space::SpaceGauge>,
}

impl Shared {
    /// The state the connection tasks share, for a node started on `cfg`.
    pub(super) fn new(
        cfg: &NodeConfig,
        store: Arc<Store>,
        storage: StorageParts,
        node_key: ed25519_dalek::SigningKey,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Shared, NodeError> {
        let audit_key = node_key.verifying_key();
        let t = &cfg.transport;
        let l = &cfg.limits;
        let in_force = Arc::new(RuleSet::new(cfg.clone(), store.head()?).with_own_key(&audit_key));
        Ok(Shared {
            own: Arc::new(Own {
                id: cfg.node.id.clone(),
                key: node_key,
            }),
            rules: Arc::new(Rules {
                current: watch::Sender::new(in_force),
                reloading: tokio::sync::Mutex::new(()),
                gate: tokio::sync::RwLock::new(()),
            }),
            trail: Arc::new(Trail {
                commits: storage.commits.clone(),
                anonymous: Mutex::new(RefusalWindow::new(Instant::now())),
                partners: Mutex::new(PartnerRefusals::default()),
            }),
            storage: Arc::new(StorageHandle {
                store,
                commits: storage.commits,
                head: storage.head,
                commit_latency: storage.commit_latency,
                space: storage.space,
                audit_key,
            }),
            limits: NodeLimits {
                bulletin: l.bulletin_limits(),
                max_frame: l.max_frame_bytes,
                window: t.delivery_window,
                first_frame: Duration::from_secs(t.handshake_timeout_secs),
            },
            book: Arc::new(ConnectionBook {
                connections: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
                budgets: budget::Budgets::new(budget::BudgetSizes {
                    node: l.node_in_flight_mib << 20,
                    partner: l.partner_in_flight_mib << 20,
                    stream: l.stream_in_flight_mib << 20,
                    max_frame: l.max_frame_bytes,
                    frame_deadline: Duration::from_secs(l.frame_deadline_secs),
                    partner_rate: l.partner_mib_per_sec.saturating_mul(1 << 20),
                    partner_publishes: l.partner_publishes_per_sec,
                }),
                fair: super::fair::Fair::new(cores(), t.commit_batch * 2),
                handshakes: HandshakeCounts::default(),
                frames: Arc::default(),
            }),
            links: Default::default(),
            shutdown,
        })
    }
}

/// Cores the node may use (one verifying turn each).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
