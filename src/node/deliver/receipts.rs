//! The receipts an Ack carries (proto/README.md §4.7): each verified with the
//! acknowledging partner's key in force and checked against the delivery it is given
//! for before the ack is taken; an Ack with a bad one is refused whole and recorded.
//! The checking itself is `crate::receipt`'s; this reads the stored bulletins back.

use super::progress::Progress;
use super::End;
use crate::identity::PartnerId;
use crate::node::shared::Trail;
use crate::proto::{self, ErrorCode};
use crate::receipt::{Expected, ReceiptError, VerifiedReceipt};
use crate::store::Store;

/// Why an Ack's receipt is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadReceipt {
    /// A receipt for a seq the same Ack does not acknowledge, or a second for one.
    #[error("a receipt for delivery {0}, which this Ack does not acknowledge (or names twice)")]
    NotAcknowledged(u64),
    /// A Receipted with no receipt in it.
    #[error("delivery {0}: an empty receipt")]
    Empty(u64),
    /// The stored bulletin could not be read to check the receipt against.
    #[error("delivery {0} could not be read back to check its receipt")]
    Unreadable(u64),
    /// It does not verify, or is not the partner's receipt of that delivery.
    #[error("delivery {seq}: {why}")]
    Invalid {
        /// The delivery.
        seq: u64,
        /// What is wrong with its receipt.
        why: ReceiptError,
    },
}

/// The receipts in `acks`, each verified with the acknowledging partner's key in force
/// and found to be its receipt, at this node, of the delivery it is given for (one in
/// flight that the same Ack acknowledges, once); or why one is not.
pub(super) fn verified_receipts(
    node: &super::Delivering,
    partner: &PartnerId,
    p: &Progress,
    acks: &[proto::Ack],
) -> Result<Vec<proto::Receipted>, BadReceipt> {
    let rules = node.rules.in_force();
    // A partner with no signing key configured here cannot be checked: what it signs
    // is dropped and its ack recorded unsigned. One with keys must sign with one.
    if !rules.keyring.knows(partner) {
        return Ok(Vec::new());
    }
    let given = given(&node.storage.store, p, acks)?;
    let signed: Vec<proto::SignedReceipt> = given.iter().map(|(_, s, _)| s.clone()).collect();
    // Their signatures are checked as one batch, as deliveries' are.
    let verified = VerifiedReceipt::verify_all(&signed, &rules.keyring);
    let mut out = Vec::with_capacity(given.len());
    for ((seq, receipt, stored), v) in given.into_iter().zip(verified) {
        let expected = Expected {
            receiver: partner,
            node: &node.node_id,
            origin: &stored.origin,
            bulletin_id: &stored.id,
            digest: &stored.digest,
        };
        v.and_then(|v| v.is_of(&expected))
            .map_err(|why| BadReceipt::Invalid { seq, why })?;
        out.push(proto::Receipted {
            seq,
            receipt: Some(receipt),
        });
    }
    Ok(out)
}

/// Each receipt of `acks` with its seq and the stored bulletin it must be of: only for
/// a delivery in flight that the same Ack acknowledges, once.
fn given(
    store: &Store,
    p: &Progress,
    acks: &[proto::Ack],
) -> Result<Vec<(u64, proto::SignedReceipt, proto::StoredBulletin)>, BadReceipt> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for ack in acks {
        for r in &ack.receipts {
            let seq = r.seq;
            if !ack.seq.contains(&seq) || !p.in_flight(seq) || !seen.insert(seq) {
                return Err(BadReceipt::NotAcknowledged(seq));
            }
            let signed = r.receipt.as_ref().ok_or(BadReceipt::Empty(seq))?;
            let Ok(Some(stored)) = store.get(seq) else {
                return Err(BadReceipt::Unreadable(seq));
            };
            out.push((seq, signed.clone(), stored));
        }
    }
    Ok(out)
}

/// Records the refusal of acks with a bad receipt (none of them is taken: the
/// deliveries come again) and ends the subscription with why.
pub(super) async fn refuse_acks(
    trail: &Trail,
    partner: &PartnerId,
    acks: &[proto::Ack],
    why: BadReceipt,
) -> End {
    let why = why.to_string();
    tracing::warn!(%partner, %why, "an Ack with a bad receipt was refused");
    let seqs = acks.iter().flat_map(|a| a.seq.iter().copied()).collect();
    let code = ErrorCode::BadReceipt;
    let event = crate::audit::record::Event::ack_refused(partner, seqs, code as i32, &why);
    trail.refusal(partner, event).await;
    End::Error(code, format!("Ack refused, nothing in it taken: {why}"))
}
