//! Cosignatures made and checked, and what a witness cosigns.

use super::*;
use crate::audit::checkpoint::{log_origin, CheckpointSigner};
use crate::audit::merkle::MemoryTree;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// jp-mod's signed checkpoint of `tree` at `size`.
fn checkpoint(tree: &MemoryTree, size: u64) -> String {
    let signer = CheckpointSigner::new(&log_origin("jp-mod"), key(1)).expect("a signer");
    signer
        .sign(size, tree.root(size).expect("a root"))
        .expect("signed")
}

fn tree(records: &[&str]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for r in records {
        t.push(r.as_bytes()).expect("pushed");
    }
    t
}

fn seen(tree: &MemoryTree, size: u64) -> Verified {
    Verified {
        size,
        root: tree.root(size).expect("a root"),
    }
}

#[test]
fn a_cosignature_verifies_with_its_witness_key_and_no_other() {
    let t = tree(&["a", "b", "c"]);
    let text = checkpoint(&t, 3);
    let name = witness_name("nato-ccdcoe");
    let line = cosign(&text, &name, &key(2), 1_790_000_000).expect("cosigned");
    assert!(
        line.starts_with("\u{2014} renkei/nato-ccdcoe/witness "),
        "{line}"
    );
    let cosigned = with_cosignature(&text, &line);
    let log = (log_origin("jp-mod"), key(1).verifying_key());
    let w = WitnessKey {
        name: name.clone(),
        key: key(2).verifying_key(),
    };
    let at = verify_cosignature(&cosigned, (&log.0, &log.1), &w);
    assert_eq!(at, Ok(1_790_000_000));
    // The log's own checkpoint check still passes with the cosignature on it.
    assert!(crate::audit::checkpoint::verify(&cosigned, &log.0, &log.1).is_ok());
    let other = WitnessKey {
        name: name.clone(),
        key: key(3).verifying_key(),
    };
    assert_eq!(
        verify_cosignature(&cosigned, (&log.0, &log.1), &other),
        Err(WitnessError::Missing(name.clone())),
        "another key has another key id"
    );
    let edited = cosigned.replacen("\n3\n", "\n4\n", 1);
    assert!(verify_cosignature(&edited, (&log.0, &log.1), &w).is_err());
    // Cosigned again, the line is replaced, not doubled.
    let again = cosign(&text, &name, &key(2), 1_790_000_100).expect("cosigned");
    let twice = with_cosignature(&cosigned, &again);
    assert_eq!(twice.matches("nato-ccdcoe/witness").count(), 1);
    assert_eq!(
        verify_cosignature(&twice, (&log.0, &log.1), &w),
        Ok(1_790_000_100)
    );
    assert_eq!(
        cosignatures(&twice),
        [(name.clone(), 1_790_000_100)],
        "the log's own signature is not one"
    );
}

#[test]
fn a_witness_key_reads_as_a_vkey_or_an_id_and_key() {
    let w = WitnessKey {
        name: witness_name("ee-mod"),
        key: key(4).verifying_key(),
    };
    assert_eq!(WitnessKey::parse(&w.vkey()), Ok(w.clone()));
    let public = crate::identity::PublicKey::of(&key(4));
    assert_eq!(
        WitnessKey::parse(&format!("ee-mod={public}")),
        Ok(w.clone())
    );
    let wrong_id = w.vkey().replacen('+', "+0", 1);
    assert!(WitnessKey::parse(&wrong_id).is_err());
    assert!(WitnessKey::parse("nonsense").is_err());
}

#[test]
fn a_witness_cosigns_extensions_and_catches_forks_and_rollbacks() {
    let t = tree(&["a", "b", "c", "d", "e"]);
    let proof = |new, old| crate::audit::merkle::prove_consistency(new, old, &t).expect("a proof");
    assert_eq!(
        judge(None, 0, seen(&t, 3), &[]),
        Judgement::Cosign,
        "first use"
    );
    assert_eq!(judge(None, 2, seen(&t, 3), &[]), Judgement::Conflict(0));
    let old = Some(seen(&t, 3));
    assert_eq!(judge(old, 3, seen(&t, 5), &proof(5, 3)), Judgement::Cosign);
    assert_eq!(
        judge(old, 2, seen(&t, 5), &proof(5, 2)),
        Judgement::Conflict(3)
    );
    assert_eq!(
        judge(old, 3, seen(&t, 3), &[]),
        Judgement::Cosign,
        "the same again"
    );
    assert!(
        matches!(judge(old, 3, seen(&t, 2), &[]), Judgement::Fork(w) if w.contains("rolled back"))
    );
    // A second log under the same key: other records, same sizes.
    let forked = tree(&["a", "b", "x", "y", "z"]);
    let other = Verified {
        size: 3,
        root: forked.root(3).expect("a root"),
    };
    assert!(matches!(judge(old, 3, other, &[]), Judgement::Fork(w) if w.contains("two roots")));
    let forked_proof = crate::audit::merkle::prove_consistency(5, 3, &forked).expect("a proof");
    let bigger = Verified {
        size: 5,
        root: forked.root(5).expect("a root"),
    };
    assert!(matches!(
        judge(old, 3, bigger, &forked_proof),
        Judgement::Fork(_)
    ));
}
