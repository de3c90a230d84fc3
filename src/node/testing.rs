//! Unit-test support: the node's shared state on a real store, with the test playing
//! the storage thread (it receives every request and answers when it chooses), so the
//! order of a decision and its records can be checked without a socket.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::shared::{Shared, StorageParts};
use super::writer::Request;
use crate::config::NodeConfig;
use crate::identity::PartnerId;

/// A node file with `partners` appended (its key and certificate paths are never read).
pub(crate) fn node_file(partners: &str) -> String {
    "[node]\nid = \"hub\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"ca\"\n\
     tls_cert = \"c\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n"
        .to_owned()
        + partners
}

/// `[[partner]]` tables for liaisons cleared to AMBER.
pub(crate) fn liaisons(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            format!("[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"amber\"\n\n")
        })
        .collect()
}

/// The shared state of a node started on the file at `path` (its store in the file's
/// `data_dir`, its roster the file's partners), and the requests its storage thread
/// would receive.
pub(crate) fn node_on(path: &Path) -> (Arc<Shared>, mpsc::Receiver<Request>) {
    let cfg = NodeConfig::load(path).expect("the file reads");
    let store = crate::store::Store::open(&cfg.node.data_dir, 8 << 20).expect("a store");
    let ids: Vec<PartnerId> = cfg.partners.iter().map(|p| p.id.clone()).collect();
    store.set_roster(&ids).expect("the roster");
    let (commits, requests) = mpsc::channel(16);
    let storage = StorageParts {
        commits,
        head: watch::channel(0).1,
        commit_latency: Default::default(),
        space: Default::default(),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let shutdown = watch::channel(false).1;
    let shared = Shared::new(&cfg, Arc::new(store), storage, key, shutdown);
    (Arc::new(shared.expect("the node's state")), requests)
}
