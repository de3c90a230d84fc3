//! `renkei publish` and `renkei subscribe`: the command-line liaison client.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use super::BulletinFields;
use crate::bulletin::{self, Limits, UnverifiedBulletin};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::files;
use crate::identity;
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;

fn enum_name<E: TryFrom<i32>>(n: i32, name: fn(E) -> &'static str) -> String {
    E::try_from(n).map_or_else(|_| n.to_string(), |e| name(e).to_owned())
}

/// A PublishResult as one JSON object.
pub(crate) fn result_json(r: &proto::PublishResult) -> Value {
    let status = enum_name::<PublishStatus>(r.status, |s| s.as_str_name());
    let mut v = json!({
        "request_id": r.request_id,
        "status": status.trim_start_matches("PUBLISH_STATUS_").to_ascii_lowercase(),
        "bulletin_id": r.bulletin_id,
        "origin": r.origin,
        "digest": hex::encode(&r.digest),
        "shared_with": r.shared_with,
        "withheld": r.withheld.iter().map(|w| json!({
            "partner": w.partner,
            "reason": enum_name::<proto::WithholdReason>(w.reason, |r| r.as_str_name()),
            "detail": w.detail,
        })).collect::<Vec<_>>(),
    });
    if r.status == PublishStatus::Rejected as i32 {
        v["error"] = json!(enum_name::<proto::ErrorCode>(r.error, |e| e.as_str_name()));
        v["message"] = json!(r.message);
    }
    v
}

pub(super) async fn publish(
    config: &Path,
    fields: BulletinFields,
    file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = ClientConfig::load(config)?;
    let signed = match file {
        Some(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            proto::SignedBulletin::decode(Bytes::from(bytes))
                .with_context(|| format!("{} is not a SignedBulletin", path.display()))?
        }
        None => {
            let key_path = cfg
                .client
                .signing_key
                .as_ref()
                .context("client.signing_key is needed to sign a bulletin")?;
            let key = identity::signing_key_from_pem(&files::read_text(key_path)?)
                .with_context(|| key_path.display().to_string())?;
            let draft =
                super::bulletin::from_fields(fields, Some(&cfg.client.id), Timestamp::now())?;
            bulletin::sign(&draft, &key, &cfg.limits.bulletin_limits())
                .context("the bulletin is not valid")?
        }
    };
    let client = Client::connect(&cfg)
        .await
        .context("connecting to the node")?;
    let result = client.publish(signed).await;
    client.close().await;
    let result = result?;
    println!("{}", result_json(&result));
    if result.status == PublishStatus::Rejected as i32 {
        bail!("rejected: {}", result.message);
    }
    Ok(())
}

pub(super) async fn subscribe(
    config: &Path,
    count: Option<usize>,
    idle: Option<u64>,
) -> anyhow::Result<()> {
    let cfg = ClientConfig::load(config)?;
    let keys = cfg.keyring();
    let limits: Limits = cfg.limits.delivery_limits();
    let client = Client::connect(&cfg)
        .await
        .context("connecting to the node")?;
    let mut sub = client.subscribe(0).await?;
    let mut seen = HashSet::new();
    let mut printed = 0usize;
    let idle = idle.map(Duration::from_secs);
    while count.is_none_or(|n| printed < n) {
        let next = match idle {
            Some(d) => match tokio::time::timeout(d, sub.next()).await {
                Ok(r) => r?,
                Err(_) => break,
            },
            None => sub.next().await?,
        };
        let Some(delivery) = next else { break };
        let seq = delivery.seq;
        let Some(signed) = delivery.bulletin else {
            bail!("delivery {seq} carries no bulletin");
        };
        // Verify the origin's signature here too: the node is trusted to route, not to vouch.
        let line = match UnverifiedBulletin::from_signed(signed, &limits)
            .and_then(|u| u.verify(&keys, Timestamp::now(), &limits))
        {
            Ok(v) => {
                let h = v.header();
                let fresh = seen.insert((h.origin.clone(), h.id));
                fresh.then(|| {
                    json!({
                        "seq": seq, "id": h.id.to_string(), "origin": h.origin.to_string(),
                        "tlp": h.tlp.as_str(), "kind": h.kind.as_str(),
                        "title": v.bulletin().title, "digest": v.digest().to_string(), "verified": true,
                    })
                })
            }
            Err(e) => Some(json!({"seq": seq, "verified": false, "error": e.to_string()})),
        };
        if let Some(line) = line {
            println!("{line}");
            printed += 1;
        }
        sub.ack(vec![seq]).await?;
    }
    sub.close().await?;
    client.close().await;
    Ok(())
}
