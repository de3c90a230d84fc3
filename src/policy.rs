//! The sharing policy: for one bulletin and one partner, Share or Withhold(reason).
//!
//! The rules, applied in this order (TLP 2.0; proto/README.md has the table
//! of cases across hops):
//! 1. never echo a bulletin to its origin, nor back to the relay that handed it over,
//!    nor to a node on its path;
//! 2. auditors receive nothing;
//! 3. a TLP above the partner's clearance is withheld;
//! 4. a kind not shared with the partner is withheld;
//! 5. a tag the partner is denied is withheld;
//! 6. a relay is not sent what has reached the hop limit;
//! 7. RED and AMBER+STRICT go only to the audience, named directly or through a
//!    `group:NAME` the partner belongs to, or to the peer an `[[origin]]` in the
//!    audience is reached through; once relayed (the first relay), never to a relay;
//! 8. AMBER with an audience goes only to that audience, or towards it;
//! 9. GREEN and CLEAR (and AMBER without an audience) go to every partner still left.
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
    /// The partner is a node the bulletin already crossed.
    OnPath,
    /// The partner is a relay and the bulletin's path has reached the hop limit.
    HopLimit(u32),
    /// RED or AMBER+STRICT at its first relay: the audience member this peer leads to
    /// is further away than the first relay.
    AudienceBeyondRelay(Tlp),
    /// Withdrawn from a peer's queue: its delivery frame would be larger than the peer
    /// said it reads (`Welcome.max_frame_bytes`), so it could never be taken in.
    TooLargeForPeer {
        /// The delivery frame's size, at most.
        bytes: usize,
        /// The largest frame the peer reads.
        max: usize,
    },
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
            Withhold::OnPath => R::OnPath,
            Withhold::HopLimit(_) => R::HopLimit,
            Withhold::AudienceBeyondRelay(_) => R::AudienceBeyondRelay,
            Withhold::TooLargeForPeer { .. } => R::TooLargeForPeer,
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
            Withhold::OnPath,
        ]
        .into_iter()
        .chain(tlps.clone().flat_map(move |tlp| {
            clearances
                .clone()
                .map(move |clearance| Withhold::AboveClearance { tlp, clearance })
        }))
        .chain(Kind::ALL.iter().copied().map(Withhold::KindNotShared))
        .chain(tlps.clone().map(Withhold::NoOnwardRelay))
        .chain(tlps.clone().map(Withhold::AudienceBeyondRelay))
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
            Withhold::OnPath => f.write_str("the bulletin already crossed the partner's node"),
            Withhold::HopLimit(limit) => write!(
                f,
                "the bulletin's path has reached the hop limit of {limit} nodes"
            ),
            Withhold::AudienceBeyondRelay(tlp) => write!(
                f,
                "{tlp} stops at its first relay, and the audience this peer leads to is further away"
            ),
            Withhold::TooLargeForPeer { bytes, max } => write!(
                f,
                "its delivery of up to {bytes} bytes is above the {max} bytes the peer reads (its max_frame_bytes)"
            ),
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

/// An organisation reached only through peer nodes (an `[[origin]]`), as the audience
/// of a bulletin sees it.
#[derive(Clone, Debug)]
pub struct RemoteRules {
    /// Its partner id.
    pub id: PartnerId,
    /// Groups it belongs to.
    pub groups: HashSet<GroupName>,
    /// The peer a bulletin addressed to it goes to: the first of its `via` peers (its
    /// bulletins may arrive through any of them).
    pub towards: PartnerId,
}

/// How a bulletin reached this node: the partner that handed it over and the nodes it
/// crossed before this one, first to last (empty when its origin published it here).
#[derive(Clone, Copy, Debug)]
pub struct Route<'a> {
    /// The partner that handed it over: its origin, or a relay.
    pub received_from: &'a PartnerId,
    /// The nodes it crossed; a relay that handed it over is the last.
    pub path: &'a [PartnerId],
}

impl<'a> Route<'a> {
    /// Handed over by `from` (its origin) with no path.
    pub fn direct(from: &'a PartnerId) -> Route<'a> {
        Route {
            received_from: from,
            path: &[],
        }
    }

    /// The nodes a bulletin crossed, from the path its sender gave (`sent`): a relay
    /// that handed it over is a node on it even if it did not say so.
    pub fn crossed(mut sent: Vec<PartnerId>, from: &PartnerId, from_role: Role) -> Vec<PartnerId> {
        if from_role == Role::Relay && sent.last() != Some(from) {
            sent.push(from.clone());
        }
        sent
    }

    /// Has it already crossed a relay (so this node is at least its first relay)?
    fn relayed(&self, b: &Header) -> bool {
        !self.path.is_empty() || *self.received_from != b.origin
    }
}

/// The default hop limit: most nodes a bulletin's path may hold.
pub const DEFAULT_HOP_LIMIT: u32 = 4;

/// The whole node's sharing policy: every partner's rules, the organisations beyond
/// the peers, and the hop limit.
#[derive(Clone, Debug)]
pub struct Policy {
    partners: Vec<PartnerRules>,
    remotes: Vec<RemoteRules>,
    hop_limit: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Vec::new())
    }
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
        let remotes = cfg
            .origins
            .iter()
            .filter_map(|o| {
                Some(RemoteRules {
                    id: o.id.clone(),
                    groups: o.groups.iter().cloned().collect(),
                    towards: o.via.first()?.clone(),
                })
            })
            .collect();
        Policy {
            partners,
            remotes,
            hop_limit: cfg.federation.hop_limit,
        }
    }

    /// A policy over the given partners, with no organisation beyond them.
    pub fn new(partners: Vec<PartnerRules>) -> Self {
        Policy {
            partners,
            remotes: Vec::new(),
            hop_limit: DEFAULT_HOP_LIMIT,
        }
    }

    /// The same, with these organisations beyond the peers and this hop limit.
    pub fn beyond(mut self, remotes: Vec<RemoteRules>, hop_limit: u32) -> Self {
        self.remotes = remotes;
        self.hop_limit = hop_limit;
        self
    }

    /// Most nodes a bulletin's path may hold, this one included.
    pub fn hop_limit(&self) -> u32 {
        self.hop_limit
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
        route: Route<'_>,
        partner: &PartnerId,
    ) -> Decision {
        match self.partners.iter().find(|p| p.id == *partner) {
            Some(rules) => self.decide_with(bulletin, &normalised_tags(bulletin), route, rules),
            None => Decision::Withhold(Withhold::PartnerRemoved),
        }
    }

    /// The decision for every partner, in configuration order, for a bulletin that
    /// reached this node by `route`.
    pub fn decide_all<'a>(
        &'a self,
        bulletin: &'a Header,
        route: Route<'a>,
    ) -> impl Iterator<Item = (&'a PartnerId, Decision)> + 'a {
        // Normalise the tags once per bulletin, not once per partner.
        let tags = normalised_tags(bulletin);
        self.partners
            .iter()
            .map(move |p| (&p.id, self.decide_with(bulletin, &tags, route, p)))
    }

    /// Does an audience entry of `b` name an organisation reached through relay `p`
    /// (the first peer of its `via`)?
    fn towards(&self, b: &Header, p: &PartnerRules) -> bool {
        let via_p = |r: &&RemoteRules| r.towards == p.id;
        b.audience.iter().any(|a| match a {
            AudienceEntry::Partner(id) => self.remotes.iter().filter(via_p).any(|r| r.id == *id),
            AudienceEntry::Group(g) => self
                .remotes
                .iter()
                .filter(via_p)
                .any(|r| r.groups.contains(g)),
        })
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
        // Auditors receive nothing: naming one reaches no one, as an unknown name.
        let receivers = || self.partners.iter().filter(|p| p.role != Role::Auditor);
        let known = |a: &AudienceEntry| match a {
            AudienceEntry::Partner(id) => {
                id == node
                    || receivers().any(|p| p.id == *id)
                    || self.remotes.iter().any(|r| r.id == *id)
            }
            AudienceEntry::Group(g) => {
                receivers().any(|p| p.groups.contains(g))
                    || self.remotes.iter().any(|r| r.groups.contains(g))
            }
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

impl Policy {
    /// The decision for bulletin `b` (its tags normalised: `tags[i]` is `b.tags[i]`),
    /// which reached this node by `route`, and partner `p`.
    fn decide_with(
        &self,
        b: &Header,
        tags: &[String],
        route: Route<'_>,
        p: &PartnerRules,
    ) -> Decision {
        let withhold = Decision::Withhold;
        if p.id == b.origin {
            return withhold(Withhold::Origin);
        }
        if p.id == *route.received_from {
            return withhold(Withhold::Sender);
        }
        if route.path.contains(&p.id) {
            return withhold(Withhold::OnPath);
        }
        if let Some(w) = partner_rules(b, tags, p) {
            return withhold(w);
        }
        // Sent on, the path would hold the nodes before, this one, and the relay's.
        if p.role == Role::Relay && route.path.len() + 2 > self.hop_limit as usize {
            return withhold(Withhold::HopLimit(self.hop_limit));
        }
        self.audience_rules(b, route, p)
    }

    /// Rules 7 to 9: who the TLP and the audience let it go to, at this hop.
    fn audience_rules(&self, b: &Header, route: Route<'_>, p: &PartnerRules) -> Decision {
        let withhold = Decision::Withhold;
        let relay = p.role == Role::Relay;
        match b.tlp {
            Tlp::Red | Tlp::AmberStrict if route.relayed(b) => {
                if route.path.len() > 1 {
                    // Beyond its first relay already: it should not have come this far.
                    withhold(Withhold::NoOnwardRelay(b.tlp))
                } else if relay && self.towards(b, p) {
                    withhold(Withhold::AudienceBeyondRelay(b.tlp))
                } else if relay {
                    // A first relay passes it on only to its own desks.
                    withhold(Withhold::NoOnwardRelay(b.tlp))
                } else if in_audience(b, p) {
                    Decision::Share
                } else {
                    withhold(Withhold::NotInAudience(b.tlp))
                }
            }
            Tlp::Red | Tlp::AmberStrict | Tlp::Amber
                if !b.audience.is_empty() || b.tlp != Tlp::Amber =>
            {
                if in_audience(b, p) || (relay && self.towards(b, p)) {
                    Decision::Share
                } else {
                    withhold(Withhold::NotInAudience(b.tlp))
                }
            }
            _ => Decision::Share,
        }
    }
}

/// Rules 2 to 5, the partner's own: auditors, clearance, kinds, denied tags.
fn partner_rules(b: &Header, tags: &[String], p: &PartnerRules) -> Option<Withhold> {
    if p.role == Role::Auditor {
        return Some(Withhold::Auditor);
    }
    if p.clearance.is_none_or(|c| b.tlp > c) {
        return Some(Withhold::AboveClearance {
            tlp: b.tlp,
            clearance: p.clearance,
        });
    }
    if p.kinds.as_ref().is_some_and(|ks| !ks.contains(&b.kind)) {
        return Some(Withhold::KindNotShared(b.kind));
    }
    tags.iter()
        .position(|t| p.deny_tags.contains(t))
        .map(|i| Withhold::DeniedTag(b.tags[i].clone()))
}

#[cfg(test)]
mod tests;
