//! A partitioned federation, checked as Jepsen checks a database. Every node
//! is the peer of every other, and each link runs through a proxy that can cut it both
//! ways. Random partitions split the nodes in two and heal, some for longer than a
//! link's idle timeout, while a desk at every node publishes. After the last heal a
//! checker asks every node and every desk what it holds:
//!
//! - every bulletin accepted anywhere is stored exactly once at every node;
//! - every desk receives, once, each bulletin it may have, and nothing withheld (one
//!   desk takes advisories only, and its node decided so for every incident);
//! - every node's log verifies.
//!
//! It prints what was accepted, stored, delivered, duplicated and lost, per node. The
//! default is 3 nodes and 12 partitions; the full run is
//! `RENKEI_PARTITION_NODES=5 RENKEI_PARTITIONS=100 cargo test --test scenarios
//! partition -- --nocapture` (`RENKEI_PARTITION_SEED` repeats a run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::time::Duration;

use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::proto::{self, AuditEvent};

use crate::common;
use crate::federation::records;
use common::federation::{sign_as, PATIENCE};
use common::lossy::{Lossy, SplitMix64};
use common::peers::Mesh;

/// Nodes and their desks, the first `RENKEI_PARTITION_NODES` of them taking part.
const NODES: [(&str, &str); 5] = [
    ("jp-mod", "jp-cdc"),
    ("nato-ccdcoe", "nato-desk"),
    ("ee-mod", "ee-cert"),
    ("au-dod", "au-acsc"),
    ("uk-mod", "uk-ncsc"),
];

/// How long a node may take to hold everything after the last heal.
const CONVERGE: Duration = Duration::from_secs(120);

/// One link's two paths (each node dials the other through a proxy in front of it);
/// they share their weather, so one cut cuts both.
struct Link {
    ends: (String, String),
    path: Lossy,
    _back: Lossy,
}

/// A bulletin a desk saw ACCEPTED.
struct Published {
    id: String,
    origin: String,
    kind: Kind,
}

/// The run's shape, from the environment.
struct Shape {
    nodes: usize,
    partitions: usize,
    seed: u64,
}

fn shape() -> Shape {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    Shape {
        nodes: env("RENKEI_PARTITION_NODES").map_or(3, |n| n.clamp(2, 5) as usize),
        partitions: env("RENKEI_PARTITIONS").map_or(12, |n| n as usize),
        seed: env("RENKEI_PARTITION_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        }),
    }
}

/// The desk that takes advisories only: the last node's.
fn picky(nodes: usize) -> &'static str {
    NODES[nodes - 1].1
}

/// The mesh of `n` nodes, every pair linked through proxies, and the picky desk's
/// table saying `kinds = ["advisory"]`.
async fn mesh(dir: &std::path::Path, n: usize, seed: u64) -> (Mesh, Vec<Link>) {
    let nodes: Vec<&str> = NODES[..n].iter().map(|(node, _)| *node).collect();
    let desks: Vec<(&str, &str)> = NODES[..n].iter().map(|(node, d)| (*d, *node)).collect();
    let mut pairs = Vec::new();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            pairs.push((*a, *b));
        }
    }
    let mesh = Mesh::new(dir, &nodes, &desks, &pairs, "");
    let mut links = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let (at_a, at_b) = (mesh.nodes[*a].addr, mesh.nodes[*b].addr);
        let path = Lossy::start(at_b, seed ^ i as u64).await;
        let back = path.beside(at_a).await;
        redirect(&mesh, a, at_b, path.addr());
        redirect(&mesh, b, at_a, back.addr());
        links.push(Link {
            ends: (a.to_string(), b.to_string()),
            path,
            _back: back,
        });
    }
    let home = &mesh.nodes[NODES[n - 1].0].config;
    let desk = picky(n);
    edit(
        &mesh,
        home,
        &format!("id = \"{desk}\"\nrole = \"liaison\"\n"),
        &format!("id = \"{desk}\"\nrole = \"liaison\"\nkinds = [\"advisory\"]\n"),
    );
    (mesh, links)
}

/// Node `n` dials its peer at `peer` through `proxy` instead, and gives up on a silent
/// link after 3 s.
fn redirect(mesh: &Mesh, n: &str, peer: std::net::SocketAddr, proxy: std::net::SocketAddr) {
    let config = &mesh.nodes[n].config;
    edit(
        mesh,
        config,
        &format!("address = \"{peer}\""),
        &format!("address = \"{proxy}\""),
    );
    edit(
        mesh,
        config,
        "idle_timeout_secs = 5\n",
        "idle_timeout_secs = 3\nhandshake_timeout_secs = 2\n",
    );
}

/// Replaces `from` (which must be there, unless already replaced) with `to` in a file.
fn edit(mesh: &Mesh, file: &str, from: &str, to: &str) {
    let path = mesh.dir.join(file);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(from) || text.contains(to),
        "{file} holds {from:?}"
    );
    fs::write(path, text.replace(from, to)).unwrap();
}

/// The partitions: each splits the nodes in two at random (cutting every link across),
/// held while every desk publishes an advisory and an incident, for 50–400 ms or, one
/// time in ten, for 4 s (past the links' idle timeout). Returns what was accepted.
async fn partitions(
    mesh: &Mesh,
    links: &[Link],
    desks: &[(String, Client)],
    s: &Shape,
) -> Vec<Published> {
    let mut rng = SplitMix64(s.seed);
    let mut published = Vec::new();
    for round in 0..s.partitions {
        let mut side: HashMap<&str, bool> = NODES[..s.nodes]
            .iter()
            .map(|(n, _)| (*n, rng.next() & 1 == 1))
            .collect();
        // Always a real split: one node crosses if all fell on one side.
        if side.values().all(|v| *v) || side.values().all(|v| !*v) {
            let n = NODES[rng.next() as usize % s.nodes].0;
            side.entry(n).and_modify(|v| *v = !*v);
        }
        for l in links {
            l.path
                .cut(side[l.ends.0.as_str()] != side[l.ends.1.as_str()]);
        }
        for (desk, client) in desks {
            for kind in [Kind::Advisory, Kind::Incident] {
                published.push(publish(mesh, desk, client, kind, round).await);
            }
        }
        let hold = match round % 10 {
            9 => Duration::from_secs(4),
            _ => Duration::from_millis(50 + rng.next() % 350),
        };
        // The weather of the run, not a wait for an event.
        tokio::time::sleep(hold).await;
    }
    for l in links {
        l.path.cut(false);
    }
    published
}

/// `desk` publishes one GREEN bulletin of `kind` at its node, which accepts it.
async fn publish(mesh: &Mesh, desk: &str, client: &Client, kind: Kind, round: usize) -> Published {
    let title = format!("{desk} {kind} in partition {round}");
    let b = sign_as(mesh.key(desk), desk, Tlp::Green, kind, &title, &[], &[]);
    let r = tokio::time::timeout(PATIENCE, client.publish(b))
        .await
        .expect("the home node answers whatever the links do")
        .unwrap();
    assert_eq!(r.status, proto::PublishStatus::Accepted as i32, "{r:?}");
    Published {
        id: r.bulletin_id,
        origin: desk.to_owned(),
        kind,
    }
}

/// Every BULLETIN_ACCEPTED record of node `n` once it holds every accepted bulletin
/// (or the run's deadline passed); by bulletin id, with how many records each has.
async fn stored(run: &Run<'_>, n: &str) -> HashMap<String, Vec<proto::AuditRecord>> {
    let (mesh, all) = (run.mesh, run.all);
    loop {
        let mut by_id: HashMap<String, Vec<proto::AuditRecord>> = HashMap::new();
        for r in records(mesh, n, AuditEvent::BulletinAccepted).await {
            by_id.entry(r.bulletin_id.clone()).or_default().push(r);
        }
        let done = all.iter().all(|p| by_id.contains_key(&p.id));
        if done || tokio::time::Instant::now() > run.deadline {
            return by_id;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `desk` may have: every other desk's bulletins, advisories only for the picky one.
fn allowed<'a>(desk: &str, picky: &str, all: &'a [Published]) -> HashSet<&'a str> {
    all.iter()
        .filter(|p| p.origin != desk && (desk != picky || p.kind == Kind::Advisory))
        .map(|p| p.id.as_str())
        .collect()
}

/// `desk`'s deliveries, read and acked until every bulletin it may have has come (or
/// a delivery does not come within PATIENCE): id → times delivered. (A repeat after
/// the last new bulletin is not waited for.)
async fn delivered(client: &Client, may: &HashSet<&str>) -> BTreeMap<String, u32> {
    let mut got: BTreeMap<String, u32> = BTreeMap::new();
    let mut sub = client.subscribe(0).await.unwrap();
    while !may.iter().all(|id| got.contains_key(*id)) {
        let Ok(Ok(Some(d))) = tokio::time::timeout(PATIENCE, sub.next()).await else {
            break;
        };
        sub.ack(vec![d.seq]).await.unwrap();
        let b = proto::Bulletin::decode(d.bulletin.unwrap().bulletin).unwrap();
        *got.entry(b.id).or_default() += 1;
    }
    got
}

/// One node's part of the checker's table.
#[derive(Debug, Default)]
struct Tally {
    accepted_anywhere: usize,
    stored: usize,
    stored_twice: usize,
    not_stored: usize,
    may_have: usize,
    delivered: usize,
    delivered_twice: usize,
    lost: usize,
    withheld_delivered: usize,
    withheld_shared: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stored {} of {} accepted anywhere ({} twice, {} missing); its desk may have {}: \
             delivered {} ({} twice), lost {}, withheld but delivered {}, withheld but shared {}",
            self.stored,
            self.accepted_anywhere,
            self.stored_twice,
            self.not_stored,
            self.may_have,
            self.delivered,
            self.delivered_twice,
            self.lost,
            self.withheld_delivered,
            self.withheld_shared
        )
    }
}

impl Tally {
    fn holds(&self) -> bool {
        self.not_stored + self.stored_twice + self.lost + self.delivered_twice == 0
            && self.withheld_delivered + self.withheld_shared == 0
    }
}

/// What the checker checks against: everything accepted anywhere, and when the nodes
/// must hold it all.
struct Run<'a> {
    mesh: &'a Mesh,
    all: &'a [Published],
    picky: &'a str,
    deadline: tokio::time::Instant,
}

/// Checks node `n` and its desk against what was accepted anywhere.
async fn check(run: &Run<'_>, n: &str, desk: &str, client: &Client) -> Tally {
    let (all, picky) = (run.all, run.picky);
    let by_id = stored(run, n).await;
    let may = allowed(desk, picky, all);
    let got = delivered(client, &may).await;
    let incidents: HashSet<&str> = all
        .iter()
        .filter(|p| p.kind == Kind::Incident && p.origin != desk)
        .map(|p| p.id.as_str())
        .collect();
    let shared_with_desk =
        |r: &proto::AuditRecord| r.decisions.iter().any(|d| d.partner == desk && d.shared);
    Tally {
        accepted_anywhere: all.len(),
        stored: all.iter().filter(|p| by_id.contains_key(&p.id)).count(),
        stored_twice: by_id.values().filter(|r| r.len() > 1).count(),
        not_stored: all.iter().filter(|p| !by_id.contains_key(&p.id)).count(),
        may_have: may.len(),
        delivered: got.keys().filter(|id| may.contains(id.as_str())).count(),
        delivered_twice: got.values().filter(|n| **n > 1).count(),
        lost: may.iter().filter(|id| !got.contains_key(**id)).count(),
        withheld_delivered: got.keys().filter(|id| !may.contains(id.as_str())).count(),
        withheld_shared: match desk == picky {
            true => by_id
                .iter()
                .filter(|(id, rs)| {
                    incidents.contains(id.as_str()) && rs.iter().any(shared_with_desk)
                })
                .count(),
            false => 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulletins_accepted_anywhere_reach_every_allowed_desk_once_after_partitions() {
    let s = shape();
    eprintln!(
        "partitions: {} nodes, {} partitions, seed {} (RENKEI_PARTITION_SEED repeats it)",
        s.nodes, s.partitions, s.seed
    );
    let tmp = tempfile::tempdir().unwrap();
    let (mut mesh, links) = mesh(tmp.path(), s.nodes, s.seed).await;
    mesh.start_all();
    let mut desks = Vec::new();
    for (_, desk) in &NODES[..s.nodes] {
        desks.push((desk.to_string(), mesh.client(desk).await));
    }
    let all = partitions(&mesh, &links, &desks, &s).await;
    let cut: u64 = links.iter().map(|l| l.path.counts().cut).sum();
    assert!(cut > 0, "no datagram was ever cut: the run proves nothing");
    if s.partitions >= 10 {
        let mut downs = 0;
        for (node, _) in &NODES[..s.nodes] {
            downs += records(&mesh, node, AuditEvent::LinkDown).await.len();
        }
        assert!(downs > 0, "no link went down in a 4 s partition");
        eprintln!("{downs} LINK_DOWN records across the nodes");
    }

    let mut table = Vec::new();
    let run = Run {
        mesh: &mesh,
        all: &all,
        picky: picky(s.nodes),
        deadline: tokio::time::Instant::now() + CONVERGE,
    };
    for ((node, _), (desk, client)) in NODES[..s.nodes].iter().zip(&desks) {
        table.push((*node, check(&run, node, desk, client).await));
    }
    eprintln!("{cut} datagrams cut across {} links", links.len());
    for (node, t) in &table {
        eprintln!("{node}: {t}");
    }
    for (_, client) in desks {
        client.close().await;
    }
    mesh.stop_all();
    for (node, _) in &NODES[..s.nodes] {
        common::log_verifies_offline(tmp.path(), &format!("{node}-data"), node);
    }
    for (node, t) in &table {
        assert!(t.holds(), "{node} after the partitions: {t}");
    }
}
