use super::*;
use crate::identity::{Keyring, Validity};
use ed25519_dalek::Verifier as _;
use proptest::prelude::*;

const CREATED: u64 = 1_790_000_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

fn sample() -> proto::Bulletin {
    proto::Bulletin {
        id: "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b".into(),
        origin: "mod-jp".into(),
        created_unix_ms: CREATED,
        tlp: proto::Tlp::Amber as i32,
        kind: proto::Kind::Advisory as i32,
        title: "Phishing wave against logistics units".into(),
        summary: "Lures imitate exercise scheduling mails.".into(),
        tags: vec!["phishing".into(), "apt-x".into()],
        audience: vec!["nato-ccdcoe".into(), "group:allies".into()],
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"indicators follow"),
        references: vec![],
    }
}

fn ring_with(seed: u8, validity: Validity) -> Keyring {
    let mut ring = Keyring::new();
    assert!(ring.insert(pid("mod-jp"), PublicKey::of(&key(seed)), validity));
    ring
}

fn encode(s: &proto::SignedBulletin) -> Bytes {
    Bytes::from(s.encode_to_vec())
}

fn now() -> Timestamp {
    Timestamp::from_unix_ms(CREATED + 1_000)
}

fn verify_bytes(encoded: Bytes, ring: &Keyring) -> Result<VerifiedBulletin, BulletinError> {
    let limits = Limits::default();
    UnverifiedBulletin::decode(encoded, &limits)?.verify(ring, now(), &limits)
}

#[test]
fn sign_then_verify_round_trip() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let v = verify_bytes(encode(&signed), &ring_with(1, Validity::default())).unwrap();
    assert_eq!(v.header().origin, pid("mod-jp"));
    assert_eq!(v.header().tlp, Tlp::Amber);
    assert_eq!(v.header().kind, Kind::Advisory);
    assert_eq!(v.bulletin(), &sample());
    assert_eq!(
        v.digest().0,
        <[u8; 32]>::from(Sha256::digest(&signed.bulletin))
    );
    assert_eq!(&signed.key_id[..], &PublicKey::of(&key(1)).key_id().0[..]);
    assert_eq!(v.signed(), &signed);
}

#[test]
fn signature_is_over_domain_tag_and_exact_bytes() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let sig = Signature::from_slice(&signed.signature).unwrap();
    let vk = key(1).verifying_key();
    let mut msg = b"renkei/bulletin/v1\0".to_vec();
    msg.extend_from_slice(&signed.bulletin);
    assert!(vk.verify(&msg, &sig).is_ok());
    assert!(
        vk.verify(&signed.bulletin, &sig).is_err(),
        "domain tag must be part of the signed message"
    );
}

#[test]
fn another_key_is_unknown_and_a_borrowed_key_id_is_a_bad_signature() {
    let signed = sign(&sample(), &key(2), &Limits::default()).unwrap();
    let ring = ring_with(1, Validity::default());
    assert_eq!(
        verify_bytes(encode(&signed), &ring).unwrap_err().code(),
        proto::ErrorCode::UnknownKey
    );

    // Impersonation: signed by key 2 but naming key 1's id.
    let mut forged = signed.clone();
    forged.key_id = Bytes::copy_from_slice(PublicKey::of(&key(1)).key_id().as_bytes());
    let err = verify_bytes(encode(&forged), &ring).unwrap_err();
    assert!(matches!(err, BulletinError::BadSignature { .. }), "{err}");
}

#[test]
fn a_key_of_one_origin_does_not_sign_for_another() {
    let mut b = sample();
    b.origin = "mod-fr".into();
    let signed = sign(&b, &key(1), &Limits::default()).unwrap();
    let err = verify_bytes(encode(&signed), &ring_with(1, Validity::default())).unwrap_err();
    assert!(
        matches!(err, BulletinError::Key(KeyLookupError::Unknown { .. })),
        "{err}"
    );
}

#[test]
fn revoked_key_fails_whatever_the_creation_time() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let mut ring = ring_with(1, Validity::default());
    ring.revoke(PublicKey::of(&key(1)));
    let err = verify_bytes(encode(&signed), &ring).unwrap_err();
    assert_eq!(err.code(), proto::ErrorCode::KeyRevoked);
}

#[test]
fn key_outside_its_validity_window_fails() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let t = Timestamp::from_unix_ms;
    for validity in [
        Validity {
            not_before: Some(t(CREATED + 1)),
            not_after: None,
        },
        Validity {
            not_before: None,
            not_after: Some(t(CREATED)),
        },
    ] {
        let err = verify_bytes(encode(&signed), &ring_with(1, validity)).unwrap_err();
        assert_eq!(err.code(), proto::ErrorCode::KeyNotValid, "{validity}");
    }
    let inside = Validity {
        not_before: Some(t(CREATED)),
        not_after: Some(t(CREATED + 2_000)),
    };
    assert!(verify_bytes(encode(&signed), &ring_with(1, inside)).is_ok());
}

#[test]
fn a_key_past_not_after_cannot_sign_by_backdating() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let t = Timestamp::from_unix_ms;
    // Valid when the bulletin claims to have been made, expired before it arrived
    // (now() is a second after CREATED).
    let expired = ring_with(
        1,
        Validity {
            not_before: None,
            not_after: Some(t(CREATED + 1)),
        },
    );
    let err = verify_bytes(encode(&signed), &expired).unwrap_err();
    assert_eq!(err.code(), proto::ErrorCode::KeyNotValid);
    assert!(
        err.to_string()
            .contains("had expired when the bulletin arrived"),
        "{err}"
    );
    // The batch path says the same.
    let limits = Limits::default();
    let batch = vec![UnverifiedBulletin::decode(encode(&signed), &limits).unwrap()];
    let verdict = UnverifiedBulletin::verify_all(batch, &expired, now(), &limits);
    assert!(matches!(
        verdict[..],
        [Err(BulletinError::Key(
            KeyLookupError::ExpiredOnReceipt { .. }
        ))]
    ));
    // A desk reading its queue judges the creation time only: its node judged receipt.
    let desk = Limits {
        max_age: None,
        ..limits
    };
    let read = UnverifiedBulletin::decode(encode(&signed), &desk)
        .unwrap()
        .verify(&expired, now(), &desk);
    assert!(read.is_ok(), "{read:?}");
}

#[test]
fn a_bulletin_older_than_the_maximum_age_is_refused_as_too_old() {
    let limits = Limits::default();
    let signed = sign(&sample(), &key(1), &limits).unwrap();
    let ring = ring_with(1, Validity::default());
    let max_ms = DEFAULT_MAX_AGE.as_millis() as u64;
    let at = |ms, limits: &Limits| {
        UnverifiedBulletin::decode(encode(&signed), limits)
            .unwrap()
            .verify(&ring, Timestamp::from_unix_ms(ms), limits)
    };
    assert!(
        at(CREATED + max_ms, &limits).is_ok(),
        "exactly the maximum age"
    );
    let err = at(CREATED + max_ms + 1, &limits).unwrap_err();
    assert_eq!(err.code(), proto::ErrorCode::TooOld);
    assert!(
        err.to_string().contains("captured ones cannot be replayed"),
        "{err}"
    );
    let desk = Limits {
        max_age: None,
        ..limits
    };
    assert!(at(CREATED + 10 * max_ms, &desk).is_ok());
}

#[test]
fn creation_time_beyond_the_allowed_skew_fails() {
    let limits = Limits::default();
    let signed = sign(&sample(), &key(1), &limits).unwrap();
    let ring = ring_with(1, Validity::default());
    let skew_ms = limits.max_future_skew.as_millis() as u64;
    let at = |ms| {
        UnverifiedBulletin::decode(encode(&signed), &limits)
            .unwrap()
            .verify(&ring, Timestamp::from_unix_ms(ms), &limits)
    };
    assert!(
        at(CREATED - skew_ms).is_ok(),
        "exactly at the skew limit is allowed"
    );
    let err = at(CREATED - skew_ms - 1).unwrap_err();
    assert_eq!(err.code(), proto::ErrorCode::ClockSkew);
    assert!(
        err.to_string().contains("ahead of this node's clock"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Flipping any bit pattern of any single byte of the encoded SignedBulletin,
    /// whether in the bulletin bytes, the signature, the key id or the framing,
    /// makes verification fail.
    #[test]
    fn any_single_byte_change_fails(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
        let mut bytes = signed.encode_to_vec();
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(verify_bytes(Bytes::from(bytes), &ring_with(1, Validity::default())).is_err());
    }

    /// Any edit of the encoded envelope (bytes replaced, inserted or removed, several
    /// at once) of a bulletin with arbitrary text is refused, alone and in a batch,
    /// unless the edits happen to give back the very same bytes.
    #[test]
    fn no_edit_of_a_signed_bulletin_is_ever_accepted(
        title in "[!-~][ -~]{0,39}",
        tags in prop::collection::vec("[a-z0-9-]{1,12}", 0..4),
        edits in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..5),
    ) {
        let mut b = sample();
        b.title = title;
        b.tags = tags;
        let signed = sign(&b, &key(1), &Limits::default()).unwrap();
        let original = signed.encode_to_vec();
        let mut bytes = original.clone();
        for (op, at, byte) in edits {
            match op {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                1 => {
                    let i = at.index(bytes.len() + 1);
                    bytes.insert(i, byte);
                }
                _ if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        prop_assume!(bytes != original);
        let ring = ring_with(1, Validity::default());
        prop_assert!(verify_bytes(Bytes::from(bytes.clone()), &ring).is_err());
        let limits = Limits::default();
        if let Ok(u) = UnverifiedBulletin::decode(Bytes::from(bytes), &limits) {
            let genuine = UnverifiedBulletin::decode(Bytes::from(original), &limits).unwrap();
            let verdicts = UnverifiedBulletin::verify_all(vec![genuine, u], &ring, now(), &limits);
            prop_assert!(verdicts[0].is_ok());
            prop_assert!(verdicts[1].is_err());
        }
    }

    /// Arbitrary input gives an error, never a panic.
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let ring = ring_with(1, Validity::default());
        prop_assert!(verify_bytes(Bytes::from(data), &ring).is_err());
    }
}

/// Exhaustive version of the byte-flip property for one bulletin: every position,
/// a low, a high and a full flip.
#[test]
fn every_byte_position_is_covered() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let ring = ring_with(1, Validity::default());
    let bytes = signed.encode_to_vec();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            assert!(
                verify_bytes(Bytes::from(b), &ring).is_err(),
                "byte {i} ^ {flip:#x} still verified"
            );
        }
    }
}

#[test]
fn a_batch_says_of_each_bulletin_what_it_says_alone() {
    let limits = Limits::default();
    let mut ring = ring_with(1, Validity::default());
    assert!(ring.insert(pid("mod-fr"), PublicKey::of(&key(3)), Validity::default()));
    let with = |n: u8, origin: &str, signer: u8, created: u64| {
        let mut b = sample();
        b.id = format!("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a{n:02x}");
        b.origin = origin.into();
        b.created_unix_ms = created;
        sign(&b, &key(signer), &limits).unwrap()
    };
    let mut batch = Vec::new();
    for n in 0..20u8 {
        let (origin, signer) = if n % 2 == 0 {
            ("mod-jp", 1)
        } else {
            ("mod-fr", 3)
        };
        batch.push(with(n, origin, signer, CREATED));
    }
    // One altered after signing, one signed by a key nobody configured, one claiming
    // another's key id, one from the future.
    let mut altered = batch[3].clone();
    let mut bytes = altered.bulletin.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    altered.bulletin = Bytes::from(bytes);
    batch[3] = altered;
    batch[6] = with(6, "mod-jp", 9, CREATED);
    let mut borrowed = with(9, "mod-fr", 1, CREATED);
    borrowed.key_id = Bytes::copy_from_slice(PublicKey::of(&key(3)).key_id().as_bytes());
    batch[9] = borrowed;
    batch[12] = with(12, "mod-jp", 1, now().unix_ms() + 3_600_000);

    let decode = |s: &proto::SignedBulletin| UnverifiedBulletin::from_signed(s.clone(), &limits);
    let alone: Vec<Result<Digest, proto::ErrorCode>> = batch
        .iter()
        .map(|s| {
            decode(s)
                .and_then(|u| u.verify(&ring, now(), &limits))
                .map(|v| v.digest())
                .map_err(|e| e.code())
        })
        .collect();
    // The altered one fails to decode canonically or to verify; either way it is out.
    let unverified: Vec<UnverifiedBulletin> = batch.iter().filter_map(|s| decode(s).ok()).collect();
    let together: Vec<Result<Digest, proto::ErrorCode>> =
        UnverifiedBulletin::verify_all(unverified, &ring, now(), &limits)
            .into_iter()
            .map(|r| r.map(|v| v.digest()).map_err(|e| e.code()))
            .collect();
    let alone_decoded: Vec<_> = batch
        .iter()
        .zip(&alone)
        .filter(|(s, _)| decode(s).is_ok())
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(together, alone_decoded);
    let codes: Vec<_> = alone.iter().filter_map(|r| r.err()).collect();
    assert!(codes.contains(&proto::ErrorCode::UnknownKey), "{codes:?}");
    assert!(codes.contains(&proto::ErrorCode::BadSignature), "{codes:?}");
    assert!(codes.contains(&proto::ErrorCode::ClockSkew), "{codes:?}");
    assert_eq!(alone.iter().filter(|r| r.is_ok()).count(), 16);
}

mod fields;
