//! The sharing policy: for one bulletin and one partner, Share or Withhold(reason).
//!
//! The rules, applied in this order (DESIGN.md, TLP 2.0):
//! 1. never echo a bulletin to its origin, nor back to the relay that handed it over;
//! 2. auditors receive nothing;
//! 3. a TLP above the partner's clearance is withheld;
//! 4. a kind not shared with the partner is withheld;
//! 5. a tag the partner is denied is withheld;
//! 6. RED and AMBER+STRICT are never relayed onward (a node passes them on only when it
//!    received them from their origin), and go only to the audience, named directly or
//!    through a `group:NAME` the partner belongs to;
//! 7. AMBER with an audience goes only to that audience;
//! 8. GREEN and CLEAR (and AMBER without an audience) go to every partner still left.
//!
//! Pure and synchronous: no I/O, no clock. It decides; the node records and acts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use crate::bulletin::{tag, Header, Kind, Tlp};
use crate::config::NodeConfig;
use crate::identity::{AudienceEntry, GroupName, PartnerId, Role};
use crate::proto;

/// Why a bulletin is withheld from a partner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Withhold {
    /// The partner is the bulletin's origin.
    Origin,
    /// The partner is the relay that handed the bulletin to this node.
    Sender,
    /// Auditors receive no bulletins.
    Auditor,
    /// The TLP is above the partner's clearance.
    AboveClearance {
        /// The bulletin's TLP.
        tlp: Tlp,
        /// The partner's clearance (none for a partner without one).
        clearance: Option<Tlp>,
    },
    /// The partner is not sent this kind.
    KindNotShared(Kind),
    /// The bulletin carries a tag denied to the partner.
    DeniedTag(String),
    /// RED or AMBER+STRICT received through a relay: it goes no further.
    NoOnwardRelay(Tlp),
    /// The bulletin is restricted to an audience that does not include the partner.
    NotInAudience(Tlp),
    /// Withdrawn from a queue: the origin's signing key is revoked or no longer
    /// configured.
    OriginKey,
    /// Withdrawn from a queue: the partner is no longer configured.
    PartnerRemoved,
}

impl Withhold {
    /// The wire code for this reason.
    pub fn code(&self) -> proto::WithholdReason {
        use proto::WithholdReason as R;
        match self {
            Withhold::Origin => R::Origin,
            Withhold::Sender => R::Sender,
            Withhold::Auditor => R::Auditor,
            Withhold::AboveClearance { .. } => R::AboveClearance,
            Withhold::KindNotShared(_) => R::KindNotShared,
            Withhold::DeniedTag(_) => R::DeniedTag,
            Withhold::NoOnwardRelay(_) => R::NoOnwardRelay,
            Withhold::NotInAudience(_) => R::NotInAudience,
            Withhold::OriginKey => R::OriginKey,
            Withhold::PartnerRemoved => R::PartnerRemoved,
        }
    }
}

impl Withhold {
    /// What [`Display`](fmt::Display) writes. Every reason that names no tag is
    /// formatted once per process: a detail is written for each partner a bulletin is
    /// withheld from, and the reasons are few.
    pub fn detail(&self) -> String {
        static DETAILS: OnceLock<HashMap<Withhold, String>> = OnceLock::new();
        let details = DETAILS.get_or_init(|| {
            Withhold::untagged()
                .map(|w| {
                    let text = w.to_string();
                    (w, text)
                })
                .collect()
        });
        match details.get(self) {
            Some(text) => text.clone(),
            None => self.to_string(),
        }
    }

    /// Every reason that names no tag.
    fn untagged() -> impl Iterator<Item = Withhold> {
        let tlps = Tlp::ALL.iter().copied();
        let clearances = std::iter::once(None).chain(Tlp::ALL.iter().copied().map(Some));
        [
            Withhold::Origin,
            Withhold::Sender,
            Withhold::Auditor,
            Withhold::OriginKey,
            Withhold::PartnerRemoved,
        ]
        .into_iter()
        .chain(tlps.clone().flat_map(move |tlp| {
            clearances
                .clone()
                .map(move |clearance| Withhold::AboveClearance { tlp, clearance })
        }))
        .chain(Kind::ALL.iter().copied().map(Withhold::KindNotShared))
        .chain(tlps.clone().map(Withhold::NoOnwardRelay))
        .chain(tlps.map(Withhold::NotInAudience))
    }
}

impl fmt::Display for Withhold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withhold::Origin => f.write_str("the partner is the bulletin's origin"),
            Withhold::Sender => f.write_str("the partner handed the bulletin to this node"),
            Withhold::Auditor => f.write_str("auditors receive no bulletins"),
            Withhold::AboveClearance {
                tlp,
                clearance: Some(c),
            } => {
                write!(f, "{tlp} is above the partner's clearance {c}")
            }
            Withhold::AboveClearance {
                tlp,
                clearance: None,
            } => {
                write!(f, "{tlp} needs a clearance and the partner has none")
            }
            Withhold::KindNotShared(k) => write!(f, "kind {k} is not shared with the partner"),
            Withhold::DeniedTag(t) => write!(f, "tag {t:?} is never shared with the partner"),
            Withhold::NoOnwardRelay(tlp) => {
                write!(f, "{tlp} came through a relay and is never relayed onward")
            }
            Withhold::NotInAudience(tlp) => {
                write!(
                    f,
                    "{tlp} goes only to its audience, which does not include the partner"
                )
            }
            Withhold::OriginKey => f.write_str(
                "the origin's signing key is revoked or no longer configured on this node",
            ),
            Withhold::PartnerRemoved => {
                f.write_str("the partner was removed from this node's configuration")
            }
        }
    }
}

/// The outcome for one partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Queue the bulletin for the partner.
    Share,
    /// Do not, for this reason.
    Withhold(Withhold),
}

/// One partner's sharing rules, prepared for fast decisions.
#[derive(Clone, Debug)]
pub struct PartnerRules {
    /// The partner.
    pub id: PartnerId,
    /// Its role.
    pub role: Role,
    /// Highest TLP it may receive; `None` (an auditor) receives nothing.
    pub clearance: Option<Tlp>,
    /// Kinds shared with it; `None` = all.
    pub kinds: Option<HashSet<Kind>>,
    /// Denied tags, folded as [`tag::fold`] does.
    pub deny_tags: HashSet<String>,
    /// Groups it belongs to.
    pub groups: HashSet<GroupName>,
}

/// The whole node's sharing policy: every partner's rules.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    partners: Vec<PartnerRules>,
}

impl Policy {
    /// The policy a node configuration describes.
    pub fn from_config(cfg: &NodeConfig) -> Self {
        let partners = cfg
            .partners
            .iter()
            .map(|p| PartnerRules {
                id: p.id.clone(),
                role: p.role,
                clearance: p.clearance,
                kinds: p.kinds.as_ref().map(|ks| ks.iter().copied().collect()),
                deny_tags: p.deny_tags.iter().map(|t| tag::fold(t)).collect(),
                groups: p.groups.iter().cloned().collect(),
            })
            .collect();
        Policy { partners }
    }

    /// A policy over the given partners.
    pub fn new(partners: Vec<PartnerRules>) -> Self {
        Policy { partners }
    }

    /// The partners, in configuration order.
    pub fn partners(&self) -> &[PartnerRules] {
        &self.partners
    }

    /// The decision under these rules for a bulletin already queued for `partner` under
    /// earlier ones: it goes out only if this is still Share. A partner these rules no
    /// longer name is [`Withhold::PartnerRemoved`].
    pub fn still_shared(
        &self,
        bulletin: &Header,
        received_from: &PartnerId,
        partner: &PartnerId,
    ) -> Decision {
        match self.partners.iter().find(|p| p.id == *partner) {
            Some(rules) => decide(bulletin, received_from, rules),
            None => Decision::Withhold(Withhold::PartnerRemoved),
        }
    }

    /// The decision for every partner, in configuration order. `received_from` is the
    /// partner that handed the bulletin to this node (its origin, or a relay).
    pub fn decide_all<'a>(
        &'a self,
        bulletin: &'a Header,
        received_from: &'a PartnerId,
    ) -> impl Iterator<Item = (&'a PartnerId, Decision)> + 'a {
        // Normalise the tags once per bulletin, not once per partner.
        let tags = normalised_tags(bulletin);
        self.partners
            .iter()
            .map(move |p| (&p.id, decide_with(bulletin, &tags, received_from, p)))
    }
}

impl Policy {
    /// The audience entries of `bulletin` that name neither this node (`node`), nor a
    /// partner, nor a group any partner belongs to: most likely typos, which would
    /// share a bulletin with nobody.
    pub fn unknown_audience<'b>(
        &self,
        bulletin: &'b Header,
        node: &PartnerId,
    ) -> Vec<&'b AudienceEntry> {
        let known = |a: &AudienceEntry| match a {
            AudienceEntry::Partner(id) => id == node || self.partners.iter().any(|p| p.id == *id),
            AudienceEntry::Group(g) => self.partners.iter().any(|p| p.groups.contains(g)),
        };
        bulletin.audience.iter().filter(|a| !known(a)).collect()
    }
}

fn in_audience(bulletin: &Header, p: &PartnerRules) -> bool {
    bulletin.audience.iter().any(|a| match a {
        AudienceEntry::Partner(id) => *id == p.id,
        AudienceEntry::Group(g) => p.groups.contains(g),
    })
}

/// Tags as denied tags are compared: as people read them ([`tag::fold`]).
fn normalised_tags(b: &Header) -> Vec<String> {
    b.tags.iter().map(|t| tag::fold(t)).collect()
}

/// The decision for bulletin `b`, received from `received_from`, and partner `p`.
pub fn decide(b: &Header, received_from: &PartnerId, p: &PartnerRules) -> Decision {
    decide_with(b, &normalised_tags(b), received_from, p)
}

/// [`decide`], with `b`'s tags already normalised (`tags[i]` is `b.tags[i]`).
fn decide_with(
    b: &Header,
    tags: &[String],
    received_from: &PartnerId,
    p: &PartnerRules,
) -> Decision {
    let withhold = Decision::Withhold;
    if p.id == b.origin {
        return withhold(Withhold::Origin);
    }
    if p.id == *received_from {
        return withhold(Withhold::Sender);
    }
    if p.role == Role::Auditor {
        return withhold(Withhold::Auditor);
    }
    if p.clearance.is_none_or(|c| b.tlp > c) {
        return withhold(Withhold::AboveClearance {
            tlp: b.tlp,
            clearance: p.clearance,
        });
    }
    if p.kinds.as_ref().is_some_and(|ks| !ks.contains(&b.kind)) {
        return withhold(Withhold::KindNotShared(b.kind));
    }
    if let Some(i) = tags.iter().position(|t| p.deny_tags.contains(t)) {
        return withhold(Withhold::DeniedTag(b.tags[i].clone()));
    }
    match b.tlp {
        Tlp::Red | Tlp::AmberStrict if *received_from != b.origin => {
            withhold(Withhold::NoOnwardRelay(b.tlp))
        }
        Tlp::Red | Tlp::AmberStrict if !in_audience(b, p) => {
            withhold(Withhold::NotInAudience(b.tlp))
        }
        Tlp::Amber if !b.audience.is_empty() && !in_audience(b, p) => {
            withhold(Withhold::NotInAudience(b.tlp))
        }
        _ => Decision::Share,
    }
}

#[cfg(test)]
mod tests;
