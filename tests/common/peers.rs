//! A federation of real `renkei serve` processes on 127.0.0.1, each node with its own
//! desks, linked to the peers a test names. Every node listens on a port reserved for
//! it (bound to port 0 and let go), so a node that is killed comes back at the same
//! address its peers dial.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use renkei::client::Client;
use renkei::identity::PartnerId;

use super::configs::node_toml;
use super::federation::{connect_as, sign_as};
use super::served::{serve, Served};

/// One node: its id, address, config, and the process when it runs.
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub config: String,
    pub served: Option<Served>,
}

/// A federation: nodes, the desks behind each, and the links between nodes.
pub struct Mesh {
    pub dir: PathBuf,
    pub nodes: BTreeMap<String, Node>,
    /// Desk id → the node it is a liaison of.
    pub desks: BTreeMap<String, String>,
    /// Pairs of nodes that are each other's peers.
    pub links: Vec<(String, String)>,
    /// Appended to every node's config.
    extra: String,
    /// (node, desk): desks a node is not told about.
    forgotten: Vec<(String, String)>,
    /// (node, desk, peer): the one peer a node accepts a desk's bulletins through.
    only_via: Vec<(String, String, String)>,
    keys: BTreeMap<String, SigningKey>,
    /// Node → the port of its TAXII and MISP gateway, for nodes that have one.
    gateways: BTreeMap<String, u16>,
}

/// Whose a node or desk of these tests is, from its id's first word (`jp-` Japan,
/// `nato-` NATO's centre...), as a configuration line; none for other ids.
pub fn whose(id: &str) -> String {
    let country = |c: &str| format!("country = \"{c}\"\n");
    match id.split('-').next().unwrap_or_default() {
        "jp" => country("JP"),
        "us" => country("US"),
        "ee" => country("EE"),
        "au" => country("AU"),
        "uk" => country("GB"),
        "nato" => "organisation = \"NATO-CCDCOE\"\n".into(),
        _ => String::new(),
    }
}

/// A port on 127.0.0.1 nobody holds now.
pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    s.local_addr().expect("its address").port()
}

impl Mesh {
    /// Writes the PKI and every node's config: `desks` as (desk, node), `links` as
    /// pairs of nodes that are each other's peers. Every desk beyond a node's own is an
    /// `[[origin]]` reached through all of that node's peers. `extra` is appended to
    /// every node's config.
    pub fn new(
        dir: &Path,
        nodes: &[&str],
        desks: &[(&str, &str)],
        links: &[(&str, &str)],
        extra: &str,
    ) -> Mesh {
        let audits: Vec<String> = nodes.iter().map(|n| format!("{n}-audit")).collect();
        let mut ids: Vec<&str> = nodes.to_vec();
        ids.extend(desks.iter().map(|(d, _)| *d));
        ids.extend(audits.iter().map(String::as_str));
        super::pki(dir, &ids.join(","));
        let mut mesh = Mesh {
            dir: dir.to_owned(),
            nodes: BTreeMap::new(),
            desks: desks
                .iter()
                .map(|(d, n)| (d.to_string(), n.to_string()))
                .collect(),
            links: links
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            extra: extra.to_string(),
            forgotten: Vec::new(),
            only_via: Vec::new(),
            keys: BTreeMap::new(),
            gateways: BTreeMap::new(),
        };
        for id in ids.iter().filter(|i| !i.ends_with("-audit")) {
            let pem = fs::read_to_string(dir.join(format!("certs/{id}/signing.key"))).unwrap();
            mesh.keys.insert(
                id.to_string(),
                renkei::identity::signing_key_from_pem(&pem).unwrap(),
            );
        }
        for n in nodes {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let config = format!("{n}.toml");
            mesh.nodes.insert(
                n.to_string(),
                Node {
                    id: n.to_string(),
                    addr,
                    config,
                    served: None,
                },
            );
        }
        mesh.write_configs();
        mesh
    }

    /// (Re)writes every node's config.
    fn write_configs(&self) {
        for n in self.nodes.keys() {
            fs::write(self.dir.join(&self.nodes[n].config), self.node_config(n)).unwrap();
        }
    }

    /// Node `node` is no longer told about desk `desk` beyond its peers.
    pub fn forget(&mut self, node: &str, desk: &str) {
        self.forgotten.push((node.to_string(), desk.to_string()));
        self.write_configs();
    }

    /// Node `node` is told about desk `desk` again (after [`Mesh::forget`]).
    pub fn remember(&mut self, node: &str, desk: &str) {
        self.forgotten.retain(|(n, d)| !(n == node && d == desk));
        self.write_configs();
    }

    /// Node `node` accepts `desk`'s bulletins only through `peer`.
    pub fn only_via(&mut self, node: &str, desk: &str, peer: &str) {
        self.only_via
            .push((node.to_string(), desk.to_string(), peer.to_string()));
        self.write_configs();
    }

    /// Gives node `n` a TAXII and MISP gateway on a free port (reached under the
    /// node's id, as its certificate names it); the port.
    pub fn gateway(&mut self, n: &str) -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a TCP port")
            .port();
        self.gateways.insert(n.to_string(), port);
        self.write_configs();
        port
    }

    fn node_config(&self, n: &str) -> String {
        let extra = &self.extra;
        let dir = &self.dir;
        let node = &self.nodes[n];
        let mut t = node_toml(n)
            .listen(node.addr)
            .data_dir(format!("{n}-data"))
            .with(&format!(
                "{}[transport]\nkeep_alive_secs = 1\nidle_timeout_secs = 5\n\
                 [federation]\nredial_min_ms = 50\nredial_max_secs = 1\n{extra}\n",
                whose(n)
            ))
            .to_string();
        if let Some(port) = self.gateways.get(n) {
            t += &format!("[taxii]\nlisten = \"127.0.0.1:{port}\"\nurl = \"https://{n}:{port}\"\n");
        }
        for (desk, home) in &self.desks {
            if home == n {
                t += &format!(
                    "\n[[partner]]\nid = \"{desk}\"\nrole = \"liaison\"\nclearance = \"red\"\n{}keys = [{{ public = \"{}\" }}]\n",
                    whose(desk),
                    super::public_key(dir, desk)
                );
            }
        }
        let peers: Vec<&str> = self
            .links
            .iter()
            .filter_map(|(a, b)| (a == n).then_some(b).or((b == n).then_some(a)))
            .map(String::as_str)
            .collect();
        for p in &peers {
            t += &format!(
                "\n[[partner]]\nid = \"{p}\"\nrole = \"relay\"\nclearance = \"red\"\n{}address = \"{}\"\nkeys = [{{ public = \"{}\" }}]\n",
                whose(p),
                self.nodes[*p].addr,
                super::public_key(dir, p)
            );
        }
        t += &format!("\n[[partner]]\nid = \"{n}-audit\"\nrole = \"auditor\"\n");
        if !peers.is_empty() {
            for (desk, home) in &self.desks {
                let forgotten = self.forgotten.iter().any(|(f, d)| f == n && d == desk);
                if home != n && !forgotten {
                    // Any peer may hand its bulletins over; the way towards it is its
                    // own node when that is a peer.
                    let mut via = peers.clone();
                    via.sort_by_key(|p| *p != home);
                    if let Some((_, _, only)) =
                        self.only_via.iter().find(|(o, d, _)| o == n && d == desk)
                    {
                        via = vec![only.as_str()];
                    }
                    t += &format!(
                        "\n[[origin]]\nid = \"{desk}\"\n{}via = {via:?}\nkeys = [{{ public = \"{}\" }}]\n",
                        whose(desk),
                        super::public_key(dir, desk)
                    );
                }
            }
        }
        t
    }

    /// Starts node `n` (again).
    pub fn start(&mut self, n: &str) {
        let node = self.nodes.get_mut(n).expect("a node");
        let (served, addr) = serve(&self.dir, &node.config);
        assert_eq!(
            addr,
            node.addr.to_string(),
            "{n} listens where its peers dial"
        );
        node.served = Some(served);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for n in ids {
            self.start(&n);
        }
    }

    /// SIGKILLs node `n`.
    pub fn kill(&mut self, n: &str) {
        if let Some(mut s) = self.nodes.get_mut(n).and_then(|n| n.served.take()) {
            s.kill();
        }
    }

    /// Stops every node with SIGTERM; each must exit cleanly.
    pub fn stop_all(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(s) = node.served.take() {
                assert!(
                    s.stop(Duration::from_secs(20)).success(),
                    "{} stops cleanly",
                    node.id
                );
            }
        }
    }

    /// A desk's (or auditor's) connection to its node.
    pub async fn client(&self, id: &str) -> Client {
        let home = match self.desks.get(id) {
            Some(n) => n.clone(),
            None => id.trim_end_matches("-audit").to_string(),
        };
        let node: PartnerId = home.parse().unwrap();
        connect_as(&self.dir.join("certs"), id, self.nodes[&home].addr, &node)
            .await
            .unwrap_or_else(|e| panic!("{id} connects to {home}: {e}"))
    }

    /// Writes a client configuration for node `n`'s audit office (`{n}-audit`, which
    /// every node lists); its file name.
    pub fn office(&self, n: &str) -> String {
        let name = format!("{n}-audit.toml");
        let office = super::configs::client_toml(&format!("{n}-audit"), self.nodes[n].addr, n);
        office.write(&self.dir, &name);
        name
    }

    /// Desk `desk` publishes `n` GREEN advisories titled `{title} {i}`; their ids.
    pub async fn publish_advisories(&self, desk: &str, title: &str, n: usize) -> Vec<String> {
        use renkei::bulletin::{Kind, Tlp};
        let client = self.client(desk).await;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let title = format!("{title} {i}");
            let b = sign_as(
                self.key(desk),
                desk,
                Tlp::Green,
                Kind::Advisory,
                &title,
                &[],
                &[],
            );
            ids.push(client.publish(b).await.unwrap().bulletin_id);
        }
        client.close().await;
        ids
    }

    /// A desk's signing key.
    pub fn key(&self, id: &str) -> &SigningKey {
        &self.keys[id]
    }

    /// The public key of `id`, as its `signing.pub` holds it.
    pub fn public(&self, id: &str) -> String {
        super::public_key(&self.dir, id)
    }
}
