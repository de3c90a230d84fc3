//! Inserts small keys in group commits, as renkei's storage thread does (20 keys of
//! 48-byte values per batch), into sled 0.34 or fjall 3, and prints the process's
//! resident memory and the store's size on disk every 100,000 keys, for a given cache
//! size and key order. It answers one question: does the store's memory stay within
//! its cache, or grow with every key it holds?
//!
//! `store-memory sled|fjall CACHE_MIB random|sequential [KEYS]`
//!
//! Nothing is fsynced (both stores alike): this measures memory and space, not
//! durable throughput.

use std::time::Instant;

use anyhow::{bail, Context as _};

/// Keys per group commit.
const BATCH: u64 = 20;
/// Keys between samples.
const SAMPLE: u64 = 100_000;
/// fjall's memtable, flushed to a sorted file when full.
const MEMTABLE: u64 = 16 << 20;

/// Resident memory of this process, in MiB.
fn rss_mib() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()?;
    Ok((pages * 4096) >> 20)
}

/// Key `n`: a random-looking 16-byte id (as a bulletin id is) or a big-endian seq.
fn key(n: u64, random: bool) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    if random {
        // SplitMix64: distinct for distinct n, spread over the whole key space.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        k.extend_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    }
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// A store under test: one atomic batch at a time, and its size on disk.
trait Store {
    fn commit(&mut self, keys: Vec<Vec<u8>>) -> anyhow::Result<()>;
    fn disk_bytes(&self) -> anyhow::Result<u64>;
}

struct Sled {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store for Sled {
    fn commit(&mut self, keys: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.insert(k, vec![7u8; 48]);
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        self.db.flush()?;
        Ok(self.db.size_on_disk()?)
    }
}

struct Fjall {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

impl Store for Fjall {
    fn commit(&mut self, keys: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let mut batch = self.db.batch();
        for k in keys {
            batch.insert(&self.keyspace, k, vec![7u8; 48]);
        }
        Ok(batch.commit()?)
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        self.db.persist(fjall::PersistMode::Buffer)?;
        Ok(self.db.disk_space()?)
    }
}

fn open(engine: &str, dir: &std::path::Path, cache: u64) -> anyhow::Result<Box<dyn Store>> {
    Ok(match engine {
        "sled" => {
            let db = sled::Config::new()
                .path(dir)
                .cache_capacity(cache << 20)
                .open()?;
            let tree = db.open_tree("state")?;
            Box::new(Sled { db, tree })
        }
        "fjall" => {
            let db = fjall::Database::builder(dir).cache_size(cache << 20).open()?;
            // Its memtable (64 MiB by default) counts against the same budget.
            let options = || fjall::KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE);
            let keyspace = db.keyspace("state", options)?;
            Box::new(Fjall { db, keyspace })
        }
        other => bail!("store {other:?}: sled or fjall"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(engine), Some(cache), Some(order)) = (args.first(), args.get(1), args.get(2))
    else {
        bail!("usage: store-memory sled|fjall CACHE_MIB random|sequential [KEYS]");
    };
    let cache: u64 = cache.parse().context("CACHE_MIB")?;
    let random = match order.as_str() {
        "random" => true,
        "sequential" => false,
        other => bail!("key order {other:?}: random or sequential"),
    };
    let keys: u64 = args.get(3).map_or(Ok(1_000_000), |k| k.parse())?;
    let dir = tempfile::tempdir()?;
    let mut store = open(engine, dir.path(), cache)?;
    println!("{engine}, cache {cache} MiB, {order} keys, 48-byte values, {BATCH} a batch");
    println!("{:>10} {:>9} {:>12} {:>12}", "keys", "RSS MiB", "on disk MiB", "µs a key");
    let (mut n, mut started) = (0, Instant::now());
    while n < keys {
        store.commit((n..n + BATCH).map(|i| key(i, random)).collect())?;
        n += BATCH;
        if n % SAMPLE == 0 {
            let per_key = started.elapsed().as_secs_f64() * 1e6 / SAMPLE as f64;
            let disk = store.disk_bytes()? >> 20;
            println!("{n:>10} {:>9} {disk:>12} {per_key:>12.2}", rss_mib()?);
            started = Instant::now();
        }
    }
    Ok(())
}
