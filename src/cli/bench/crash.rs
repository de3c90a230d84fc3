//! The crash loop (`--phases crash --cycles N`): publishers and subscribers under load
//! while the node process is SIGKILLed at a random moment and restarted, N times on
//! one database. Then the promises are checked, and the phase fails if one is broken:
//! every bulletin a publisher saw ACCEPTED is in the store and the log and reached
//! every subscriber (at least once; deduped by id, exactly once), the log has no gap,
//! it verifies against every checkpoint an auditor was handed during the run, and no
//! two of those checkpoints name different roots for one size.
//!
//! What befalls the data between a kill and the restart is an [`Outage`]: nothing here
//! (the page cache survives a SIGKILL), a power cut in `power.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use prost::Message as _;
use rand_core::RngCore as _;
use serde_json::{json, Value};

use super::{connect, publisher_id, sign, subscriber_id, Setup, AUDITOR, PATIENCE};
use crate::audit::{checkpoint, export};
use crate::client::Client;
use crate::proto::{self, PublishStatus};

/// The crash loop's node: its data directory and configuration are named this.
const DATA: &str = "crash";
/// How often the auditor asks for a checkpoint while the node runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(40);
/// The longest a node runs before it is killed (each cycle draws up to this).
const LONGEST_RUN: Duration = Duration::from_millis(500);

/// What the clients saw over the whole run.
#[derive(Default)]
struct Seen {
    sent: u64,
    accepted: HashSet<String>,
    /// Per subscriber: bulletin id → times delivered.
    delivered: Vec<HashMap<String, u32>>,
    /// Signed checkpoint notes handed to the auditor.
    checkpoints: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    // A task that panicked holding the lock leaves counts that are still counts.
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// What befalls the node's data between a kill and the restart.
pub(super) trait Outage {
    /// The name of the node's data directory (under the benchmark's directory) and
    /// configuration.
    fn data(&self) -> &str;
    /// Runs after the node of `cycle` was killed, before it restarts.
    fn after_kill(&mut self, cycle: usize) -> anyhow::Result<()>;
}

/// A SIGKILL alone: the page cache keeps every write the node made.
struct Kill;

impl Outage for Kill {
    fn data(&self) -> &str {
        DATA
    }

    fn after_kill(&mut self, _cycle: usize) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Runs the crash loop and the checks; the figures, or the first broken promise.
pub(super) async fn crash(setup: Arc<Setup>, cycles: usize) -> anyhow::Result<Value> {
    outages(setup, cycles, &mut Kill).await
}

/// Runs `cycles` kills under load, each followed by `outage`, then the checks; the
/// figures, or the first broken promise.
pub(super) async fn outages(
    setup: Arc<Setup>,
    cycles: usize,
    outage: &mut dyn Outage,
) -> anyhow::Result<Value> {
    let a = &setup.args;
    let seen: Shared = Arc::new(Mutex::new(Seen {
        delivered: vec![HashMap::new(); a.subscribers],
        ..Seen::default()
    }));
    let started = Instant::now();
    let mut restarts = Vec::with_capacity(cycles);
    for cycle in 0..cycles {
        let t = Instant::now();
        let node = setup
            .start_node(outage.data())
            .with_context(|| format!("the node did not start after {cycle} outages"))?;
        restarts.push(t.elapsed());
        let up_for = LONGEST_RUN.mul_f64(rand_core::OsRng.next_u32() as f64 / u32::MAX as f64);
        let load = Load::start(&setup, &seen, node.addr).await;
        tokio::time::sleep(up_for).await;
        node.kill()?;
        load.abort();
        // It may block (a control socket, a child process): off the async workers.
        tokio::task::block_in_place(|| outage.after_kill(cycle))?;
        if cycle % 20 == 19 {
            eprintln!(
                "renkei bench: {}: {} of {cycles} kills",
                outage.data(),
                cycle + 1
            );
        }
    }
    if lock(&seen).accepted.is_empty() {
        bail!("no bulletin was accepted in {cycles} cycles: the run proves nothing");
    }
    let node = setup
        .start_node(outage.data())
        .context("the node did not start after the last outage")?;
    drain(&setup, &seen, node.addr).await?;
    node.stop()?;
    let checked = check(&setup, &seen, outage.data())?;
    let seen = lock(&seen);
    let redelivered: u64 = seen
        .delivered
        .iter()
        .flat_map(|d| d.values())
        .map(|n| u64::from(n - 1))
        .sum();
    restarts.sort();
    Ok(json!({
        "cycles": cycles,
        "kills": cycles,
        "sent": seen.sent,
        "accepted": seen.accepted.len(),
        "subscribers": a.subscribers,
        "redelivered": redelivered,
        "checkpoints_checked": seen.checkpoints.len(),
        "checkpoint_sizes": checked.sizes,
        "records": checked.records,
        "bulletins_stored": checked.stored,
        "restart_ms_p50": restarts[restarts.len() / 2].as_secs_f64() * 1000.0,
        "restart_ms_max": restarts.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        "seconds": started.elapsed().as_secs_f64(),
        "passed": true,
    }))
}

/// The clients of one cycle; each task stops on its own when the node dies, or is
/// aborted.
struct Load(tokio::task::JoinSet<()>);

impl Load {
    /// Connects every publisher, subscriber and the auditor (whoever can before the
    /// node dies) and sets them to work.
    async fn start(setup: &Arc<Setup>, seen: &Shared, addr: std::net::SocketAddr) -> Load {
        let a = &setup.args;
        let mut tasks = tokio::task::JoinSet::new();
        let per_publisher = a.rate / a.publishers as f64;
        for i in 0..a.publishers {
            let (setup, seen) = (setup.clone(), seen.clone());
            tasks.spawn(async move {
                if let Ok(c) = connect(&setup.dir, &publisher_id(i), addr).await {
                    let _ = publish(&setup, c, i, per_publisher, &seen).await;
                }
            });
        }
        for i in 0..a.subscribers {
            let (setup, seen) = (setup.clone(), seen.clone());
            tasks.spawn(async move {
                if let Ok(c) = connect(&setup.dir, &subscriber_id(i), addr).await {
                    let _ = subscribe(&c, i, &seen, None).await;
                }
            });
        }
        let (setup, seen) = (setup.clone(), seen.clone());
        tasks.spawn(async move {
            if let Ok(c) = connect(&setup.dir, AUDITOR, addr).await {
                let _ = audit(&c, &seen).await;
            }
        });
        Load(tasks)
    }

    fn abort(mut self) {
        self.0.abort_all();
        self.0.detach_all();
    }
}

/// Publishes numbered bulletins at `rate` per second until the node goes away,
/// recording each one the node answers ACCEPTED.
async fn publish(
    setup: &Setup,
    client: Client,
    i: usize,
    rate: f64,
    seen: &Shared,
) -> anyhow::Result<()> {
    let id = publisher_id(i);
    let key = &setup.keys[&id];
    let (mut sink, mut results) = client.publisher().await?.split();
    let seen2 = seen.clone();
    let answers = tokio::spawn(async move {
        while let Ok(Some(r)) = results.recv().await {
            if r.status == PublishStatus::Accepted as i32 {
                lock(&seen2).accepted.insert(r.bulletin_id);
            }
        }
    });
    let epoch = Instant::now();
    for n in 0.. {
        let due = epoch + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let b = sign(key, &id, n, &setup.body)?;
        if sink.send(n as u64, b).await.is_err() {
            break;
        }
        lock(seen).sent += 1;
    }
    answers.abort();
    Ok(())
}

/// Receives and acks deliveries, counting each bulletin id; returns when the node goes
/// away, or (with `until`) once every id in it has arrived.
async fn subscribe(
    client: &Client,
    i: usize,
    seen: &Shared,
    until: Option<&HashSet<String>>,
) -> anyhow::Result<()> {
    let mut sub = client.subscribe(0).await?;
    let mut missing = until.cloned().unwrap_or_default();
    while until.is_none() || !missing.is_empty() {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .context("a subscriber waited too long")??
            .context("the node ended a subscription")?;
        let signed = d.bulletin.context("a delivery without a bulletin")?;
        let id = proto::Bulletin::decode(signed.bulletin)?.id;
        missing.remove(&id);
        *lock(seen).delivered[i].entry(id).or_default() += 1;
        sub.ack(vec![d.seq]).await?;
    }
    sub.close().await?;
    Ok(())
}

/// Asks for a checkpoint every few tens of milliseconds and keeps each one.
async fn audit(client: &Client, seen: &Shared) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tick.tick().await;
        let c = client.checkpoint().await?;
        lock(seen).checkpoints.push(c.note);
    }
}

/// After the last kill: a node that stays up, until every subscriber holds every
/// accepted bulletin.
async fn drain(
    setup: &Arc<Setup>,
    seen: &Shared,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    eprintln!("renkei bench: the last restart; draining the queues…");
    for i in 0..setup.args.subscribers {
        let missing: HashSet<String> = {
            let s = lock(seen);
            s.accepted
                .iter()
                .filter(|id| !s.delivered[i].contains_key(*id))
                .cloned()
                .collect()
        };
        let client = connect(&setup.dir, &subscriber_id(i), addr).await?;
        if !missing.is_empty() {
            subscribe(&client, i, seen, Some(&missing))
                .await
                .with_context(|| {
                    format!(
                        "{} never received {} accepted bulletin(s)",
                        subscriber_id(i),
                        missing.len()
                    )
                })?;
        }
        client.close().await;
    }
    let auditor = connect(&setup.dir, AUDITOR, addr).await?;
    let last = auditor.checkpoint().await?;
    lock(seen).checkpoints.push(last.note);
    auditor.close().await;
    Ok(())
}

/// What the offline checks found.
struct Checked {
    records: u64,
    stored: u64,
    sizes: usize,
}

/// Reads the database the node left and checks every promise against what the
/// clients saw.
fn check(setup: &Setup, seen: &Shared, data: &str) -> anyhow::Result<Checked> {
    let seen = lock(seen);
    let store = crate::store::Store::open(&setup.dir.join(data), 64 << 20)?;
    let key = ed25519_dalek::VerifyingKey::from(&setup.keys[super::HUB]);
    let mut stored = HashSet::new();
    for seq in 1..=store.head()? {
        if let Some(b) = store.get(seq)? {
            stored.insert(b.id);
        }
    }
    missing("stored", &seen.accepted, &stored)?;
    let log = store.audit();
    let records = log.records_from(0).collect::<Result<Vec<_>, _>>()?;
    let decoded = records
        .iter()
        .map(|bytes| proto::AuditRecord::decode(bytes.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut logged = HashSet::new();
    for r in &decoded {
        if r.event == proto::AuditEvent::BulletinAccepted as i32 {
            logged.insert(r.bulletin_id.clone());
        } else if r.reason.starts_with("GAP:") {
            bail!("record {} names events the log lost: {}", r.seq, r.reason);
        }
    }
    missing("recorded as accepted", &seen.accepted, &logged)?;
    counted_once(&store, &decoded)?;
    for (i, got) in seen.delivered.iter().enumerate() {
        let got: HashSet<String> = got.keys().cloned().collect();
        missing(
            &format!("delivered to {}", subscriber_id(i)),
            &seen.accepted,
            &got,
        )?;
    }
    let sizes = one_root_per_size(&seen.checkpoints, &key)?;
    // The log (in sequence, every stored checkpoint) against every one handed out.
    let export = export::Export {
        header: proto::ExportHeader {
            format: export::FORMAT.into(),
            node_id: super::HUB.into(),
            origin: checkpoint::log_origin(super::HUB),
            public_key: bytes::Bytes::copy_from_slice(key.as_bytes()),
            records: records.len() as u64,
            exported_unix_ms: 0,
        },
        records,
        checkpoints: log
            .checkpoints()
            .map(|c| c.map(|(_, n)| n))
            .collect::<Result<_, _>>()?,
    };
    let trusted: Vec<&str> = seen.checkpoints.iter().map(String::as_str).collect();
    let summary = export::verify_against(&export, &key, &trusted)
        .context("the log against the checkpoints handed out")?;
    Ok(Checked {
        records: summary.records,
        stored: stored.len() as u64,
        sizes,
    })
}

/// Checks that the node's counters, saved and recounted across the kills, are what
/// its records add up to.
fn counted_once(store: &crate::store::Store, records: &[proto::AuditRecord]) -> anyhow::Result<()> {
    let recount: Vec<crate::metrics::Row> = crate::metrics::aggregate(records)
        .into_iter()
        .map(|((day, partner, name), n)| (day, partner, name, n))
        .collect();
    let counted = store.counted(u32::MAX)?;
    if counted.size != records.len() as u64 || counted.rows != recount {
        let differ = counted.rows.iter().filter(|r| !recount.contains(r)).count();
        bail!(
            "the node's counters at {} records are not what its {} records add up to ({differ} rows differ)",
            counted.size,
            records.len()
        );
    }
    Ok(())
}

/// Checks each note's signature and that no two name different roots for one size;
/// returns how many sizes they cover.
fn one_root_per_size(notes: &[String], key: &ed25519_dalek::VerifyingKey) -> anyhow::Result<usize> {
    let origin = checkpoint::log_origin(super::HUB);
    let mut roots = BTreeMap::new();
    for note in notes {
        let c = checkpoint::verify(note, &origin, key).context("a checkpoint handed out")?;
        if let Some(other) = roots.insert(c.size, c.root) {
            if other != c.root {
                bail!("two checkpoints at size {} name different roots", c.size);
            }
        }
    }
    Ok(roots.len())
}

/// Fails naming how many of `wanted` are not in `found`, and one of them.
fn missing(what: &str, wanted: &HashSet<String>, found: &HashSet<String>) -> anyhow::Result<()> {
    let absent: Vec<&String> = wanted.difference(found).collect();
    if let Some(first) = absent.first() {
        bail!(
            "{} of {} accepted bulletins were not {what}, e.g. {first}",
            absent.len(),
            wanted.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::CheckpointSigner;
    use crate::audit::merkle::TreeHash;

    #[test]
    fn two_roots_at_one_size_fail_the_run() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let origin = checkpoint::log_origin(super::super::HUB);
        let signer = CheckpointSigner::new(&origin, key.clone()).expect("a signer");
        let note = |size, byte| signer.sign(size, TreeHash([byte; 32])).expect("signed");
        let public = key.verifying_key();
        let same = [note(3, 1), note(3, 1), note(5, 2)];
        assert_eq!(one_root_per_size(&same, &public).expect("consistent"), 2);
        let forked = [note(3, 1), note(5, 2), note(3, 9)];
        let err = one_root_per_size(&forked, &public).expect_err("a fork");
        assert!(err.to_string().contains("size 3"), "{err}");
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(one_root_per_size(&same, &stranger).is_err());
    }

    #[test]
    fn an_accepted_bulletin_not_found_is_named() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert!(missing("stored", &set(&["a", "b"]), &set(&["a", "b", "c"])).is_ok());
        let err = missing("stored", &set(&["a", "b"]), &set(&["a"])).expect_err("b is missing");
        assert_eq!(
            err.to_string(),
            "1 of 2 accepted bulletins were not stored, e.g. b"
        );
    }
}
