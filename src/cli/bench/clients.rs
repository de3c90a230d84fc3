//! What the benchmark's clients do: publishers pipeline pre-signed bulletins (paced
//! or not) and time their answers; subscribers decode, verify (unless told not to) and
//! ack every delivery, timing its arrival in the latency phase. No node is started here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use prost::Message as _;

use super::{Setup, PATIENCE};
use crate::bulletin::{Limits, UnverifiedBulletin};
use crate::client::Client;
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;

/// What a subscriber does with each delivery besides acking it.
#[derive(Clone)]
pub(super) struct Receiver {
    pub verify: bool,
    /// For the latency phase: when each bulletin was sent (ns after `epoch`), by number.
    pub sent: Option<(Arc<Vec<AtomicU64>>, Instant)>,
    /// Batches this subscriber verifies at once ([`batches_each`]).
    pub batches: usize,
}

/// Batches each of `subscribers` verifies at once, so that together they keep a batch
/// per core in verification, as desks on machines of their own would use theirs: a
/// single subscriber catching up on a backlog verifies on every core, while four
/// subscribers on two cores verify a batch at a time each (more would take the cores
/// the node measured beside them needs, for no gain).
pub(super) fn batches_each(subscribers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / subscribers.max(1)).max(1)
}

/// Receives `expected` deliveries; returns when the last was verified and acked, and
/// the latencies (µs, publish to arrival).
///
/// Verification runs beside the receiving, on the blocking pool, as a client with
/// cores to spare would run it: `r.batches` batches at once, and what arrives while
/// they are verified is the next.
pub(super) async fn subscribe(
    client: Client,
    setup: Arc<Setup>,
    expected: usize,
    r: Receiver,
) -> anyhow::Result<(Instant, Vec<u64>)> {
    let limits = Limits::default();
    let mut sub = client.subscribe(0).await?;
    let (mut got, mut done, mut latencies) = (0, 0, Vec::new());
    let (mut queued, mut to_ack) = (Vec::new(), Vec::new());
    let mut verifying: tokio::task::JoinSet<anyhow::Result<Vec<u64>>> = tokio::task::JoinSet::new();
    while done < expected {
        tokio::select! {
            d = tokio::time::timeout(PATIENCE, sub.next()), if got < expected => {
                let first = d
                    .context("a subscriber waited too long")??
                    .context("the node ended a subscription")?;
                let arrived = Instant::now();
                let mut batch = vec![first];
                while got + batch.len() < expected {
                    match sub.buffered()? {
                        Some(d) => batch.push(d),
                        None => break,
                    }
                }
                for d in batch {
                    let signed = d.bulletin.context("a delivery without a bulletin")?;
                    if let Some((sent, epoch)) = &r.sent {
                        latencies.push(latency_us(&signed, sent, *epoch, arrived)?);
                    }
                    queued.push((d.seq, UnverifiedBulletin::from_signed(signed, &limits)?));
                    got += 1;
                }
            }
            Some(seqs) = verifying.join_next() => {
                let seqs = seqs.context("a verifying task")??;
                done += seqs.len();
                to_ack.extend(seqs);
            }
        }
        if !queued.is_empty() && verifying.len() < r.batches {
            let batch = std::mem::take(&mut queued);
            if r.verify {
                verifying.spawn_blocking(verify_blocking(batch, setup.clone()));
            } else {
                done += batch.len();
                to_ack.extend(batch.into_iter().map(|(seq, _)| seq));
            }
        }
        if to_ack.len() >= 64 || (done == expected && !to_ack.is_empty()) {
            sub.ack(std::mem::take(&mut to_ack)).await?;
        }
    }
    let finished = Instant::now();
    sub.close().await?;
    client.close().await;
    Ok((finished, latencies))
}

/// The µs from the sending of `signed` (found by the number its title ends with) in
/// `sent` (ns after `epoch`) to its arrival at `arrived`.
fn latency_us(
    signed: &proto::SignedBulletin,
    sent: &[AtomicU64],
    epoch: Instant,
    arrived: Instant,
) -> anyhow::Result<u64> {
    let b = proto::Bulletin::decode(signed.bulletin.clone())?;
    let n: usize = b
        .title
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .context("a bulletin without its number")?;
    let at = sent.get(n).context("a number beyond the run")?;
    let sent_ns = at.load(Ordering::Acquire);
    let now_ns = arrived.duration_since(epoch).as_nanos() as u64;
    Ok(now_ns.saturating_sub(sent_ns) / 1_000)
}

/// A job for the blocking pool that verifies `batch` and gives back its seqs.
fn verify_blocking(
    batch: Vec<(u64, UnverifiedBulletin)>,
    setup: Arc<Setup>,
) -> impl FnOnce() -> anyhow::Result<Vec<u64>> {
    move || {
        let (seqs, bulletins): (Vec<u64>, Vec<_>) = batch.into_iter().unzip();
        let now = Timestamp::now();
        let limits = Limits::default();
        for v in UnverifiedBulletin::verify_all(bulletins, &setup.keyring, now, &limits) {
            v?;
        }
        Ok(seqs)
    }
}

/// What one publisher got answered.
pub(super) struct Published {
    pub accepted: usize,
    /// With a pace: the µs from each bulletin's sending to its ACCEPTED.
    pub answered_us: Vec<u64>,
}

/// Pipelines `bulletins`; with `pace`, sends bulletin `k` of this publisher no earlier
/// than `epoch + offsets[k]`, stamps `sent[number]` as it goes, and times each answer.
pub(super) async fn publish(
    client: Client,
    bulletins: Vec<(usize, proto::SignedBulletin)>,
    pace: Option<(Arc<Vec<AtomicU64>>, Instant, f64)>,
) -> anyhow::Result<Published> {
    let (mut sink, mut results) = client.publisher().await?.split();
    let total = bulletins.len();
    let numbers: Vec<usize> = bulletins.iter().map(|(n, _)| *n).collect();
    let timing = pace.as_ref().map(|(sent, epoch, _)| (sent.clone(), *epoch));
    let sender = tokio::spawn(async move {
        for (i, (n, b)) in bulletins.into_iter().enumerate() {
            if let Some((sent, epoch, rate)) = &pace {
                let due = *epoch + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let at = Instant::now().duration_since(*epoch).as_nanos() as u64;
                if let Some(slot) = sent.get(n) {
                    slot.store(at, Ordering::Release);
                }
            }
            sink.send(i as u64, b).await?;
        }
        sink.finish();
        Ok::<_, crate::client::ClientError>(())
    });
    let (mut accepted, mut answered_us) = (0, Vec::new());
    for _ in 0..total {
        let r = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .context("a publisher waited too long")??
            .context("the node ended a publish stream early")?;
        if r.status != PublishStatus::Accepted as i32 {
            bail!("bulletin {} was not accepted: {}", r.request_id, r.message);
        }
        accepted += 1;
        if let Some((sent, epoch)) = &timing {
            let n = numbers.get(r.request_id as usize);
            let at = n
                .and_then(|n| sent.get(*n))
                .map(|a| a.load(Ordering::Acquire));
            let now = Instant::now().duration_since(*epoch).as_nanos() as u64;
            answered_us.extend(at.map(|at| now.saturating_sub(at) / 1_000));
        }
    }
    sender.await.context("the sending task")??;
    client.close().await;
    Ok(Published {
        accepted,
        answered_us,
    })
}
