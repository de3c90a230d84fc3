//! Peer links: one QUIC connection (mutual TLS) between this node and each peer node,
//! a relay partner with an `address`. Either side dials; when both did, the rule in
//! [`rules::keeps_new`] picks the connection both keep. A link that dies is dialled
//! again with capped exponential backoff and jitter.
//!
//! Over the link each node is the other's partner with the ordinary frames: the peer
//! subscribes to what this node queued for it (`deliver`), and this node subscribes to
//! what the peer queued for it ([`pull`]), storing each delivery as a publish from the
//! peer before acknowledging it. This module keeps the book of links and dials; what a
//! bulletin comes to is decided by `publish` and `policy`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::admission::{self, AdmittedAs};
use super::Shared;
use crate::audit::record::Event;
use crate::config::PeerAddress;
use crate::identity::{PartnerId, Role};
use crate::proto;
use crate::timestamp::Timestamp;
use crate::transport;

mod pull;
mod report;
pub(crate) mod rules;

pub(crate) use pull::pull;
pub(crate) use report::report;
pub use report::{LinkReport, NodeStatus, QueueReport};
use rules::Dialler;

/// One peer link as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// The peer node.
    pub peer: PartnerId,
    /// Where it is dialled.
    pub address: String,
    /// Whether a connection is up.
    pub up: bool,
    /// When it last came up or went down (or this node started watching it).
    pub since: Timestamp,
    /// Who dialled the connection that is up.
    pub dialled_by: Option<String>,
    /// Why the last dial or connection failed, if one did.
    pub last_error: Option<String>,
    /// Dials that failed, or links that ended within a minute of coming up, since the
    /// link last stayed up.
    pub failures: u32,
    /// Bulletins the peer forwarded that this node had stored already (acknowledged,
    /// not recorded: in a mesh most bulletins arrive more than once).
    pub copies: u64,
    /// Deliveries the peer took but refused, and the last refusal's code and words.
    pub refused_by_peer: (u64, Option<String>),
    /// The peer's queue towards this node as it last said (bulletins, and the age of
    /// the oldest in milliseconds), while the link is up.
    pub from_peer: Option<(u64, u64)>,
    /// The largest frame the peer said it reads (`Welcome.max_frame_bytes`), once it
    /// answered a Hello.
    pub max_frame: Option<usize>,
}

/// The connection that is a peer's link, and what it was offered as.
struct Current {
    id: usize,
    dialler: Dialler,
    conn: quinn::Connection,
}

struct Link {
    status: LinkStatus,
    current: Option<Current>,
    /// Bumped whenever the link goes down, so its dialler wakes.
    down: watch::Sender<u64>,
    /// The rules in force name the peer; when not, its entry goes with its link.
    configured: bool,
    /// Deliveries taken in from the peer and acknowledged, in all.
    acked: u64,
}

/// Every peer's link: its status and the connection in use.
#[derive(Default)]
pub(crate) struct LinkBook {
    links: Mutex<HashMap<PartnerId, Link>>,
}

/// What became of a connection offered as a peer's link.
pub(crate) enum Adoption {
    /// It is the link now; the audit line says how it came up.
    Adopted(String),
    /// The rule keeps the current connection, this one: if it still answers
    /// ([`answers`]), close the new one; if not, the peer lost it (it restarted, or
    /// the path broke): offer the new one again, replacing that one (`replacing`).
    Contested(quinn::Connection),
}

impl LinkBook {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<PartnerId, Link>) -> T) -> T {
        f(&mut self.links.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn entry<'a>(
        links: &'a mut HashMap<PartnerId, Link>,
        peer: &PartnerId,
        address: &str,
        now: Timestamp,
    ) -> &'a mut Link {
        links.entry(peer.clone()).or_insert_with(|| Link {
            status: LinkStatus {
                peer: peer.clone(),
                address: address.to_owned(),
                up: false,
                since: now,
                dialled_by: None,
                last_error: None,
                failures: 0,
                copies: 0,
                refused_by_peer: (0, None),
                from_peer: None,
                max_frame: None,
            },
            current: None,
            down: watch::channel(0).0,
            configured: true,
            acked: 0,
        })
    }

    /// Starts watching `peer` at `address` (a reload may change the address).
    pub(crate) fn watch(&self, peer: &PartnerId, address: &PeerAddress, now: Timestamp) {
        let address = address.to_string();
        self.with(|links| {
            let link = Self::entry(links, peer, &address, now);
            link.status.address = address.clone();
            link.configured = true;
        });
    }

    /// Offers `conn`, opened by `dialler`, as `peer`'s link; `replacing` (a connection's
    /// stable id) replaces that connection even if the rule would keep it, but not
    /// another that became current meanwhile.
    pub(crate) fn adopt(
        &self,
        us: &PartnerId,
        peer: &PartnerId,
        (conn, dialler): (&quinn::Connection, Dialler),
        replacing: Option<usize>,
        now: Timestamp,
    ) -> Adoption {
        self.with(|links| {
            let link = Self::entry(links, peer, "", now);
            let mut how = dialler.describe(us, peer);
            if let Some(cur) = &link.current {
                let replace = replacing == Some(cur.id);
                if !replace && !rules::keeps_new(us, peer, cur.dialler, dialler) {
                    return Adoption::Contested(cur.conn.clone());
                }
                let code = quinn::VarInt::from_u32(proto::CloseCode::DuplicateLink as u32);
                cur.conn.close(code, b"replaced by a newer connection");
                how = format!(
                    "{how}, replacing the connection {}",
                    cur.dialler.describe(us, peer)
                );
            }
            link.current = Some(Current {
                id: conn.stable_id(),
                dialler,
                conn: conn.clone(),
            });
            let s = &mut link.status;
            if !s.up {
                s.since = now;
            }
            s.up = true;
            s.dialled_by = Some(dialler.describe(us, peer));
            Adoption::Adopted(how)
        })
    }

    /// `conn` ended for the reason `why`: true if it was `peer`'s link (now down).
    pub(crate) fn ended(
        &self,
        peer: &PartnerId,
        conn: &quinn::Connection,
        why: &str,
        now: Timestamp,
    ) -> bool {
        self.with(|links| {
            let Some(link) = links.get_mut(peer) else {
                return false;
            };
            if link.current.as_ref().map(|c| c.id) != Some(conn.stable_id()) {
                return false;
            }
            link.current = None;
            if !link.configured {
                link.down.send_modify(|n| *n += 1);
                links.remove(peer);
                return true;
            }
            let s = &mut link.status;
            s.up = false;
            s.since = now;
            s.dialled_by = None;
            s.from_peer = None;
            s.last_error = Some(why.to_owned());
            link.down.send_modify(|n| *n += 1);
            true
        })
    }

    /// A dial of `peer` failed for the reason `why` (or, with none, a link ended soon
    /// after it came up); returns the failures in a row.
    pub(crate) fn failed(&self, peer: &PartnerId, why: Option<&str>) -> u32 {
        self.with(|links| match links.get_mut(peer) {
            Some(link) => {
                if let Some(why) = why {
                    link.status.last_error = Some(why.to_owned());
                }
                link.status.failures += 1;
                link.status.failures
            }
            None => 1,
        })
    }

    /// `peer`'s link stayed up long enough to count as working: no failures in a row.
    pub(crate) fn stable(&self, peer: &PartnerId) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.failures = 0;
            }
        })
    }

    /// What the peer said of its queue towards this node over `conn`, if that is the link.
    pub(crate) fn heard(&self, peer: &PartnerId, conn: &quinn::Connection, w: &proto::Welcome) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                let current = link.current.as_ref().map(|c| c.id) == Some(conn.stable_id());
                if current && w.max_frame_bytes > 0 {
                    link.status.max_frame = usize::try_from(w.max_frame_bytes).ok();
                }
                if let (true, Some(depth), Some(oldest)) =
                    (current, w.queued_for_you, w.oldest_queued_ms)
                {
                    link.status.from_peer = Some((depth, oldest));
                }
            }
        })
    }

    /// The largest frame `peer` reads, if it is a peer that said so.
    pub(crate) fn max_frame(&self, peer: &PartnerId) -> Option<usize> {
        self.with(|links| links.get(peer).and_then(|l| l.status.max_frame))
    }

    /// The connections that are links now.
    pub(crate) fn connections(&self) -> Vec<(PartnerId, quinn::Connection)> {
        self.with(|links| {
            links
                .iter()
                .filter_map(|(p, l)| l.current.as_ref().map(|c| (p.clone(), c.conn.clone())))
                .collect()
        })
    }

    /// `n` deliveries from `peer` were taken in and acknowledged.
    pub(crate) fn count_acked(&self, peer: &PartnerId, n: u64) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.acked += n;
            }
        })
    }

    /// Deliveries taken in from `peer` so far.
    pub(crate) fn acked(&self, peer: &PartnerId) -> u64 {
        self.with(|links| links.get(peer).map_or(0, |l| l.acked))
    }

    /// The peer forwarded `n` bulletins this node had stored already.
    pub(crate) fn count_copies(&self, peer: &PartnerId, n: u64) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.copies += n;
            }
        })
    }

    /// The peer took deliveries but refused `n` of them, the last for `why`.
    pub(crate) fn count_refused(&self, peer: &PartnerId, n: u64, why: String) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.refused_by_peer.0 += n;
                link.status.refused_by_peer.1 = Some(why);
            }
        })
    }

    /// Whether `peer`'s link is up, and a receiver that changes when it goes down.
    fn state(&self, peer: &PartnerId) -> (bool, Option<watch::Receiver<u64>>) {
        self.with(|links| match links.get(peer) {
            Some(l) => (l.current.is_some(), Some(l.down.subscribe())),
            None => (false, None),
        })
    }

    /// Stops watching the peers not in `keep` whose link is down (a link still up is
    /// closed by the reload that removed its peer, and recorded as it goes down).
    pub(crate) fn retain(&self, keep: &[PartnerId]) {
        self.with(|links| {
            for (p, l) in links.iter_mut() {
                l.configured = keep.contains(p);
            }
            links.retain(|_, l| l.configured || l.current.is_some())
        });
    }

    /// Every peer link's status, by peer id.
    pub fn statuses(&self) -> Vec<LinkStatus> {
        let mut all: Vec<LinkStatus> =
            self.with(|l| l.values().map(|l| l.status.clone()).collect());
        all.sort_by(|a, b| a.peer.cmp(&b.peer));
        all
    }
}

/// Whether the peer still serves `conn`: it answers a Hello on it within three round
/// trips (at least a second). A peer that restarted or lost the path does not.
pub(crate) async fn answers(conn: &quinn::Connection, shared: &Shared) -> bool {
    hello(conn, shared).await.is_some()
}

/// The peer's Welcome on `conn` (which says its queue towards this node), if it
/// answers a Hello within three round trips (at least a second).
pub(crate) async fn hello(conn: &quinn::Connection, shared: &Shared) -> Option<proto::Welcome> {
    let patience = (conn.rtt() * 3).max(Duration::from_secs(1));
    let frames = shared.book.frames.clone();
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
        let mut recv = transport::FrameReader::new(recv, shared.limits.max_frame, frames.clone());
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
    let mut rules = shared.rules.in_force.subscribe();
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
                .rules_in_force()
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
                    let failures = self.shared.links.failed(&self.peer, Some(&why));
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
        let (min, max) = self.shared.rules_in_force().config.federation.redial();
        let jitter =
            f64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng)) / f64::from(u32::MAX);
        rules::redial_pause(failures.max(1), min, max, jitter)
    }

    /// Dials the peer and checks who answered as an accepted connection would be.
    async fn dial(&self) -> Result<(quinn::Connection, AdmittedAs), String> {
        let sharing = self.shared.rules.in_force.subscribe();
        let address = sharing
            .borrow()
            .config
            .partner(&self.peer)
            .and_then(|p| p.peer_address().cloned())
            .ok_or_else(|| format!("{} is no longer a peer node", self.peer))?;
        let target = format!("{}:{}", address.host(), address.port());
        let addr = tokio::net::lookup_host(&target)
            .await
            .map_err(|e| format!("{address}: cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("{address}: the name resolves to no address"))?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, self.peer.as_str())
            .map_err(|e| format!("{address}: {e}"))?;
        let conn = match tokio::time::timeout(self.handshake, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("{address}: {e}")),
            Err(_) => return Err(format!("{address}: no answer within {:?}", self.handshake)),
        };
        self.admit(conn, sharing).await
    }

    /// The answering node must be the peer, as this node's rules admit it.
    async fn admit(
        &self,
        conn: quinn::Connection,
        mut sharing: watch::Receiver<Arc<super::RuleSet>>,
    ) -> Result<(quinn::Connection, AdmittedAs), String> {
        let refuse = |why: String| {
            let code = quinn::VarInt::from_u32(proto::CloseCode::UnknownPartner as u32);
            conn.close(code, why.as_bytes());
            why
        };
        let (partner, cert) = transport::peer_partner(&conn).map_err(|e| refuse(e.to_string()))?;
        let admitted = if partner != self.peer {
            Err(format!("{} answered as {partner}", self.peer))
        } else {
            match admission::admit(&sharing.borrow_and_update().config, &partner, &cert) {
                Ok(Role::Relay) => Ok(()),
                Ok(role) => Err(format!("{partner} is a {role} here, not a peer node")),
                Err(why) => Err(why),
            }
        };
        if let Err(why) = admitted {
            let why = refuse(why);
            let event = Event::connection_refused(Some(&partner), &format!("dialled: {why}"));
            self.shared.record(event).await;
            return Err(why);
        }
        let admitted = AdmittedAs {
            partner,
            role: Role::Relay,
            cert,
            sharing,
            link: Some(Dialler::Us),
        };
        Ok((conn, admitted))
    }
}
