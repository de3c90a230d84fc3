//! `renkei bench`: an end-to-end benchmark against a real node (QUIC + mTLS on
//! 127.0.0.1, the store on disk in a temporary directory, the same durability, audit and
//! metrics as `serve`), with real clients in the same process, and the machine's
//! physical limit (Ed25519 verification) measured in the same run.
//!
//! Phases (`phases`): saturation, latency at a paced rate, an offline partner's
//! backlog, and the verify limit. The node runs as `renkei serve` in its own process
//! (`node`), so its memory is its own. Figures are printed as a table and, with
//! `--json FILE`, written with the parameters, the machine and the git revision.

mod clients;
mod crash;
mod federation;
mod hostile;
mod node;
mod partners;
mod phases;
mod power;
mod report;
mod reporting;
mod soak;
mod taxii;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

pub(crate) use hostile::Attack;

use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp};
use crate::client::Client;
use crate::identity::{self, Keyring, PartnerId, PublicKey, Validity};
use crate::proto;
use crate::timestamp::Timestamp;
use crate::transport::Timers;

pub(super) const HUB: &str = "bench-hub";
/// The auditor every benchmark node knows (the crash loop collects checkpoints with it).
const AUDITOR: &str = "bench-audit";
/// How long any wait may take before the benchmark gives up.
pub(super) const PATIENCE: Duration = Duration::from_secs(120);

/// What to measure.
#[derive(Clone, Debug)]
pub(super) struct BenchArgs {
    pub publishers: usize,
    pub subscribers: usize,
    pub bulletins: usize,
    pub body_bytes: usize,
    pub skip_verify: bool,
    pub rate: f64,
    pub latency_seconds: f64,
    pub backlog: usize,
    pub audit_records: u64,
    pub metrics_records: u64,
    pub cycles: usize,
    pub partners: usize,
    pub soak_minutes: usize,
    pub soak_rate: f64,
    /// The lazyfs program of the power phase.
    pub lazyfs: PathBuf,
    pub phases: Vec<Phase>,
    /// The hostile phase's attacks.
    pub attacks: Vec<Attack>,
    pub json: Option<PathBuf>,
}

/// A part of the benchmark.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Saturation throughput.
    Saturation,
    /// Publish → delivery latency at a paced rate.
    Latency,
    /// An offline partner's backlog: peak memory, then the drain rate.
    Backlog,
    /// Ed25519 verifications per second under the node's rule, alone and in batches.
    Limit,
    /// The audit log at scale: append, query a page, verify, reopen.
    Audit,
    /// Three nodes in a line, each its own process: throughput and latency across them.
    Federation,
    /// `--partners` partners at once, each publishing and receiving: latency with all
    /// reading and with one stalled, and the node's memory.
    Partners,
    /// The TAXII 2.1 gateway: objects/s read by paging at up to 100,000 stored, and
    /// added through the inbox.
    Taxii,
    /// An honest desk's publish latency and the node's memory under hostile partners:
    /// padded frames, streams held open, five flooding.
    Hostile,
    /// The programme's fiscal-year report on a log of `--metrics-records` accepted
    /// bulletins over two years: from the counters, and recounted from every record
    /// (not in the default run).
    Metrics,
    /// The node SIGKILLed under load and restarted `--cycles` times, then every
    /// promise checked (not in the default run: it measures survival, not speed).
    Crash,
    /// The crash loop with the node's data on lazyfs, cutting the power after each
    /// kill: writes not yet fsynced are dropped, torn or reordered (not in the default
    /// run; needs `--lazyfs` and fusermount3).
    Power,
    /// Three nodes in a line at `--soak-rate` for `--soak-minutes`, subscribers coming
    /// and going, memory, open files and database size sampled each minute (not in
    /// the default run).
    Soak,
}

fn pid(s: &str) -> anyhow::Result<PartnerId> {
    Ok(s.parse()?)
}

pub(super) fn publisher_id(i: usize) -> String {
    format!("pub-{i}")
}

pub(super) fn subscriber_id(i: usize) -> String {
    format!("sub-{i}")
}

/// `[limits]` lines for the phases that measure capacity: each bench publisher stands
/// for many desks, so a partner's rates (1,000 publishes and 8 MiB a second by
/// default) are lifted. The hostile phase keeps the defaults, as a deployed node would.
pub(super) const LIFTED: &str =
    "partner_publishes_per_sec = 1000000000\npartner_mib_per_sec = 1000000\n";

/// Publishers receive nothing (`kinds = []`), so each bulletin goes to the S
/// subscribers. `limits` are more lines of `[limits]`.
fn node_config(
    a: &BenchArgs,
    keys: &BTreeMap<String, SigningKey>,
    (data, limits): (&str, &str),
    admin: std::net::SocketAddr,
) -> String {
    let mut text = format!(
        "[node]\nid = \"{HUB}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/{HUB}/tls.crt\"\ntls_key = \"certs/{HUB}/tls.key\"\nsigning_key = \"certs/{HUB}/signing.key\"\n\
         [limits]\nmax_clock_skew_secs = 3600\n{limits}[admin]\nlisten = \"{admin}\"\n"
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
    text.push_str(&format!(
        "\n[[partner]]\nid = \"{AUDITOR}\"\nrole = \"auditor\"\n"
    ));
    text
}

fn sign(
    key: &SigningKey,
    origin: &str,
    n: usize,
    body: &Bytes,
) -> anyhow::Result<proto::SignedBulletin> {
    sign_typed(key, origin, n, body, "application/octet-stream")
}

/// A GREEN indicator numbered `n` by `origin`, with `body` of `content_type`.
pub(super) fn sign_typed(
    key: &SigningKey,
    origin: &str,
    n: usize,
    body: &Bytes,
    content_type: &str,
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
        content_type: content_type.into(),
        body: body.clone(),
        references: vec![],
    };
    Ok(bulletin::sign(&b, key, &Limits::default())?)
}

pub(super) async fn connect(
    dir: &Path,
    id: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Client> {
    connect_to(dir, id, addr, HUB).await
}

/// `id`'s connection to the node `node` at `addr`.
pub(super) async fn connect_to(
    dir: &Path,
    id: &str,
    addr: std::net::SocketAddr,
    node: &str,
) -> anyhow::Result<Client> {
    let timers = Timers {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
    };
    Ok(Client::connect_from_pki(&dir.join("certs"), id, addr, &pid(node)?, timers).await?)
}

/// Windows measured for each verification figure; the best counts.
const LIMIT_WINDOWS: usize = 5;

/// Ed25519 verifications per second on this machine under the node's rule
/// (`bulletin::signature`): one at a time and in batches of 64 (one signer, as on a
/// publish stream), on one core and on every core.
///
/// Each figure is the best of several short windows: on a shared machine other work
/// only ever slows a window down, and one window of 700 ms swung by half.
fn verify_limit(
    sample: &[proto::SignedBulletin],
    key: crate::identity::PublicKey,
) -> anyhow::Result<Value> {
    use crate::bulletin::signature;
    use ed25519_dalek::Signature;
    let mut items = Vec::new();
    for s in sample.iter().take(4096) {
        let mut msg = bulletin::SIGNATURE_DOMAIN.to_vec();
        msg.extend_from_slice(&s.bulletin);
        let sig = Signature::from_slice(&s.signature)?;
        items.push((key, msg, sig));
    }
    let window = |threads: usize, batch: bool| -> f64 {
        let per = Duration::from_millis(300);
        let counts: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < per {
                            if batch {
                                for chunk in items.chunks(64) {
                                    let batch: Vec<(
                                        &crate::identity::PublicKey,
                                        &[u8],
                                        &Signature,
                                    )> = chunk
                                        .iter()
                                        .map(|(k, m, s)| (k, m.as_slice(), s))
                                        .collect();
                                    let valid = signature::verify_many(&batch);
                                    n += valid.iter().filter(|v| **v).count() as u64;
                                }
                            } else {
                                for (k, m, s) in &items {
                                    if signature::verify_one(k, m, s) {
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
    let run = |threads: usize, batch: bool| -> f64 {
        (0..LIMIT_WINDOWS)
            .map(|_| window(threads, batch))
            .fold(0.0, f64::max)
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
    let revision = env!("RENKEI_REVISION").to_owned();
    json!({"cores": cores, "cpu": cpu, "git_revision": revision, "version": env!("CARGO_PKG_VERSION")})
}

/// Everything the phases share: the parameters, the PKI and keys, the body.
pub(super) struct Setup {
    pub args: BenchArgs,
    pub dir: PathBuf,
    pub keys: BTreeMap<String, SigningKey>,
    pub keyring: Keyring,
    pub body: Bytes,
}

impl Setup {
    /// A fresh node (data directory `name`) in its own process.
    fn start_node(&self, name: &str) -> anyhow::Result<node::NodeProcess> {
        self.start_node_with(name, "")
    }

    /// [`Setup::start_node`] with more of the configuration (`[[partner]]` tables).
    fn start_node_with(&self, name: &str, more: &str) -> anyhow::Result<node::NodeProcess> {
        self.start_node_limited(name, LIFTED, more)
    }

    /// [`Setup::start_node_with`] with the default limits, as a deployed node has them.
    fn start_node_as_deployed(&self, name: &str, more: &str) -> anyhow::Result<node::NodeProcess> {
        self.start_node_limited(name, "", more)
    }

    fn start_node_limited(
        &self,
        name: &str,
        limits: &str,
        more: &str,
    ) -> anyhow::Result<node::NodeProcess> {
        let path = self.dir.join(format!("{name}.toml"));
        let admin = node::free_port()?;
        let mut text = node_config(&self.args, &self.keys, (name, limits), admin);
        text.push_str(more);
        crate::files::write(&path, text.as_bytes(), crate::files::Access::Public, true)?;
        node::NodeProcess::start(&path, admin)
    }
}

pub(super) async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.publishers == 0 || a.subscribers == 0 || a.bulletins < a.publishers {
        bail!("need at least one publisher, one subscriber and a bulletin per publisher");
    }
    if a.rate <= 0.0 || a.backlog == 0 || a.soak_rate <= 0.0 || a.soak_minutes == 0 {
        bail!("--rate, --backlog, --soak-rate and --soak-minutes must be positive");
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let setup = Arc::new(prepare(&a, tmp.path())?);
    let mut report = json!({
        "parameters": {
            "publishers": a.publishers,
            "subscribers": a.subscribers,
            "fan_out": a.subscribers,
            "bulletins": a.bulletins,
            "body_bytes": a.body_bytes,
            "rate": a.rate,
            "latency_seconds": a.latency_seconds,
            "backlog": a.backlog,
            "audit_records": a.audit_records,
            "metrics_records": a.metrics_records,
            "cycles": a.cycles,
            "partners": a.partners,
            "subscribers_verify": !a.skip_verify,
            "node": "renkei serve in its own process, fresh database per phase",
        },
        "machine": machine(),
    });
    measure(&setup, &mut report).await?;
    report::print_table(&report);
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(tmp);
    Ok(())
}

/// The PKI of every publisher, subscriber and node in `dir`, and the keys.
fn prepare(a: &BenchArgs, dir: &Path) -> anyhow::Result<Setup> {
    let dir = dir.to_owned();
    let mut ids: Vec<PartnerId> = Vec::new();
    for i in 0..a.publishers {
        ids.push(pid(&publisher_id(i))?);
    }
    for i in 0..a.subscribers {
        ids.push(pid(&subscriber_id(i))?);
    }
    ids.push(pid(HUB)?);
    ids.push(pid(AUDITOR)?);
    // The partners and hostile phases draw on the same partner ids.
    let mut many = 0;
    if a.phases.contains(&Phase::Partners) {
        many = a.partners;
    }
    if a.phases.contains(&Phase::Hostile) {
        many = many.max(hostile::PARTNERS);
    }
    for i in 0..many {
        ids.push(pid(&partners::partner_id(i))?);
    }
    for n in federation::LINE {
        ids.push(pid(n)?);
    }
    crate::pki::init(
        &dir.join("certs"),
        &ids,
        crate::pki::Replace::default(),
        Timestamp::now(),
    )?;
    let mut keys = BTreeMap::new();
    let mut keyring = Keyring::new();
    for id in &ids {
        let pem =
            crate::files::read_text(&dir.join("certs").join(id.as_str()).join("signing.key"))?;
        let key = identity::signing_key_from_pem(&pem)?;
        keyring.insert(id.clone(), PublicKey::of(&key), Validity::default());
        keys.insert(id.to_string(), key);
    }
    Ok(Setup {
        body: Bytes::from(vec![0x42u8; a.body_bytes]),
        args: a.clone(),
        dir,
        keys,
        keyring,
    })
}

/// Runs the phases asked for and adds their figures to `report`.
async fn measure(setup: &Arc<Setup>, report: &mut Value) -> anyhow::Result<()> {
    let a = &setup.args;
    if a.phases.contains(&Phase::Saturation) {
        report["saturation"] = phases::saturation(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Latency) {
        report["latency"] = phases::latency(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Backlog) {
        report["backlog"] = phases::backlog(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Audit) {
        report["audit"] = phases::audit(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Federation) {
        report["federation"] = federation::federation(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Partners) {
        report["partners"] = partners::partners(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Taxii) {
        report["taxii"] = taxii::taxii(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Hostile) {
        report["hostile"] = hostile::hostile(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Metrics) {
        let dir = setup.dir.join("metrics");
        report["metrics"] = reporting::metrics_phase(a.metrics_records, dir).await?;
    }
    if a.phases.contains(&Phase::Crash) {
        report["crash"] = crash::crash(setup.clone(), a.cycles).await?;
    }
    if a.phases.contains(&Phase::Power) {
        report["power"] = power::power(setup.clone(), a.cycles, &a.lazyfs).await?;
    }
    if a.phases.contains(&Phase::Soak) {
        report["soak"] = soak::soak(setup.clone()).await?;
    }
    if a.phases.contains(&Phase::Limit) {
        eprintln!("renkei bench: measuring Ed25519 verification on this machine…");
        let id = publisher_id(0);
        let sample: Vec<proto::SignedBulletin> = (0..4096)
            .map(|n| sign(&setup.keys[&id], &id, n, &setup.body))
            .collect::<anyhow::Result<_>>()?;
        let limit = verify_limit(&sample, crate::identity::PublicKey::of(&setup.keys[&id]))?;
        let batch_all = limit["verify_batch_per_s_all_cores"]
            .as_f64()
            .unwrap_or(0.0);
        if let Some(accepted) = report["saturation"]["accepted_per_s"].as_f64() {
            if batch_all > 0.0 {
                report["accepted_per_s_over_verify_batch_all_cores"] = json!(accepted / batch_all);
            }
        }
        report["limit"] = limit;
    }
    Ok(())
}

pub(super) fn dir_size(dir: &Path) -> u64 {
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
