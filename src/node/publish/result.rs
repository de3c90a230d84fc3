//! The answer to one Publish: refusals, an accepted bulletin's answer while its commit
//! is pending, and what the commit's outcome makes of it. Pure: no streams, no clock.
//!
//! An accepted answer names every partner and why each was withheld, as the audit
//! record does. Those lists are encoded once, straight from the record, rather than
//! copied string by string into the answer and encoded from there.

use bytes::Bytes;

use crate::bulletin::{Digest, Header};
use crate::node::writer::StorageError;
use crate::proto::{self, ErrorCode, PublishStatus};
use crate::store::Outcome;
use crate::transport::Outbox;

/// A refusal of a publish that did not (or not yet) name its bulletin.
pub(super) fn rejected(
    request_id: u64,
    code: ErrorCode,
    message: String,
) -> Box<proto::PublishResult> {
    Box::new(proto::PublishResult {
        request_id,
        status: PublishStatus::Rejected as i32,
        error: code as i32,
        message,
        ..Default::default()
    })
}

/// A rejection of a bulletin already identified in `r` (keeps its id, origin and digest).
pub(super) fn reject_identified(
    mut r: proto::PublishResult,
    code: ErrorCode,
    message: String,
) -> proto::PublishResult {
    r.status = PublishStatus::Rejected as i32;
    r.error = code as i32;
    r.message = message;
    r
}

/// Names the bulletin in an answer: its id, origin and digest.
pub(super) fn naming_bulletin(
    mut r: Box<proto::PublishResult>,
    h: &Header,
    digest: Digest,
) -> Box<proto::PublishResult> {
    r.bulletin_id = h.id.to_text();
    r.origin = (&h.origin).into();
    r.digest = Bytes::copy_from_slice(&digest.0);
    r
}

/// An answer to send: the result, and its partner lists already encoded (only an
/// accepted bulletin's answer has them).
pub(super) struct Answer {
    result: proto::PublishResult,
    /// `PublishResult` fields 6 and 7, encoded; they follow every field `result` sets.
    lists: Vec<u8>,
}

impl Answer {
    /// The answer of a bulletin accepted with `record`'s decisions, before its commit.
    /// It names who receives the bulletin; the partners it is withheld from, and why,
    /// only when `disclose_withheld`, and auditors never.
    pub(super) fn accepted(
        result: proto::PublishResult,
        record: &proto::AuditRecord,
        disclose_withheld: bool,
    ) -> Answer {
        Answer {
            result,
            lists: encode_lists(&record.decisions, disclose_withheld),
        }
    }

    /// An answer with no partner lists (every answer but an acceptance).
    pub(super) fn plain(result: proto::PublishResult) -> Answer {
        Answer {
            result,
            lists: Vec::new(),
        }
    }

    /// The result alone, when the bulletin never reached the commit.
    pub(super) fn into_result(self) -> proto::PublishResult {
        self.result
    }

    /// Appends the answer's frame to `outbox`.
    pub(super) fn push_to(&self, outbox: &mut Outbox) {
        outbox.push_result(&self.result, &self.lists);
    }

    /// What the commit's outcome makes of an accepted answer: `None` when the storage
    /// thread went away without answering.
    pub(super) fn settle(self, outcome: Option<Result<Outcome, StorageError>>) -> Answer {
        let Answer { mut result, lists } = self;
        let r = match outcome {
            Some(Ok(Outcome::Accepted(_))) => return Answer { result, lists },
            Some(Ok(Outcome::Duplicate(_))) => {
                result.status = PublishStatus::Duplicate as i32;
                result
            }
            Some(Ok(Outcome::Conflict { existing, .. })) => {
                let msg = format!(
                    "{} from {} was accepted before with digest {existing}; a bulletin id cannot be reused for other content",
                    result.bulletin_id, result.origin
                );
                reject_identified(result, ErrorCode::Conflict, msg)
            }
            Some(Err(e)) => reject_identified(result, e.code(), e.to_peer()),
            None => {
                let stopped = StorageError::Stopped;
                reject_identified(result, stopped.code(), stopped.to_peer())
            }
        };
        Answer::plain(r)
    }
}

/// Whether a withheld decision is told to the publisher: only when the operator allows
/// it, and never one about an auditor (auditors stay out of sight).
fn disclosed(d: &proto::Decision, disclose_withheld: bool) -> bool {
    disclose_withheld && d.reason != proto::WithholdReason::Auditor as i32
}

/// `shared_with` then `withheld`, as prost writes them for the answer built from
/// `decisions` (shared partners in `shared_with`, the others in `withheld` when
/// [`disclosed`]).
fn encode_lists(decisions: &[proto::Decision], disclose_withheld: bool) -> Vec<u8> {
    let room = decisions
        .iter()
        .map(|d| d.partner.len() + d.detail.len() + 16)
        .sum();
    let shared = decisions.iter().filter(|d| d.shared);
    let told = decisions
        .iter()
        .filter(|d| !d.shared && disclosed(d, disclose_withheld));
    crate::wire::publish_result_lists(shared, told, room)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// The answer as prost encodes it with the lists filled in from `decisions`.
    fn prosts(
        result: &proto::PublishResult,
        decisions: &[proto::Decision],
        disclose: bool,
    ) -> Vec<u8> {
        let mut full = result.clone();
        for d in decisions {
            if d.shared {
                full.shared_with.push(d.partner.clone());
            } else if disclose && d.reason != proto::WithholdReason::Auditor as i32 {
                full.withheld.push(proto::Withheld {
                    partner: d.partner.clone(),
                    reason: d.reason,
                    detail: d.detail.clone(),
                });
            }
        }
        proto::ServerFrame {
            frame: Some(proto::server_frame::Frame::PublishResult(full)),
        }
        .encode_length_delimited_to_vec()
    }

    fn decision(partner: &str, shared: bool, reason: i32, detail: &str) -> proto::Decision {
        proto::Decision {
            partner: partner.into(),
            shared,
            reason,
            detail: detail.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_accepted_answer_is_the_bytes_prost_would_write() {
        let result = proto::PublishResult {
            request_id: 300,
            status: PublishStatus::Accepted as i32,
            bulletin_id: "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a01".into(),
            origin: "us-dod".into(),
            digest: Bytes::from(vec![5; 32]),
            ..Default::default()
        };
        let long = "x".repeat(300);
        let cases: Vec<Vec<proto::Decision>> = vec![
            vec![],
            vec![decision("uk-mod", true, 0, "")],
            vec![
                decision(
                    "ee-mod",
                    false,
                    3,
                    "red is above the partner's clearance amber",
                ),
                decision("uk-mod", true, 0, ""),
                decision("fr-minarm", false, 1, ""),
                decision("nato-ccdcoe", true, 0, ""),
            ],
            // Fields proto3 omits, a negative code, a detail whose length takes two bytes.
            vec![
                decision("", true, 0, ""),
                decision("", false, 0, ""),
                decision("pl-mon", false, -1, &long),
            ],
        ];
        for decisions in cases {
            let record = proto::AuditRecord {
                decisions: decisions.clone(),
                ..Default::default()
            };
            for disclose in [true, false] {
                let mut outbox = Outbox::default();
                Answer::accepted(result.clone(), &record, disclose).push_to(&mut outbox);
                let prost = prosts(&result, &decisions, disclose);
                assert_eq!(outbox.bytes(), prost, "{decisions:?}, {disclose}");
            }
        }
    }

    #[test]
    fn an_answer_names_who_received_it_and_never_an_auditor() {
        let record = proto::AuditRecord {
            decisions: vec![
                decision("uk-mod", true, 0, ""),
                decision(
                    "ee-mod",
                    false,
                    3,
                    "amber is above the partner's clearance green",
                ),
                decision("nato-audit", false, 2, "auditors receive no bulletins"),
            ],
            ..Default::default()
        };
        let told = |disclose| {
            let mut outbox = Outbox::default();
            Answer::accepted(Default::default(), &record, disclose).push_to(&mut outbox);
            let frame = proto::ServerFrame::decode_length_delimited(outbox.bytes()).unwrap();
            match frame.frame {
                Some(proto::server_frame::Frame::PublishResult(r)) => r,
                other => panic!("{other:?}"),
            }
        };
        let quiet = told(false);
        assert_eq!(quiet.shared_with, ["uk-mod"]);
        assert!(quiet.withheld.is_empty(), "no clearances told by default");
        let open = told(true);
        let withheld: Vec<&str> = open.withheld.iter().map(|w| w.partner.as_str()).collect();
        assert_eq!(withheld, ["ee-mod"], "the auditor stays out of sight");
    }

    #[test]
    fn only_an_accepted_outcome_keeps_the_lists() {
        let result = proto::PublishResult {
            request_id: 1,
            status: PublishStatus::Accepted as i32,
            bulletin_id: "b".into(),
            origin: "us-dod".into(),
            ..Default::default()
        };
        let record = proto::AuditRecord {
            decisions: vec![
                decision("uk-mod", true, 0, ""),
                decision("ee-mod", false, 3, "why"),
            ],
            ..Default::default()
        };
        let answer = |outcome| Answer::accepted(result.clone(), &record, true).settle(outcome);
        let kept = answer(Some(Ok(Outcome::Accepted(7))));
        assert_eq!(kept.result, result);
        assert!(!kept.lists.is_empty());
        let duplicate = answer(Some(Ok(Outcome::Duplicate(7))));
        assert_eq!(duplicate.result.status, PublishStatus::Duplicate as i32);
        assert!(duplicate.lists.is_empty());
        let conflict = answer(Some(Ok(Outcome::Conflict {
            seq: 7,
            existing: Digest([1; 32]),
        })));
        assert_eq!(conflict.result.error, ErrorCode::Conflict as i32);
        assert!(
            conflict.result.message.contains("b from us-dod"),
            "{}",
            conflict.result.message
        );
        assert!(conflict.lists.is_empty());
        let gone = answer(None);
        assert_eq!(gone.result.error, ErrorCode::ShuttingDown as i32);
        assert!(gone.lists.is_empty());
        let full = StorageError::Failed(crate::node::writer::Cause::new(std::io::Error::other(
            "database error: No space left on device",
        )));
        let failed = answer(Some(Err(full.clone())));
        assert_eq!(failed.result.error, ErrorCode::Internal as i32);
        assert_eq!(
            failed.result.message,
            full.to_peer(),
            "what a peer may hear"
        );
        assert!(!failed.result.message.contains("No space"));
    }
}
