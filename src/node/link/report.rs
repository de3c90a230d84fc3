//! What the operator sees of the federation (`renkei status`): each peer link's state
//! from the book, this node's queue towards each peer, and each peer's queue towards
//! this node, asked over the link. It reads; it changes no link.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{hello, Peering};
use crate::identity::PartnerId;
use crate::node::link_book::LinkBook;
use crate::node::shared::Shared;
use crate::store::Store;

/// What the report reads of the node: the book of links, and what the link's other
/// exchanges use (the node's id, its store, the wire to ask a peer over).
#[derive(Clone)]
pub(crate) struct Reporting {
    pub peering: Peering,
    pub links: Arc<LinkBook>,
}

impl Reporting {
    /// The running node's.
    pub(crate) fn of(shared: &Shared) -> Reporting {
        Reporting {
            peering: Peering::of(shared),
            links: shared.links.clone(),
        }
    }
}

/// A running node's federation, as `renkei status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub node: String,
    /// One entry per peer node, by id.
    pub links: Vec<LinkReport>,
}

/// One peer link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// The peer node.
    pub peer: String,
    /// Where it is dialled.
    pub address: String,
    /// Whether a connection is up.
    pub up: bool,
    /// When it last came up or went down (RFC 3339, UTC).
    pub since: String,
    /// Who dialled the connection that is up.
    pub dialled_by: Option<String>,
    /// Why the last dial or connection failed.
    pub last_error: Option<String>,
    /// Dials that failed since it was last up.
    pub dial_failures: u32,
    /// Bulletins the peer forwarded that were stored already.
    pub copies_received: u64,
    /// Deliveries the peer took but refused since this node started (each recorded as
    /// PEER_REFUSED).
    #[serde(default)]
    pub refused_by_peer: u64,
    /// The last of those refusals: the peer's code and words.
    #[serde(default)]
    pub last_refusal: Option<String>,
    /// Refused deliveries kept to be offered again once either node's configuration
    /// changes (an origin or key the peer did not know).
    #[serde(default)]
    pub refused_kept: u64,
    /// The size of this node's audit log the peer last cosigned as its witness (0:
    /// none yet).
    #[serde(default)]
    pub cosigned_by_peer: u64,
    /// The size of the peer's audit log this node last cosigned, if any.
    #[serde(default)]
    pub witnessed: Option<u64>,
    /// Why this node stopped cosigning the peer's log: a fork or rollback it caught.
    #[serde(default)]
    pub witness_alarm: Option<String>,
    /// This node's queue towards the peer.
    pub to_peer: QueueReport,
    /// The peer's queue towards this node, as the peer says (while the link is up).
    pub from_peer: Option<QueueReport>,
}

/// A queue: bulletins not yet acknowledged, and the age of the oldest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueReport {
    /// Bulletins waiting.
    pub depth: u64,
    /// Age of the oldest, in milliseconds (0 when none).
    pub oldest_ms: u64,
}

/// Asks every linked peer for its queue towards this node, together.
async fn refresh_all(node: &Reporting) {
    let mut asking = tokio::task::JoinSet::new();
    for (peer, conn) in node.links.connections() {
        let node = node.clone();
        asking.spawn(async move {
            if let Some(w) = hello(&conn, node.peering.wire()).await {
                node.links.heard(&peer, &conn, &w);
            }
        });
    }
    while asking.join_next().await.is_some() {}
}

/// How many of `peer`'s refusals are kept for another try (0 when unreadable: the
/// status still shows the rest).
async fn refused_kept(store: &Arc<Store>, peer: &PartnerId) -> u64 {
    let (store, peer) = (store.clone(), peer.clone());
    let kept = tokio::task::spawn_blocking(move || store.refused(&peer).map(|r| r.len()));
    match kept.await {
        Ok(Ok(n)) => n as u64,
        _ => 0,
    }
}

/// The status of every peer link, with both queues: this node's towards each peer, and
/// each linked peer's towards this node, asked now.
pub(crate) async fn report(node: &Reporting) -> NodeStatus {
    refresh_all(node).await;
    let mut links = Vec::new();
    let store = &node.peering.store;
    for l in node.links.statuses() {
        let to = crate::node::queues::queue_of(store, &l.peer).await;
        let kept = refused_kept(store, &l.peer).await;
        links.push(LinkReport {
            peer: l.peer.to_string(),
            address: l.address,
            up: l.up,
            since: l.since.to_string(),
            dialled_by: l.dialled_by,
            last_error: l.last_error,
            dial_failures: l.failures,
            copies_received: l.copies,
            refused_by_peer: l.refused_by_peer.0,
            last_refusal: l.refused_by_peer.1,
            refused_kept: kept,
            cosigned_by_peer: store.cosigned_by(&l.peer).unwrap_or(0),
            witnessed: store
                .witnessed(&l.peer)
                .ok()
                .flatten()
                .and_then(|t| crate::audit::checkpoint::stated(&t).ok())
                .map(|v| v.size),
            witness_alarm: store.witness_alarm(&l.peer).ok().flatten(),
            to_peer: QueueReport {
                depth: to.depth,
                oldest_ms: to.oldest_age_ms,
            },
            from_peer: l
                .from_peer
                .map(|(depth, oldest_ms)| QueueReport { depth, oldest_ms }),
        });
    }
    NodeStatus {
        node: node.peering.own.id.to_string(),
        links,
    }
}
