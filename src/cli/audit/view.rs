//! How `audit query` shows records: one JSON object each for scripts, one table line
//! each for people, saying who got a bulletin, who did not and why, and which
//! bulletins a delivery carried.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::event_name;
use crate::bulletin::{Kind, Tlp};
use crate::identity::PartnerId;
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

/// One record as JSON.
pub(in crate::cli) fn record_json(r: &proto::AuditRecord) -> Value {
    let event = AuditEvent::try_from(r.event).map_or_else(|_| r.event.to_string(), event_name);
    let mut v = json!({
        "seq": r.seq,
        "time": Timestamp::from_unix_ms(r.time_unix_ms).to_string(),
        "event": event,
        "partner": r.partner,
    });
    if !r.bulletin_id.is_empty() {
        v["bulletin_id"] = json!(r.bulletin_id);
        v["origin"] = json!(r.origin);
        v["digest"] = json!(hex::encode(&r.digest));
        v["tlp"] = json!(Tlp::from_proto(r.tlp).map(|t| t.to_string()));
        v["kind"] = json!(Kind::from_proto(r.kind).map(|k| k.to_string()));
    }
    if !r.decisions.is_empty() {
        v["decisions"] = r
            .decisions
            .iter()
            .map(|d| {
                let mut dv = json!({"partner": d.partner, "shared": d.shared});
                if !d.shared {
                    dv["reason"] = json!(proto::WithholdReason::try_from(d.reason).map_or_else(
                        |_| d.reason.to_string(),
                        |r| r
                            .as_str_name()
                            .trim_start_matches("WITHHOLD_REASON_")
                            .to_ascii_lowercase()
                    ));
                    dv["detail"] = json!(d.detail);
                }
                dv
            })
            .collect();
    }
    if !r.bulletin_seqs.is_empty() {
        v["bulletin_seqs"] = json!(r.bulletin_seqs);
    }
    if !r.latencies_ms.is_empty() {
        v["latencies_ms"] = json!(r.latencies_ms);
    }
    if r.event == AuditEvent::ReceiptsPassed as i32 {
        v["receipts"] = r.receipts.iter().map(receipt_json).collect();
    }
    if r.event == AuditEvent::Acked as i32 {
        v["receipts"] = r.receipts.iter().map(receipt_json).collect();
        let signed: Vec<u64> = r.receipts.iter().map(|x| x.seq).collect();
        let unsigned = r.bulletin_seqs.iter().filter(|s| !signed.contains(s));
        v["unsigned_seqs"] = json!(unsigned.collect::<Vec<_>>());
    }
    if r.error != 0 {
        v["error"] = json!(proto::ErrorCode::try_from(r.error).map_or_else(
            |_| r.error.to_string(),
            |e| e
                .as_str_name()
                .trim_start_matches("ERROR_CODE_")
                .to_ascii_lowercase()
        ));
    }
    if !r.reason.is_empty() {
        v["reason"] = json!(r.reason);
    }
    if !r.config_digest.is_empty() {
        v["config_digest"] = json!(hex::encode(&r.config_digest));
    }
    v
}

/// A receipt an ack record holds, as its body says (the node verified it when it
/// recorded it; `audit receipts` verifies it again).
fn receipt_json(x: &proto::Receipted) -> Value {
    let body = x
        .receipt
        .as_ref()
        .and_then(crate::receipt::stated)
        .unwrap_or_default();
    let received = Timestamp::from_unix_ms(body.received_unix_ms).to_string();
    json!({"seq": x.seq, "receiver": body.receiver, "node": body.node,
           "bulletin_id": body.bulletin_id, "received": received})
}

/// The label of a record's event in tables: a refusal that concerns no bulletin (a
/// malformed frame, a request the role does not allow) is not a rejected bulletin.
fn event_label(r: &proto::AuditRecord) -> String {
    let event = AuditEvent::try_from(r.event).map_or_else(|_| r.event.to_string(), event_name);
    let about_bulletins = r.error >= proto::ErrorCode::InvalidBulletin as i32
        && r.error < proto::ErrorCode::Internal as i32;
    if r.event == AuditEvent::BulletinRejected as i32
        && r.bulletin_id.is_empty()
        && !about_bulletins
    {
        return "request_refused".into();
    }
    event
}

/// Why a partner was withheld a bulletin, in words.
fn withhold_text(d: &proto::Decision) -> String {
    let reason = proto::WithholdReason::try_from(d.reason).map_or_else(
        |_| d.reason.to_string(),
        |w| {
            w.as_str_name()
                .trim_start_matches("WITHHOLD_REASON_")
                .to_ascii_lowercase()
                .replace('_', " ")
        },
    );
    match d.detail.is_empty() {
        true => reason,
        false => format!("{reason}: {}", d.detail),
    }
}

/// Who received an accepted bulletin and who did not, and why; with `partner`, that
/// partner's decision first.
fn decisions_text(r: &proto::AuditRecord, partner: Option<&PartnerId>) -> String {
    let why = withhold_text;
    let shared: Vec<&str> = r
        .decisions
        .iter()
        .filter(|d| d.shared)
        .map(|d| d.partner.as_str())
        .collect();
    let withheld: Vec<String> = r
        .decisions
        .iter()
        .filter(|d| !d.shared)
        .map(|d| format!("{} ({})", d.partner, why(d)))
        .collect();
    let mut text = String::new();
    if let Some(d) = partner.and_then(|p| r.decisions.iter().find(|d| d.partner == p.as_str())) {
        match d.shared {
            true => text += &format!("{}: shared; ", d.partner),
            false => text += &format!("{}: WITHHELD, {}; ", d.partner, why(d)),
        }
    }
    let list = |v: &[&str]| {
        if v.is_empty() {
            "nobody".to_owned()
        } else {
            v.join(", ")
        }
    };
    text += &format!("shared with {}", list(&shared));
    if !withheld.is_empty() {
        text += &format!("; withheld from {}", withheld.join(", "));
    }
    text
}

/// The bulletins a delivery, ack or withdrawal names by seq, by origin, id and title.
fn named_bulletins(r: &proto::AuditRecord, names: &HashMap<u64, proto::BulletinName>) -> String {
    r.bulletin_seqs
        .iter()
        .map(|seq| match names.get(seq) {
            Some(n) => format!("{}/{} {:?}", n.origin, n.id, n.title),
            None => format!("seq {seq} (no longer stored)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn table_line(
    r: &proto::AuditRecord,
    names: &HashMap<u64, proto::BulletinName>,
    partner: Option<&PartnerId>,
) -> String {
    let v = record_json(r);
    let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let detail = if !r.decisions.is_empty() && r.event == AuditEvent::BulletinAccepted as i32 {
        format!(
            "{} {}; {}",
            text("tlp").to_uppercase(),
            text("kind"),
            decisions_text(r, partner)
        )
    } else if !r.bulletin_seqs.is_empty() && r.bulletin_id.is_empty() {
        let mut d = named_bulletins(r, names);
        if let Some(why) = r.decisions.first().filter(|d| !d.shared) {
            d += &format!(" ({})", withhold_text(why));
        }
        if r.event == AuditEvent::Acked as i32 {
            let (n, signed) = (r.bulletin_seqs.len(), r.receipts.len());
            d += &match signed {
                0 => "; unsigned".to_owned(),
                s if s == n => "; with signed receipts".to_owned(),
                s => format!("; {s} of {n} with signed receipts"),
            };
        }
        d
    } else {
        [text("error"), text("reason")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ")
    };
    let bulletin = match r.bulletin_id.is_empty() {
        true => String::new(),
        false => format!("{}/{}", r.origin, r.bulletin_id),
    };
    format!(
        "{:>8}  {:<23}  {:<19}  {:<14}  {:<51}  {}",
        r.seq,
        Timestamp::from_unix_ms(r.time_unix_ms).fixed(),
        event_label(r),
        r.partner,
        bulletin,
        detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: AuditEvent, error: proto::ErrorCode, bulletin: &str) -> proto::AuditRecord {
        proto::AuditRecord {
            event: event as i32,
            error: error as i32,
            bulletin_id: bulletin.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_refusal_about_no_bulletin_is_not_labelled_a_rejected_bulletin() {
        use proto::ErrorCode as E;
        let r = |e, b| event_label(&record(AuditEvent::BulletinRejected, e, b));
        assert_eq!(r(E::MalformedFrame, ""), "request_refused");
        assert_eq!(r(E::NotPermitted, ""), "request_refused");
        assert_eq!(r(E::BadSignature, ""), "bulletin_rejected");
        assert_eq!(
            r(E::UnknownAudience, "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b"),
            "bulletin_rejected"
        );
        assert_eq!(
            event_label(&record(AuditEvent::Acked, E::Unspecified, "")),
            "acked"
        );
    }

    #[test]
    fn decisions_say_who_got_it_and_why_the_others_did_not() {
        let mut r = record(
            AuditEvent::BulletinAccepted,
            proto::ErrorCode::Unspecified,
            "x",
        );
        r.decisions = vec![
            proto::Decision {
                partner: "au-dod".into(),
                shared: true,
                ..Default::default()
            },
            proto::Decision {
                partner: "nz-mod".into(),
                shared: false,
                reason: proto::WithholdReason::NotInAudience as i32,
                detail: String::new(),
                ..Default::default()
            },
        ];
        assert_eq!(
            decisions_text(&r, None),
            "shared with au-dod; withheld from nz-mod (not in audience)"
        );
        let nz: PartnerId = "nz-mod".parse().unwrap();
        assert!(decisions_text(&r, Some(&nz)).starts_with("nz-mod: WITHHELD, not in audience; "));
        r.decisions.remove(0);
        assert!(decisions_text(&r, None).starts_with("shared with nobody; "));
    }
}
