//! Validation of a parsed node configuration: each table's values, each partner's and
//! origin's fields, and what must not be held twice (ids, keys, certificate pins).
//! Errors are (dotted field, problem) pairs; `NodeConfig::parse` adds the file.

use std::collections::HashMap;

use super::{NodeConfig, OriginConfig, PartnerConfig};
use crate::identity::{CertFingerprint, PartnerId, PublicKey, Role};

impl NodeConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        self.check_sections()?;
        let mut seen = Seen::default();
        for (i, p) in self.partners.iter().enumerate() {
            self.check_partner(i, p, &mut seen)?;
        }
        for (i, o) in self.origins.iter().enumerate() {
            self.check_origin(i, o, &mut seen)?;
        }
        Ok(())
    }

    /// Origin `i`: not this node, not a partner (a partner's bulletins may come through
    /// any relay), not listed twice; it arrives through relay partners; its keys are its own.
    fn check_origin<'a>(
        &self,
        i: usize,
        o: &'a OriginConfig,
        seen: &mut Seen<'a>,
    ) -> Result<(), (String, String)> {
        let at = |f: &str| format!("origin[{i}].{f}");
        one_affiliation(
            &format!("origin[{i}]"),
            o.country.is_some(),
            o.organisation.is_some(),
        )?;
        if o.id == self.node.id {
            return Err((at("id"), format!("{} is this node's own id", o.id)));
        }
        if self.partner(&o.id).is_some() {
            return Err((
                at("id"),
                format!(
                    "{} is a partner of this node; a partner's bulletins are accepted through any relay",
                    o.id
                ),
            ));
        }
        if let Some(first) = seen.origins.insert(&o.id, i) {
            return Err((
                at("id"),
                format!("{} is already configured as origin[{first}]", o.id),
            ));
        }
        if o.via.is_empty() {
            return Err((
                at("via"),
                "must name the peer nodes (relay partners) its bulletins arrive through".into(),
            ));
        }
        for (v, peer) in o.via.iter().enumerate() {
            match self.partner(peer) {
                Some(p) if p.role == Role::Relay => {}
                Some(p) => {
                    return Err((
                        at(&format!("via[{v}]")),
                        format!("{peer} is a {}, not a relay", p.role),
                    ))
                }
                None => {
                    return Err((
                        at(&format!("via[{v}]")),
                        format!("{peer} is not a partner of this node"),
                    ))
                }
            }
        }
        check_keys(&at, &o.keys, &o.id, seen)
    }

    /// The tables other than the partners: metrics, audit, limits, transport, storage.
    fn check_sections(&self) -> Result<(), (String, String)> {
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i]
                .iter()
                .any(|o| o.fiscal_year == t.fiscal_year)
            {
                return Err((
                    format!("target[{i}].fiscal_year"),
                    format!("FY{} has targets already", t.fiscal_year),
                ));
            }
        }
        let n = &self.node;
        one_affiliation("node", n.country.is_some(), n.organisation.is_some())?;
        if !(1..=12).contains(&self.metrics.fiscal_year_start_month) {
            return Err((
                "metrics.fiscal_year_start_month".into(),
                "must be a month number, 1 to 12".into(),
            ));
        }
        if self.audit.checkpoint_every == 0 || self.audit.checkpoint_interval_secs == 0 {
            return Err((
                "audit".into(),
                "checkpoint_every and checkpoint_interval_secs must be at least 1".into(),
            ));
        }
        self.limits.check()?;
        self.federation.check()?;
        if self.taxii.index_objects < 1_000 {
            return Err((
                "taxii.index_objects".into(),
                "must be at least 1000: TAXII serves only the newest this many objects".into(),
            ));
        }
        let t = &self.transport;
        for (field, value) in [
            ("transport.idle_timeout_secs", t.idle_timeout_secs),
            ("transport.handshake_timeout_secs", t.handshake_timeout_secs),
            ("transport.delivery_window", u64::from(t.delivery_window)),
            ("transport.commit_batch", t.commit_batch as u64),
            ("transport.commit_target_ms", t.commit_target_ms),
            ("storage.cache_mib", self.storage.cache_mib),
        ] {
            if value == 0 {
                return Err((field.into(), "must be greater than 0".into()));
            }
        }
        if t.keep_alive_secs >= t.idle_timeout_secs {
            return Err((
                "transport.keep_alive_secs".into(),
                format!(
                    "must be below idle_timeout_secs ({}) or idle connections drop",
                    t.idle_timeout_secs
                ),
            ));
        }
        Ok(())
    }

    /// Partner `i`: its own fields, and that its id, keys and certificate pin are not
    /// another partner's (`seen` holds those of the partners before it).
    fn check_partner<'a>(
        &self,
        i: usize,
        p: &'a PartnerConfig,
        seen: &mut Seen<'a>,
    ) -> Result<(), (String, String)> {
        let at = |f: &str| format!("partner[{i}].{f}");
        one_affiliation(
            &format!("partner[{i}]"),
            p.country.is_some(),
            p.organisation.is_some(),
        )?;
        if p.id == self.node.id {
            return Err((at("id"), format!("{} is this node's own id", p.id)));
        }
        if let Some(first) = seen.ids.insert(&p.id, i) {
            return Err((
                at("id"),
                format!("{} is already configured as partner[{first}]", p.id),
            ));
        }
        if p.clearance.is_none() && p.role != Role::Auditor {
            return Err((
                at("clearance"),
                format!(
                    "a {} needs a clearance: the highest TLP it may receive",
                    p.role
                ),
            ));
        }
        for (t, tag) in p.deny_tags.iter().enumerate() {
            if let Some(problem) = crate::bulletin::tag::problem(tag) {
                return Err((
                    at(&format!("deny_tags[{t}]")),
                    format!("a denied tag cannot be used when it {problem}"),
                ));
            }
        }
        check_keys(&at, &p.keys, &p.id, seen)?;
        if p.address.is_some() && p.role != Role::Relay {
            return Err((
                at("address"),
                format!(
                    "only a relay can be a peer node with an address; {} is a {}",
                    p.id, p.role
                ),
            ));
        }
        if let Some(pin) = p.tls_fingerprint {
            if let Some(owner) = seen.pins.insert(pin, &p.id) {
                return Err((
                    at("tls_fingerprint"),
                    format!(
                        "{pin} is already the certificate of partner {owner}; a certificate names one partner"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A partner's or origin's keys: each window well-formed, each key not another's.
fn check_keys<'a>(
    at: &dyn Fn(&str) -> String,
    keys: &'a [super::KeyConfig],
    owner: &'a PartnerId,
    seen: &mut Seen<'a>,
) -> Result<(), (String, String)> {
    for (k, key) in keys.iter().enumerate() {
        if let (Some(a), Some(b)) = (key.not_before, key.not_after) {
            if a >= b {
                return Err((
                    at(&format!("keys[{k}].not_after")),
                    format!("{b} is not after not_before {a}"),
                ));
            }
        }
        if let Some(owner) = seen.keys.insert(key.public, owner) {
            return Err((
                at(&format!("keys[{k}].public")),
                format!(
                    "{} is already a key of partner {owner}; a key belongs to one partner",
                    key.public
                ),
            ));
        }
    }
    Ok(())
}

/// What the partners checked so far hold, so the next may not hold it again.
#[derive(Default)]
struct Seen<'a> {
    ids: HashMap<&'a PartnerId, usize>,
    keys: HashMap<PublicKey, &'a PartnerId>,
    pins: HashMap<CertFingerprint, &'a PartnerId>,
    origins: HashMap<&'a PartnerId, usize>,
}

/// A table names its country or its organisation, not both: the figures count each
/// party once.
fn one_affiliation(table: &str, country: bool, organisation: bool) -> Result<(), (String, String)> {
    match country && organisation {
        true => Err((
            format!("{table}.organisation"),
            "name either country or organisation, not both: a party counts for one of them".into(),
        )),
        false => Ok(()),
    }
}
