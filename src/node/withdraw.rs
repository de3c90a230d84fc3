//! Withdrawal: a bulletin queued under earlier rules goes out only if the rules in force
//! when it goes out still share it with that partner (its clearance, groups, kinds,
//! denied tags, the origin's key and the partner itself). What they no longer share is
//! recorded as WITHDRAWN and taken off the queue instead of delivered.
//!
//! [`recheck`] decides, with no I/O: the stored envelope, who handed it over and the
//! rules in force go in, a withdrawal or nothing comes out. The delivery loop asks it for
//! every queued bulletin accepted before the rules it holds came into force; a partner
//! removed from the configuration has its whole queue withdrawn at once
//! ([`withdraw_removed`]), so that a partner id added again later starts afresh.

use bytes::Bytes;

use super::writer::StorageError;

use super::shared::RuleSet;
use super::shared::Trail;
use crate::audit::record::Event;
use crate::bulletin::{Digest, Header, Limits, UnverifiedBulletin};
use crate::identity::PartnerId;
use crate::policy::{Decision, Route, Withhold};
use crate::store::{Cursor, Room, Store, StoreError};

/// A queued bulletin the rules in force no longer share with the partner.
#[derive(Debug)]
pub(crate) struct Withdrawal {
    pub header: Header,
    pub digest: Digest,
    pub why: Withhold,
}

impl Withdrawal {
    /// Its audit record: `partner` no longer gets `seq`.
    pub fn event(&self, partner: &PartnerId, seq: u64) -> Event {
        Event::withdrawn(
            partner,
            Some((&self.header, self.digest)),
            vec![seq],
            &self.why,
        )
    }
}

/// Limits for reading back what the node itself stored: it passed the limits in force
/// when it was accepted, and a smaller limit set since must not make it unreadable.
fn stored_limits(limits: &Limits) -> Limits {
    Limits {
        max_bulletin_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
        ..*limits
    }
}

/// The stored bulletin `signed` verified again, to be handed over in another form (a
/// MISP event) that must be made from a verified bulletin: by the origin's key in
/// `rules` valid when it was created, its age not judged again.
pub(crate) fn verify_stored(
    signed: Bytes,
    rules: &RuleSet,
    limits: &Limits,
    now: crate::timestamp::Timestamp,
) -> Result<crate::bulletin::VerifiedBulletin, crate::bulletin::BulletinError> {
    let limits = Limits {
        max_age: None,
        ..stored_limits(limits)
    };
    UnverifiedBulletin::decode(signed, &limits)?.verify(&rules.keyring, now, &limits)
}

/// The delivery screen every door reads through (a subscription, a peer link, a TAXII
/// page): whether the stored bulletin `seq` may still go to `partner`. One queued after
/// the rules in force came in was decided under them; an earlier one is checked again
/// ([`recheck`]). `None` if it may go, the withdrawal if not. (What a WITHDRAWN record
/// took away never reaches this: the cursor and the withdrawal marks skip it.)
pub(crate) fn screen_stored(
    store: &crate::store::Store,
    rules: &RuleSet,
    limits: &Limits,
    partner: &PartnerId,
    seq: u64,
) -> Result<Option<Withdrawal>, StoreError> {
    if seq > rules.recheck_through {
        return Ok(None);
    }
    let stored = store.get(seq)?.ok_or_else(|| StoreError::Corrupt {
        key: "stored bulletin".into(),
        why: format!("bulletin {seq} is queued but not stored").into(),
    })?;
    recheck(
        stored.signed,
        &stored.received_from,
        &stored.path,
        partner,
        rules,
        limits,
    )
}

/// Whether `rules` still share the stored bulletin `signed`, received
/// from `received_from` by `path`, with `partner`: `None` if they do, the withdrawal
/// if not.
pub(crate) fn recheck(
    signed: Bytes,
    received_from: &str,
    path: &[String],
    partner: &PartnerId,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Option<Withdrawal>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        key: "stored bulletin".into(),
        why: why.into(),
    };
    let b = UnverifiedBulletin::decode(signed, &stored_limits(limits)).map_err(|e| {
        StoreError::Corrupt {
            key: "stored bulletin".into(),
            why: e.into(),
        }
    })?;
    let from: PartnerId = received_from
        .parse()
        .map_err(|e| corrupt(format!("received_from: {e}")))?;
    let path = path
        .iter()
        .map(|n| n.parse())
        .collect::<Result<Vec<PartnerId>, _>>()
        .map_err(|e| corrupt(format!("path: {e}")))?;
    let route = Route {
        received_from: &from,
        path: &path,
    };
    let h = b.header();
    let why = match rules.keyring.lookup(&h.origin, &b.key_id(), h.created) {
        Err(_) => Some(Withhold::OriginKey),
        Ok(_) => match rules.policy.still_shared(h, route, partner) {
            Decision::Share => None,
            Decision::Withhold(w) => Some(w),
        },
    };
    Ok(why.map(|why| Withdrawal {
        header: h.clone(),
        digest: b.digest(),
        why,
    }))
}

/// The withdrawal of the stored bulletin `signed` from a peer that reads frames of at
/// most `max` bytes, when its delivery takes up to `bytes`.
pub(crate) fn too_large(
    signed: Bytes,
    bytes: usize,
    max: usize,
    limits: &Limits,
) -> Result<Withdrawal, StoreError> {
    let b = UnverifiedBulletin::decode(signed, &stored_limits(limits)).map_err(|e| {
        StoreError::Corrupt {
            key: "stored bulletin".into(),
            why: e.into(),
        }
    })?;
    Ok(Withdrawal {
        header: b.header().clone(),
        digest: b.digest(),
        why: Withhold::TooLargeForPeer { bytes, max },
    })
}

/// The most bytes the Delivery frame of a stored bulletin takes: the envelope, its
/// path, and room for the frame's own fields and length prefixes.
pub(crate) fn delivery_bytes(signed: &[u8], path: &[String]) -> usize {
    signed.len() + path.iter().map(|p| p.len() + 4).sum::<usize>() + 64
}

/// A page of a removed partner's queue: only its seqs are wanted, but each bulletin
/// read keeps its segment in memory until the page is dropped.
const ROOM: Room = Room {
    bulletins: 1000,
    bytes: 4 << 20,
};

/// Withdraws the whole queue of every partner that the last configuration put in force
/// named and `rules` do not, then records their partners as the ones in force.
/// Called when a node starts and after each reload (one at a time).
pub(super) async fn withdraw_removed(
    store: &Store,
    trail: &Trail,
    rules: &RuleSet,
) -> Result<(), StorageError> {
    let now: Vec<PartnerId> = rules.config.partners.iter().map(|p| p.id.clone()).collect();
    let before = store.roster()?;
    for gone in before.iter().filter(|p| !now.contains(p)) {
        let head = store.head()?;
        let cursor = store.cursor(gone)?;
        let mut after = cursor.acked_through;
        let mut seqs = Vec::new();
        while after < head {
            let page = store.pending(gone, after, &cursor, ROOM)?;
            seqs.extend(page.items.iter().map(|i| i.seq));
            if page.scanned_through <= after {
                break;
            }
            after = page.scanned_through;
        }
        tracing::info!(partner = %gone, withdrawn = seqs.len(), "the queue of a removed partner is withdrawn");
        let mut chunks: Vec<Vec<u64>> = seqs.chunks(1000).map(<[u64]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // An empty queue is recorded too: the auditor sees the partner's queue end.
            let event = Event::withdrawn(gone, None, chunk, &Withhold::PartnerRemoved);
            let done = Cursor {
                acked_through: head,
                acked_above: Default::default(),
            };
            let cursor = (i == last).then(|| (gone.clone(), done));
            trail.commit(Some(event), cursor).await?;
        }
    }
    if before != now {
        store.set_roster(&now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulletin::{Kind, Tlp};
    use crate::config::NodeConfig;
    use crate::identity::PublicKey;
    use crate::proto;
    use prost::Message as _;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    /// The rules of a node whose partner au-dod has `au_dod` as its table body, with
    /// us-dod's key revoked when `revoked`.
    fn rule_set(au_dod: &str, revoked: bool) -> RuleSet {
        let us = PublicKey::of(&key(1));
        let revocation = if revoked {
            format!("[[revoked]]\nkey = \"{us}\"\n")
        } else {
            String::new()
        };
        let text = format!(
            "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"ca\"\n\
             tls_cert = \"c\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
             [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{us}\" }}]\n\n\
             [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\n{au_dod}\n{revocation}"
        );
        match NodeConfig::parse(&text, std::path::Path::new("node.toml")) {
            Ok(cfg) => RuleSet::new(cfg, u64::MAX),
            Err(e) => panic!("{e}"),
        }
    }

    fn stored(tlp: Tlp, kind: Kind, tags: &[&str], audience: &[&str]) -> Bytes {
        let b = proto::Bulletin {
            id: "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b".into(),
            origin: "us-dod".into(),
            created_unix_ms: 1_790_000_000_000,
            tlp: tlp.to_proto() as i32,
            kind: kind.to_proto() as i32,
            title: "t".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let signed = crate::bulletin::sign(&b, &key(1), &Limits::default()).expect("signs");
        Bytes::from(signed.encode_to_vec())
    }

    /// What delivery decides and what `policy explain` (the policy's decision for the
    /// partner) says are the same, for every rule a reload can change.
    #[test]
    fn delivery_withdraws_exactly_what_the_policy_withholds() {
        let au: PartnerId = "au-dod".parse().expect("an id");
        let us: PartnerId = "us-dod".parse().expect("an id");
        let cases = [
            (
                "clearance = \"amber\"",
                stored(Tlp::Red, Kind::Incident, &[], &["au-dod"]),
            ),
            (
                "clearance = \"red\"",
                stored(Tlp::Red, Kind::Incident, &[], &["au-dod"]),
            ),
            (
                "clearance = \"red\"",
                stored(Tlp::Amber, Kind::Advisory, &[], &["group:nato"]),
            ),
            (
                "clearance = \"red\"\ngroups = [\"nato\"]",
                stored(Tlp::Amber, Kind::Advisory, &[], &["group:nato"]),
            ),
            (
                "clearance = \"red\"\nkinds = [\"advisory\"]",
                stored(Tlp::Green, Kind::Incident, &[], &[]),
            ),
            (
                "clearance = \"red\"\ndeny_tags = [\"ＮＡＴＩＯＮＡＬ\"]",
                stored(Tlp::Green, Kind::Advisory, &["national"], &[]),
            ),
            (
                "clearance = \"green\"",
                stored(Tlp::Green, Kind::Advisory, &[], &[]),
            ),
        ];
        let limits = Limits::default();
        for (rules, bytes) in cases {
            let s = rule_set(rules, false);
            let header = UnverifiedBulletin::decode(bytes.clone(), &limits).expect("decodes");
            let explained = s
                .policy
                .decide_all(header.header(), Route::direct(&us))
                .find(|(p, _)| **p == au)
                .map(|(_, d)| d)
                .expect("au-dod is a partner");
            let withdrawn = recheck(bytes, "us-dod", &[], &au, &s, &limits).expect("reads");
            match (&explained, &withdrawn) {
                (Decision::Share, None) => {}
                (Decision::Withhold(w), Some(d)) => assert_eq!(*w, d.why, "{rules}"),
                _ => panic!("{rules}: policy says {explained:?}, delivery {withdrawn:?}"),
            }
        }
        // A revoked origin key withdraws what the policy alone would share.
        let s = rule_set("clearance = \"green\"", true);
        let bytes = stored(Tlp::Green, Kind::Advisory, &[], &[]);
        let withdrawn = recheck(bytes, "us-dod", &[], &au, &s, &limits).expect("reads");
        assert_eq!(withdrawn.map(|w| w.why), Some(Withhold::OriginKey));
        // A partner no longer configured.
        let gone: PartnerId = "nz-mod".parse().expect("an id");
        let bytes = stored(Tlp::Green, Kind::Advisory, &[], &[]);
        let withdrawn = recheck(
            bytes,
            "us-dod",
            &[],
            &gone,
            &rule_set("clearance = \"green\"", false),
            &limits,
        );
        assert_eq!(
            withdrawn.expect("reads").map(|w| w.why),
            Some(Withhold::PartnerRemoved)
        );
    }
}
