//! Audit records: what the node writes for each event, built from the facts the node
//! already has (the verified header, the policy's decisions, the error it sent).
//!
//! An [`Event`] has no sequence number or time yet; the storage thread seals it with
//! both when it appends it, so numbering stays gapless under concurrency.

use prost::Message as _;

use crate::bulletin::{Digest, Header};
use crate::identity::{Affiliation, PartnerId};
use crate::policy::{Decision, Withhold};
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

/// What a WITHDRAWN record takes away from a partner, for the store to keep beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The partner it was withdrawn from.
    pub partner: PartnerId,
    /// The partner was removed: everything stored so far is withdrawn from its id.
    pub whole_queue: bool,
    /// The bulletins withdrawn.
    pub seqs: Vec<u64>,
}

/// An event waiting to be appended to the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event(proto::AuditRecord);

fn base(event: AuditEvent, partner: &PartnerId) -> proto::AuditRecord {
    proto::AuditRecord {
        event: event as i32,
        partner: partner.into(),
        ..Default::default()
    }
}

/// Names the bulletin `h` (with `digest`) in the record `r`.
fn set_bulletin(r: &mut proto::AuditRecord, h: &Header, digest: Digest) {
    r.bulletin_id = h.id.to_text();
    r.origin = (&h.origin).into();
    r.digest = digest.0.to_vec().into();
    r.tlp = h.tlp.to_proto() as i32;
    r.kind = h.kind.to_proto() as i32;
}

impl Event {
    /// `publisher` handed over a bulletin that verification and policy accept, with one
    /// decision per configured partner. The store fills in its seq when it keeps it, or
    /// turns the event into a duplicate or a conflict ([`Event::stored_as`] and co.).
    pub fn accepted<'a>(
        publisher: &PartnerId,
        header: &Header,
        digest: Digest,
        decisions: impl IntoIterator<Item = (&'a PartnerId, &'a Decision)>,
    ) -> Event {
        let mut r = base(AuditEvent::BulletinAccepted, publisher);
        set_bulletin(&mut r, header, digest);
        r.decisions = decisions
            .into_iter()
            .map(|(partner, d)| match d {
                Decision::Share => proto::Decision {
                    partner: partner.into(),
                    shared: true,
                    ..Default::default()
                },
                Decision::Withhold(w) => proto::Decision {
                    partner: partner.into(),
                    shared: false,
                    reason: w.code() as i32,
                    detail: w.detail(),
                    ..Default::default()
                },
            })
            .collect();
        Event(r)
    }

    /// Names whose each party was: the record's own affiliation (an accepted
    /// bulletin's origin's, a loaded configuration's node's), and each decision's
    /// partner's as `of` gives it.
    pub fn with_affiliations(
        mut self,
        own: Option<&Affiliation>,
        of: impl Fn(&str) -> Option<Affiliation>,
    ) -> Event {
        self.0.affiliation = own.map(ToString::to_string).unwrap_or_default();
        for d in &mut self.0.decisions {
            d.affiliation = of(&d.partner).map(|a| a.to_string()).unwrap_or_default();
        }
        self
    }

    /// `publisher`'s bulletin was refused with `code`; `bulletin` when it decoded.
    pub fn rejected(
        publisher: &PartnerId,
        bulletin: Option<(&Header, Digest)>,
        code: proto::ErrorCode,
        reason: &str,
    ) -> Event {
        let mut r = base(AuditEvent::BulletinRejected, publisher);
        if let Some((h, d)) = bulletin {
            set_bulletin(&mut r, h, d);
        }
        r.error = code as i32;
        r.reason = reason.to_owned();
        Event(r)
    }

    /// Peer node `peer` took the delivery of stored bulletin `seq` but refused it, with
    /// the code and words it gave.
    pub fn peer_refused(peer: &PartnerId, seq: u64, code: i32, reason: &str) -> Event {
        let mut r = base(AuditEvent::PeerRefused, peer);
        r.bulletin_seqs = vec![seq];
        r.error = code;
        r.reason = reason.to_owned();
        Event(r)
    }

    /// `count` refusals of `partner` with `code` that were not recorded one by one (over
    /// the per-minute limit), in one record.
    pub fn refusals_counted(partner: &PartnerId, code: i32, count: u64) -> Event {
        let mut r = base(AuditEvent::BulletinRejected, partner);
        r.error = code;
        r.count = count;
        r.reason = format!(
            "{count} refusal(s) with this code were counted, not recorded one by one: more than the per-minute limit of this partner's refusals"
        );
        Event(r)
    }

    /// The accepted bulletin was stored as `seq`.
    pub fn stored_as(mut self, seq: u64) -> Event {
        self.0.bulletin_seqs = vec![seq];
        self
    }

    /// The bulletin had been stored before, as `seq`, with the same digest.
    pub fn into_duplicate(mut self, seq: u64) -> Event {
        self.0.event = AuditEvent::BulletinDuplicate as i32;
        self.0.decisions.clear();
        self.0.bulletin_seqs = vec![seq];
        self
    }

    /// The bulletin, first stored as `first` from `relay`'s copy, was published by its
    /// origin: `extra` are the partners its origin's route shares it with that the copy
    /// did not (the record keeps only their decisions, so counts stay a recount).
    pub fn into_reshared(mut self, first: u64, relay: &str, extra: &[PartnerId]) -> Event {
        self.0.event = AuditEvent::BulletinReshared as i32;
        self.0
            .decisions
            .retain(|d| d.shared && extra.iter().any(|p| p.as_str() == d.partner));
        let names: Vec<&str> = extra.iter().map(PartnerId::as_str).collect();
        self.0.reason = format!(
            "published by its origin after {relay}'s copy was stored as {first}: now also shared with {}",
            names.join(", ")
        );
        self
    }

    /// The bulletin's (origin, id) had been stored before, as `seq`, with another digest.
    pub fn into_conflict(mut self, seq: u64, existing: Digest) -> Event {
        self.0.event = AuditEvent::BulletinRejected as i32;
        self.0.decisions.clear();
        self.0.bulletin_seqs = vec![seq];
        self.0.error = proto::ErrorCode::Conflict as i32;
        self.0.reason = format!("stored before as {seq} with digest {existing}");
        self
    }

    /// A partner connected.
    pub fn connection_accepted(partner: &PartnerId) -> Event {
        Event(base(AuditEvent::ConnectionAccepted, partner))
    }

    /// A connection was refused; `name` is what the certificate claimed, if anything.
    pub fn connection_refused(name: Option<&PartnerId>, reason: &str) -> Event {
        let mut r = proto::AuditRecord {
            event: AuditEvent::ConnectionRefused as i32,
            partner: name.map(ToString::to_string).unwrap_or_default(),
            ..Default::default()
        };
        r.reason = reason.to_owned();
        Event(r)
    }

    /// Bulletins delivered to `partner` (one record per batch).
    pub fn delivered(partner: &PartnerId, seqs: Vec<u64>) -> Event {
        let mut r = base(AuditEvent::Delivered, partner);
        r.bulletin_seqs = seqs;
        Event(r)
    }

    /// Bulletins handed to `partner` through the TAXII gateway: `what` says which
    /// request (a page of objects, a manifest), so the record tells them from QUIC
    /// deliveries.
    pub fn gateway_read(partner: &PartnerId, seqs: Vec<u64>, what: &str) -> Event {
        let mut r = base(AuditEvent::Delivered, partner);
        r.bulletin_seqs = seqs;
        r.reason = what.to_owned();
        Event(r)
    }

    /// Bulletins queued for `partner` that the rules now in force no longer share with
    /// it, withdrawn from its queue instead of delivered: `about` names the bulletin
    /// when there is one (a whole queue dropped with its partner names none).
    pub fn withdrawn(
        partner: &PartnerId,
        about: Option<(&Header, Digest)>,
        seqs: Vec<u64>,
        why: &Withhold,
    ) -> Event {
        let mut r = base(AuditEvent::Withdrawn, partner);
        if let Some((h, d)) = about {
            set_bulletin(&mut r, h, d);
        }
        r.bulletin_seqs = seqs;
        let detail = why.detail();
        r.reason = format!("withdrawn from the queue: {detail}");
        r.decisions = vec![proto::Decision {
            partner: partner.into(),
            shared: false,
            reason: why.code() as i32,
            detail,
            ..Default::default()
        }];
        Event(r)
    }

    /// What a WITHDRAWN record takes from its partner; `None` for other records.
    pub fn withdrawal(&self) -> Option<Withdrawal> {
        let r = &self.0;
        if r.event != AuditEvent::Withdrawn as i32 {
            return None;
        }
        let removed = proto::WithholdReason::PartnerRemoved as i32;
        Some(Withdrawal {
            partner: r.partner.parse().ok()?,
            whole_queue: r.decisions.iter().any(|d| d.reason == removed),
            seqs: r.bulletin_seqs.clone(),
        })
    }

    /// Bulletins `partner` acknowledged, each with its time from acceptance to the ack.
    pub fn acked(partner: &PartnerId, acks: impl IntoIterator<Item = (u64, u64)>) -> Event {
        let mut r = base(AuditEvent::Acked, partner);
        (r.bulletin_seqs, r.latencies_ms) = acks.into_iter().unzip();
        Event(r)
    }

    /// The receipts of the acks it records; those of other seqs are left out (an ack of
    /// a delivery acknowledged before records nothing again).
    pub fn with_receipts(mut self, receipts: Vec<proto::Receipted>) -> Event {
        let seqs: std::collections::HashSet<u64> = self.0.bulletin_seqs.iter().copied().collect();
        self.0.receipts = receipts
            .into_iter()
            .filter(|r| seqs.contains(&r.seq))
            .collect();
        self
    }

    /// `partner`'s Ack naming `seqs` was refused with `code`, for `reason` (a receipt
    /// that does not verify, or is not its receipt of that delivery).
    pub fn ack_refused(partner: &PartnerId, seqs: Vec<u64>, code: i32, reason: &str) -> Event {
        let mut r = base(AuditEvent::AckRefused, partner);
        r.bulletin_seqs = seqs;
        r.error = code;
        r.reason = reason.to_owned();
        Event(r)
    }

    /// Peer node `peer` passed back `receipts` of bulletins this node sent it (each
    /// with this node's seq of the bulletin); `left_out` says what it did not take.
    pub fn receipts_passed(
        peer: &PartnerId,
        receipts: Vec<proto::Receipted>,
        left_out: &str,
    ) -> Event {
        let mut r = base(AuditEvent::ReceiptsPassed, peer);
        r.bulletin_seqs = receipts.iter().map(|x| x.seq).collect();
        r.receipts = receipts;
        r.reason = left_out.to_owned();
        Event(r)
    }

    /// This node, witnessing `peer`'s audit log, caught it forking or rolling back
    /// (`how`), and cosigns nothing more of it.
    pub fn witness_alarm(peer: &PartnerId, how: &str) -> Event {
        let mut r = base(AuditEvent::WitnessAlarm, peer);
        r.reason = how.to_owned();
        Event(r)
    }

    /// The log's checkpoint key changes after this record, as `rotation` states.
    pub fn audit_key_rotated(node: &PartnerId, rotation: proto::KeyRotation) -> Event {
        let mut r = base(AuditEvent::AuditKeyRotated, node);
        r.reason = format!(
            "checkpoint key {} replaced by {}",
            hex::encode(&rotation.old_key),
            hex::encode(&rotation.new_key)
        );
        r.key_rotation = Some(rotation);
        Event(r)
    }

    /// `auditor` asked the node `what`.
    pub fn auditor_query(auditor: &PartnerId, what: String) -> Event {
        let mut r = base(AuditEvent::AuditorQuery, auditor);
        r.reason = what;
        Event(r)
    }

    /// The configuration in force names `key` as revoked (recorded for every
    /// revocation each time a configuration comes into force).
    pub fn key_revoked(node: &PartnerId, key: &str, why: &str) -> Event {
        let mut r = base(AuditEvent::KeyRevoked, node);
        r.reason = format!("{key}: {why}");
        Event(r)
    }

    /// An operator changed or copied the running node: `what` says the operation, who
    /// asked for it and how it ended.
    pub fn operator(node: &PartnerId, what: &str) -> Event {
        let mut r = base(AuditEvent::Operator, node);
        r.reason = what.to_owned();
        Event(r)
    }

    /// The link with peer node `peer` came up: `how` says who dialled and where.
    pub fn link_up(peer: &PartnerId, how: &str) -> Event {
        let mut r = base(AuditEvent::LinkUp, peer);
        r.reason = how.to_owned();
        Event(r)
    }

    /// The link with peer node `peer` ended, for the reason `why`.
    pub fn link_down(peer: &PartnerId, why: &str) -> Event {
        let mut r = base(AuditEvent::LinkDown, peer);
        r.reason = why.to_owned();
        Event(r)
    }

    /// The record as it stands, before sealing.
    pub fn record(&self) -> &proto::AuditRecord {
        &self.0
    }

    /// A configuration came into force; `policy_digest` identifies its sharing policy.
    pub fn config_loaded(node: &PartnerId, policy_digest: [u8; 32], reason: &str) -> Event {
        let mut r = base(AuditEvent::ConfigLoaded, node);
        r.config_digest = policy_digest.to_vec().into();
        r.reason = reason.to_owned();
        Event(r)
    }

    /// The record as appended: leaf `seq` of the log, recorded at `now`, with every text
    /// field bounded ([`MAX_REASON_BYTES`], [`MAX_NAME_BYTES`]), so no input can make a
    /// record that an audit page or an export cannot carry.
    pub fn seal(self, seq: u64, now: Timestamp) -> proto::AuditRecord {
        let mut r = self.0;
        bound(&mut r);
        r.seq = seq;
        r.time_unix_ms = now.unix_ms();
        r
    }
}

/// The bulletins the receipts of an ack record are receipts of, each once: an ack is
/// about them as a bulletin's own records are about it.
pub fn receipted_bulletins(
    r: &proto::AuditRecord,
) -> std::collections::BTreeSet<crate::bulletin::BulletinId> {
    r.receipts
        .iter()
        .filter_map(|x| x.receipt.as_ref())
        .filter_map(crate::receipt::stated)
        .filter_map(|b| crate::bulletin::BulletinId::parse_canonical(&b.bulletin_id))
        .collect()
}

/// Most bytes of a record's reason, or of a decision's detail, kept as given.
pub const MAX_REASON_BYTES: usize = 2048;
/// Most bytes of a name a record keeps (partner, origin, bulletin id).
pub const MAX_NAME_BYTES: usize = 256;

/// Bounds every text field of `r` (see [`crate::text::bounded`]).
fn bound(r: &mut proto::AuditRecord) {
    use crate::text::bound;
    let name = |s: &mut String| bound(s, MAX_NAME_BYTES);
    name(&mut r.partner);
    name(&mut r.origin);
    name(&mut r.bulletin_id);
    bound(&mut r.reason, MAX_REASON_BYTES);
    for d in &mut r.decisions {
        name(&mut d.partner);
        bound(&mut d.detail, MAX_REASON_BYTES);
    }
}

/// The bytes of a record as they are stored and hashed into the tree.
pub fn leaf_bytes(record: &proto::AuditRecord) -> Vec<u8> {
    record.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::{self, MemoryTree};
    use crate::bulletin::{BulletinId, Kind, Tlp};
    use crate::policy::Withhold;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    fn header() -> Header {
        Header {
            id: BulletinId::parse_canonical("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b").unwrap(),
            origin: pid("us-dod"),
            created: Timestamp::from_unix_ms(1),
            tlp: Tlp::Red,
            kind: Kind::Consultation,
            tags: vec![],
            audience: vec![],
        }
    }

    #[test]
    fn an_accepted_bulletin_records_every_partners_decision_and_no_body() {
        let (uk, ee) = (pid("uk-mod"), pid("ee-mod"));
        let share = Decision::Share;
        let withhold = Decision::Withhold(Withhold::AboveClearance {
            tlp: Tlp::Red,
            clearance: Some(Tlp::Amber),
        });
        let digest = Digest([9; 32]);
        let event = Event::accepted(
            &pid("us-dod"),
            &header(),
            digest,
            [(&uk, &share), (&ee, &withhold)],
        )
        .stored_as(17);
        let r = event.seal(3, Timestamp::from_unix_ms(1_000));
        assert_eq!((r.seq, r.time_unix_ms), (3, 1_000));
        assert_eq!(r.event, AuditEvent::BulletinAccepted as i32);
        assert_eq!(r.bulletin_seqs, [17]);
        assert_eq!(r.digest.as_ref(), &[9u8; 32]);
        assert_eq!(r.decisions.len(), 2);
        assert!(r.decisions[0].shared);
        assert_eq!(
            r.decisions[1].reason,
            proto::WithholdReason::AboveClearance as i32
        );
        assert_eq!(
            r.decisions[1].detail,
            "red is above the partner's clearance amber"
        );
        // Records decode back to themselves and hash as RFC 6962 leaves.
        let bytes = leaf_bytes(&r);
        assert_eq!(proto::AuditRecord::decode(&bytes[..]).unwrap(), r);
        let mut tree = MemoryTree::new();
        tree.push(&bytes).unwrap();
        assert_eq!(tree.root(1).unwrap(), merkle::leaf_hash(&bytes));
    }

    #[test]
    fn other_events_carry_what_an_auditor_asks_about() {
        let r = Event::rejected(
            &pid("uk-mod"),
            Some((&header(), Digest([1; 32]))),
            proto::ErrorCode::OriginMismatch,
            "not yours",
        )
        .seal(0, Timestamp::EPOCH);
        assert_eq!(
            (r.error, r.origin.as_str(), r.reason.as_str()),
            (
                proto::ErrorCode::OriginMismatch as i32,
                "us-dod",
                "not yours"
            )
        );
        let r = Event::rejected(
            &pid("uk-mod"),
            None,
            proto::ErrorCode::MalformedFrame,
            "garbage",
        )
        .seal(1, Timestamp::EPOCH);
        assert!(r.bulletin_id.is_empty() && r.digest.is_empty());
        let r = Event::connection_refused(None, "no partner id in the certificate")
            .seal(2, Timestamp::EPOCH);
        assert_eq!(r.event, AuditEvent::ConnectionRefused as i32);
        assert!(r.partner.is_empty());
        let r = Event::acked(&pid("ee-mod"), [(4, 10), (5, 12)]).seal(3, Timestamp::EPOCH);
        assert_eq!(
            (r.bulletin_seqs, r.latencies_ms),
            (vec![4, 5], vec![10, 12])
        );
        let r = Event::config_loaded(&pid("jp-mod"), [2; 32], "startup").seal(4, Timestamp::EPOCH);
        assert_eq!(r.config_digest.as_ref(), &[2u8; 32]);
    }

    #[test]
    fn no_input_makes_a_record_larger_than_its_bounds() {
        // A 900 KB object id in a refusal once made a 2.4 MB record.
        let huge = format!("object id {:?} is not a STIX id", "x\n".repeat(450_000));
        let r = Event::rejected(
            &pid("uk-mod"),
            None,
            proto::ErrorCode::InvalidRequest,
            &huge,
        )
        .seal(0, Timestamp::EPOCH);
        assert!(
            r.reason.len() <= MAX_REASON_BYTES + 64,
            "{}",
            r.reason.len()
        );
        assert!(r
            .reason
            .contains(&format!("[cut: {} bytes in all", huge.len())));
        assert!(leaf_bytes(&r).len() < 4096);
    }
}
