//! Peer links: one QUIC connection (mutual TLS) between this node and each peer node,
//! a relay partner with an `address`. Either side dials; when both did, the rule in
//! [`link_rules::keeps_new`](super::link_rules::keeps_new) picks the connection both
//! keep. A link that dies is dialled again with capped exponential backoff and jitter.
//!
//! Over the link each node is the other's partner with the ordinary frames: the peer
//! subscribes to what this node queued for it (`deliver`), and this node subscribes to
//! what the peer queued for it ([`pull`]), storing each delivery as a publish from the
//! peer before acknowledging it. This module keeps the book of links and dials; what a
//! bulletin comes to is decided by `publish` and `policy`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::admission::{self, AdmittedAs};
use super::shared::Shared;
use super::shared::{Own, Rules, Trail};
use crate::audit::record::Event;
use crate::config::PeerAddress;
use crate::identity::{Partner, PartnerId, Role};
use crate::proto;
use crate::store::Store;
use crate::timestamp::Timestamp;
use crate::transport;

mod exchange;
mod pull;
mod receipts;
mod report;
mod witness;

use super::link_rules::{self as rules, Dialler};
pub(crate) use pull::{pull, Pulling};
pub(crate) use receipts::take_receipts;
pub(crate) use report::{report, Reporting};
pub use report::{LinkReport, NodeStatus, QueueReport};
pub(crate) use witness::witness;

/// Why dialling a peer node gave no link.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// The configuration in force names no address for it any more.
    #[error("{0} is no longer a peer node")]
    NoLongerAPeer(PartnerId),
    /// Its address's name could not be resolved.
    #[error("{0}: cannot resolve: {1}")]
    Unresolved(String, std::io::Error),
    /// Its address's name resolves to nothing.
    #[error("{0}: the name resolves to no address")]
    NoAddress(String),
    /// No connection could be started.
    #[error("{0}: {1}")]
    Connect(String, quinn::ConnectError),
    /// The handshake failed.
    #[error("{0}: {1}")]
    Handshake(String, quinn::ConnectionError),
    /// The handshake took too long.
    #[error("{0}: no answer within {1:?}")]
    NoAnswer(String, Duration),
    /// The node that answered is not the peer as this node's rules admit it.
    #[error(transparent)]
    NotAdmitted(#[from] WrongAnswer),
}

/// Why the node that answered a dial is not admitted as the peer dialled.
#[derive(Debug, thiserror::Error)]
enum WrongAnswer {
    /// Its certificate names no partner.
    #[error(transparent)]
    Unnamed(transport::TransportError),
    /// It is another partner.
    #[error("{dialled} answered as {answered}")]
    Impostor {
        dialled: PartnerId,
        answered: PartnerId,
    },
    /// It is a partner, but not a peer node.
    #[error("{0} is a {1} here, not a peer node")]
    NotAPeer(PartnerId, Role),
    /// The rules in force do not admit its certificate.
    #[error(transparent)]
    Refused(#[from] admission::NotAdmitted),
}

/// Whether the peer still serves `conn`: it answers a Hello on it within three round
/// trips (at least a second). A peer that restarted or lost the path does not.
pub(crate) async fn answers(conn: &quinn::Connection, wire: Wire<'_>) -> bool {
    hello(conn, wire).await.is_some()
}

/// What a request to a peer needs of the node: its frame counts and largest frame.
#[derive(Clone, Copy)]
pub(crate) struct Wire<'a> {
    pub frames: &'a Arc<transport::FrameCounts>,
    pub max_frame: usize,
}

impl<'a> Wire<'a> {
    /// The node's.
    pub(crate) fn of(shared: &'a Shared) -> Wire<'a> {
        Wire {
            frames: &shared.book.frames,
            max_frame: shared.limits.max_frame,
        }
    }
}

/// What the exchanges of a link beside its deliveries (witnessing each other's logs,
/// passing receipts back) use of the node: who it is, the keys in force, the trail,
/// the store, and the wire. Each side of each exchange holds one.
#[derive(Clone)]
pub(crate) struct Peering {
    pub own: Arc<Own>,
    pub rules: Arc<Rules>,
    pub trail: Arc<Trail>,
    pub store: Arc<Store>,
    pub frames: Arc<transport::FrameCounts>,
    pub max_frame: usize,
    pub shutdown: watch::Receiver<bool>,
}

impl Peering {
    /// The running node's.
    pub(crate) fn of(shared: &Shared) -> Peering {
        Peering {
            own: shared.own.clone(),
            rules: shared.rules.clone(),
            trail: shared.trail.clone(),
            store: shared.storage.store.clone(),
            frames: shared.book.frames.clone(),
            max_frame: shared.limits.max_frame,
            shutdown: shared.shutdown.clone(),
        }
    }

    /// Its wire, for a request to the peer.
    pub(crate) fn wire(&self) -> Wire<'_> {
        Wire {
            frames: &self.frames,
            max_frame: self.max_frame,
        }
    }
}

/// The peer's Welcome on `conn` (which says its queue towards this node), if it
/// answers a Hello within three round trips (at least a second).
pub(crate) async fn hello(conn: &quinn::Connection, wire: Wire<'_>) -> Option<proto::Welcome> {
    let patience = (conn.rtt() * 3).max(Duration::from_secs(1));
    let frames = wire.frames.clone();
    let hello = async {
        let (mut send, recv) = conn.open_bi().await.ok()?;
        let frame = proto::ClientFrame {
            frame: Some(proto::client_frame::Frame::Hello(proto::Hello {
                protocol_version: 1,
                software: concat!("renkei ", env!("CARGO_PKG_VERSION")).into(),
            })),
        };
        transport::write_frame(&mut send, &frame, &frames)
            .await
            .ok()?;
        let _ = send.finish();
        let mut recv = transport::FrameReader::new(recv, wire.max_frame, frames.clone());
        match recv.next::<proto::ServerFrame>().await {
            Ok(Some(proto::ServerFrame {
                frame: Some(proto::server_frame::Frame::Welcome(w)),
            })) => Some(w),
            _ => None,
        }
    };
    tokio::time::timeout(patience, hello).await.ok().flatten()
}

/// How a dialled link is served once admitted: as an accepted connection is. The node
/// hands it in, so that links and connections do not import each other.
pub(crate) type Serve = fn(
    quinn::Connection,
    Arc<Shared>,
    AdmittedAs,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Keeps a dialler running for every peer the rules in force name, until the node stops;
/// each link it makes is served by `serve`.
pub(crate) async fn supervise(
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    shared: Arc<Shared>,
    handshake: Duration,
    serve: Serve,
) {
    let mut rules = shared.rules.current.subscribe();
    let mut stop = shared.shutdown.clone();
    let mut dialling: HashMap<PartnerId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let peers: Vec<(PartnerId, PeerAddress)> = rules
            .borrow_and_update()
            .config
            .peers()
            .map(|(p, a)| (p.clone(), a.clone()))
            .collect();
        let now = Timestamp::now();
        // A dialer whose peer a reload removed ends by itself, once its link (which
        // the reload closes) is down.
        dialling.retain(|_, task| !task.is_finished());
        let ids: Vec<PartnerId> = peers.iter().map(|(p, _)| p.clone()).collect();
        shared.links.retain(&ids);
        for (peer, address) in peers {
            shared.links.watch(&peer, &address, now);
            dialling.entry(peer.clone()).or_insert_with(|| {
                let dialer = Dialer {
                    endpoint: endpoint.clone(),
                    client: client.clone(),
                    shared: shared.clone(),
                    peer,
                    handshake,
                    serve,
                };
                tokio::spawn(dialer.run())
            });
        }
        tokio::select! {
            changed = rules.changed() => if changed.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    for (_, task) in dialling {
        // Each sees the shutdown itself and closes its link.
        let _ = task.await;
    }
}

/// How long a link must stay up before its dial counts as a success.
const STABLE: Duration = Duration::from_secs(60);

/// Dials one peer whenever its link is down, and serves the link it makes.
struct Dialer {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    shared: Arc<Shared>,
    peer: PartnerId,
    handshake: Duration,
    serve: Serve,
}

impl Dialer {
    async fn run(self) {
        let mut stop = self.shared.shutdown.clone();
        loop {
            let still_a_peer = self
                .shared
                .rules
                .in_force()
                .config
                .partner(&self.peer)
                .is_some_and(|p| p.peer_address().is_some());
            if *stop.borrow() || !still_a_peer {
                return;
            }
            let (up, down) = self.shared.links.state(&self.peer);
            if up {
                // Up by the peer's dial: wait until it goes down.
                let Some(mut down) = down else { return };
                tokio::select! {
                    _ = down.changed() => {}
                    _ = stop.changed() => return,
                }
            }
            let dialled = tokio::select! {
                d = self.dial() => d,
                _ = stop.changed() => return,
            };
            let pause = match dialled {
                Ok(admitted) => {
                    let up = tokio::time::Instant::now();
                    (self.serve)(admitted.0, self.shared.clone(), admitted.1).await;
                    // A peer that closes the link as soon as it is up (it does not list
                    // this node, a pin differs) is dialled ever more slowly too.
                    if up.elapsed() < STABLE {
                        self.pause(self.shared.links.failed(&self.peer, None))
                    } else {
                        self.shared.links.stable(&self.peer);
                        self.pause(0)
                    }
                }
                Err(why) => {
                    tracing::info!(peer = %self.peer, %why, "dialling the peer failed");
                    let failures = self.shared.links.failed(&self.peer, Some(&why.to_string()));
                    self.pause(failures)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// How long to wait before dialling again after `failures` failures in a row (a
    /// link that ended waits the shortest pause, so both sides do not redial in step).
    fn pause(&self, failures: u32) -> Duration {
        let (min, max) = self.shared.rules.in_force().config.federation.redial();
        let jitter =
            f64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng)) / f64::from(u32::MAX);
        rules::redial_pause(failures.max(1), min, max, jitter)
    }

    /// Dials the peer and checks who answered as an accepted connection would be.
    async fn dial(&self) -> Result<(quinn::Connection, AdmittedAs), DialError> {
        let rules = self.shared.rules.current.subscribe();
        let address = rules
            .borrow()
            .config
            .partner(&self.peer)
            .and_then(|p| p.peer_address().cloned())
            .ok_or_else(|| DialError::NoLongerAPeer(self.peer.clone()))?;
        let at = address.to_string();
        let target = format!("{}:{}", address.host(), address.port());
        let addr = tokio::net::lookup_host(&target)
            .await
            .map_err(|why| DialError::Unresolved(at.clone(), why))?
            .next()
            .ok_or_else(|| DialError::NoAddress(at.clone()))?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, self.peer.as_str())
            .map_err(|why| DialError::Connect(at.clone(), why))?;
        let conn = match tokio::time::timeout(self.handshake, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(why)) => return Err(DialError::Handshake(at, why)),
            Err(_) => return Err(DialError::NoAnswer(at, self.handshake)),
        };
        Ok(self.admit(conn, rules).await?)
    }

    /// The answering node must be the peer, as this node's rules admit it.
    async fn admit(
        &self,
        conn: quinn::Connection,
        mut rules: watch::Receiver<Arc<super::shared::RuleSet>>,
    ) -> Result<(quinn::Connection, AdmittedAs), WrongAnswer> {
        let refuse = |why: WrongAnswer| {
            let code = quinn::VarInt::from_u32(proto::CloseCode::UnknownPartner as u32);
            conn.close(code, why.to_string().as_bytes());
            why
        };
        let (partner, cert) =
            transport::peer_partner(&conn).map_err(|e| refuse(WrongAnswer::Unnamed(e)))?;
        let admitted = if partner != self.peer {
            Err(WrongAnswer::Impostor {
                dialled: self.peer.clone(),
                answered: partner.clone(),
            })
        } else {
            match admission::admit(&rules.borrow_and_update().config, &partner, &cert) {
                Ok(Role::Relay) => Ok(()),
                Ok(role) => Err(WrongAnswer::NotAPeer(partner.clone(), role)),
                Err(why) => Err(why.into()),
            }
        };
        if let Err(why) = admitted {
            let why = refuse(why);
            let event = Event::connection_refused(Some(&partner), &format!("dialled: {why}"));
            self.shared.trail.record(event).await;
            return Err(why);
        }
        let admitted = AdmittedAs {
            who: Partner::new(partner, Role::Relay),
            cert,
            rules,
            link: Some(Dialler::Us),
        };
        Ok((conn, admitted))
    }
}
