use super::*;
use proptest::prelude::*;
use sha2::Sha256;

/// The inputs and roots of the Certificate Transparency reference tests (RFC 6962).
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// RFC 6962 §2.1, written straight from its recursive definitions: an independent
/// implementation to check tlog_tiles against.
mod rfc {
    use super::*;

    fn h(parts: &[&[u8]]) -> [u8; 32] {
        let mut s = Sha256::new();
        for p in parts {
            s.update(p);
        }
        s.finalize().into()
    }

    /// Largest power of two smaller than n (n > 1).
    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    pub fn mth(d: &[Vec<u8>]) -> [u8; 32] {
        match d.len() {
            0 => h(&[]),
            1 => h(&[&[0], &d[0]]),
            n => h(&[&[1], &mth(&d[..k(n)]), &mth(&d[k(n)..])]),
        }
    }

    pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = k(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
        subproof(m, d, true)
    }
}

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("audit record {i}").into_bytes())
        .collect()
}

fn tree(records: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for r in records {
        t.push(r).unwrap();
    }
    t
}

fn th(h: [u8; 32]) -> TreeHash {
    TreeHash(h)
}

#[test]
fn roots_match_the_rfc_6962_reference_values() {
    let leaves: Vec<Vec<u8>> = CT_LEAVES.iter().map(|l| hex::decode(l).unwrap()).collect();
    let t = tree(&leaves);
    for (size, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(
            t.root(size as u64).unwrap().to_string(),
            *want,
            "size {size}"
        );
    }
    assert_eq!(leaf_hash(b"").to_string(), CT_ROOTS[1]);
}

#[test]
fn stored_hashes_stay_near_two_per_record() {
    let t = tree(&records(1000));
    assert_eq!(stored_count(1000), t.stored.len() as u64);
    assert!(t.stored.len() < 2000);
}

#[test]
fn every_root_and_inclusion_proof_agrees_with_the_rfc_definitions() {
    let recs = records(65);
    let t = tree(&recs);
    for size in 1..=64usize {
        let root = t.root(size as u64).unwrap();
        assert_eq!(root, th(rfc::mth(&recs[..size])), "root of {size}");
        for index in 0..size {
            let proof = prove_inclusion(size as u64, index as u64, &t).unwrap();
            let want: Vec<TreeHash> = rfc::path(index, &recs[..size])
                .into_iter()
                .map(th)
                .collect();
            assert_eq!(proof, want, "inclusion of {index} in {size}");
            let leaf = leaf_hash(&recs[index]);
            check_inclusion(&proof, size as u64, root, index as u64, leaf).unwrap();
            // The same proof at the neighbouring indexes or another size fails.
            for wrong in [index.wrapping_sub(1), index + 1] {
                if wrong < size {
                    assert!(
                        check_inclusion(&proof, size as u64, root, wrong as u64, leaf).is_err()
                    );
                }
            }
            // ... and so does the proof checked as if the tree had another size (with
            // that size's root: a size and a root are only claimed together).
            for other in [size - 1, size + 1] {
                if other > index {
                    let other_root = t.root(other as u64).unwrap();
                    assert!(
                        check_inclusion(&proof, other as u64, other_root, index as u64, leaf)
                            .is_err(),
                        "{index} of {size} as {other}"
                    );
                }
            }
        }
    }
}

#[test]
fn consistency_proofs_verify_for_every_pair_of_sizes_up_to_64() {
    let recs = records(64);
    let t = tree(&recs);
    for new in 1..=64u64 {
        let new_root = t.root(new).unwrap();
        for old in 1..=new {
            let old_root = t.root(old).unwrap();
            let proof = prove_consistency(new, old, &t).unwrap();
            let want: Vec<TreeHash> = rfc::proof(old as usize, &recs[..new as usize])
                .into_iter()
                .map(th)
                .collect();
            assert_eq!(proof, want, "consistency {old} -> {new}");
            check_consistency(&proof, new, new_root, old, old_root).unwrap();
            // A forked old tree (another root) is refused.
            let mut forked = old_root;
            forked.0[0] ^= 1;
            assert!(check_consistency(&proof, new, new_root, old, forked).is_err());
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0] = TreeHash([first.0[0] ^ 1; 32]);
                assert!(check_consistency(&bad, new, new_root, old, old_root).is_err());
                assert!(
                    check_consistency(&proof[1..], new, new_root, old, old_root).is_err(),
                    "a short proof fails"
                );
            }
        }
    }
    // A first size of 0 is refused rather than trivially accepted.
    assert!(matches!(
        check_consistency(&[], 5, t.root(5).unwrap(), 0, t.root(0).unwrap()),
        Err(MerkleError::Invalid(_))
    ));
    assert!(prove_consistency(5, 0, &t).is_err());
    assert!(prove_consistency(5, 6, &t).is_err());
}

proptest! {
    /// Arbitrary proofs and sizes give an error or a (rare) success, never a panic.
    #[test]
    fn random_proofs_never_panic(
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..20),
        new in 0u64..1000,
        old in 0u64..1000,
        index in 0u64..1000,
        root in any::<[u8; 32]>(),
    ) {
        let proof: Vec<TreeHash> = proof.into_iter().map(TreeHash).collect();
        let _ = check_consistency(&proof, new, TreeHash(root), old, TreeHash(root));
        let _ = check_inclusion(&proof, new, TreeHash(root), index, TreeHash(root));
    }
}

#[test]
fn the_frontier_gives_every_roots_of_the_full_tree_and_of_rfc_6962() {
    let mut frontier = Frontier::default();
    let mut full = MemoryTree::new();
    assert_eq!(frontier.root().to_string(), CT_ROOTS[0]);
    for (n, leaf) in CT_LEAVES.iter().enumerate() {
        frontier.push(&hex::decode(leaf).unwrap());
        assert_eq!(
            frontier.root().to_string(),
            CT_ROOTS[n + 1],
            "size {}",
            n + 1
        );
    }
    for n in 0..300u32 {
        let record = n.to_be_bytes();
        frontier.push(&record);
        full.push(&record).unwrap();
    }
    let mut again = Frontier::default();
    for size in 1..=full.size() {
        again.push(&(size as u32 - 1).to_be_bytes());
        assert_eq!(again.root(), full.root(size).unwrap(), "size {size}");
    }
    assert_eq!(frontier.size(), 308);
}
