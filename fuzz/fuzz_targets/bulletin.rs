//! An encoded SignedBulletin from anywhere: decoded, its fields checked, its signature
//! verified against a keyring holding the one key that signs for "us-dod". Nothing may
//! panic, and nothing but that key's own signature over those exact bytes may verify.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use renkei::bulletin::{Limits, UnverifiedBulletin};
use renkei::identity::{Keyring, PublicKey, Validity};
use renkei::timestamp::Timestamp;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let mut ring = Keyring::new();
    ring.insert("us-dod".parse().unwrap(), PublicKey::of(&key), Validity::default());
    let limits = Limits::default();
    let Ok(u) = UnverifiedBulletin::decode(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    let now = Timestamp::from_unix_ms(u.header().created.unix_ms().saturating_add(1));
    // The fuzzer cannot forge the key's signature: a success means a verification bug.
    assert!(u.verify(&ring, now, &limits).is_err(), "a bulletin the fuzzer made verified");
});
