//! A lossy, reordering UDP path for tests: a proxy on 127.0.0.1 between QUIC clients
//! (desks, or a node dialling a peer) and one upstream node. Each datagram, either way,
//! may be lost, duplicated or held back by a random delay (which reorders), and the
//! path can be cut outright. The faults can be changed while it runs, and every fault
//! is counted, so a test can show the weather it ran in really happened.
//!
//! It owns only the datagrams between its sockets; it knows nothing of QUIC. Dropping
//! the [`Lossy`] handle stops its tasks.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Large enough for any UDP datagram (quinn probes paths up to 6,000 bytes here).
const MAX_DATAGRAM: usize = 65_536;

/// What the proxy has done to the datagrams it was given, both ways together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams received from either side.
    pub received: u64,
    /// Dropped at random.
    pub lost: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back by a non-zero delay (each copy counts).
    pub delayed: u64,
    /// Sent after a datagram of the same flow (same sockets, same way) that reached
    /// the proxy later.
    pub reordered: u64,
    /// Dropped because the path was cut (on arrival or when due).
    pub cut: u64,
    /// Dropped for being larger than the path's MTU (quinn's MTU probes, mostly).
    pub too_big: u64,
    /// Sent on.
    pub sent: u64,
}

/// The faults in force and the counters, shared by the proxy's tasks and its handle
/// (and by a second path made with [`Lossy::beside`]).
struct Weather {
    /// Probabilities in parts per million, so they fit an atomic.
    loss_ppm: AtomicU32,
    duplicate_ppm: AtomicU32,
    max_delay_us: AtomicU64,
    /// The largest UDP payload the path carries.
    mtu: AtomicU64,
    cut: AtomicBool,
    rng: Mutex<SplitMix64>,
    received: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    cut_dropped: AtomicU64,
    too_big: AtomicU64,
    sent: AtomicU64,
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, seeded, good enough to roll dice.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `ppm` / 1,000,000.
    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.next() % 1_000_000 < u64::from(ppm)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next() % (max + 1)
        }
    }
}

fn ppm(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Weather {
    fn new(seed: u64) -> Weather {
        Weather {
            loss_ppm: AtomicU32::new(0),
            duplicate_ppm: AtomicU32::new(0),
            max_delay_us: AtomicU64::new(0),
            mtu: AtomicU64::new(MAX_DATAGRAM as u64),
            cut: AtomicBool::new(false),
            rng: Mutex::new(SplitMix64(seed)),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            cut_dropped: AtomicU64::new(0),
            too_big: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// The delays after which a datagram arriving now goes on: none if it is lost or
    /// the path is cut, two if it is duplicated.
    fn fate(&self, len: usize) -> Vec<Duration> {
        bump(&self.received);
        if len as u64 > self.mtu.load(Ordering::Relaxed) {
            bump(&self.too_big);
            return Vec::new();
        }
        if self.cut.load(Ordering::Relaxed) {
            bump(&self.cut_dropped);
            return Vec::new();
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(self.loss_ppm.load(Ordering::Relaxed)) {
            bump(&self.lost);
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate_ppm.load(Ordering::Relaxed)) {
            bump(&self.duplicated);
            2
        } else {
            1
        };
        let max = self.max_delay_us.load(Ordering::Relaxed);
        (0..copies)
            .map(|_| {
                let us = rng.upto(max);
                if us > 0 {
                    bump(&self.delayed);
                }
                Duration::from_micros(us)
            })
            .collect()
    }

    fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            received: get(&self.received),
            lost: get(&self.lost),
            duplicated: get(&self.duplicated),
            delayed: get(&self.delayed),
            reordered: get(&self.reordered),
            cut: get(&self.cut_dropped),
            too_big: get(&self.too_big),
            sent: get(&self.sent),
        }
    }
}

/// A datagram waiting for its time: sent from `via` to `to` at `at`. `order` is when it
/// reached the proxy, to keep equal deadlines in arrival order and to spot overtaking.
struct Pending {
    at: Instant,
    order: u64,
    bytes: Arc<[u8]>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// One side's way into the scheduler: rolls the dice for each datagram and queues
/// what survives.
#[derive(Clone)]
struct Gate {
    weather: Arc<Weather>,
    queue: mpsc::UnboundedSender<Pending>,
    arrivals: Arc<AtomicU64>,
}

impl Gate {
    fn pass(&self, bytes: &[u8], via: &Arc<UdpSocket>, to: SocketAddr) {
        let delays = self.weather.fate(bytes.len());
        if delays.is_empty() {
            return;
        }
        let order = self.arrivals.fetch_add(1, Ordering::Relaxed);
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let now = Instant::now();
        for delay in delays {
            let _ = self.queue.send(Pending {
                at: now + delay,
                order,
                bytes: bytes.clone(),
                via: via.clone(),
                to,
            });
        }
    }
}

/// Sends each queued datagram when it is due, unless the path is cut by then.
async fn schedule(weather: Arc<Weather>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    // The latest arrival order sent on each flow (sending socket, receiver), to count
    // overtaking.
    let mut latest: HashMap<(usize, SocketAddr), u64> = HashMap::new();
    loop {
        let next = heap.peek().map(|Reverse(p)| p.at);
        tokio::select! {
            got = queue.recv() => match got {
                Some(p) => heap.push(Reverse(p)),
                None => return,
            },
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                while let Some(Reverse(p)) = heap.peek() {
                    if p.at > Instant::now() {
                        break;
                    }
                    let Some(Reverse(p)) = heap.pop() else { break };
                    if weather.cut.load(Ordering::Relaxed) {
                        bump(&weather.cut_dropped);
                        continue;
                    }
                    let flow = (Arc::as_ptr(&p.via) as usize, p.to);
                    let last = latest.entry(flow).or_insert(0);
                    if p.order < *last {
                        bump(&weather.reordered);
                    }
                    *last = (*last).max(p.order);
                    if p.via.send_to(&p.bytes, p.to).await.is_ok() {
                        bump(&weather.sent);
                    }
                }
            }
        }
    }
}

/// Carries what the upstream node sends back to one client.
async fn downstream(
    upstream: Arc<UdpSocket>,
    node: SocketAddr,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    gate: Gate,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // An unconnected UDP socket reports no ICMP errors on Linux: an error here
        // means the socket is unusable, and retrying would only spin.
        let Ok((n, from)) = upstream.recv_from(&mut buf).await else {
            return;
        };
        if from == node {
            gate.pass(&buf[..n], &front, client);
        }
    }
}

/// The proxy: one upstream socket per client address, so each client (and a node
/// dialling from its listening port) is its own path to the node. Its tasks live in a
/// [`JoinSet`] that goes when this task is aborted.
async fn run(front: Arc<UdpSocket>, node: SocketAddr, weather: Arc<Weather>) {
    let mut tasks = JoinSet::new();
    let (queue, rx) = mpsc::unbounded_channel();
    tasks.spawn(schedule(weather.clone(), rx));
    let gate = Gate {
        weather,
        queue,
        arrivals: Arc::default(),
    };
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                tasks.spawn(downstream(
                    u.clone(),
                    node,
                    front.clone(),
                    client,
                    gate.clone(),
                ));
                u
            }
        };
        gate.pass(&buf[..n], &upstream, node);
    }
}

/// A running proxy in front of one node. Dropping it stops it.
pub struct Lossy {
    addr: SocketAddr,
    weather: Arc<Weather>,
    task: JoinHandle<()>,
}

impl Lossy {
    /// A clear path to `node` (no faults yet) on a free port of 127.0.0.1; `seed` makes
    /// its dice repeatable.
    pub async fn start(node: SocketAddr, seed: u64) -> Lossy {
        Self::with_weather(node, Arc::new(Weather::new(seed))).await
    }

    /// A second path, to `node`, under the same faults and counters as this one: for
    /// two nodes that dial each other, each through a proxy in front of the other.
    pub async fn beside(&self, node: SocketAddr) -> Lossy {
        Self::with_weather(node, self.weather.clone()).await
    }

    async fn with_weather(node: SocketAddr, weather: Arc<Weather>) -> Lossy {
        let front = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP port");
        let addr = front.local_addr().expect("its address");
        let task = tokio::spawn(run(Arc::new(front), node, weather.clone()));
        Lossy {
            addr,
            weather,
            task,
        }
    }

    /// Where clients send to reach the node.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Each datagram is lost with probability `loss`, sent twice with probability
    /// `duplicate`, and each copy held back by a uniformly random delay up to `jitter`.
    pub fn weather(&self, loss: f64, jitter: Duration, duplicate: f64) {
        let w = &self.weather;
        w.loss_ppm.store(ppm(loss), Ordering::Relaxed);
        w.duplicate_ppm.store(ppm(duplicate), Ordering::Relaxed);
        let us = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX);
        w.max_delay_us.store(us, Ordering::Relaxed);
    }

    /// Drops datagrams with more than `bytes` of UDP payload, as a real path's MTU
    /// does (1,472 for a 1,500-byte Ethernet MTU): QUIC then sends more, smaller
    /// packets, as it would across a WAN, instead of loopback's jumbo ones.
    pub fn mtu(&self, bytes: usize) {
        self.weather.mtu.store(bytes as u64, Ordering::Relaxed);
    }

    /// Cuts the path both ways (`true`) or restores it (`false`).
    pub fn cut(&self, cut: bool) {
        self.weather.cut.store(cut, Ordering::Relaxed);
    }

    /// What has been done to the datagrams so far (on every path sharing this weather).
    pub fn counts(&self) -> Counts {
        self.weather.counts()
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
