//! The TAXII inbox: an envelope of STIX objects a desk adds becomes bulletins of this
//! node (origin: the node, signed with its key, as the desk's recorded proxy), one for
//! each TLP the objects carry. The node signs only for a liaison that could publish
//! itself (`decide::proxy_rejection`); AMBER, AMBER+STRICT and RED need an audience the
//! node knows, as on QUIC; and who gets each bulletin is the one publish decision
//! (`decide::share`), as if the desk had handed it over (so it does not get it back,
//! and the log names it). Pure: the objects, the rules, the node's key and the time go
//! in; bulletins ready to store, or why an object is refused, come out.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::identity::{Partner, PartnerId};
use crate::node::publish::decide;
use crate::node::shared::RuleSet;
use crate::proto::{self, ErrorCode};
use crate::stix::{self, StixObject};
use crate::store::NewBulletin;
use crate::timestamp::Timestamp;

/// An object that cannot be carried, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Its id, when it has one.
    pub id: String,
    pub version: Option<String>,
    pub code: ErrorCode,
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

/// Who wrote an envelope, and the audience it names (`x_renkei_audience`).
pub(crate) struct Writer {
    pub who: Partner,
    /// Partner ids and `group:NAME`s, as a bulletin's audience.
    pub audience: Vec<String>,
}

/// Turns the objects `writer` added into bulletins of this node.
pub(crate) fn prepare(
    objects: Vec<Value>,
    writer: &Writer,
    rules: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Prepared {
    let mut out = Prepared::default();
    let mut valid = Vec::with_capacity(objects.len());
    let refused = decide::proxy_rejection(rules, &writer.who, now);
    for (i, o) in objects.into_iter().enumerate() {
        let id = o.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        if let Some((code, why)) = &refused {
            out.failures.push(failure(id, None, *code, why.clone()));
            continue;
        }
        match StixObject::from_json(i, o) {
            Ok(o) => valid.push(o),
            Err(e) => {
                out.failures
                    .push(failure(id, None, ErrorCode::InvalidBulletin, e.to_string()))
            }
        }
    }
    for (tlp, group) in by_tlp(valid, &mut out.failures) {
        let carried: Vec<_> = group
            .iter()
            .map(|o| (o.id.clone(), o.version.clone()))
            .collect();
        match made(tlp, group, writer, rules, key, limits, now) {
            Ok(bulletin) => out.made.push(Made {
                bulletin,
                objects: carried,
            }),
            Err((code, why)) => out.failures.extend(
                carried
                    .into_iter()
                    .map(|(id, v)| failure(id, v, code, why.clone())),
            ),
        }
    }
    out
}

fn failure(id: String, version: Option<String>, code: ErrorCode, message: String) -> Failure {
    Failure {
        id,
        version,
        code,
        message,
    }
}

/// The objects grouped by TLP: each by its own marking, an unmarked one by the
/// strictest marking of the envelope; none at all is refused, as renkei shares nothing
/// unlabelled.
fn by_tlp(objects: Vec<StixObject>, failures: &mut Vec<Failure>) -> BTreeMap<Tlp, Vec<StixObject>> {
    let envelope = stix::strictest_tlp(&objects);
    let mut groups: BTreeMap<Tlp, Vec<StixObject>> = BTreeMap::new();
    for o in objects {
        let own = stix::strictest_tlp(std::slice::from_ref(&o));
        match own.or(envelope) {
            Some(tlp) => groups.entry(tlp).or_default().push(o),
            None => failures.push(failure(
                o.id,
                o.version,
                ErrorCode::InvalidBulletin,
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
    writer: &Writer,
    rules: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Result<NewBulletin, (ErrorCode, String)> {
    let name = "name its partners or groups in the envelope's \"x_renkei_audience\"";
    needs_audience(tlp, &writer.audience, name)?;
    let b = bulletin_of(tlp, objects, writer, &rules.config.node.id, now);
    signed_for(b, writer, rules, key, limits, now)
}

/// AMBER, AMBER+STRICT and RED go only to an audience the writer names (as on QUIC):
/// refused without one, saying how to `name` it.
fn needs_audience(tlp: Tlp, audience: &[String], name: &str) -> Result<(), (ErrorCode, String)> {
    match tlp >= Tlp::Amber && audience.is_empty() {
        true => Err((
            ErrorCode::UnknownAudience,
            format!("TLP:{tlp} goes only to an audience: {name}"),
        )),
        false => Ok(()),
    }
}

/// A bulletin made from a MISP event a desk added (`misp::inbound::draft`, with this
/// node as its origin): signed, verified and decided as the TAXII inbox's are.
pub(crate) fn prepare_event(
    b: proto::Bulletin,
    writer: &Writer,
    rules: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Result<NewBulletin, (ErrorCode, String)> {
    if let Some(refused) = decide::proxy_rejection(rules, &writer.who, now) {
        return Err(refused);
    }
    let tlp = Tlp::from_proto(b.tlp).unwrap_or(Tlp::Red);
    let name = "a sharing group of partners this node knows, or ?audience=ID,group:NAME";
    needs_audience(tlp, &b.audience, name)?;
    signed_for(b, writer, rules, key, limits, now)
}

/// `b` signed with the node's key for `writer`, verified, and shared by the one publish
/// decision as if `writer` had handed it over.
fn signed_for(
    b: proto::Bulletin,
    writer: &Writer,
    rules: &RuleSet,
    key: &SigningKey,
    limits: &Limits,
    now: Timestamp,
) -> Result<NewBulletin, (ErrorCode, String)> {
    let invalid = |e: String| (ErrorCode::InvalidBulletin, e);
    let signed = bulletin::sign(&b, key, limits).map_err(|e| (e.code(), e.to_string()))?;
    let unverified =
        UnverifiedBulletin::from_signed(signed, limits).map_err(|e| invalid(e.to_string()))?;
    let digest = unverified.digest();
    let verified = UnverifiedBulletin::verify_all(vec![unverified], &rules.keyring, now, limits)
        .pop()
        .ok_or_else(|| invalid("the node's own signature could not be checked".into()))?
        .map_err(|e| invalid(format!("the node's own signature does not verify: {e}")))?;
    if let Some(why) = decide::unknown_audience(rules, verified.header()) {
        return Err((ErrorCode::UnknownAudience, why));
    }
    Ok(decide::share(
        rules,
        &writer.who.id,
        &verified,
        digest,
        vec![],
        false,
    ))
}

/// The bulletin the node signs for `writer`: its title names the writer, its audience
/// is the writer's, its body the objects as one bundle.
fn bulletin_of(
    tlp: Tlp,
    objects: Vec<StixObject>,
    writer: &Writer,
    node: &PartnerId,
    now: Timestamp,
) -> proto::Bulletin {
    let kind: Kind = stix::kind_of(&objects);
    let types: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    let title = format!(
        "STIX from {} through TAXII: {} object(s) ({})",
        &writer.who.id,
        objects.len(),
        types.into_iter().collect::<Vec<_>>().join(", ")
    );
    let id = BulletinId::new_v7(now);
    let bundle = json!({
        "type": "bundle",
        "id": format!("bundle--{id}"),
        "objects": objects.into_iter().map(|o| o.json).collect::<Vec<_>>(),
    });
    proto::Bulletin {
        id: id.to_string(),
        origin: node.to_string(),
        created_unix_ms: now.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title,
        summary: String::new(),
        tags: vec![],
        audience: writer.audience.clone(),
        content_type: bulletin::STIX_CONTENT_TYPE.into(),
        body: bundle.to_string().into(),
        references: vec![],
    }
}

#[cfg(test)]
mod tests;
