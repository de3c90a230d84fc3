//! `renkei audit …`: query, export, verify and prove the audit log, from a running node
//! (as an auditor, `--config`) or from a stopped node's database (`--data-dir`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use crate::audit::checkpoint;
use crate::audit::export;
use crate::audit::merkle::{self, TreeHash};
use crate::audit::Query;
use crate::client::Client;
use crate::config::ClientConfig;
use crate::identity::PartnerId;
use crate::node::audit_origin;
use crate::proto::{self, AuditEvent};
use crate::store::Store;
use crate::timestamp::Timestamp;

mod exporting;
mod receipts;
mod recount;
mod rotate;
mod run;
mod verify;
mod view;
mod witnessed;

pub(super) use run::run_audit;

pub(super) use receipts::{receipts, ReceiptsArgs};
pub(super) use recount::{recount, RecountArgs};
pub(super) use rotate::rotate_key;
pub(super) use verify::{check, check_file_of, verify, verify_node, Verdict, VerifyArgs};
pub(super) use view::record_json;
use view::table_line;
pub(super) use witnessed::Witnesses;

/// Where the log is read from.
pub(super) enum Source<'a> {
    /// A running node, asked by an auditor.
    Node(&'a Path),
    /// A stopped node's database.
    DataDir(&'a Path),
}

impl<'a> Source<'a> {
    pub(super) fn new(
        config: Option<&'a Path>,
        data_dir: Option<&'a Path>,
    ) -> anyhow::Result<Self> {
        match (config, data_dir) {
            (Some(c), None) => Ok(Source::Node(c)),
            (None, Some(d)) => Ok(Source::DataDir(d)),
            _ => bail!("give either --config (a running node) or --data-dir (a stopped node)"),
        }
    }
}

pub(super) async fn connect(config: &Path) -> anyhow::Result<Client> {
    let cfg = ClientConfig::load(config)?;
    Ok(Client::connect(&cfg).await?)
}

pub(super) fn open_store(dir: &Path) -> anyhow::Result<Store> {
    if !Store::is_in(dir) {
        bail!("{} holds no renkei database", dir.display());
    }
    Store::open(dir, 64 << 20).with_context(|| {
        format!(
            "opening {} (a running node holds it: ask it with --config instead)",
            dir.display()
        )
    })
}

/// Parses `--event`: an AuditEvent name such as `bulletin_accepted` or `acked`.
pub(super) fn parse_event(s: &str) -> anyhow::Result<AuditEvent> {
    let name = format!(
        "AUDIT_EVENT_{}",
        s.trim().to_ascii_uppercase().replace('-', "_")
    );
    AuditEvent::from_str_name(&name)
        .filter(|e| *e != AuditEvent::Unspecified)
        .ok_or_else(|| {
            // Every event the protocol defines (its values run from 1 without a gap).
            let all: Vec<String> = (1..)
                .map_while(|n| AuditEvent::try_from(n).ok())
                .map(event_name)
                .collect();
            anyhow::anyhow!("{s:?} is not an audit event: use one of {}", all.join(", "))
        })
}

fn event_name(e: AuditEvent) -> String {
    e.as_str_name()
        .trim_start_matches("AUDIT_EVENT_")
        .to_ascii_lowercase()
}

/// Parses a time bound: RFC 3339, or a date (`YYYY-MM-DD`, its first or last instant).
pub(super) fn parse_time(s: &str, end_of_day: bool) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let day: Timestamp = format!("{s}T00:00:00Z")
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
    Ok(if end_of_day {
        Timestamp::from_unix_ms(day.unix_ms() + 86_400_000 - 1)
    } else {
        day
    })
}

/// What `audit query` asks for.
pub(super) struct QueryArgs {
    pub partner: Option<PartnerId>,
    pub bulletin: Option<String>,
    pub event: Option<AuditEvent>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<u64>,
    pub limit: usize,
    pub json: bool,
}

pub(super) async fn query(source: Source<'_>, a: QueryArgs) -> anyhow::Result<()> {
    let bulletin = match &a.bulletin {
        Some(b) => Some(
            crate::bulletin::BulletinId::parse_canonical(b)
                .ok_or_else(|| anyhow::anyhow!("--bulletin {b:?} is not a canonical UUID"))?,
        ),
        None => None,
    };
    let q = Query {
        partner: a.partner,
        bulletin,
        event: a.event,
        since: a
            .since
            .as_deref()
            .map(|s| parse_time(s, false))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_time(s, true))
            .transpose()?,
        after: a.after,
        limit: a.limit.clamp(1, crate::audit::MAX_PAGE),
    };
    let partner = q.partner.clone();
    let (records, next_after, names) = match source {
        Source::Node(config) => {
            let client = connect(config).await?;
            let page = client.audit_query(q.to_wire()).await?;
            client.close().await;
            (page.records, page.next_after, page.bulletins)
        }
        Source::DataDir(dir) => {
            let store = open_store(dir)?;
            let page = store.audit().query(&q)?;
            let names = store.bulletin_names(&page.records)?;
            (page.records, page.next_after, names)
        }
    };
    let names: HashMap<u64, proto::BulletinName> = names.into_iter().map(|n| (n.seq, n)).collect();
    if !a.json {
        emitln!(
            "{:>8}  {:<23}  {:<19}  {:<14}  {:<51}  detail",
            "seq",
            "time (UTC)",
            "event",
            "partner",
            "bulletin"
        );
    }
    for bytes in records {
        let r = proto::AuditRecord::decode(bytes)
            .context("the node sent a record that does not decode")?;
        if a.json {
            let mut v = record_json(&r);
            let named: Vec<Value> = r
                .bulletin_seqs
                .iter()
                .filter(|_| r.bulletin_id.is_empty())
                .filter_map(|s| names.get(s))
                .map(|n| json!({"seq": n.seq, "origin": n.origin, "id": n.id, "title": n.title}))
                .collect();
            if !named.is_empty() {
                v["bulletins"] = json!(named);
            }
            emitln!("{v}");
        } else {
            emitln!("{}", table_line(&r, &names, partner.as_ref()));
        }
    }
    if let Some(n) = next_after {
        if a.json {
            emitln!("{}", json!({"next_after": n}));
        } else {
            emitln!("(more: --after {n})");
        }
    }
    Ok(())
}

fn key_from(bytes: &[u8]) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a public key of {} bytes, not 32", bytes.len()))?;
    Ok(ed25519_dalek::VerifyingKey::from_bytes(&arr)?)
}

/// `renkei audit export`: written to `out` as it is read, and only then given its
/// name.
pub(super) async fn export(source: Source<'_>, out: &Path) -> anyhow::Result<()> {
    let mut staged = crate::files::Staged::create(out, crate::files::Access::Private, false)?;
    let written = exporting::write_export(source, staged.writer()).await?;
    staged.finish()?;
    emitln!(
        "{}",
        json!({"file": out.display().to_string(), "records": written.records, "checkpoints": written.checkpoints})
    );
    Ok(())
}

pub(super) async fn checkpoint(source: Source<'_>, witnesses: &Witnesses) -> anyhow::Result<()> {
    if witnesses.asked() {
        // Checked as it streams from a temporary export, never held whole.
        let tmp = verify::export_to_temp(source).await?;
        let (outline, summary) = verify::verify_file(tmp.path(), None)?;
        let key = export::header_key(&outline.header)?;
        let w = witnesses.newest(&outline.checkpoints, &summary.node_id, &key)?;
        print!("{}", w.note);
        eprintln!(
            "renkei: the checkpoint of {} records is cosigned by {}",
            w.size,
            w.by.join(", ")
        );
        return Ok(());
    }
    let note = match source {
        Source::Node(config) => {
            let client = connect(config).await?;
            let c = client.checkpoint().await?;
            client.close().await;
            c.note
        }
        Source::DataDir(dir) => {
            let store = open_store(dir)?;
            let latest = store.audit().latest_checkpoint()?;
            latest
                .ok_or_else(|| anyhow::anyhow!("no checkpoint has been signed yet"))?
                .1
        }
    };
    print!("{note}");
    Ok(())
}

pub(super) async fn prove(source: Source<'_>, seq: u64) -> anyhow::Result<()> {
    let (node_id, key, p) = match source {
        Source::Node(config) => {
            let client = connect(config).await?;
            let node_id = client.hello().await?.node_id;
            let key = key_from(&client.checkpoint().await?.public_key)?;
            let p = client.inclusion_proof(seq, 0).await?;
            client.close().await;
            (node_id, key, p)
        }
        Source::DataDir(dir) => {
            let store = open_store(dir)?;
            let (id, key) = store
                .identity()?
                .ok_or_else(|| anyhow::anyhow!("{} was never run as a node", dir.display()))?;
            let log = store.audit();
            let (size, note) = log
                .latest_checkpoint()?
                .ok_or_else(|| anyhow::anyhow!("no checkpoint has been signed yet"))?;
            if seq >= size {
                bail!("record {seq} is not covered by the latest checkpoint (size {size})");
            }
            let hashes = log.prove_inclusion(size, seq)?;
            let record = log
                .record(seq)?
                .ok_or_else(|| anyhow::anyhow!("no record {seq}"))?;
            let p = proto::InclusionProof {
                seq,
                tree_size: size,
                record,
                hashes: hashes
                    .iter()
                    .map(|h| Bytes::copy_from_slice(&h.0))
                    .collect(),
                checkpoint: note,
            };
            (id.to_string(), key, p)
        }
    };
    emitln!("{}", proof_json(&node_id, &key, &p)?);
    Ok(())
}

/// Checks that the proof `p` leads from its record to the root of its checkpoint,
/// signed by `key` for `node_id`, and describes it; fails if it does not.
pub(super) fn proof_json(
    node_id: &str,
    key: &ed25519_dalek::VerifyingKey,
    p: &proto::InclusionProof,
) -> anyhow::Result<Value> {
    let signed = checkpoint::verify(&p.checkpoint, &audit_origin(&node_id.parse()?), key)?;
    let hashes = p
        .hashes
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_ref()).map(TreeHash))
        .collect::<Result<Vec<_>, _>>()
        .context("a proof hash is not 32 bytes")?;
    let leaf = merkle::leaf_hash(&p.record);
    merkle::check_inclusion(&hashes, signed.size, signed.root, p.seq, leaf)
        .context("the inclusion proof does not verify")?;
    let record = proto::AuditRecord::decode(p.record.clone())?;
    Ok(json!({
        "seq": p.seq,
        "tree_size": signed.size,
        "root": signed.root.to_string(),
        "leaf_hash": leaf.to_string(),
        "proof": hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "record": record_json(&record),
        "record_hex": hex::encode(&p.record),
        "checkpoint": p.checkpoint,
        "verified": true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_offered_and_taken() {
        let refused = parse_event("no-such-event").unwrap_err().to_string();
        for name in ["link_up", "link_down", "withdrawn", "peer_refused"] {
            assert!(refused.contains(name), "{name} missing from {refused}");
        }
        assert_eq!(
            parse_event("peer-refused").ok(),
            Some(AuditEvent::PeerRefused)
        );
    }
}
