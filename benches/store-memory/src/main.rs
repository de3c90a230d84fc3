//! Inserts small keys into sled 0.34 in group commits, as renkei's storage thread
//! does (20 keys of 48-byte values per batch, then a flush every 20,000), and prints
//! the process's resident memory as the key count grows, for a given cache size and
//! key order. It answers one question: does sled's memory stay within its
//! `cache_capacity`, or grow with every key it holds?
//!
//! `sled-memory CACHE_MIB random|sequential [KEYS]`

use anyhow::{bail, Context as _};

/// Keys per group commit.
const BATCH: u64 = 20;
/// Keys between samples.
const SAMPLE: u64 = 100_000;

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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cache), Some(order)) = (args.first(), args.get(1)) else {
        bail!("usage: sled-memory CACHE_MIB random|sequential [KEYS]");
    };
    let cache: u64 = cache.parse().context("CACHE_MIB")?;
    let random = match order.as_str() {
        "random" => true,
        "sequential" => false,
        other => bail!("key order {other:?}: random or sequential"),
    };
    let keys: u64 = args.get(2).map_or(Ok(1_000_000), |k| k.parse())?;
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache << 20)
        .open()?;
    let tree = db.open_tree("state")?;
    println!("sled 0.34, cache {cache} MiB, {order} keys, 48-byte values");
    println!("{:>10} {:>9} {:>10}", "keys", "RSS MiB", "sled file MiB");
    let mut n = 0;
    while n < keys {
        let mut batch = sled::Batch::default();
        for _ in 0..BATCH {
            batch.insert(key(n, random), vec![7u8; 48]);
            n += 1;
        }
        tree.apply_batch(batch)?;
        if n % SAMPLE == 0 {
            db.flush()?;
            println!("{n:>10} {:>9} {:>10}", rss_mib()?, db.size_on_disk()? >> 20);
        }
    }
    Ok(())
}
