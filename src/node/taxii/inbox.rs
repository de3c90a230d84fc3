//! The TAXII inbox: an envelope of STIX objects a partner adds becomes bulletins of this
//! node (origin: the node, signed with its key), one for each TLP the objects carry,
//! shared by the policy in force as if the partner had handed them over (so the partner
//! does not get them back, and the log names it as the one who did). Pure: the objects,
//! the rules, the node's key and the time go in; bulletins ready to store, or why an
//! object is refused, come out.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::audit::record::Event;
use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::identity::PartnerId;
use crate::node::RuleSet;
use crate::policy::{Decision, Route};
use crate::proto;
use crate::stix::{self, StixObject};
use crate::store::NewBulletin;
use crate::timestamp::Timestamp;

/// An object that cannot be carried, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Its id, when it has one.
    pub id: String,
    pub version: Option<String>,
    pub message: String,
}

/// A bulletin made from some of the objects.
pub(crate) struct Made {
    pub bulletin: NewBulletin,
    /// The objects it carries: (id, version).
    pub objects: Vec<(String, Option<String>)>,
}

/// What an envelope becomes.
#[derive(Default)]
pub(crate) struct Prepared {
    pub made: Vec<Made>,
    pub failures: Vec<Failure>,
}

/// Turns the objects `writer` added into bulletins of this node.
pub(crate) fn prepare(
    objects: Vec<Value>,
    writer: &PartnerId,
    sharing: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Prepared {
    let mut out = Prepared::default();
    let mut valid = Vec::with_capacity(objects.len());
    for (i, o) in objects.into_iter().enumerate() {
        let id = o.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        match StixObject::from_json(i, o) {
            Ok(o) => valid.push(o),
            Err(e) => out.failures.push(failure(id, None, e.to_string())),
        }
    }
    for (_, (tlp, group)) in by_tlp(valid, &mut out.failures) {
        let carried: Vec<_> = group
            .iter()
            .map(|o| (o.id.clone(), o.version.clone()))
            .collect();
        match made(tlp, group, writer, sharing, key, limits, now) {
            Ok(bulletin) => out.made.push(Made {
                bulletin,
                objects: carried,
            }),
            Err(why) => out.failures.extend(
                carried
                    .into_iter()
                    .map(|(id, v)| failure(id, v, why.clone())),
            ),
        }
    }
    out
}

fn failure(id: String, version: Option<String>, message: String) -> Failure {
    Failure {
        id,
        version,
        message,
    }
}

/// The objects grouped by TLP: each by its own marking, an unmarked one by the
/// strictest marking of the envelope; none at all is refused, as renkei shares nothing
/// unlabelled.
fn by_tlp(
    objects: Vec<StixObject>,
    failures: &mut Vec<Failure>,
) -> BTreeMap<u8, (Tlp, Vec<StixObject>)> {
    let envelope = stix::strictest_tlp(&objects);
    let mut groups: BTreeMap<u8, (Tlp, Vec<StixObject>)> = BTreeMap::new();
    for o in objects {
        let own = stix::strictest_tlp(std::slice::from_ref(&o));
        match own.or(envelope) {
            Some(tlp) => groups.entry(tlp.to_proto() as u8).or_insert((tlp, Vec::new())).1.push(o),
            None => failures.push(failure(
                o.id,
                o.version,
                "no TLP marking (object_marking_refs to a TLP 2.0 marking definition) on it or on any object of the envelope: renkei shares nothing unlabelled".into(),
            )),
        }
    }
    groups
}

/// One signed, verified and decided bulletin carrying `objects` at `tlp`.
fn made(
    tlp: Tlp,
    objects: Vec<StixObject>,
    writer: &PartnerId,
    sharing: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Result<NewBulletin, String> {
    let node = &sharing.config.node.id;
    let kind: Kind = stix::kind_of(&objects);
    let types: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    let title = format!(
        "STIX from {writer} through TAXII: {} object(s) ({})",
        objects.len(),
        types.into_iter().collect::<Vec<_>>().join(", ")
    );
    let id = BulletinId::new_v7(now);
    let bundle = json!({
        "type": "bundle",
        "id": format!("bundle--{id}"),
        "objects": objects.into_iter().map(|o| o.json).collect::<Vec<_>>(),
    });
    let b = proto::Bulletin {
        id: id.to_string(),
        origin: node.to_string(),
        created_unix_ms: now.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title,
        summary: String::new(),
        tags: vec![],
        audience: vec![],
        content_type: bulletin::STIX_CONTENT_TYPE.into(),
        body: bundle.to_string().into(),
        references: vec![],
    };
    let signed = bulletin::sign(&b, key, limits).map_err(|e| e.to_string())?;
    let unverified = UnverifiedBulletin::from_signed(signed, limits).map_err(|e| e.to_string())?;
    let digest = unverified.digest();
    let verified = UnverifiedBulletin::verify_all(vec![unverified], &sharing.keyring, now, limits)
        .pop()
        .ok_or("the node's own signature could not be checked")?
        .map_err(|e| format!("the node's own signature does not verify: {e}"))?;
    let h = verified.header();
    let route = Route {
        received_from: writer,
        path: &[],
    };
    let decisions: Vec<_> = sharing.policy.decide_all(h, route).collect();
    let audit = Event::accepted(writer, h, digest, decisions.iter().map(|(p, d)| (*p, d)));
    Ok(NewBulletin {
        signed: verified.signed().clone(),
        digest,
        origin: node.clone(),
        id: h.id,
        received_from: writer.clone(),
        shared_with: decisions
            .into_iter()
            .filter(|(_, d)| matches!(d, Decision::Share))
            .map(|(p, _)| p.clone())
            .collect(),
        path: vec![],
        relayed: false,
        audit,
    })
}

#[cfg(test)]
mod tests;
