//! `renkei audit receipts`: who signed for a bulletin. From a node's log (as its
//! auditor, or its stopped database) it lists every signed receipt of the bulletin the
//! node recorded, each verified again here with the keys given (`--key`, and a client
//! configuration's `[[partner]]` keys), and every partner it was shared with that
//! acknowledged it unsigned or not yet. `--out` writes the set; `--verify FILE` checks
//! such a set offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{connect, open_store, Source};
use crate::audit::Query;
use crate::bulletin::BulletinId;
use crate::client::Client;
use crate::identity::{Keyring, PartnerId, PublicKey, Validity};
use crate::proto::{self, AuditEvent};
use crate::receipt::{Expected, VerifiedReceipt};
use crate::store::Store;
use crate::timestamp::Timestamp;

/// The format name an exported set of receipts carries.
const FORMAT: &str = "renkei-receipts-v1";

/// Pages of one partner's acks read, at most, looking for its unsigned ack.
const ACK_PAGES: usize = 20;

/// What `renkei audit receipts` was asked.
pub(in crate::cli) struct ReceiptsArgs<'a> {
    /// The bulletin id (with a source), or nothing with `verify`.
    pub bulletin: Option<String>,
    /// An exported set to check offline.
    pub verify: Option<&'a Path>,
    /// Where to write the set.
    pub out: Option<PathBuf>,
    /// `ID=ed25519:…` keys to verify receipts with.
    pub keys: Vec<String>,
    /// A client configuration whose `[[partner]]` keys verify receipts too.
    pub keys_from: Option<&'a Path>,
    /// JSON instead of lines.
    pub json: bool,
}

/// The bulletin a set of receipts is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct About {
    origin: String,
    id: String,
    /// Hex SHA-256 of its signed bytes.
    digest: String,
}

/// One receipt as exported: the record that holds it and its bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kept {
    /// The ACKED record's seq in the log.
    record: u64,
    /// Base64 of the encoded SignedReceipt.
    signed: String,
}

/// A set of receipts, as `--out` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Exported {
    format: String,
    bulletin: About,
    receipts: Vec<Kept>,
    /// Partners it was shared with that acknowledged it unsigned (with the record).
    unsigned: BTreeMap<String, u64>,
    /// Partners it was shared with whose ack was not found.
    unacknowledged: Vec<String>,
}

/// Runs `renkei audit receipts`.
pub(in crate::cli) async fn receipts(
    source: Option<Source<'_>>,
    a: ReceiptsArgs<'_>,
) -> anyhow::Result<()> {
    let set = match (a.verify, source, &a.bulletin) {
        (Some(file), None, None) => read_set(file)?,
        (None, Some(source), Some(id)) => gather(source, id).await?,
        _ => bail!("give --bulletin ID with --config or --data-dir, or --verify FILE alone"),
    };
    if let Some(out) = &a.out {
        let text = serde_json::to_string_pretty(&set)?;
        crate::files::write(out, text.as_bytes(), crate::files::Access::Private, true)?;
    }
    let keys = keyring(&a.keys, a.keys_from)?;
    let checked = check(&set, &keys);
    print(&set, &checked, a.json);
    match checked.iter().any(|c| c.verdict.starts_with("BAD")) {
        true => bail!("a receipt does not verify"),
        false => Ok(()),
    }
}

fn read_set(file: &Path) -> anyhow::Result<Exported> {
    let text = crate::files::read_text(file)?;
    let set: Exported = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a set of receipts", file.display()))?;
    if set.format != FORMAT {
        bail!("{} is {:?}, not {FORMAT}", file.display(), set.format);
    }
    Ok(set)
}

/// The keys to verify with: `ID=KEY` arguments and a configuration's partners'.
fn keyring(given: &[String], config: Option<&Path>) -> anyhow::Result<Keyring> {
    let mut keys = match config {
        Some(c) => crate::config::ClientConfig::load(c)?.keyring(),
        None => Keyring::new(),
    };
    for k in given {
        let (id, key) = k
            .split_once('=')
            .with_context(|| format!("--key {k:?}: give ID=ed25519:…"))?;
        let id: PartnerId = id.parse().with_context(|| format!("--key {k:?}"))?;
        let key: PublicKey = key.parse().with_context(|| format!("--key {k:?}"))?;
        keys.insert(id, key, Validity::default());
    }
    Ok(keys)
}

/// Where the records are read from.
enum Reader {
    Node(Client),
    Store(Box<Store>),
}

impl Reader {
    async fn page(&self, q: &Query) -> anyhow::Result<(Vec<proto::AuditRecord>, Option<u64>)> {
        let (records, next) = match self {
            Reader::Node(c) => {
                let page = c.audit_query(q.to_wire()).await?;
                (page.records, page.next_after)
            }
            Reader::Store(s) => {
                let page = s.audit().query(q)?;
                (page.records, page.next_after)
            }
        };
        let decoded = records
            .into_iter()
            .map(proto::AuditRecord::decode)
            .collect::<Result<_, _>>()
            .context("a record does not decode")?;
        Ok((decoded, next))
    }

    /// The records `q` matches, at most `pages` pages of them.
    async fn every(&self, mut q: Query, pages: usize) -> anyhow::Result<Vec<proto::AuditRecord>> {
        let mut all = Vec::new();
        for _ in 0..pages {
            let (records, next) = self.page(&q).await?;
            all.extend(records);
            match next {
                Some(after) => q.after = Some(after),
                None => break,
            }
        }
        Ok(all)
    }
}

fn query() -> Query {
    Query {
        partner: None,
        bulletin: None,
        event: None,
        since: None,
        until: None,
        after: None,
        limit: crate::audit::MAX_PAGE,
    }
}

/// Reads the bulletin's receipts, and the acks of the partners it was shared with that
/// gave none, from the log.
async fn gather(source: Source<'_>, id: &str) -> anyhow::Result<Exported> {
    let bulletin = BulletinId::parse_canonical(id)
        .with_context(|| format!("--bulletin {id:?} is not a canonical UUID"))?;
    let reader = match source {
        Source::Node(config) => Reader::Node(connect(config).await?),
        Source::DataDir(dir) => Reader::Store(Box::new(open_store(dir)?)),
    };
    let about = Query {
        bulletin: Some(bulletin),
        ..query()
    };
    let records = reader.every(about, usize::MAX).await?;
    let accepted = records
        .iter()
        .find(|r| r.event == AuditEvent::BulletinAccepted as i32)
        .with_context(|| format!("the log holds no acceptance of bulletin {id}"))?;
    let mut set = Exported {
        format: FORMAT.into(),
        bulletin: About {
            origin: accepted.origin.clone(),
            id: accepted.bulletin_id.clone(),
            digest: hex::encode(&accepted.digest),
        },
        receipts: receipts_in(&records, &accepted.bulletin_seqs),
        unsigned: BTreeMap::new(),
        unacknowledged: Vec::new(),
    };
    unsigned_acks(&reader, accepted, &mut set).await?;
    if let Reader::Node(c) = reader {
        c.close().await;
    }
    Ok(set)
}

/// The receipts of the stored bulletin `seqs` names that the log holds: with its acks,
/// and passed back by peers (each once: a peer may pass one back twice).
fn receipts_in(records: &[proto::AuditRecord], seqs: &[u64]) -> Vec<Kept> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let holds = [AuditEvent::Acked as i32, AuditEvent::ReceiptsPassed as i32];
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .filter(|r| holds.contains(&r.event))
        .flat_map(|r| r.receipts.iter().map(move |x| (r.seq, x)))
        .filter(|(_, x)| seqs.contains(&x.seq))
        .filter_map(|(record, x)| {
            let signed = x.receipt.as_ref()?.encode_to_vec();
            let signed = b64.encode(signed);
            seen.insert(signed.clone())
                .then_some(Kept { record, signed })
        })
        .collect()
}

/// Looks for the ack of every partner the bulletin was shared with that gave no
/// receipt: unsigned, or not found (not yet acknowledged, or beyond the pages read).
async fn unsigned_acks(
    reader: &Reader,
    accepted: &proto::AuditRecord,
    set: &mut Exported,
) -> anyhow::Result<()> {
    let signed: Vec<String> = receivers(set);
    let seq = accepted.bulletin_seqs.first().copied().unwrap_or_default();
    for d in accepted.decisions.iter().filter(|d| d.shared) {
        if signed.contains(&d.partner) {
            continue;
        }
        let acks = Query {
            partner: Some(d.partner.parse()?),
            event: Some(AuditEvent::Acked),
            since: Some(Timestamp::from_unix_ms(accepted.time_unix_ms)),
            ..query()
        };
        let found = reader.every(acks, ACK_PAGES).await?;
        match found.iter().find(|r| r.bulletin_seqs.contains(&seq)) {
            Some(r) => set.unsigned.insert(d.partner.clone(), r.seq),
            None => {
                set.unacknowledged.push(d.partner.clone());
                None
            }
        };
    }
    Ok(())
}

/// Who signed the receipts of a set, as their bodies say.
fn receivers(set: &Exported) -> Vec<String> {
    set.receipts
        .iter()
        .filter_map(|k| decode(k).ok())
        .filter_map(|s| crate::receipt::stated(&s))
        .map(|b| b.receiver)
        .collect()
}

fn decode(k: &Kept) -> anyhow::Result<proto::SignedReceipt> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(&k.signed)?;
    Ok(proto::SignedReceipt::decode(bytes.as_slice())?)
}

/// One receipt, checked here.
struct Checked {
    record: u64,
    body: proto::ReceiptBody,
    /// "verified with KEY", "not checked: …" or "BAD: …".
    verdict: String,
}

/// Checks every receipt of `set` with `keys` and against the bulletin it is about.
fn check(set: &Exported, keys: &Keyring) -> Vec<Checked> {
    set.receipts
        .iter()
        .map(|k| {
            let signed = match decode(k) {
                Ok(s) => s,
                Err(e) => return bad(k.record, Default::default(), e.to_string()),
            };
            let body = crate::receipt::stated(&signed).unwrap_or_default();
            let verdict = verdict(&signed, &body, &set.bulletin, keys);
            Checked {
                record: k.record,
                body,
                verdict,
            }
        })
        .collect()
}

fn bad(record: u64, body: proto::ReceiptBody, why: String) -> Checked {
    Checked {
        record,
        body,
        verdict: format!("BAD: {why}"),
    }
}

/// What a receipt is worth here: verified with a key given, not checkable for want of
/// one, or bad (a forged signature, or a receipt of something else).
fn verdict(
    signed: &proto::SignedReceipt,
    body: &proto::ReceiptBody,
    about: &About,
    keys: &Keyring,
) -> String {
    let (Ok(receiver), Ok(node)) = (body.receiver.parse(), body.node.parse()) else {
        return "BAD: the receipt names no partner or node".into();
    };
    let digest = hex::decode(&about.digest).unwrap_or_default();
    let expected = Expected {
        receiver: &receiver,
        node: &node,
        origin: &about.origin,
        bulletin_id: &about.id,
        digest: &digest,
    };
    match VerifiedReceipt::verify(signed, keys).and_then(|v| v.is_of(&expected).map(|()| v)) {
        Ok(v) => format!("verified with {}", v.key()),
        Err(crate::receipt::ReceiptError::Key(crate::identity::KeyLookupError::Unknown {
            ..
        })) => format!(
            "not checked: no key of {receiver} given here (--key {receiver}=ed25519:…); its node verified it when it recorded it"
        ),
        Err(e) => format!("BAD: {e}"),
    }
}

fn print(set: &Exported, checked: &[Checked], json: bool) {
    let b = &set.bulletin;
    if json {
        let receipts: Vec<Value> = checked
            .iter()
            .map(|c| {
                let received = Timestamp::from_unix_ms(c.body.received_unix_ms).to_string();
                json!({"record": c.record, "receiver": c.body.receiver, "node": c.body.node,
                       "received": received, "verdict": c.verdict})
            })
            .collect();
        let v = json!({"bulletin": {"origin": b.origin, "id": b.id, "digest": b.digest},
            "receipts": receipts, "unsigned": set.unsigned, "unacknowledged": set.unacknowledged});
        emitln!("{v}");
        return;
    }
    emitln!("receipts of {}/{} (digest {}):", b.origin, b.id, b.digest);
    for c in checked {
        let at = Timestamp::from_unix_ms(c.body.received_unix_ms);
        emitln!(
            "  {} at {}, {} (record {}): {}",
            c.body.receiver,
            c.body.node,
            at,
            c.record,
            c.verdict
        );
    }
    for (partner, record) in &set.unsigned {
        emitln!("  {partner}: acknowledged WITHOUT a signed receipt (record {record})");
    }
    for partner in &set.unacknowledged {
        emitln!("  {partner}: no acknowledgement found");
    }
}
