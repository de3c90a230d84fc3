//! `renkei policy explain`: who would receive a bulletin under a node's policy, and why
//! not, without a running node.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::json;

use crate::bulletin::UnverifiedBulletin;
use crate::config::NodeConfig;
use crate::identity::{PartnerId, Role};
use crate::policy::{Decision, Policy, Route};
use crate::timestamp::Timestamp;

pub(super) fn explain(
    config: &Path,
    file: &Path,
    from: Option<&PartnerId>,
    as_json: bool,
) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let limits = cfg.limits.bulletin_limits();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let unverified = UnverifiedBulletin::decode(Bytes::from(bytes), &limits)
        .with_context(|| file.display().to_string())?;
    let header = unverified.header().clone();
    let received_from = from.unwrap_or(&header.origin).clone();
    // The policy applies to verified bulletins only; say plainly when this one is not.
    let signature = match unverified.verify(&cfg.keyring(), Timestamp::now(), &limits) {
        Ok(v) => format!("valid, signed by {}", v.key()),
        Err(e) => {
            format!("NOT VALID ({e}); a node would reject it, the decisions below are hypothetical")
        }
    };
    let policy = Policy::from_config(&cfg);
    let role = cfg
        .partner(&received_from)
        .map_or(Role::Liaison, |p| p.role);
    let path = Route::crossed(Vec::new(), &received_from, role);
    let route = Route {
        received_from: &received_from,
        path: &path,
    };
    let decisions: Vec<_> = policy.decide_all(&header, route).collect();
    if as_json {
        let rows: Vec<_> = decisions
            .iter()
            .map(|(p, d)| match d {
                Decision::Share => json!({"partner": p.to_string(), "decision": "share"}),
                Decision::Withhold(w) => json!({
                    "partner": p.to_string(),
                    "decision": "withhold",
                    "reason": w.code().as_str_name(),
                    "detail": w.to_string(),
                }),
            })
            .collect();
        let out = json!({
            "bulletin": header.id.to_string(),
            "origin": header.origin.to_string(),
            "received_from": received_from.to_string(),
            "tlp": header.tlp.as_str(),
            "kind": header.kind.as_str(),
            "signature": signature,
            "decisions": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "bulletin {} from {} (received from {}): {} {}",
        header.id, header.origin, received_from, header.tlp, header.kind
    );
    println!("signature: {signature}");
    let width = decisions
        .iter()
        .map(|(p, _)| p.as_str().len())
        .max()
        .unwrap_or(0);
    for (partner, decision) in &decisions {
        match decision {
            Decision::Share => println!("  {partner:<width$}  share"),
            Decision::Withhold(w) => println!("  {partner:<width$}  withhold  {w}"),
        }
    }
    Ok(())
}
