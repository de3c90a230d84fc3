//! Hostile partners (`--phases hostile`): an honest desk publishes one bulletin at a
//! time, each waiting for its result, on a fresh node per attack:
//!
//! - `none`: nobody else, the desk's unloaded latency;
//! - `padded`: one partner sends tiny valid bulletins, each inside a frame padded to a
//!   megabyte with a field the decoder skips, on 8 connections, never reading a result;
//! - `holders`: five partners open streams and announce a frame of the largest size on
//!   each, then send nothing more (their frames time out and they open more);
//! - `flooder`: one partner publishes valid bulletins as fast as the node takes them;
//! - `flooders`: five partners do.
//!
//! Each attack runs a moment before the desk starts, so the desk meets it at full
//! strength (`--attacks` picks them). Per attack: the desk's publish latency (p50, p99,
//! max) and failures, and the node's peak memory and its memory a few seconds after the
//! attack ended (what it gives back).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use super::node::NodeProcess;
use super::partners::partner_id;
use super::phases::percentile;
use super::{connect, sign, Setup, PATIENCE};
use crate::client::Client;
use crate::identity::PublicKey;
use crate::proto::{self, PublishStatus};

/// Partners the phase needs: the honest desk (0) and five attackers.
pub(super) const PARTNERS: usize = 6;
/// Publishes the honest desk times under each attack: enough that the p99 is the
/// tenth-worst, not a single stall.
const HONEST: usize = 1_000;
/// The desk publishes at most once per this (500 a second), below a partner's default
/// publish rate (1,000 a second): back to back, an unloaded desk publishes about 1,400
/// a second and would time its own rate, not its latency.
const DESK_PACE: Duration = Duration::from_millis(2);
/// How long an attack runs before the desk starts: its connections made and its
/// queues filled, so the desk meets the attack's steady state, not its first moments.
const WARM_UP: Duration = Duration::from_secs(2);

/// An attack of the hostile phase (see the module's comment).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attack {
    /// Nobody but the desk: its unloaded latency.
    #[value(skip)]
    None,
    /// One partner's tiny bulletins in frames padded to a megabyte, on 8 connections.
    Padded,
    /// Five partners holding streams open with a frame announced and never sent.
    Holders,
    /// One partner publishing valid bulletins as fast as the node takes them.
    Flooder,
    /// Five partners publishing valid bulletins as fast as the node takes them.
    Flooders,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::Padded => "padded",
            Attack::Holders => "holders",
            Attack::Flooder => "flooder",
            Attack::Flooders => "flooders",
        }
    }
}

/// Every attack in turn, each on a fresh node.
pub(super) async fn hostile(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let mut report = json!({ "honest_publishes": HONEST });
    let attacks = std::iter::once(Attack::None).chain(setup.args.attacks.iter().copied());
    for attack in attacks {
        eprintln!("renkei bench: hostile: {}…", attack.name());
        report[attack.name()] = run(&setup, attack).await?;
    }
    let unloaded = report["none"]["p99_ms"].as_f64().unwrap_or(0.0);
    for attack in &setup.args.attacks {
        let p99 = report[attack.name()]["p99_ms"].as_f64().unwrap_or(0.0);
        if unloaded > 0.0 {
            report[attack.name()]["p99_over_unloaded"] = json!(p99 / unloaded);
        }
    }
    Ok(report)
}

/// The `[[partner]]` tables: each publishes GREEN and receives nothing (the node's
/// subscribers receive everything).
fn partners_toml(setup: &Setup) -> String {
    let mut text = String::new();
    for i in 0..PARTNERS {
        let id = partner_id(i);
        let public = PublicKey::of(&setup.keys[&id]);
        text.push_str(&format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"green\"\nkinds = []\nkeys = [{{ public = \"{public}\" }}]\n"
        ));
    }
    text
}

async fn run(setup: &Arc<Setup>, attack: Attack) -> anyhow::Result<Value> {
    let node = setup
        .start_node_as_deployed(&format!("hostile-{}", attack.name()), &partners_toml(setup))?;
    let before = node.rss();
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = start(setup, &node, attack, &stop).await?;
    if !matches!(attack, Attack::None) {
        tokio::time::sleep(WARM_UP).await;
    }
    let (mut latencies, failed) = honest(setup, &node).await?;
    stop.store(true, Ordering::Relaxed);
    let peak = node.peak_rss();
    let sent = attackers.sent.load(Ordering::Relaxed);
    attackers.end().await;
    // What the node gives back once the attack is over (allocator retention shows here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = node.rss();
    node.stop()?;
    latencies.sort_unstable();
    Ok(json!({
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0),
        "failed": failed,
        "attacker_frames_sent": sent,
        "node_rss_before_bytes": before,
        "node_peak_rss_bytes": peak,
        "node_rss_after_bytes": after,
    }))
}

/// The honest desk's publishes, one at a time: latencies (µs) and how many failed.
/// The desk runs on its own thread and runtime, as a desk on its own machine would, so
/// its figures are the node's and not the attackers' clients' queueing in this process.
async fn honest(setup: &Arc<Setup>, node: &NodeProcess) -> anyhow::Result<(Vec<u64>, usize)> {
    let (setup, addr) = (setup.clone(), node.addr);
    let desk = std::thread::Builder::new()
        .name("honest-desk".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the honest desk's runtime")?
                .block_on(publish_one_at_a_time(&setup, addr))
        })
        .context("starting the honest desk's thread")?;
    tokio::task::spawn_blocking(move || desk.join())
        .await
        .context("waiting for the honest desk")?
        .map_err(|_| anyhow::anyhow!("the honest desk's thread panicked"))?
}

/// The desk's publishes, each waiting for its result, at most one every `DESK_PACE`.
async fn publish_one_at_a_time(
    setup: &Setup,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(Vec<u64>, usize)> {
    let id = partner_id(0);
    let client = connect(&setup.dir, &id, addr).await?;
    let mut latencies = Vec::with_capacity(HONEST);
    let mut failed = 0;
    let mut pace = tokio::time::interval(DESK_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..HONEST {
        pace.tick().await;
        let b = sign(&setup.keys[&id], &id, n, &setup.body)?;
        let started = Instant::now();
        match tokio::time::timeout(PATIENCE, client.publish(b)).await {
            Ok(Ok(r)) if r.status == PublishStatus::Accepted as i32 => {
                latencies.push(started.elapsed().as_micros() as u64);
            }
            _ => failed += 1,
        }
    }
    client.close().await;
    Ok((latencies, failed))
}

/// The attackers' connections and tasks.
struct Attackers {
    clients: Vec<Arc<Client>>,
    tasks: tokio::task::JoinSet<()>,
    sent: Arc<AtomicU64>,
}

impl Attackers {
    async fn end(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        for c in self.clients {
            if let Ok(c) = Arc::try_unwrap(c) {
                c.close().await;
            }
        }
    }
}

/// Starts `attack` against `node`; it runs until `stop`.
async fn start(
    setup: &Arc<Setup>,
    node: &NodeProcess,
    attack: Attack,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Attackers> {
    let mut a = Attackers {
        clients: Vec::new(),
        tasks: tokio::task::JoinSet::new(),
        sent: Arc::default(),
    };
    let (partners, connections, streams) = match attack {
        Attack::None => return Ok(a),
        Attack::Padded => (1, 8, 1),
        Attack::Holders => (5, 8, 32),
        Attack::Flooder => (1, 2, 4),
        Attack::Flooders => (5, 2, 4),
    };
    for p in 1..=partners {
        let id = partner_id(p);
        // Signed before the attack starts, so the attackers' own signing does not
        // take the machine's cores from the node.
        let pool = match attack {
            Attack::Padded => Arc::new(padded_frames(setup, &id, 256)?),
            Attack::Flooder | Attack::Flooders => Arc::new(publish_frames(setup, &id, 20_000, 0)?),
            _ => Arc::new(Vec::new()),
        };
        for _ in 0..connections {
            let client = Arc::new(connect(&setup.dir, &id, node.addr).await?);
            a.clients.push(client.clone());
            for s in 0..streams {
                let (client, pool, stop) = (client.clone(), pool.clone(), stop.clone());
                let sent = a.sent.clone();
                let offset = s * pool.len() / streams.max(1);
                a.tasks.spawn(async move {
                    let _ = match attack {
                        Attack::Holders => hold(&client, &stop, &sent).await,
                        Attack::Flooder | Attack::Flooders => {
                            flood(&client, &pool, offset, &stop, &sent, true).await
                        }
                        _ => flood(&client, &pool, offset, &stop, &sent, false).await,
                    };
                });
            }
        }
    }
    Ok(a)
}

/// Length-prefixed Publish frames of `count` bulletins by `id`, each padded with
/// `padding` bytes of a field the node's decoder skips.
fn publish_frames(
    setup: &Setup,
    id: &str,
    count: usize,
    padding: usize,
) -> anyhow::Result<Vec<Bytes>> {
    (0..count)
        .map(|n| {
            let b = sign(&setup.keys[id], id, n, &setup.body)?;
            let frame = proto::ClientFrame {
                frame: Some(proto::client_frame::Frame::Publish(proto::Publish {
                    request_id: n as u64,
                    bulletin: Some(b),
                    ..Default::default()
                })),
            };
            let mut body = frame.encode_to_vec();
            if padding > 0 {
                let key = prost::encoding::WireType::LengthDelimited;
                prost::encoding::encode_key(2047, key, &mut body);
                prost::encoding::encode_varint(padding as u64, &mut body);
                body.resize(body.len() + padding, 0);
            }
            let mut out = Vec::with_capacity(body.len() + 10);
            prost::encoding::encode_varint(body.len() as u64, &mut out);
            out.extend_from_slice(&body);
            Ok(Bytes::from(out))
        })
        .collect()
}

/// Tiny bulletins padded to just under the largest frame.
fn padded_frames(setup: &Setup, id: &str, count: usize) -> anyhow::Result<Vec<Bytes>> {
    publish_frames(setup, id, count, 1_000_000)
}

/// Sends `pool`'s frames from `offset` round and round on one stream until `stop`;
/// reads the results when `read`, else never.
async fn flood(
    client: &Client,
    pool: &[Bytes],
    offset: usize,
    stop: &AtomicBool,
    sent: &AtomicU64,
    read: bool,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = client.open_raw().await?;
    if read {
        // The results are read and dropped, so flow control never holds the flood.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(Some(_)) = recv.read(&mut buf).await {}
        });
    }
    let mut n = offset;
    while !stop.load(Ordering::Relaxed) && !pool.is_empty() {
        send.write_all(&pool[n % pool.len()])
            .await
            .context("flooding")?;
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    Ok(())
}

/// Opens a stream, announces a frame of the largest size and sends three bytes of it;
/// when the node closes it (its frame deadline), opens another, until `stop`.
async fn hold(client: &Client, stop: &AtomicBool, sent: &AtomicU64) -> anyhow::Result<()> {
    let mut announce = Vec::new();
    prost::encoding::encode_varint(1_049_600, &mut announce);
    announce.extend_from_slice(&[0x0a, 0x80, 0x80]);
    while !stop.load(Ordering::Relaxed) {
        let (mut send, mut recv) = client.open_raw().await?;
        send.write_all(&announce).await?;
        sent.fetch_add(1, Ordering::Relaxed);
        // The node answers (an error) only when it gives up on the frame.
        let mut buf = [0u8; 1024];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
    }
    Ok(())
}
