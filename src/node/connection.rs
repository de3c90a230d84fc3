//! One partner's connection, once the handshake is done, as a [`PartnerConnection`]:
//! its admission (the certificate's partner id, its pin and the connection limit, by
//! `admission`), a peer's link adopted or not, each stream handed to `streams`, and the
//! connection closed when a reload removes, re-roles or re-pins its partner.
//!
//! It decides nothing about bulletins; the stream modules and `policy` do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::admission::{
    self, Admitted, AdmittedAs, Greeting, HandshakeLimits, MAX_CONNECTIONS_PER_PARTNER,
};
use super::link;
use super::link_book::{Adoption, LinkBook};
use super::link_rules::Dialler;
use super::shared::Shared;
use super::shared::{HandshakeCounts, Trail};
use super::{reload, streams};
use crate::audit::record::Event;
use crate::identity::{Partner, PartnerId, Role};
use crate::proto;
use crate::transport;

pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    handshake: Duration,
    limits: HandshakeLimits,
) {
    let mut stop = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    if let Some(started) = greet(incoming, &shared.book.handshakes, &shared.trail, &in_flight, limits).await {
                        // Each handshake in its own task, with a deadline, so a slow or
                        // hostile peer cannot stall the loop.
                        connections.spawn(connection(started, shared.clone(), handshake));
                    }
                }
                None => break,
            },
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Connection tasks see the shutdown flag themselves; wait for them.
    while connections.join_next().await.is_some() {}
}

/// A handshake in progress, counted until it ends one way or another.
struct Handshake {
    incoming: quinn::Incoming,
    counted: InFlight,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decides, before any handshake work, whether a connection attempt starts its
/// handshake, is asked to prove its address first, or is refused (`admission::greet`).
async fn greet(
    incoming: quinn::Incoming,
    handshakes: &HandshakeCounts,
    trail: &Trail,
    in_flight: &Arc<AtomicUsize>,
    limits: HandshakeLimits,
) -> Option<Handshake> {
    let running = in_flight.load(Ordering::Relaxed);
    let remote = incoming.remote_address();
    let validated = incoming.remote_address_validated();
    match admission::greet(running, validated, incoming.may_retry(), limits) {
        Greeting::Accept => {
            in_flight.fetch_add(1, Ordering::Relaxed);
            Some(Handshake {
                incoming,
                counted: InFlight(in_flight.clone()),
            })
        }
        Greeting::Retry => {
            handshakes.retried.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = incoming.retry() {
                // Not retryable after all: ignore it rather than do work for it.
                e.into_incoming().ignore();
            }
            None
        }
        Greeting::Refuse => {
            handshakes.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            tracing::warn!(%remote, running, validated, "connection attempt refused: too many handshakes in progress");
            let why = format!("{remote}: refused before the handshake, {running} handshakes in progress (address proven: {validated})");
            trail.anonymous_refusal(why).await;
            None
        }
    }
}

fn close(conn: &quinn::Connection, code: proto::CloseCode, reason: &str) {
    conn.close(quinn::VarInt::from_u32(code as u32), reason.as_bytes());
}

async fn connection(started: Handshake, shared: Arc<Shared>, handshake: Duration) {
    let Handshake { incoming, counted } = started;
    let remote = incoming.remote_address();
    let done = tokio::time::timeout(handshake, incoming).await;
    drop(counted); // the handshake's work is over, whatever came of it
    let conn = match done {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "handshake failed");
            let why = format!("TLS handshake from {remote} failed: {e}");
            return shared.trail.anonymous_refusal(why).await;
        }
        Err(_) => {
            tracing::info!(%remote, "handshake timed out");
            let why = format!("TLS handshake from {remote} took longer than {handshake:?}");
            return shared.trail.anonymous_refusal(why).await;
        }
    };
    let Some((admitted, _slot)) = PartnerConnection::admit(&conn, &shared, remote).await else {
        return;
    };
    let span = tracing::info_span!("conn", partner = %admitted.who.id, %remote);
    serve_partner(conn, shared.clone(), admitted)
        .instrument(span)
        .await;
}

/// The partner `conn`'s certificate names, or `None` after closing it and recording why.
async fn named(
    conn: &quinn::Connection,
    remote: std::net::SocketAddr,
    trail: &Trail,
) -> Option<(PartnerId, crate::identity::CertFingerprint)> {
    match transport::peer_partner(conn) {
        Ok(named) => Some(named),
        Err(e) => {
            tracing::warn!(%remote, error = %e, "refused: certificate names no partner");
            close(
                conn,
                proto::CloseCode::UnknownPartner,
                "certificate names no partner id",
            );
            trail.anonymous_refusal(format!("{remote}: {e}")).await;
            None
        }
    }
}

/// Serves a partner's connection until it ends: its streams, and for a peer node the
/// link (this node's subscription to the peer, and the link's place in the book).
pub(super) async fn serve_partner(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    admitted: AdmittedAs,
) {
    let Some(mut c) = PartnerConnection::adopt(conn, shared, admitted).await else {
        return;
    };
    tracing::info!(role = %c.who.role, "partner connected");
    let ended = c.serve().await;
    c.end(&ended).await;
}

/// One admitted partner's connection: who it is, the rules it was admitted under, its
/// streams and, for a peer node, its link. It owns what the connection's life decides:
/// its admission, the link adopted or not, streams served while it lasts, a reload that
/// ends it, and what is recorded when it goes.
struct PartnerConnection {
    conn: quinn::Connection,
    shared: Arc<Shared>,
    who: Partner,
    cert: crate::identity::CertFingerprint,
    rules: tokio::sync::watch::Receiver<Arc<super::shared::RuleSet>>,
    streams: JoinSet<()>,
    /// This node's subscription to the peer, when the connection is its link.
    pulling: Option<tokio::task::JoinHandle<()>>,
}

impl PartnerConnection {
    /// Admits the partner `conn`'s certificate names, as the rules in force say (its
    /// id, pin and role) and within the connection limit, recorded either way; with the
    /// slot it holds among its partner's connections.
    async fn admit<'s>(
        conn: &quinn::Connection,
        shared: &'s Shared,
        remote: std::net::SocketAddr,
    ) -> Option<(AdmittedAs, Admitted<'s>)> {
        let (partner, cert) = named(conn, remote, &shared.trail).await?;
        // Watch the rules from before admitting, so that a reload landing between the
        // admission and the connection's loop is still seen by the loop.
        let mut rules = shared.rules.current.subscribe();
        let role = admission::admit(&rules.borrow_and_update().config, &partner, &cert);
        let role = match role {
            Ok(role) => role,
            Err(why) => {
                tracing::warn!(%remote, %partner, %why, "refused");
                // Recorded before the peer hears it, so what it sees is on the record.
                let reason = format!("{remote}: {why}");
                shared
                    .trail
                    .record(Event::connection_refused(Some(&partner), &reason))
                    .await;
                close(conn, proto::CloseCode::UnknownPartner, &why.to_string());
                return None;
            }
        };
        let Some(slot) = Admitted::new(&shared.book, &partner) else {
            tracing::warn!(%remote, %partner, "refused: too many connections from this partner");
            let reason = format!("at most {MAX_CONNECTIONS_PER_PARTNER} connections per partner");
            close(conn, proto::CloseCode::TooManyConnections, &reason);
            let why = format!("{remote}: {reason}");
            let event = Event::connection_refused(Some(&partner), &why);
            shared.trail.record(event).await;
            return None;
        };
        shared
            .trail
            .record(Event::connection_accepted(&partner))
            .await;
        let is_peer = role == Role::Relay
            && rules
                .borrow()
                .config
                .partner(&partner)
                .is_some_and(|p| p.peer_address().is_some());
        let admitted = AdmittedAs {
            who: Partner::new(partner.clone(), role),
            cert,
            rules,
            link: is_peer.then_some(Dialler::Peer),
        };
        Some((admitted, slot))
    }

    /// The connection of `admitted`; a peer node's is offered as its link first, and
    /// `None` if the other connection of the two is kept.
    async fn adopt(
        conn: quinn::Connection,
        shared: Arc<Shared>,
        admitted: AdmittedAs,
    ) -> Option<PartnerConnection> {
        let AdmittedAs {
            who,
            cert,
            rules,
            link,
        } = admitted;
        let pulling = match link {
            Some(dialler) => Some(start_link(&conn, &shared, &who.id, dialler).await?),
            None => None,
        };
        Some(PartnerConnection {
            conn,
            shared,
            who,
            cert,
            rules,
            streams: JoinSet::new(),
            pulling,
        })
    }

    /// Serves streams until the partner goes, the node stops or a reload ends the
    /// connection; why it ended.
    async fn serve(&mut self) -> String {
        let mut stop = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                stream = self.conn.accept_bi() => match stream {
                    Ok((send, recv)) => self.spawn(send, recv),
                    Err(e) => {
                        tracing::info!(reason = %e, "partner disconnected");
                        return closed_reason(&e);
                    }
                },
                _ = stop.changed() => return "this node is stopping".to_string(),
                Ok(()) = self.rules.changed() => {
                    if let Some(why) = self.reloaded().await {
                        return format!("disconnected after a reload: {why}");
                    }
                }
                Some(_) = self.streams.join_next(), if !self.streams.is_empty() => {}
            }
        }
    }

    fn spawn(&mut self, send: quinn::SendStream, recv: quinn::RecvStream) {
        let (conn, shared) = (self.conn.clone(), self.shared.clone());
        let task = streams::stream_task(send, recv, conn, shared, self.who.clone());
        self.streams.spawn(task.in_current_span());
    }

    /// Closes the connection, recorded, if the rules now in force no longer admit it as
    /// it was admitted (removed, revoked, re-pinned, re-roled, or no longer a peer);
    /// why, if so.
    async fn reloaded(&mut self) -> Option<String> {
        let why = {
            let config = &self.rules.borrow_and_update().config;
            reload::disconnect_reason(&self.who, &self.cert, config)
                .or_else(|| no_longer_a_peer(self.pulling.is_some(), &self.who.id, config))
        }?;
        tracing::warn!(%why, "disconnecting the partner after a reload");
        let partner = &self.who.id;
        let what = format!("disconnected {partner}: {why}");
        self.shared
            .trail
            .record(Event::operator(partner, &what))
            .await;
        close(&self.conn, proto::CloseCode::PartnerRemoved, &why);
        Some(why)
    }

    /// Lets in-flight publishes be answered, closes the connection and, if it was the
    /// link, records the link down.
    async fn end(mut self, why: &str) {
        while self.streams.join_next().await.is_some() {}
        self.shared.trail.counted_refusals(&self.who.id).await;
        close(
            &self.conn,
            proto::CloseCode::ShuttingDown,
            "node shutting down",
        );
        if let Some(pulling) = self.pulling.take() {
            pulling.abort();
            end_link(
                &self.conn,
                &self.shared.links,
                &self.shared.trail,
                &self.who.id,
                why,
            )
            .await;
        }
    }
}

/// Why a peer link must end after a reload that kept its partner: the partner is no
/// longer a peer node (its address was removed).
fn no_longer_a_peer(
    is_link: bool,
    partner: &PartnerId,
    config: &crate::config::NodeConfig,
) -> Option<String> {
    let still = config
        .partner(partner)
        .is_some_and(|p| p.peer_address().is_some());
    (is_link && !still).then(|| format!("{partner} is no longer a peer node (no address)"))
}

/// Why a connection ended, in words for the audit log.
fn closed_reason(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            format!("the peer closed it: {}", String::from_utf8_lossy(&c.reason))
        }
        other => other.to_string(),
    }
}

/// Offers a peer node's connection as its link: if it is kept, records the link up
/// and starts pulling from the peer; if the other connection is kept, closes this one.
async fn start_link(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    peer: &PartnerId,
    dialler: Dialler,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut replacing = None;
    loop {
        let now = crate::timestamp::Timestamp::now();
        match shared
            .links
            .adopt(&shared.own.id, peer, (conn, dialler), replacing, now)
        {
            Adoption::Contested(current) => {
                if link::answers(&current, link::Wire::of(shared)).await {
                    tracing::info!(%peer, "both nodes dialled; keeping the other connection");
                    let why = "both nodes dialled; the other connection is kept";
                    close(conn, proto::CloseCode::DuplicateLink, why);
                    return None;
                }
                // The peer dialled again because it lost the old one: the link was cut.
                let why = "the connection no longer answers; the peer dialled again";
                close(&current, proto::CloseCode::DuplicateLink, why);
                if shared.links.ended(peer, &current, why, now) {
                    shared.trail.record(Event::link_down(peer, why)).await;
                }
                replacing = Some(current.stable_id());
            }
            Adoption::Adopted(how) => {
                tracing::info!(%peer, %how, "peer link up");
                shared.trail.record(Event::link_up(peer, &how)).await;
                let pull = link::pull(conn.clone(), link::Pulling::of(shared), peer.clone());
                return Some(tokio::spawn(pull.in_current_span()));
            }
        }
    }
}

/// A peer node's connection ended: if it was the link, the link is down (recorded).
async fn end_link(
    conn: &quinn::Connection,
    links: &LinkBook,
    trail: &Trail,
    peer: &PartnerId,
    why: &str,
) {
    let now = crate::timestamp::Timestamp::now();
    if links.ended(peer, conn, why, now) {
        tracing::info!(%peer, %why, "peer link down");
        trail.record(Event::link_down(peer, why)).await;
    }
}
