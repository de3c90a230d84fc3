//! Inserts small keys in group commits, as renkei's storage thread does (20 keys of
//! 48-byte values per batch), into sled 0.34, fjall 3 or redb 5, and prints the
//! process's resident memory and the store's size on disk every 100,000 keys, for a
//! given cache size and key order. It answers one question: does the store's memory
//! stay within its cache, or grow with every key it holds?
//!
//! `store-memory sled|fjall|redb CACHE_MIB random|sequential [KEYS] [durable]`
//!
//! By default nothing is fsynced (every store alike): that measures memory and space,
//! not durable throughput. With `durable` each commit is made to survive a power cut
//! before the next (sled's flush, fjall's persist, redb's immediate commit), and each
//! sample also gives the commit time's p50, p99 and maximum: what the storage
//! thread's group commit would wait.

use std::time::Instant;

use anyhow::{bail, Context as _};

/// Keys per group commit, unless `BATCH` says otherwise (the soak's commits hold about
/// 20; a saturated node's, thousands).
fn batch() -> u64 {
    std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(20)
}
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
    /// Applies `keys` as one atomic batch; durable before it returns when `durable`.
    fn commit(&mut self, keys: Vec<Vec<u8>>, durable: bool) -> anyhow::Result<()>;
    fn disk_bytes(&self) -> anyhow::Result<u64>;
}

struct Sled {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store for Sled {
    fn commit(&mut self, keys: Vec<Vec<u8>>, durable: bool) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.insert(k, vec![7u8; 48]);
        }
        self.tree.apply_batch(batch)?;
        if durable {
            self.db.flush()?;
        }
        Ok(())
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
    fn commit(&mut self, keys: Vec<Vec<u8>>, durable: bool) -> anyhow::Result<()> {
        let mut batch = self.db.batch();
        for k in keys {
            batch.insert(&self.keyspace, k, vec![7u8; 48]);
        }
        batch.commit()?;
        if durable {
            self.db.persist(fjall::PersistMode::SyncAll)?;
        }
        Ok(())
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        self.db.persist(fjall::PersistMode::Buffer)?;
        Ok(self.db.disk_space()?)
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");

struct Redb {
    db: redb::Database,
    path: std::path::PathBuf,
}

impl Store for Redb {
    fn commit(&mut self, keys: Vec<Vec<u8>>, durable: bool) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(redb::Durability::None)?;
        }
        {
            let mut table = tx.open_table(REDB_TABLE)?;
            for k in keys {
                table.insert(&k[..], &[7u8; 48][..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
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
        "redb" => {
            let path = dir.join("state.redb");
            let db = redb::Builder::new()
                .set_cache_size((cache << 20) as usize)
                .create(&path)?;
            Box::new(Redb { db, path })
        }
        other => bail!("store {other:?}: sled, fjall or redb"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(engine), Some(cache), Some(order)) = (args.first(), args.get(1), args.get(2))
    else {
        bail!("usage: store-memory sled|fjall|redb CACHE_MIB random|sequential [KEYS] [durable]");
    };
    let cache: u64 = cache.parse().context("CACHE_MIB")?;
    let random = match order.as_str() {
        "random" => true,
        "sequential" => false,
        other => bail!("key order {other:?}: random or sequential"),
    };
    let keys: u64 = args.get(3).map_or(Ok(1_000_000), |k| k.parse())?;
    let durable = args.get(4).is_some_and(|d| d == "durable");
    let dir = tempfile::tempdir()?;
    let mut store = open(engine, dir.path(), cache)?;
    let batch = batch();
    let durability = if durable { "each commit durable" } else { "nothing fsynced" };
    println!("{engine}, cache {cache} MiB, {order} keys, 48-byte values, {batch} a batch, {durability}");
    println!(
        "{:>10} {:>9} {:>12} {:>12} {:>26}",
        "keys", "RSS MiB", "on disk MiB", "µs a key", "commit p50 / p99 / max ms"
    );
    let (mut n, mut started) = (0, Instant::now());
    let mut commits = Vec::with_capacity((SAMPLE / batch) as usize);
    while n < keys {
        let began = Instant::now();
        store.commit((n..n + batch).map(|i| key(i, random)).collect(), durable)?;
        commits.push(began.elapsed().as_secs_f64() * 1e3);
        n += batch;
        if n % SAMPLE == 0 {
            let per_key = started.elapsed().as_secs_f64() * 1e6 / SAMPLE as f64;
            let disk = store.disk_bytes()? >> 20;
            commits.sort_by(f64::total_cmp);
            let at = |q: f64| commits[((commits.len() - 1) as f64 * q) as usize];
            let times = format!("{:.2} / {:.2} / {:.2}", at(0.5), at(0.99), at(1.0));
            println!("{n:>10} {:>9} {disk:>12} {per_key:>12.2} {times:>26}", rss_mib()?);
            commits.clear();
            started = Instant::now();
        }
    }
    Ok(())
}
