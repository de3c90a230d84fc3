//! `renkei bench`: an end-to-end benchmark against a real node (QUIC + mTLS on
//! 127.0.0.1, sled on disk in a temporary directory, the same durability, audit and
//! metrics as `serve`), with real clients in the same process, and the machine's
//! physical limit (Ed25519 verification) measured in the same run.
//!
//! Phases: saturation (P publishers push pre-signed bulletins as fast as the node takes
//! them; S subscribers decode, verify and ack) and the verify limit. Figures are
//! printed as a table and, with `--json FILE`, written with the parameters, the machine
//! and the git revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::client::Client;
use crate::config::NodeConfig;
use crate::identity::{self, Keyring, PartnerId, PublicKey, Validity};
use crate::node;
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;
use crate::transport::{Timers, TlsIdentity};

const HUB: &str = "bench-hub";
/// How long any wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// What to measure.
#[derive(Clone, Debug)]
pub(super) struct BenchArgs {
    pub publishers: usize,
    pub subscribers: usize,
    pub bulletins: usize,
    pub body_bytes: usize,
    pub skip_verify: bool,
    pub json: Option<PathBuf>,
}

fn pid(s: &str) -> anyhow::Result<PartnerId> {
    Ok(s.parse()?)
}

fn publisher_id(i: usize) -> String {
    format!("pub-{i}")
}

fn subscriber_id(i: usize) -> String {
    format!("sub-{i}")
}

/// Publishers receive nothing (`kinds = []`), so each bulletin goes to the S subscribers.
fn node_config(a: &BenchArgs, keys: &BTreeMap<String, SigningKey>) -> String {
    let mut text = format!(
        "[node]\nid = \"{HUB}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/{HUB}/tls.crt\"\ntls_key = \"certs/{HUB}/tls.key\"\nsigning_key = \"certs/{HUB}/signing.key\"\n\
         [limits]\nmax_clock_skew_secs = 3600\n"
    );
    for i in 0..a.publishers {
        let id = publisher_id(i);
        let public = PublicKey::of(&keys[&id]);
        text.push_str(&format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"green\"\nkinds = []\nkeys = [{{ public = \"{public}\" }}]\n"
        ));
    }
    for i in 0..a.subscribers {
        let id = subscriber_id(i);
        text.push_str(&format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"liaison\"\nclearance = \"green\"\n"
        ));
    }
    text
}

fn sign(
    key: &SigningKey,
    origin: &str,
    n: usize,
    body: &Bytes,
) -> anyhow::Result<proto::SignedBulletin> {
    let now = Timestamp::now();
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: Kind::Indicator.to_proto() as i32,
        title: format!("benchmark indicator {n}"),
        summary: String::new(),
        tags: vec![],
        audience: vec![],
        content_type: "application/octet-stream".into(),
        body: body.clone(),
        references: vec![],
    };
    Ok(bulletin::sign(&b, key, &Limits::default())?)
}

async fn connect(dir: &Path, id: &str, addr: std::net::SocketAddr) -> anyhow::Result<Client> {
    let certs = dir.join("certs");
    let identity = TlsIdentity::load(
        &certs.join("ca.crt"),
        &certs.join(id).join("tls.crt"),
        &certs.join(id).join("tls.key"),
    )?;
    let timers = Timers {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
    };
    Ok(Client::connect_with(&identity, timers, addr, &pid(HUB)?, 2 << 20).await?)
}

/// A subscriber: decode (and verify) every delivery, ack each page, until `expected`.
async fn subscribe(
    client: Client,
    keys: Arc<Keyring>,
    expected: usize,
    verify: bool,
) -> anyhow::Result<Instant> {
    let limits = Limits::default();
    let mut sub = client.subscribe(0).await?;
    let mut got = 0;
    let mut pending = Vec::new();
    while got < expected {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .context("a subscriber waited too long")??
            .context("the node ended a subscription")?;
        let signed = d.bulletin.context("a delivery without a bulletin")?;
        let unverified = UnverifiedBulletin::from_signed(signed, &limits)?;
        if verify {
            unverified.verify(&keys, Timestamp::now(), &limits)?;
        }
        pending.push(d.seq);
        got += 1;
        // Ack what has arrived so far: every 64, and whenever the stream pauses.
        if pending.len() >= 64 || got == expected {
            sub.ack(std::mem::take(&mut pending)).await?;
        }
    }
    let done = Instant::now();
    sub.close().await?;
    client.close().await;
    Ok(done)
}

/// A publisher: pipeline every bulletin, count the accepted results.
async fn publish(client: Client, bulletins: Vec<proto::SignedBulletin>) -> anyhow::Result<usize> {
    let (mut sink, mut results) = client.publisher().await?.split();
    let total = bulletins.len();
    let sender = tokio::spawn(async move {
        for (i, b) in bulletins.into_iter().enumerate() {
            sink.send(i as u64, b).await?;
        }
        sink.finish();
        Ok::<_, crate::client::ClientError>(())
    });
    let mut accepted = 0;
    for _ in 0..total {
        let r = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .context("a publisher waited too long")??
            .context("the node ended a publish stream early")?;
        if r.status != PublishStatus::Accepted as i32 {
            bail!("bulletin {} was not accepted: {}", r.request_id, r.message);
        }
        accepted += 1;
    }
    sender.await.context("the sending task")??;
    client.close().await;
    Ok(accepted)
}

/// Ed25519 verifications per second on this machine: one at a time and in batches of
/// 64, on one core and on every core.
fn verify_limit(
    sample: &[proto::SignedBulletin],
    key: ed25519_dalek::VerifyingKey,
) -> anyhow::Result<Value> {
    use ed25519_dalek::{Signature, Verifier as _};
    let mut items = Vec::new();
    for s in sample.iter().take(4096) {
        let mut msg = bulletin::SIGNATURE_DOMAIN.to_vec();
        msg.extend_from_slice(&s.bulletin);
        let sig = Signature::from_slice(&s.signature)?;
        items.push((key, msg, sig));
    }
    let run = |threads: usize, batch: bool| -> f64 {
        let per = Duration::from_millis(700);
        let counts: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < per {
                            if batch {
                                for chunk in items.chunks(64) {
                                    let msgs: Vec<&[u8]> =
                                        chunk.iter().map(|i| i.1.as_slice()).collect();
                                    let sigs: Vec<Signature> = chunk.iter().map(|i| i.2).collect();
                                    let keys: Vec<_> = chunk.iter().map(|i| i.0).collect();
                                    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                                        n += chunk.len() as u64;
                                    }
                                }
                            } else {
                                for (k, m, s) in &items {
                                    if k.verify(m, s).is_ok() {
                                        n += 1;
                                    }
                                }
                            }
                        }
                        (n, start.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map(|(n, t)| (n as f64 / t.as_secs_f64()) as u64)
                        .unwrap_or(0)
                })
                .collect()
        });
        counts.iter().sum::<u64>() as f64
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(json!({
        "verify_per_s_1core": run(1, false),
        "verify_batch_per_s_1core": run(1, true),
        "verify_per_s_all_cores": run(cores, false),
        "verify_batch_per_s_all_cores": run(cores, true),
    }))
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    json!({"cores": cores, "cpu": cpu, "git_revision": revision, "version": env!("CARGO_PKG_VERSION")})
}

pub(super) async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.publishers == 0 || a.subscribers == 0 || a.bulletins < a.publishers {
        bail!("need at least one publisher, one subscriber and a bulletin per publisher");
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = tmp.path();
    let mut ids: Vec<PartnerId> = Vec::new();
    for i in 0..a.publishers {
        ids.push(pid(&publisher_id(i))?);
    }
    for i in 0..a.subscribers {
        ids.push(pid(&subscriber_id(i))?);
    }
    ids.push(pid(HUB)?);
    crate::pki::init(&dir.join("certs"), &ids, true, Timestamp::now())?;
    let mut keys = BTreeMap::new();
    let mut keyring = Keyring::new();
    for id in &ids {
        let pem =
            crate::files::read_text(&dir.join("certs").join(id.as_str()).join("signing.key"))?;
        let key = identity::signing_key_from_pem(&pem)?;
        keyring.insert(id.clone(), PublicKey::of(&key), Validity::default());
        keys.insert(id.to_string(), key);
    }
    let keyring = Arc::new(keyring);

    eprintln!(
        "renkei bench: signing {} bulletins of {} bytes…",
        a.bulletins, a.body_bytes
    );
    let body = Bytes::from(vec![0x42u8; a.body_bytes]);
    let mut batches: Vec<Vec<proto::SignedBulletin>> = vec![Vec::new(); a.publishers];
    for n in 0..a.bulletins {
        let p = n % a.publishers;
        let id = publisher_id(p);
        batches[p].push(sign(&keys[&id], &id, n, &body)?);
    }
    let sample: Vec<proto::SignedBulletin> = batches[0].iter().take(4096).cloned().collect();

    let config_path = dir.join("hub.toml");
    crate::files::write(
        &config_path,
        node_config(&a, &keys).as_bytes(),
        crate::files::Access::Public,
        true,
    )?;
    let hub = node::start(NodeConfig::load(&config_path)?).await?;
    let addr = hub.local_addr();
    eprintln!(
        "renkei bench: node on {addr}; {} publishers, {} subscribers",
        a.publishers, a.subscribers
    );

    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..a.subscribers {
        let client = connect(dir, &subscriber_id(i), addr).await?;
        subscribers.spawn(subscribe(
            client,
            keyring.clone(),
            a.bulletins,
            !a.skip_verify,
        ));
    }
    let mut clients = Vec::new();
    for i in 0..a.publishers {
        clients.push(connect(dir, &publisher_id(i), addr).await?);
    }
    let start = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for (client, batch) in clients.into_iter().zip(batches) {
        publishers.spawn(publish(client, batch));
    }
    let mut accepted = 0;
    while let Some(r) = publishers.join_next().await {
        accepted += r.context("a publisher task")??;
    }
    let publish_time = start.elapsed();
    let mut last_ack = start;
    while let Some(r) = subscribers.join_next().await {
        last_ack = last_ack.max(r.context("a subscriber task")??);
    }
    let deliver_time = last_ack - start;
    hub.shutdown(Duration::from_secs(10)).await?;
    let db_bytes = dir_size(&dir.join("data"));

    let accepted_per_s = accepted as f64 / publish_time.as_secs_f64();
    let acked = accepted * a.subscribers;
    let acked_per_s = acked as f64 / deliver_time.as_secs_f64();
    eprintln!("renkei bench: measuring Ed25519 verification on this machine…");
    let limit = verify_limit(&sample, keys[&publisher_id(0)].verifying_key())?;
    let batch_all = limit["verify_batch_per_s_all_cores"]
        .as_f64()
        .unwrap_or(0.0);
    let report = json!({
        "parameters": {
            "publishers": a.publishers,
            "subscribers": a.subscribers,
            "fan_out": a.subscribers,
            "bulletins": a.bulletins,
            "body_bytes": a.body_bytes,
            "subscribers_verify": !a.skip_verify,
        },
        "machine": machine(),
        "saturation": {
            "accepted": accepted,
            "accepted_per_s": accepted_per_s.round(),
            "acked_deliveries": acked,
            "acked_deliveries_per_s": acked_per_s.round(),
            "publish_seconds": publish_time.as_secs_f64(),
            "deliver_seconds": deliver_time.as_secs_f64(),
            "database_bytes": db_bytes,
        },
        "limit": limit,
        "accepted_per_s_over_verify_batch_all_cores": if batch_all > 0.0 { accepted_per_s / batch_all } else { 0.0 },
    });
    print_table(&report);
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn print_table(r: &Value) {
    let p = &r["parameters"];
    let s = &r["saturation"];
    let l = &r["limit"];
    let m = &r["machine"];
    emitln!(
        "renkei bench — {} ({} cores), revision {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["git_revision"].as_str().unwrap_or("?")
    );
    emitln!("  {} publishers, {} subscribers (fan-out {}), {} bulletins of {} bytes, subscribers verify: {}", p["publishers"], p["subscribers"], p["fan_out"], p["bulletins"], p["body_bytes"], p["subscribers_verify"]);
    emitln!("");
    emitln!(
        "  saturation   accepted            {:>10} bulletins/s",
        s["accepted_per_s"]
    );
    emitln!(
        "               acked deliveries    {:>10} deliveries/s",
        s["acked_deliveries_per_s"]
    );
    emitln!(
        "               database on disk    {:>10} MiB",
        s["database_bytes"].as_u64().unwrap_or(0) >> 20
    );
    emitln!(
        "  limit        Ed25519 verify      {:>10} /s on 1 core, {} /s on all",
        l["verify_per_s_1core"],
        l["verify_per_s_all_cores"]
    );
    emitln!(
        "               verify_batch (64)   {:>10} /s on 1 core, {} /s on all",
        l["verify_batch_per_s_1core"],
        l["verify_batch_per_s_all_cores"]
    );
    emitln!(
        "  accepted/s ÷ verify_batch on all cores = {:.2}",
        r["accepted_per_s_over_verify_batch_all_cores"]
            .as_f64()
            .unwrap_or(0.0)
    );
}
