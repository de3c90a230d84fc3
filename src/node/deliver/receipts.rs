//! The receipts an Ack carries (proto/README.md §4.7): each verified with the
//! acknowledging partner's key in force and checked against the delivery it is given
//! for before the ack is taken; an Ack with a bad one is refused whole and recorded.
//! The checking itself is `crate::receipt`'s; this reads the stored bulletins back.

use super::progress::Progress;
use super::End;
use crate::identity::PartnerId;
use crate::node::Shared;
use crate::proto::{self, ErrorCode};

/// The receipts in `acks`, each verified with the acknowledging partner's key in force
/// and found to be its receipt, at this node, of the delivery it is given for (one in
/// flight that the same Ack acknowledges, once); or why one is not.
pub(super) fn verified_receipts(
    shared: &Shared,
    partner: &PartnerId,
    p: &Progress,
    acks: &[proto::Ack],
) -> Result<Vec<proto::Receipted>, String> {
    let rules = shared.rules_in_force();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    // A partner with no signing key configured here cannot be checked: what it signs
    // is dropped and its ack recorded unsigned. One with keys must sign with one.
    if !rules.keyring.knows(partner) {
        return Ok(out);
    }
    for ack in acks {
        for r in &ack.receipts {
            let seq = r.seq;
            if !ack.seq.contains(&seq) || !p.in_flight(seq) || !seen.insert(seq) {
                return Err(format!("a receipt for delivery {seq}, which this Ack does not acknowledge (or names twice)"));
            }
            let signed = r
                .receipt
                .as_ref()
                .ok_or_else(|| format!("delivery {seq}: an empty receipt"))?;
            let stored = match shared.storage.store.get(seq) {
                Ok(Some(stored)) => stored,
                _ => {
                    return Err(format!(
                        "delivery {seq} could not be read back to check its receipt"
                    ))
                }
            };
            let expected = crate::receipt::Expected {
                receiver: partner,
                node: &shared.node_id,
                origin: &stored.origin,
                bulletin_id: &stored.id,
                digest: &stored.digest,
            };
            crate::receipt::VerifiedReceipt::verify(signed, &rules.keyring)
                .and_then(|v| v.is_of(&expected))
                .map_err(|e| format!("delivery {seq}: {e}"))?;
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// Records the refusal of acks with a bad receipt (none of them is taken: the
/// deliveries come again) and ends the subscription with why.
pub(super) async fn refuse_acks(
    shared: &Shared,
    partner: &PartnerId,
    acks: &[proto::Ack],
    why: String,
) -> End {
    tracing::warn!(%partner, %why, "an Ack with a bad receipt was refused");
    let seqs = acks.iter().flat_map(|a| a.seq.iter().copied()).collect();
    let code = ErrorCode::BadReceipt;
    let event = crate::audit::record::Event::ack_refused(partner, seqs, code as i32, &why);
    shared.record_refusal(partner, event).await;
    End::Error(code, format!("Ack refused, nothing in it taken: {why}"))
}
