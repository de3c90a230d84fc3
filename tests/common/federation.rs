//! A small federation for scenario tests: a hub node on 127.0.0.1 (port chosen by the
//! OS), its partners' keys and certificates generated in a temp dir, and clients that
//! connect as any partner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use renkei::bulletin::{self, BulletinId, Kind, Limits, Tlp};
use renkei::client::Client;
use renkei::config::NodeConfig;
use renkei::identity::{self, PartnerId};
use renkei::node::{self, RunningNode};
use renkei::proto;
use renkei::timestamp::Timestamp;
use renkei::transport::Timers;

use super::configs::node_toml;
use super::tables::Partner;

/// How long any single wait in a test may take before it counts as a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Asks `check` again (a node's status, its log, its metrics) until it says yes or
/// PATIENCE runs out.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Federation {
    pub dir: tempfile::TempDir,
    pub hub: PartnerId,
    pub node: Option<RunningNode>,
    config_path: PathBuf,
    keys: HashMap<String, SigningKey>,
}

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

impl Federation {
    /// A federation around the hub `hub`, to be given its partners before it starts.
    pub fn around(hub: &str) -> Plan {
        Plan {
            hub: hub.to_owned(),
            members: Vec::new(),
            transport: String::new(),
            config: String::new(),
        }
    }

    async fn boot(&mut self) {
        let cfg = NodeConfig::load(&self.config_path).unwrap();
        self.node = Some(node::start(cfg).await.unwrap());
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.node.as_ref().unwrap().local_addr()
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Connects to the hub as partner `id` (any id with a certificate in the PKI).
    pub async fn client(&self, id: &str) -> Client {
        self.client_with_certs(&self.certs(), id).await.unwrap()
    }

    /// Connects with the certificate of `id` from another PKI directory.
    pub async fn client_with_certs(
        &self,
        certs: &Path,
        id: &str,
    ) -> Result<Client, renkei::client::ClientError> {
        connect_as(certs, id, self.addr(), &self.hub).await
    }

    /// The hub's /metrics text (its config must have an `[admin]` listener).
    pub fn metrics(&self) -> String {
        use std::io::{Read as _, Write as _};
        let admin = self.node.as_ref().unwrap().admin_addr().unwrap();
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        let get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        s.write_all(get.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    /// The signing key of partner `id`.
    pub fn key(&self, id: &str) -> &SigningKey {
        &self.keys[id]
    }

    /// A bulletin by `origin`, signed with its own key.
    pub fn bulletin(
        &self,
        origin: &str,
        tlp: Tlp,
        kind: Kind,
        title: &str,
        audience: &[&str],
        tags: &[&str],
    ) -> proto::SignedBulletin {
        sign_as(self.key(origin), origin, tlp, kind, title, audience, tags)
    }

    /// Stops the hub and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        let node = self.node.take().unwrap();
        node.shutdown(Duration::from_secs(5)).await.unwrap();
        self.boot().await;
    }

    /// Stops the hub cleanly (it signs a last audit checkpoint) and keeps its data
    /// directory, to be read offline or run again with [`Federation::resume`].
    pub async fn halt(&mut self) {
        let node = self.node.take().expect("the hub is running");
        node.shutdown(Duration::from_secs(5)).await.unwrap();
    }

    /// Starts the hub again on its data directory after [`Federation::halt`].
    pub async fn resume(&mut self) {
        assert!(self.node.is_none(), "the hub is already running");
        self.boot().await;
    }

    /// The hub's configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The hub's data directory (its database).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

/// A federation not yet started. A partner's table and its certificate come from one
/// call, so the tables and the PKI cannot name different partners.
pub struct Plan {
    hub: String,
    members: Vec<String>,
    transport: String,
    config: String,
}

impl Plan {
    /// `partner`'s table, and a certificate and signing key for it.
    pub fn partner(self, partner: Partner) -> Plan {
        let mut plan = self.member(partner.id());
        plan.config += &format!("\n{partner}");
        plan
    }

    /// A certificate from the federation CA and a signing key for `id`, but no table: a
    /// stranger, or an origin the config names by hand.
    pub fn member(mut self, id: &str) -> Plan {
        if !self.members.iter().any(|m| m == id) {
            self.members.push(id.to_owned());
        }
        self
    }

    /// More keys of the hub's `[transport]` table (`idle_timeout_secs = 2`).
    pub fn transport(mut self, keys: &str) -> Plan {
        self.transport += keys;
        self.transport += "\n";
        self
    }

    /// `toml` as it is, after the tables before it: `[admin]`, `[limits]`, `[[revoked]]`,
    /// or a table the builders cannot write. `KEY(id)` becomes id's public key.
    pub fn config(mut self, toml: &str) -> Plan {
        self.config += toml;
        self
    }

    /// Generates the PKI, writes the hub's config and starts the hub.
    pub async fn start(self) -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let mut ids: Vec<PartnerId> = self.members.iter().map(|m| pid(m)).collect();
        ids.push(pid(&self.hub));
        renkei::pki::init(&certs, &ids, Default::default(), Timestamp::now()).unwrap();
        let mut keys = HashMap::new();
        let mut config = self.config;
        for id in &ids {
            let pem = std::fs::read_to_string(certs.join(id.as_str()).join("signing.key")).unwrap();
            let key = identity::signing_key_from_pem(&pem).unwrap();
            let public = identity::PublicKey::of(&key).to_string();
            config = config.replace(&format!("KEY({id})"), &public);
            keys.insert(id.to_string(), key);
        }
        let transport = format!("[transport]\ndelivery_window = 8\n{}\n", self.transport);
        node_toml(&self.hub)
            .with(&(transport + &config))
            .write(dir.path(), "hub.toml");
        let config_path = dir.path().join("hub.toml");
        let mut fed = Federation {
            dir,
            hub: pid(&self.hub),
            node: None,
            config_path,
            keys,
        };
        fed.boot().await;
        fed
    }
}

/// Connects to the node `hub` at `addr` as partner `id`, with its certificate from the
/// PKI under `dir` (as [`super::pki`] makes it); panics if it cannot.
pub async fn connected(dir: &Path, id: &str, addr: std::net::SocketAddr, hub: &str) -> Client {
    let hub: PartnerId = hub.parse().expect("a partner id");
    connect_as(&dir.join("certs"), id, addr, &hub)
        .await
        .unwrap_or_else(|e| panic!("{id} connects to {hub}: {e}"))
}

/// Connects to the node `hub` at `addr` as partner `id`, with its certificate from the
/// PKI directory `certs`.
pub async fn connect_as(
    certs: &Path,
    id: &str,
    addr: std::net::SocketAddr,
    hub: &PartnerId,
) -> Result<Client, renkei::client::ClientError> {
    let timers = Timers {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
    };
    Client::connect_from_pki(certs, id, addr, hub, timers).await
}

/// A bulletin claiming `origin`, signed with `key` (which may not be origin's).
pub fn sign_as(
    key: &SigningKey,
    origin: &str,
    tlp: Tlp,
    kind: Kind,
    title: &str,
    audience: &[&str],
    tags: &[&str],
) -> proto::SignedBulletin {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title: title.into(),
        summary: String::new(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        audience: audience.iter().map(|a| a.to_string()).collect(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"details"),
        references: vec![],
    };
    bulletin::sign(&b, key, &Limits::default()).unwrap()
}

/// Seqs and titles of the deliveries a subscriber receives until `count` arrive, acking
/// each, then ends the subscription cleanly.
pub async fn receive(client: &Client, count: usize) -> Vec<(u64, String)> {
    let mut sub = client.subscribe(0).await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .expect("delivery in time")
            .unwrap()
            .expect("stream open");
        let b: proto::Bulletin = prost::Message::decode(d.bulletin.unwrap().bulletin).unwrap();
        sub.ack(vec![d.seq]).await.unwrap();
        got.push((d.seq, b.title));
    }
    // Wait until the hub has recorded the acks, so the next subscription starts after them.
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .expect("clean close in time")
        .unwrap();
    got
}

/// Just the titles of what [`receive`] got.
pub async fn receive_titles(client: &Client, count: usize) -> Vec<String> {
    receive(client, count)
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}
