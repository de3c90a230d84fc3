//! The policy digest: one SHA-256 over a canonical text of everything a reload puts in
//! force that decides who gets what (partners, origins, revocations, the hop limit,
//! disclosure), so that CONFIG_LOADED names exactly the rules behind each decision.
//!
//! Pure. Lines added since the first digests are written only when their table differs
//! from its default, so a configuration without them keeps the digest it always had.

use sha2::Digest as _;

use super::{NodeConfig, OriginConfig, PartnerConfig, Revoked};
use crate::identity::PartnerId;

/// Sorted, comma-joined.
fn sorted(items: impl IntoIterator<Item = String>) -> String {
    let mut items: Vec<String> = items.into_iter().collect();
    items.sort();
    items.join(",")
}

fn keys(keys: &[super::KeyConfig]) -> String {
    sorted(
        keys.iter()
            .map(|k| format!("{}@{}", k.public, k.validity())),
    )
}

fn partner_line(p: &PartnerConfig) -> String {
    // Only when pinned, so configurations without pins keep their digest.
    let pin = p
        .tls_fingerprint
        .map(|f| format!(" tls_fingerprint={f}"))
        .unwrap_or_default();
    let kinds = match &p.kinds {
        Some(kinds) => sorted(kinds.iter().map(ToString::to_string)),
        None => "all".into(),
    };
    format!(
        "partner {} role={} clearance={} kinds={kinds} deny_tags={} groups={} keys={}{pin}",
        p.id,
        p.role,
        p.clearance.map_or("none".into(), |t| t.to_string()),
        sorted(p.deny_tags.iter().map(|t| t.to_lowercase())),
        sorted(p.groups.iter().map(ToString::to_string)),
        keys(&p.keys),
    )
}

/// One origin's line: its keys, the peers it comes through and its groups.
pub(super) fn origin_line(o: &OriginConfig) -> String {
    format!(
        "origin {} via={} groups={} keys={}",
        o.id,
        sorted(o.via.iter().map(PartnerId::to_string)),
        sorted(o.groups.iter().map(ToString::to_string)),
        keys(&o.keys)
    )
}

/// The digest of `cfg`'s sharing policy.
pub(super) fn policy_digest(cfg: &NodeConfig) -> [u8; 32] {
    let mut lines: Vec<String> = cfg.partners.iter().map(partner_line).collect();
    lines.extend(cfg.origins.iter().map(origin_line));
    lines.extend(cfg.revoked.iter().map(|r| match r.what {
        // A key's line as before, so existing policy digests stay the same.
        Revoked::Key(k) => format!("revoked {k}"),
        Revoked::Certificate(c) => format!("revoked certificate {c}"),
    }));
    let hop_limit = cfg.federation.hop_limit;
    if hop_limit != super::FederationSection::default().hop_limit {
        lines.push(format!("federation hop_limit={hop_limit}"));
    }
    if cfg.disclosure.withheld {
        lines.push("disclosure withheld=true".into());
    }
    lines.sort();
    sha2::Sha256::digest(lines.join("\n").as_bytes()).into()
}
