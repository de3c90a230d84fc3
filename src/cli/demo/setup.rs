//! The demo federation's cast and files: three nodes (Tokyo, Tallinn, Washington) that
//! are each other's peers, the desks behind each, an audit office per node, the PKI
//! and every configuration file, written so that the README's tour can run on them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;

use crate::files::{write, Access};
use crate::identity::{self, Keyring, PartnerId, PublicKey, Validity};
use crate::timestamp::Timestamp;

/// A node of the demo, run by one organisation in its own process.
pub(super) struct Node {
    pub id: &'static str,
    pub city: &'static str,
    /// Its audit office (role auditor).
    pub auditor: &'static str,
    /// Whose node it is, as its configuration line (`country = "JP"`).
    pub who: &'static str,
}

pub(super) const NODES: &[Node] = &[
    Node {
        id: "jp-mod",
        city: "Tokyo",
        auditor: "jp-audit",
        who: "country = \"JP\"",
    },
    Node {
        id: "nato-ccdcoe",
        city: "Tallinn",
        auditor: "nato-audit",
        who: "organisation = \"NATO-CCDCOE\"",
    },
    Node {
        id: "us-dod",
        city: "Washington",
        auditor: "us-audit",
        who: "country = \"US\"",
    },
];

/// Every pair of nodes is linked: a triangle, so bulletins may arrive twice.
pub(super) const LINKS: &[(&str, &str)] = &[
    ("jp-mod", "nato-ccdcoe"),
    ("jp-mod", "us-dod"),
    ("nato-ccdcoe", "us-dod"),
];

/// Tokyo's targets for the fiscal year the demo runs in (April to March).
fn tokyo_targets() -> String {
    let today = crate::metrics::day_of(Timestamp::now().unix_ms());
    let fy = crate::metrics::fiscal_year_containing(today, 4);
    format!(
        "\n# What the cooperation programme aims at this fiscal year (the review sheet).\n\
         [[target]]\nfiscal_year = {fy}\nconsultations = 2\nexercises = 2\n\
         threat_exchanges = 4\ncountries_engaged = 3\n"
    )
}

/// The demo's node `id`.
fn node(id: &str) -> Option<&'static Node> {
    NODES.iter().find(|n| n.id == id)
}

/// A liaison desk behind a node.
pub(super) struct Desk {
    pub id: &'static str,
    pub node: &'static str,
    pub clearance: &'static str,
    pub groups: &'static [&'static str],
    /// Kinds it is sent (empty: all).
    pub kinds: &'static [&'static str],
    /// Whose desk it is, as its configuration line (`country = "EE"`).
    pub who: &'static str,
}

pub(super) const DESKS: &[Desk] = &[
    Desk {
        id: "jp-cdc",
        node: "jp-mod",
        clearance: "red",
        groups: &["quad"],
        kinds: &[],
        who: "country = \"JP\"",
    },
    Desk {
        id: "vn-mod",
        node: "jp-mod",
        clearance: "green",
        groups: &[],
        kinds: &["indicator", "advisory", "exercise", "consultation"],
        who: "country = \"VN\"",
    },
    Desk {
        id: "ee-mod",
        node: "nato-ccdcoe",
        clearance: "amber",
        groups: &["nato"],
        kinds: &[],
        who: "country = \"EE\"",
    },
    Desk {
        id: "uk-mod",
        node: "nato-ccdcoe",
        clearance: "red",
        groups: &["nato", "five-eyes"],
        kinds: &[],
        who: "country = \"GB\"",
    },
    Desk {
        id: "au-dod",
        node: "us-dod",
        clearance: "red",
        groups: &["five-eyes", "quad"],
        kinds: &[],
        who: "country = \"AU\"",
    },
    Desk {
        id: "us-cybercom",
        node: "us-dod",
        clearance: "red",
        groups: &["five-eyes", "quad"],
        kinds: &[],
        who: "country = \"US\"",
    },
];

/// The STIX 2.1 bundle of the scenario's indicator (and the tour's `bundle.json`).
pub(super) const STIX: &str = r#"{"type":"bundle","id":"bundle--6f1d2c3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f","objects":[{"type":"indicator","spec_version":"2.1","id":"indicator--0b6f8a2c-1d3e-4f5a-9b7c-8d9e0f1a2b3c","created":"2026-04-01T09:00:00.000Z","modified":"2026-04-01T09:00:00.000Z","pattern":"[domain-name:value = 'exercise-schedule.example']","pattern_type":"stix","valid_from":"2026-04-01T09:00:00Z","object_marking_refs":["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]}]}"#;

/// The desk with this id.
pub(super) fn desk(id: &str) -> anyhow::Result<&'static Desk> {
    DESKS
        .iter()
        .find(|d| d.id == id)
        .with_context(|| format!("{id} is not a desk of the demo"))
}

/// The demo's files and keys, and where each node listens.
pub(super) struct Federation {
    pub dir: PathBuf,
    pub keys: BTreeMap<String, SigningKey>,
    /// Every desk's and node's public key, as a desk verifies with.
    pub keyring: Arc<Keyring>,
    pub addrs: BTreeMap<&'static str, SocketAddr>,
}

fn pid(s: &str) -> anyhow::Result<PartnerId> {
    Ok(s.parse()?)
}

/// A UDP port on 127.0.0.1 that nobody holds now: each node listens on one chosen
/// before it starts, since its peers' configs must name it.
fn free_addr() -> anyhow::Result<SocketAddr> {
    let s = UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(s.local_addr()?)
}

/// The PKI in `dir/certs` (made, or kept from an earlier run so the tour's files stay
/// valid), the keys, a fresh port per node, and every config file.
pub(super) fn prepare(dir: &Path) -> anyhow::Result<Federation> {
    for n in NODES {
        let data = dir.join(format!("{}-data", n.id));
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing the previous run's {}", data.display()))?;
        }
    }
    let ids: Vec<&str> = NODES
        .iter()
        .flat_map(|n| [n.id, n.auditor])
        .chain(DESKS.iter().map(|d| d.id))
        .collect();
    let pids = ids
        .iter()
        .map(|i| pid(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let certs = dir.join("certs");
    let report = crate::pki::init(
        &certs,
        &pids,
        crate::pki::Replace::default(),
        Timestamp::now(),
    )?;
    println!("renkei demo: a local federation in {}", dir.display());
    println!(
        "  federation CA {}…; {} TLS certificates and Ed25519 keys",
        &report.ca_fingerprint[..23],
        report.nodes.len()
    );
    let mut keys = BTreeMap::new();
    let mut keyring = Keyring::new();
    for id in &pids {
        let pem = crate::files::read_text(&certs.join(id.as_str()).join("signing.key"))?;
        let key = identity::signing_key_from_pem(&pem)?;
        keyring.insert(id.clone(), PublicKey::of(&key), Validity::default());
        keys.insert(id.to_string(), key);
    }
    let mut addrs = BTreeMap::new();
    for n in NODES {
        addrs.insert(n.id, free_addr()?);
    }
    let fed = Federation {
        dir: dir.to_owned(),
        keys,
        keyring: Arc::new(keyring),
        addrs,
    };
    fed.write_configs()?;
    Ok(fed)
}

impl Federation {
    fn public(&self, id: &str) -> String {
        self.keys
            .get(id)
            .map(|k| PublicKey::of(k).to_string())
            .unwrap_or_default()
    }

    fn peers_of(node: &str) -> Vec<&'static str> {
        LINKS
            .iter()
            .filter_map(|(a, b)| match (*a == node, *b == node) {
                (true, _) => Some(*b),
                (_, true) => Some(*a),
                _ => None,
            })
            .collect()
    }

    /// A node's config: its desks and auditor, its peers, and every other node's desks
    /// as origins beyond the peers (the desk's own node first: the way towards it).
    pub(super) fn node_config(&self, n: &Node) -> String {
        let id = n.id;
        let mut t = format!(
            "# {id} ({}), made by `renkei demo`.\n[node]\nid = \"{id}\"\nlisten = \"{}\"\ndata_dir = \"{id}-data\"\n\
             ca_cert = \"certs/ca.crt\"\ntls_cert = \"certs/{id}/tls.crt\"\ntls_key = \"certs/{id}/tls.key\"\n\
             signing_key = \"certs/{id}/signing.key\"\n{}\n\n\
             # The demo's desks are friends: tell publishers who did not get a bulletin and why.\n\
             [disclosure]\nwithheld = true\n\n[federation]\nredial_min_ms = 100\nredial_max_secs = 2\n",
            n.city, self.addrs[id], n.who
        );
        if id == "jp-mod" {
            t += &tokyo_targets();
        }
        for d in DESKS.iter().filter(|d| d.node == id) {
            t += &format!(
                "\n[[partner]]\nid = \"{}\"\n{}\nrole = \"liaison\"\nclearance = \"{}\"\ngroups = {:?}\nkeys = [{{ public = \"{}\" }}]\n",
                d.id, d.who, d.clearance, d.groups, self.public(d.id)
            );
            if !d.kinds.is_empty() {
                t += &format!("kinds = {:?}\n", d.kinds);
            }
        }
        let peers = Self::peers_of(id);
        for p in &peers {
            t += &format!(
                "\n# A peer node.\n[[partner]]\nid = \"{p}\"\n{}\nrole = \"relay\"\nclearance = \"red\"\naddress = \"{}\"\nkeys = [{{ public = \"{}\" }}]\n",
                node(p).map_or("", |n| n.who),
                self.addrs[p],
                self.public(p)
            );
        }
        t += &format!(
            "\n# The audit office reads the log; auditors receive no bulletins.\n[[partner]]\nid = \"{}\"\n{}\nrole = \"auditor\"\n",
            n.auditor, n.who
        );
        for d in DESKS.iter().filter(|d| d.node != id) {
            let mut via = peers.clone();
            via.sort_by_key(|p| *p != d.node);
            t += &format!(
                "\n[[origin]]\nid = \"{}\"\n{}\nvia = {via:?}\ngroups = {:?}\nkeys = [{{ public = \"{}\" }}]\n",
                d.id,
                d.who,
                d.groups,
                self.public(d.id)
            );
        }
        t
    }

    /// A desk's (or an auditor's) client config: its node, and the keys of every desk
    /// whose bulletins it verifies.
    pub(super) fn client_config(&self, id: &str, node: &str) -> String {
        let mut t = format!(
            "# {id}'s client of its node {node}, made by `renkei demo`.\n[client]\nid = \"{id}\"\nserver = \"{}\"\n\
             server_name = \"{node}\"\nca_cert = \"certs/ca.crt\"\ntls_cert = \"certs/{id}/tls.crt\"\ntls_key = \"certs/{id}/tls.key\"\n",
            self.addrs[node]
        );
        if DESKS.iter().any(|d| d.id == id) {
            t += &format!("signing_key = \"certs/{id}/signing.key\"\n");
            for d in DESKS.iter().filter(|d| d.id != id) {
                t += &format!(
                    "\n[[partner]]\nid = \"{}\"\nkeys = [{{ public = \"{}\" }}]\n",
                    d.id,
                    self.public(d.id)
                );
            }
        }
        t
    }

    /// Writes every node's, desk's and auditor's config, and the STIX bundle.
    fn write_configs(&self) -> anyhow::Result<()> {
        let put = |name: String, text: &str| {
            write(&self.dir.join(name), text.as_bytes(), Access::Public, true)
        };
        for n in NODES {
            put(format!("{}.toml", n.id), &self.node_config(n))?;
            put(
                format!("{}.toml", n.auditor),
                &self.client_config(n.auditor, n.id),
            )?;
        }
        for d in DESKS {
            put(format!("{}.toml", d.id), &self.client_config(d.id, d.node))?;
        }
        put("bundle.json".into(), STIX)?;
        Ok(())
    }

    /// The files of the worked setup, as the closing message lists them.
    pub(super) fn files() -> Vec<String> {
        NODES
            .iter()
            .map(|n| format!("{}.toml", n.id))
            .chain(DESKS.iter().map(|d| format!("{}.toml", d.id)))
            .chain(NODES.iter().map(|n| format!("{}.toml", n.auditor)))
            .chain(["bundle.json".to_string()])
            .collect()
    }
}
