//! The benchmark's clients, each on its own connection as renkei's partners are:
//! publishers keeping a window of publish acks outstanding (paced or not), and durable
//! pull consumers fetching in batches and acking every message.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::StreamExt as _;

/// The stream every phase publishes to (a fresh server each phase, so a fresh stream).
pub const STREAM: &str = "BENCH";

/// How long a client waits for the next ack or delivery before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// A JetStream context on a new connection to `addr`, allowing `window` publish acks
/// outstanding.
pub async fn connect(addr: SocketAddr, window: usize) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .connect(format!("nats://{addr}"))
        .await
        .with_context(|| format!("connecting to nats-server at {addr}"))?;
    Ok(jetstream::ContextBuilder::new()
        .max_ack_inflight(window.max(1))
        .build(client))
}

/// Creates the stream: file storage, subjects `bench.>`, the defaults otherwise
/// (limits retention: messages stay after every consumer acked them).
pub async fn create_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["bench.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the stream")?;
    Ok(())
}

/// A durable pull consumer and its own connection.
pub struct Puller {
    pub consumer: consumer::PullConsumer,
    pub client: async_nats::Client,
}

/// Creates durable pull consumer `name` (explicit ack, from the first message) on a
/// connection of its own.
pub async fn create_consumer(addr: SocketAddr, name: &str) -> anyhow::Result<Puller> {
    let js = connect(addr, 1).await?;
    let consumer = js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
            STREAM,
        )
        .await
        .with_context(|| format!("creating consumer {name}"))?;
    Ok(Puller {
        consumer,
        client: js.client(),
    })
}

/// Paces a publisher: message `n` (numbered across all publishers) is due at
/// `epoch + n / rate`, and carries its send time in ns after `epoch`.
#[derive(Clone, Copy)]
pub struct Pace {
    pub epoch: Instant,
    pub rate: f64,
}

/// Publishes the messages numbered `numbers` to `subject`, keeping up to `window`
/// publish acks outstanding; returns how many the server accepted.
pub async fn publish(
    js: jetstream::Context,
    subject: String,
    numbers: Vec<u64>,
    window: usize,
    body: Bytes,
    pace: Option<Pace>,
) -> anyhow::Result<u64> {
    let subject = async_nats::Subject::from(subject);
    let mut pending = VecDeque::with_capacity(window);
    let mut accepted = 0;
    for n in numbers {
        if pending.len() >= window.max(1) {
            confirm(pending.pop_front()).await?;
            accepted += 1;
        }
        let payload = match pace {
            None => body.clone(),
            Some(p) => {
                let due = p.epoch + Duration::from_secs_f64(n as f64 / p.rate);
                tokio::time::sleep_until(due.into()).await;
                stamped(&body, p.epoch)
            }
        };
        let ack = js
            .publish(subject.clone(), payload)
            .await
            .context("publishing")?;
        pending.push_back(ack);
    }
    while !pending.is_empty() {
        confirm(pending.pop_front()).await?;
        accepted += 1;
    }
    Ok(accepted)
}

/// Waits for one publish ack: the server stored the message.
async fn confirm(ack: Option<jetstream::context::PublishAckFuture>) -> anyhow::Result<()> {
    let ack = ack.context("no publish outstanding")?;
    let ack = tokio::time::timeout(PATIENCE, ack)
        .await
        .context("a publisher waited too long for an ack")?
        .context("a publish was not accepted")?;
    if ack.duplicate {
        bail!("the server took message {} for a duplicate", ack.sequence);
    }
    Ok(())
}

/// `body` with its first 8 bytes replaced by the ns since `epoch`, now.
fn stamped(body: &Bytes, epoch: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len().max(8));
    b.put_u64(Instant::now().duration_since(epoch).as_nanos() as u64);
    b.extend_from_slice(body.get(8..).unwrap_or_default());
    b.freeze()
}

/// What a consumer did: when it acked its last message, the latencies it measured
/// (µs, send → receipt) and the redeliveries it saw (not counted as received).
pub struct Consumed {
    pub finished: Instant,
    pub latencies_us: Vec<u64>,
    pub redeliveries: u64,
}

/// Receives and acks `expected` messages, fetching up to `batch` per pull request;
/// with `epoch`, measures each one's latency from the stamp it carries.
pub async fn consume(
    puller: Puller,
    expected: u64,
    batch: usize,
    epoch: Option<Instant>,
) -> anyhow::Result<Consumed> {
    let mut messages = puller
        .consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .context("starting to pull")?;
    let (mut got, mut redeliveries, mut latencies_us) = (0, 0, Vec::new());
    while got < expected {
        let m = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .context("a consumer waited too long")?
            .context("the server ended a pull")?
            .context("a pulled message")?;
        let arrived = Instant::now();
        let info = m.info().map_err(anyhow::Error::from_boxed)?;
        if info.delivered > 1 {
            redeliveries += 1;
        } else {
            if let Some(epoch) = epoch {
                latencies_us.push(latency_us(&m.payload, epoch, arrived)?);
            }
            got += 1;
        }
        m.ack().await.map_err(anyhow::Error::from_boxed)?;
    }
    let finished = Instant::now();
    drop(messages);
    puller.client.flush().await.context("flushing acks")?;
    all_acked(&puller.consumer).await?;
    Ok(Consumed {
        finished,
        latencies_us,
        redeliveries,
    })
}

/// Waits (10 s at most) until the server has taken every ack `consumer` sent: no
/// message left undelivered or awaiting its ack.
async fn all_acked(consumer: &consumer::PullConsumer) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer
            .get_info()
            .await
            .context("asking for a consumer's state")?;
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "consumer {}: {} messages unacked, {} undelivered",
                info.name,
                info.num_ack_pending,
                info.num_pending
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The µs from the send time stamped in `payload` (ns after `epoch`) to `arrived`.
fn latency_us(payload: &[u8], epoch: Instant, arrived: Instant) -> anyhow::Result<u64> {
    let stamp: [u8; 8] = payload
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .context("a message without its send time")?;
    let sent_ns = u64::from_be_bytes(stamp);
    let now_ns = arrived.duration_since(epoch).as_nanos() as u64;
    Ok(now_ns.saturating_sub(sent_ns) / 1_000)
}
