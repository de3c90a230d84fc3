//! The one rule for bulletin signatures, whether checked alone or in a batch.
//!
//! Ed25519 implementations disagree on crafted signatures: `verify_strict` checks the
//! cofactorless equation, batch verification can only check the cofactored one, and a
//! signer can make a signature (with a small-order component) that passes one and
//! fails the other. A node that batched with one rule and fell back to the other would
//! accept a bulletin or not depending on which others arrived with it. So renkei uses
//! one rule everywhere, ZIP-215 (ed25519-zebra, the Zcash Foundation's implementation,
//! whose batches agree with its single checks by construction):
//! `[8][s]B = [8]R + [8][k]A` with `s < ℓ`, plus two renkei requirements ZIP-215 leaves
//! out: the key is not of small order (checked when a key is configured, see
//! `identity::PublicKey`) and `R` is canonically encoded, so a signature has one byte
//! form. Every signature an honest signer makes passes; none can be made without the key.
//!
//! Pure: no clock; randomness only for the batch coefficients.

use ed25519_dalek::Signature;

use crate::identity::PublicKey;

/// Is `sig` a valid signature of `msg` by `key`?
pub fn verify_one(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    canonical_r(sig) && key.zip215().verify(sig, msg).is_ok()
}

/// Checks many signatures at once; the answer for each is what [`verify_one`] says. A
/// batch that fails is checked one by one to find the bad ones.
pub fn verify_many(items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<bool> {
    if items.len() < 2 {
        return items
            .iter()
            .map(|(key, msg, sig)| verify_one(key, msg, sig))
            .collect();
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut canonical = true;
    for (key, msg, sig) in items {
        canonical &= canonical_r(sig);
        let key_bytes = ed25519_zebra::VerificationKeyBytes::from(*key.zip215());
        batch.queue((key_bytes, **sig, msg));
    }
    if canonical {
        // The batch's random coefficients must be unpredictable to whoever made the
        // signatures. Drawing each from the OS (a getrandom call per signature) cost
        // more than the batch's bookkeeping; one 32-byte draw per batch seeds merlin's
        // transcript RNG (STROBE over Keccak), the generator ed25519-dalek's batches use.
        let rng = merlin::Transcript::new(b"renkei/v1/batch-coefficients")
            .build_rng()
            .finalize(&mut rand_core::OsRng);
        if batch.verify(rng).is_ok() {
            return vec![true; items.len()];
        }
    }
    items
        .iter()
        .map(|(key, msg, sig)| verify_one(key, msg, sig))
        .collect()
}

/// Is the signature's `R` the canonical encoding of its point: `y < p` and no sign bit
/// on the two points whose `x` is zero?
fn canonical_r(sig: &Signature) -> bool {
    let r = sig.r_bytes();
    let (low, middle, top) = (r[0], &r[1..31], r[31]);
    let y_top = top & 0x7f;
    let all_ones = middle.iter().all(|b| *b == 0xff);
    let all_zero = middle.iter().all(|b| *b == 0);
    // p = 2^255 - 19: the encodings of y in [p, 2^255) end ff..ff 7f and start at ed.
    if y_top == 0x7f && all_ones && low >= 0xed {
        return false;
    }
    // x = 0 for y = 1 and y = p - 1 (ec ff..ff 7f): "negative zero" is not canonical.
    let sign = top & 0x80 != 0;
    let y_is_one = low == 1 && all_zero && y_top == 0;
    let y_is_minus_one = low == 0xec && all_ones && y_top == 0x7f;
    !(sign && (y_is_one || y_is_minus_one))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn honest_signatures_pass_alone_and_in_batches_and_a_bad_one_is_found() {
        let msgs: Vec<Vec<u8>> = (0..9u8).map(|n| vec![n; 100 + n as usize]).collect();
        let signers: Vec<SigningKey> = (0..3).map(key).collect();
        let keys: Vec<PublicKey> = signers.iter().map(PublicKey::of).collect();
        let mut sigs: Vec<Signature> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % 3].sign(m))
            .collect();
        let items = |sigs: &[Signature]| -> Vec<bool> {
            let items: Vec<(&PublicKey, &[u8], &Signature)> = msgs
                .iter()
                .enumerate()
                .map(|(i, m)| (&keys[i % 3], m.as_slice(), &sigs[i]))
                .collect();
            verify_many(&items)
        };
        assert_eq!(items(&sigs), vec![true; 9]);
        for (i, m) in msgs.iter().enumerate() {
            assert!(verify_one(&keys[i % 3], m, &sigs[i]));
            // What verify_strict accepts, this rule accepts.
            assert!(keys[i % 3]
                .verifying_key()
                .verify_strict(m, &sigs[i])
                .is_ok());
        }
        // Signed by the wrong key, and a message altered after signing.
        sigs[4] = signers[0].sign(&msgs[4]);
        let mut expected = vec![true; 9];
        expected[4] = false;
        assert_eq!(items(&sigs), expected);
        assert!(!verify_one(&keys[1], &msgs[1][..50], &sigs[1]));
    }

    #[test]
    fn a_signature_with_a_small_order_component_is_one_rule_for_all() {
        // R + T, T of order 2 ((0, -1)): the cofactored equation still holds, so the
        // signature is valid here alone and in a batch; verify_strict would refuse it
        // (its R no longer matches), which is the disagreement this rule removes.
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let signer = key(7);
        let pk = PublicKey::of(&signer);
        let msg = b"bulletin".as_slice();
        let honest = signer.sign(msg);
        let order_two = CompressedEdwardsY({
            let mut b = [0xff; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        })
        .decompress()
        .map(|p| p.compress());
        assert!(order_two.is_some());
        let sig_t = {
            // Re-signing with R' = R + T needs the nonce; build it from the secret.
            let r_nonce = curve25519_dalek::Scalar::from_bytes_mod_order([42; 32]);
            let r_point = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r_nonce;
            let t = CompressedEdwardsY(order_two.map_or([0; 32], |c| c.0))
                .decompress()
                .unwrap_or_default();
            let r_mixed = (r_point + t).compress();
            use sha2::Digest as _;
            let k = curve25519_dalek::Scalar::from_hash(
                sha2::Sha512::new()
                    .chain_update(r_mixed.as_bytes())
                    .chain_update(pk.verifying_key().as_bytes())
                    .chain_update(msg),
            );
            let a = signer.to_scalar();
            let s = r_nonce + k * a;
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(r_mixed.as_bytes());
            bytes[32..].copy_from_slice(s.as_bytes());
            Signature::from_bytes(&bytes)
        };
        assert!(pk.verifying_key().verify_strict(msg, &sig_t).is_err());
        assert!(verify_one(&pk, msg, &sig_t));
        let items = [(&pk, msg, &honest), (&pk, msg, &sig_t)];
        assert_eq!(verify_many(&items), [true, true]);
    }

    #[test]
    fn non_canonical_r_encodings_are_refused() {
        let sig = |r: [u8; 32]| {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&r);
            Signature::from_bytes(&bytes)
        };
        let mut p_plus_one = [0xff; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        assert!(!canonical_r(&sig(p_plus_one)));
        let mut minus_one = p_plus_one;
        minus_one[0] = 0xec;
        assert!(canonical_r(&sig(minus_one)));
        minus_one[31] |= 0x80;
        assert!(!canonical_r(&sig(minus_one)), "negative zero x");
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(canonical_r(&sig(one)));
        one[31] = 0x80;
        assert!(!canonical_r(&sig(one)));
        let mut two_sign = [0u8; 32];
        two_sign[0] = 2;
        two_sign[31] = 0x80;
        assert!(
            canonical_r(&sig(two_sign)),
            "a sign bit is fine where x is not zero"
        );
    }
}
