//! `renkei audit export`: the log written out as it is read, a page at a time, from a
//! running node (as an auditor) or a stopped node's database. The records are never
//! held together, so a log of any length exports, and `audit verify` checks a node's
//! log, in little memory.
//!
//! The file is the header, each record, then the checkpoints that cover them
//! (`proto/README.md`).

use std::io::Write;

use anyhow::{bail, Context as _};
use bytes::Bytes;

use super::{connect, key_from, open_store, Source};
use crate::audit::checkpoint;
use crate::audit::export::{self, FORMAT};
use crate::node::audit_origin;
use crate::proto::{self, export_item::Item};
use crate::timestamp::Timestamp;

/// What an export holds.
pub(super) struct Written {
    pub records: u64,
    pub checkpoints: usize,
}

/// Writes the export of `source`'s log to `out`.
pub(super) async fn write_export(
    source: Source<'_>,
    out: &mut impl Write,
) -> anyhow::Result<Written> {
    match source {
        Source::Node(config) => from_node(config, out).await,
        Source::DataDir(dir) => from_store(dir, out),
    }
}

/// Writes one item of the export.
fn item(out: &mut impl Write, item: Item) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    export::write_item(&mut bytes, item);
    out.write_all(&bytes).context("writing the export")
}

fn header(
    out: &mut impl Write,
    node_id: &str,
    key: &ed25519_dalek::VerifyingKey,
    records: u64,
) -> anyhow::Result<()> {
    let header = proto::ExportHeader {
        format: FORMAT.into(),
        origin: audit_origin(&node_id.parse()?),
        node_id: node_id.to_owned(),
        public_key: Bytes::copy_from_slice(key.as_bytes()),
        records,
        exported_unix_ms: Timestamp::now().unix_ms(),
    };
    item(out, Item::Header(header))
}

/// A running node's log: a fresh checkpoint first, then exactly the records it covers,
/// page by page, then that checkpoint (and the newest a witness cosigned, if any).
async fn from_node(config: &std::path::Path, out: &mut impl Write) -> anyhow::Result<Written> {
    let client = connect(config).await?;
    let node_id = client.hello().await?.node_id;
    let signed = client.checkpoint().await?;
    let key = key_from(&signed.public_key)?;
    let size = checkpoint::verify(&signed.note, &audit_origin(&node_id.parse()?), &key)
        .context("the node's checkpoint")?
        .size;
    header(out, &node_id, &key, size)?;
    let mut written = 0u64;
    while written < size {
        let q = proto::AuditQuery {
            after: written.checked_sub(1),
            limit: crate::audit::MAX_PAGE as u32,
            ..Default::default()
        };
        let page = client.audit_query(q).await?;
        if page.records.is_empty() {
            bail!("the node sent {written} records, its checkpoint covers {size}");
        }
        for r in page.records.into_iter().take((size - written) as usize) {
            item(out, Item::Record(r))?;
            written += 1;
        }
    }
    let mut checkpoints = vec![signed.note];
    if let Ok(w) = client.witnessed_checkpoint().await {
        match checkpoint::stated(&w.note)?.size {
            s if s == size => checkpoints = vec![w.note],
            s if s < size => checkpoints.insert(0, w.note),
            _ => {}
        }
    }
    client.close().await;
    for c in &checkpoints {
        item(out, Item::Checkpoint(c.clone()))?;
    }
    Ok(Written {
        records: size,
        checkpoints: checkpoints.len(),
    })
}

/// A stopped node's log: every record, then every checkpoint it signed.
fn from_store(dir: &std::path::Path, out: &mut impl Write) -> anyhow::Result<Written> {
    let store = open_store(dir)?;
    let (id, key) = store
        .identity()?
        .ok_or_else(|| anyhow::anyhow!("{} was never run as a node", dir.display()))?;
    let log = store.audit();
    let size = log.size()?;
    header(out, id.as_str(), &key, size)?;
    let mut written = 0u64;
    for r in log.records_from(0).take(size as usize) {
        item(out, Item::Record(r?))?;
        written += 1;
    }
    if written != size {
        bail!("the log holds {written} records, its size says {size}");
    }
    let mut checkpoints = 0;
    for c in log.checkpoints() {
        let (_, note) = c?;
        item(out, Item::Checkpoint(note))?;
        checkpoints += 1;
    }
    Ok(Written {
        records: size,
        checkpoints,
    })
}
