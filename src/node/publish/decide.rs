//! The decisions of a publish stream, without the stream: a batch of `Publish` frames,
//! the rules in force, the limits, who sent them and the time go in; one answer per
//! frame comes out, in order: a rejection with its audit record, or a bulletin for the
//! storage thread with its accepted answer and audit record. No I/O, no clock.

use super::result::{naming_bulletin, rejected, Answer};
use crate::audit::record::Event;
use crate::bulletin::{
    BulletinError, Digest, Header, Limits, UnverifiedBulletin, VerifiedBulletin,
};
use crate::identity::{Partner, PartnerId, Role};
use crate::node::shared::RuleSet;
use crate::policy::{Decision, Route};
use crate::proto::{self, ErrorCode, PublishStatus};
use crate::store::NewBulletin;
use crate::timestamp::Timestamp;

/// A rejected Publish: the answer, and the audit record of the rejection.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) result: Box<proto::PublishResult>,
    pub(super) audit: Event,
}

/// What one Publish of a batch came to.
pub(super) type Prepared = Result<(NewBulletin, Answer), Box<Rejection>>;

/// A Publish whose bulletin decoded and names a partner as its origin, waiting for its
/// signature check.
struct Decoded {
    request_id: u64,
    allow_unknown_audience: bool,
    header: Header,
    digest: Digest,
    /// The nodes it crossed before this one (`Route::crossed`).
    path: Vec<PartnerId>,
}

/// Verifies a batch of publishes (the signatures together), checks the publisher's
/// right to publish each, and decides who gets it; one answer per publish, in order.
pub(super) fn decide_batch(
    rules: &RuleSet,
    limits: &Limits,
    from: &Partner,
    batch: Vec<proto::Publish>,
    now: Timestamp,
) -> Vec<Prepared> {
    let mut answers: Vec<Option<Prepared>> = Vec::with_capacity(batch.len());
    let (mut decoded, mut unverified) = (Vec::new(), Vec::new());
    for p in batch {
        match decode(rules, limits, from, p) {
            Ok((d, u)) => {
                decoded.push((answers.len(), d));
                unverified.push(u);
                answers.push(None);
            }
            Err(rejection) => answers.push(Some(Err(rejection))),
        }
    }
    let verified = UnverifiedBulletin::verify_all(unverified, &rules.keyring, now, limits);
    for ((at, d), v) in decoded.into_iter().zip(verified) {
        let answer = decide(rules, from, d, v);
        if let Some(slot) = answers.get_mut(at) {
            *slot = Some(answer);
        }
    }
    answers.into_iter().flatten().collect()
}

/// The refusal of a publish, with its audit record (naming the bulletin if it decoded).
fn rejection(
    from: &PartnerId,
    result: Box<proto::PublishResult>,
    known: Option<(Header, Digest)>,
) -> Box<Rejection> {
    let code = ErrorCode::try_from(result.error).unwrap_or(ErrorCode::Unspecified);
    let audit = Event::rejected(
        from,
        known.as_ref().map(|(h, d)| (h, *d)),
        code,
        &result.message,
    );
    Box::new(Rejection { result, audit })
}

/// Decodes the bulletin of a Publish, then checks its path and that its origin may
/// reach this node through the publisher (in the order proto §4.6 gives).
fn decode(
    rules: &RuleSet,
    limits: &Limits,
    publisher: &Partner,
    p: proto::Publish,
) -> Result<(Decoded, UnverifiedBulletin), Box<Rejection>> {
    let from = &publisher.id;
    let id = p.request_id;
    let signed = p.bulletin.ok_or_else(|| {
        let r = rejected(
            id,
            ErrorCode::InvalidBulletin,
            "Publish carries no bulletin".into(),
        );
        rejection(from, r, None)
    })?;
    let unverified = UnverifiedBulletin::from_signed(signed, limits)
        .map_err(|e| rejection(from, rejected(id, e.code(), e.to_string()), None))?;
    let (header, digest) = (unverified.header().clone(), unverified.digest());
    // The route before the signature (proto §4.6): both are refusals the node can
    // make without the cost of a verification, and a refusal names the bulletin.
    let route = crossed(rules, publisher, p.path)
        .map_err(|why| (ErrorCode::BadPath, why.to_string()))
        .and_then(
            |path| match unreachable_origin(rules, from, &header.origin) {
                Some(rejection) => Err(rejection),
                None => Ok(path),
            },
        );
    let path = match route {
        Ok(path) => path,
        Err((code, msg)) => {
            let r = naming_bulletin(rejected(id, code, msg), &header, digest);
            return Err(rejection(from, r, Some((header, digest))));
        }
    };
    let d = Decoded {
        request_id: id,
        allow_unknown_audience: p.allow_unknown_audience,
        header,
        digest,
        path,
    };
    Ok((d, unverified))
}

/// Why a publish's path is rejected (BAD_PATH).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// Only a relay hands over a bulletin with a path.
    #[error("{from} is a {role}: only a relay (a peer node) hands over a bulletin with a path")]
    NotARelay {
        /// Who published.
        from: PartnerId,
        /// Its role.
        role: Role,
    },
    /// An entry is not a node id.
    #[error("path[{index}] is not a node id: {why}")]
    NotAnId {
        /// Its place in the path.
        index: usize,
        /// Why it is not one.
        why: String,
    },
    /// This node is on the path already.
    #[error("the path already holds this node ({0}): a loop")]
    Loop(PartnerId),
    /// Longer than the hop limit allows.
    #[error("the path holds {nodes} nodes before this one, and this node's hop limit is {limit}")]
    TooLong {
        /// Nodes before this one.
        nodes: usize,
        /// The hop limit.
        limit: usize,
    },
}

/// The nodes a publish crossed (the path it names, and a relay publisher), or why
/// that path is rejected: a malformed id, this node on it, or longer than the hop limit.
fn crossed(
    rules: &RuleSet,
    publisher: &Partner,
    sent: Vec<String>,
) -> Result<Vec<PartnerId>, BadPath> {
    let (from, role) = (&publisher.id, publisher.role);
    let me = &rules.config.node.id;
    if role != Role::Relay && !sent.is_empty() {
        let from = from.clone();
        return Err(BadPath::NotARelay { from, role });
    }
    let mut path = Vec::with_capacity(sent.len() + 1);
    for (index, node) in sent.into_iter().enumerate() {
        let node: PartnerId = node.parse().map_err(|e| BadPath::NotAnId {
            index,
            why: format!("{e}"),
        })?;
        if node == *me {
            return Err(BadPath::Loop(me.clone()));
        }
        path.push(node);
    }
    let path = Route::crossed(path, from, role);
    let limit = rules.policy.hop_limit() as usize;
    if path.len() + 1 > limit {
        let nodes = path.len();
        return Err(BadPath::TooLong { nodes, limit });
    }
    Ok(path)
}

/// Why a bulletin of `origin` cannot reach this node through `from`, if it cannot: a
/// partner's may come through anyone; an `[[origin]]`'s only through its `via` peers.
fn unreachable_origin(
    rules: &RuleSet,
    from: &PartnerId,
    origin: &PartnerId,
) -> Option<(ErrorCode, String)> {
    if rules.partners.contains_key(origin) {
        return None;
    }
    match rules.config.origin(origin) {
        Some(o) if o.via.contains(from) => None,
        Some(o) => {
            let via: Vec<&str> = o.via.iter().map(PartnerId::as_str).collect();
            Some((
                ErrorCode::NotViaPeer,
                format!(
                    "origin {origin} is configured to arrive through {}, not through {from}",
                    via.join(", ")
                ),
            ))
        }
        None => Some((
            ErrorCode::UnknownOrigin,
            format!("origin {origin} is neither a partner of this node nor an [[origin]] it knows"),
        )),
    }
}

/// After the signature check: the publisher's right to publish it, and who gets it.
fn decide(
    rules: &RuleSet,
    publisher: &Partner,
    d: Decoded,
    verified: Result<VerifiedBulletin, BulletinError>,
) -> Prepared {
    let (from, role) = (&publisher.id, publisher.role);
    let (id, digest) = (d.request_id, d.digest);
    // Refusals name the bulletin; its header moves into the audit record only then.
    let reject = |r: Box<proto::PublishResult>, header: Header| {
        let r = naming_bulletin(r, &header, digest);
        rejection(from, r, Some((header, digest)))
    };
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return Err(reject(rejected(id, e.code(), e.to_string()), d.header)),
    };
    let h = verified.header();
    let origin = h.origin.clone();
    if role == Role::Liaison && origin != *from {
        let msg = format!(
            "{from} is a liaison and may only publish its own bulletins, not those of {origin}"
        );
        return Err(reject(
            rejected(id, ErrorCode::OriginMismatch, msg),
            d.header,
        ));
    }
    // A desk's own audience is checked; a relay's bulletins (its own included) were
    // addressed under another node's partners.
    if role == Role::Liaison && !d.allow_unknown_audience {
        if let Some(msg) = unknown_audience(rules, h) {
            return Err(reject(
                rejected(id, ErrorCode::UnknownAudience, msg),
                d.header,
            ));
        }
    }
    let result = *naming_bulletin(
        Box::new(proto::PublishResult {
            request_id: id,
            status: PublishStatus::Accepted as i32,
            ..Default::default()
        }),
        h,
        digest,
    );
    let new = share(rules, from, &verified, digest, d.path, role == Role::Relay);
    // The answer names the decisions the record holds, in its words (formatted once).
    let answer = Answer::accepted(result, new.audit.record(), rules.config.disclosure.withheld);
    Ok((new, answer))
}

/// The end of the one publish decision, which every door in (a publish stream, a peer
/// link, the TAXII inbox) takes once a bulletin verified: who gets it under the rules
/// in force, handed over by `from` after crossing `path`, and the stored form and the
/// accepted record that say so.
pub(crate) fn share(
    rules: &RuleSet,
    from: &PartnerId,
    verified: &VerifiedBulletin,
    digest: Digest,
    path: Vec<PartnerId>,
    relayed: bool,
) -> NewBulletin {
    let h = verified.header();
    let route = Route {
        received_from: from,
        path: &path,
    };
    let decisions: Vec<_> = rules.policy.decide_all(h, route).collect();
    let whose = |id: &str| rules.affiliations.get(id).cloned();
    let audit = Event::accepted(from, h, digest, decisions.iter().map(|(p, d)| (*p, d)))
        .with_affiliations(rules.affiliations.get(h.origin.as_str()), whose);
    let shared_with = decisions
        .into_iter()
        .filter(|(_, d)| matches!(d, Decision::Share))
        .map(|(p, _)| p.clone())
        .collect();
    NewBulletin {
        signed: verified.signed().clone(),
        digest,
        origin: h.origin.clone(),
        id: h.id,
        received_from: from.clone(),
        shared_with,
        path,
        relayed,
        audit,
    }
}

/// Why the node may not sign a bulletin for `writer` (a desk writing through the TAXII
/// inbox), if it may not: only for a liaison, and only while the liaison holds a
/// signing key in force, so that the node never publishes for someone who could not
/// publish themselves (an auditor, a peer node, a desk whose keys are all revoked).
pub(crate) fn proxy_rejection(
    rules: &RuleSet,
    writer: &Partner,
    now: Timestamp,
) -> Option<(ErrorCode, String)> {
    let role = writer.role;
    let writer = &writer.id;
    if role != Role::Liaison {
        return Some((
            ErrorCode::NotPermitted,
            format!(
                "{writer} is a {role}: the node signs what an inbox takes only for a liaison desk"
            ),
        ));
    }
    if !rules.keyring.can_sign(writer, now) {
        return Some((
            ErrorCode::KeyRevoked,
            format!(
                "{writer} holds no signing key in force (revoked, expired or none configured): \
                 the node signs for a desk only while it could publish itself"
            ),
        ));
    }
    None
}

/// Why a bulletin's audience is rejected, if it names what this node does not know (no
/// partner that receives, no `[[origin]]`, no group of either). Which entries are
/// unknown is said only where the operator discloses its partners (`[disclosure]
/// withheld`): otherwise the answer would tell a publisher who is configured here.
pub(crate) fn unknown_audience(rules: &RuleSet, h: &Header) -> Option<String> {
    let unknown = rules.policy.unknown_audience(h, &rules.config.node.id);
    if unknown.is_empty() {
        return None;
    }
    let which = if rules.config.disclosure.withheld {
        let names: Vec<String> = unknown.iter().map(|a| a.to_string()).collect();
        format!("names {}, which this node knows", names.join(", "))
    } else {
        format!(
            "names {} entr{} this node knows",
            unknown.len(),
            if unknown.len() == 1 { "y" } else { "ies" }
        )
    };
    Some(format!(
        "the audience {which} as no partner that receives bulletins and no group of one: \
         under that name it would reach nobody; correct it, or publish with \
         --allow-unknown-audience if that is meant"
    ))
}

#[cfg(test)]
mod tests;
