//! One partner's connection: admission once the handshake is done (the certificate's
//! partner id, its pin and the connection limit, by `admission`), the loop that hands
//! each stream to publishing, delivery or the auditor's questions, and closing the
//! connection when a reload removes, re-roles or re-pins its partner.
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
use super::frames::{self, Opening};
use super::link::{self, rules::Dialler, Adoption};
use super::{auditor, deliver, publish, reload, Shared};
use crate::audit::record::Event;
use crate::identity::{PartnerId, Role};
use crate::proto;
use crate::transport::{self, FrameError};

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
                    if let Some(started) = greet(incoming, &shared, &in_flight, limits).await {
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
    shared: &Shared,
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
            shared
                .book
                .handshakes
                .retried
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = incoming.retry() {
                // Not retryable after all: ignore it rather than do work for it.
                e.into_incoming().ignore();
            }
            None
        }
        Greeting::Refuse => {
            shared
                .book
                .handshakes
                .refused
                .fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            tracing::warn!(%remote, running, validated, "connection attempt refused: too many handshakes in progress");
            let why = format!("{remote}: refused before the handshake, {running} handshakes in progress (address proven: {validated})");
            shared.record_anonymous_refusal(why).await;
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
            return shared.record_anonymous_refusal(why).await;
        }
        Err(_) => {
            tracing::info!(%remote, "handshake timed out");
            let why = format!("TLS handshake from {remote} took longer than {handshake:?}");
            return shared.record_anonymous_refusal(why).await;
        }
    };
    let (partner, cert) = match transport::peer_partner(&conn) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "refused: certificate names no partner");
            close(
                &conn,
                proto::CloseCode::UnknownPartner,
                "certificate names no partner id",
            );
            return shared
                .record_anonymous_refusal(format!("{remote}: {e}"))
                .await;
        }
    };
    // Watch the rules from before admitting, so that a reload landing between the
    // admission and the connection's loop is still seen by the loop.
    let mut rules = shared.rules.in_force.subscribe();
    let role = admission::admit(&rules.borrow_and_update().config, &partner, &cert);
    let role = match role {
        Ok(role) => role,
        Err(why) => {
            tracing::warn!(%remote, %partner, %why, "refused");
            // Recorded before the peer hears it, so what it sees is on the record.
            let reason = format!("{remote}: {why}");
            shared
                .record(Event::connection_refused(Some(&partner), &reason))
                .await;
            return close(&conn, proto::CloseCode::UnknownPartner, &why.to_string());
        }
    };
    let Some(_admitted) = Admitted::new(&shared, &partner) else {
        tracing::warn!(%remote, %partner, "refused: too many connections from this partner");
        let reason = format!("at most {MAX_CONNECTIONS_PER_PARTNER} connections per partner");
        close(&conn, proto::CloseCode::TooManyConnections, &reason);
        let why = format!("{remote}: {reason}");
        return shared
            .record(Event::connection_refused(Some(&partner), &why))
            .await;
    };
    shared.record(Event::connection_accepted(&partner)).await;
    let span = tracing::info_span!("conn", %partner, %remote);
    let is_peer = role == Role::Relay
        && rules
            .borrow()
            .config
            .partner(&partner)
            .is_some_and(|p| p.peer_address().is_some());
    let admitted = AdmittedAs {
        partner: partner.clone(),
        role,
        cert,
        rules,
        link: is_peer.then_some(Dialler::Peer),
    };
    serve_partner(conn, shared.clone(), admitted)
        .instrument(span)
        .await;
}

/// Serves a partner's connection until it ends: its streams, and for a peer node the
/// link (this node's subscription to the peer, and the link's place in the book).
pub(super) async fn serve_partner(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    admitted: AdmittedAs,
) {
    let AdmittedAs {
        partner,
        role,
        cert,
        mut rules,
        link,
    } = admitted;
    let pulling = match link {
        Some(dialler) => match start_link(&conn, &shared, &partner, dialler).await {
            Some(task) => Some(task),
            None => return,
        },
        None => None,
    };
    tracing::info!(%role, "partner connected");
    let mut stop = shared.shutdown.clone();
    let mut streams = JoinSet::new();
    let ended = loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let task = stream_task(send, recv, conn.clone(), shared.clone(), partner.clone(), role);
                    streams.spawn(task.in_current_span());
                }
                Err(e) => {
                    tracing::info!(reason = %e, "partner disconnected");
                    break closed_reason(&e);
                }
            },
            _ = stop.changed() => break "this node is stopping".to_string(),
            Ok(()) = rules.changed() => {
                let why = {
                    let config = &rules.borrow_and_update().config;
                    reload::disconnect_reason(role, &partner, &cert, config)
                        .or_else(|| no_longer_a_peer(pulling.is_some(), &partner, config))
                };
                if let Some(why) = why {
                    tracing::warn!(%why, "disconnecting the partner after a reload");
                    shared.record(Event::operator(&partner, &format!("disconnected {partner}: {why}"))).await;
                    close(&conn, proto::CloseCode::PartnerRemoved, &why);
                    break format!("disconnected after a reload: {why}");
                }
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    };
    // Let in-flight publishes be answered before the connection goes.
    while streams.join_next().await.is_some() {}
    shared.record_counted_refusals(&partner).await;
    close(&conn, proto::CloseCode::ShuttingDown, "node shutting down");
    if let Some(pulling) = pulling {
        pulling.abort();
        end_link(&conn, &shared, &partner, &ended).await;
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
            .adopt(&shared.node_id, peer, (conn, dialler), replacing, now)
        {
            Adoption::Contested(current) => {
                if link::answers(&current, shared).await {
                    tracing::info!(%peer, "both nodes dialled; keeping the other connection");
                    let why = "both nodes dialled; the other connection is kept";
                    close(conn, proto::CloseCode::DuplicateLink, why);
                    return None;
                }
                // The peer dialled again because it lost the old one: the link was cut.
                let why = "the connection no longer answers; the peer dialled again";
                close(&current, proto::CloseCode::DuplicateLink, why);
                if shared.links.ended(peer, &current, why, now) {
                    shared.record(Event::link_down(peer, why)).await;
                }
                replacing = Some(current.stable_id());
            }
            Adoption::Adopted(how) => {
                tracing::info!(%peer, %how, "peer link up");
                shared.record(Event::link_up(peer, &how)).await;
                let pull = link::pull(conn.clone(), shared.clone(), peer.clone());
                return Some(tokio::spawn(pull.in_current_span()));
            }
        }
    }
}

/// A peer node's connection ended: if it was the link, the link is down (recorded).
async fn end_link(conn: &quinn::Connection, shared: &Shared, peer: &PartnerId, why: &str) {
    let now = crate::timestamp::Timestamp::now();
    if shared.links.ended(peer, conn, why, now) {
        tracing::info!(%peer, %why, "peer link down");
        shared.record(Event::link_down(peer, why)).await;
    }
}

/// Answers a frame error on a stream the peer can still hear, and records it.
async fn refuse(
    shared: &Shared,
    partner: &PartnerId,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    err: &FrameError,
) {
    if let Some(code) = err.code() {
        tracing::warn!(error = %err, "refused a frame");
        shared
            .record_refusal(
                partner,
                Event::rejected(partner, None, code, &err.to_string()),
            )
            .await;
        let _ = recv.stop(quinn::VarInt::from_u32(code as u32));
        transport::send_error(send, code, err.to_string(), &shared.book.frames).await;
    }
}

async fn stream_task(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    conn: quinn::Connection,
    shared: Arc<Shared>,
    partner: PartnerId,
    role: Role,
) {
    let mut stop = shared.shutdown.clone();
    // The stream's frames after the first may already be in the buffer: it goes on to
    // the stream's handler.
    let mut recv =
        transport::FrameReader::new(recv, shared.limits.max_frame, shared.book.frames.clone());
    let announced = tokio::select! {
        r = tokio::time::timeout(shared.limits.first_frame, recv.next_len()) => r,
        _ = stop.changed() => return,
    };
    if announced.is_err() {
        let msg = format!(
            "no frame within {:?} of opening the stream",
            shared.limits.first_frame
        );
        let code = proto::ErrorCode::UnexpectedFrame;
        return transport::send_error(&mut send, code, msg, &shared.book.frames).await;
    }
    // Every stream's first frame is read within the partner's budget, so opening every
    // stream it may gives a partner no more room than one stream.
    let budget = shared.book.budgets.stream(&partner);
    let first = tokio::select! {
        r = budget.next::<proto::ClientFrame>(&mut recv) => r,
        _ = stop.changed() => return,
        _ = conn.closed() => return,
    };
    let (first, held) = match first {
        Ok(Some((f, mut held))) => {
            held.shrink_to(prost::Message::encoded_len(&f));
            (f, held)
        }
        Ok(None) => return,
        Err(e) => return refuse(&shared, &partner, &mut send, recv.stream(), &e).await,
    };
    match frames::opening(first.frame, role, &partner) {
        Opening::Publish(p) => {
            let stream = publish::Stream {
                budget,
                send,
                recv,
                conn,
            };
            publish::run((p, held), stream, shared, partner, role).await
        }
        // Only a publish keeps its first frame's room: the others hold what they read.
        other => {
            drop(held);
            serve_opening(other, send, recv, shared, (partner, role)).await
        }
    }
}

/// Serves a stream that opened with anything but a Publish.
async fn serve_opening(
    opening: Opening,
    mut send: quinn::SendStream,
    recv: transport::FrameReader,
    shared: Arc<Shared>,
    (partner, role): (PartnerId, Role),
) {
    match opening {
        Opening::Hello => {
            // A Hello also tells a peer that this end of a link is alive: it must not
            // wait behind a long group commit.
            let queued = tokio::time::timeout(
                std::time::Duration::from_millis(250),
                super::admin::queue_of(&shared, &partner),
            )
            .await
            .ok();
            let welcome = proto::ServerFrame {
                frame: Some(proto::server_frame::Frame::Welcome(proto::Welcome {
                    protocol_version: 1,
                    node_id: shared.node_id.to_string(),
                    partner_id: partner.to_string(),
                    role: role_to_proto(role) as i32,
                    max_frame_bytes: shared.limits.max_frame as u64,
                    max_bulletin_bytes: shared.limits.bulletin.max_bulletin_bytes as u64,
                    max_body_bytes: shared.limits.bulletin.max_body_bytes as u64,
                    server_time_unix_ms: crate::timestamp::Timestamp::now().unix_ms(),
                    software: concat!("renkei ", env!("CARGO_PKG_VERSION")).into(),
                    queued_for_you: queued.as_ref().map(|q| q.depth),
                    oldest_queued_ms: queued.as_ref().map(|q| q.oldest_age_ms),
                })),
            };
            let _ = transport::write_frame(&mut send, &welcome, &shared.book.frames).await;
            let _ = send.finish();
        }
        Opening::Publish(_) => {}
        Opening::Subscribe(s) => deliver::run(s, send, recv, shared, partner).await,
        Opening::Auditor(frame) => auditor::answer(frame, send, &shared, &partner).await,
        Opening::PassReceipts(p) => link::take_receipts(p, send, &shared, &partner).await,
        Opening::Witness(w) => link::witness(w, send, &shared, &partner).await,
        Opening::NotPermitted(msg) => not_permitted(&shared, &partner, &mut send, &msg).await,
        Opening::Refused(code, msg) => {
            transport::send_error(&mut send, code, msg, &shared.book.frames).await
        }
    }
}

/// Refuses what the partner's role does not allow, and records the attempt.
async fn not_permitted(
    shared: &Shared,
    partner: &PartnerId,
    send: &mut quinn::SendStream,
    msg: &str,
) {
    let code = proto::ErrorCode::NotPermitted;
    shared
        .record_refusal(partner, Event::rejected(partner, None, code, msg))
        .await;
    transport::send_error(send, code, msg, &shared.book.frames).await;
}

fn role_to_proto(role: Role) -> proto::Role {
    match role {
        Role::Liaison => proto::Role::Liaison,
        Role::Relay => proto::Role::Relay,
        Role::Auditor => proto::Role::Auditor,
    }
}
