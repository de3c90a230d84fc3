use super::*;
use crate::timestamp::Timestamp;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

#[test]
fn partner_id_grammar() {
    for good in ["a", "mod-jp", "nato-ccdcoe", "0", &"a".repeat(63)] {
        assert!(good.parse::<PartnerId>().is_ok(), "{good}");
    }
    for bad in [
        "",
        "-a",
        "A",
        "mod_jp",
        "mod jp",
        "é",
        &"a".repeat(64),
        "group:x",
    ] {
        assert_eq!(
            bad.parse::<PartnerId>(),
            Err(IdentityError::BadPartnerId(crate::text::excerpt(bad))),
            "{bad}"
        );
    }
}

#[test]
fn audience_entries() {
    assert_eq!(
        "group:nato".parse::<AudienceEntry>().unwrap(),
        AudienceEntry::Group("nato".parse().unwrap())
    );
    assert_eq!(
        "mod-fr".parse::<AudienceEntry>().unwrap(),
        AudienceEntry::Partner(pid("mod-fr"))
    );
    assert!("group:".parse::<AudienceEntry>().is_err());
    assert!("Group:nato".parse::<AudienceEntry>().is_err());
    assert_eq!(
        "group:nato".parse::<AudienceEntry>().unwrap().to_string(),
        "group:nato"
    );
}

#[test]
fn public_key_text_round_trip_and_key_id() {
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let pk = PublicKey::of(&sk);
    let text = pk.to_string();
    assert!(text.starts_with("ed25519:"));
    assert_eq!(text.parse::<PublicKey>().unwrap(), pk);
    let expected = Sha256::digest(sk.verifying_key().as_bytes());
    assert_eq!(&pk.key_id().0[..], &expected[..8]);
    assert_eq!(KeyId::of_signing(&sk), pk.key_id());
}

#[test]
fn public_key_text_errors() {
    assert!(matches!(
        "AAAA".parse::<PublicKey>(),
        Err(IdentityError::PublicKeyFormat(_))
    ));
    assert!(matches!(
        "ed25519:AAAA".parse::<PublicKey>(),
        Err(IdentityError::PublicKeyLength(_, 3))
    ));
    // The identity point is a weak key: every signature would verify against it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let text = format!("ed25519:{}", B64.encode(identity));
    assert!(matches!(
        text.parse::<PublicKey>(),
        Err(IdentityError::PublicKeyInvalid(_))
    ));
    // y + p encodes the same point as y, but not canonically. dalek decodes some of
    // these; we refuse them all.
    let mut decoded_by_dalek = 0;
    for y in 2u8..=18 {
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed + y;
        non_canonical[31] = 0x7f;
        decoded_by_dalek += usize::from(VerifyingKey::from_bytes(&non_canonical).is_ok());
        let text = format!("ed25519:{}", B64.encode(non_canonical));
        assert!(text.parse::<PublicKey>().is_err(), "y = p + {y}");
    }
    assert!(
        decoded_by_dalek > 0,
        "the test needs a non-canonical encoding dalek accepts"
    );
    // Unpadded base64 is refused: one key, one text form.
    let good = PublicKey::of(&SigningKey::from_bytes(&[7u8; 32])).to_string();
    assert!(good.trim_end_matches('=').parse::<PublicKey>().is_err());
}

#[test]
fn certificate_fingerprints_read_both_forms_and_print_one() {
    let fp = CertFingerprint::of_der(b"certificate");
    let text = fp.to_string();
    assert!(
        text.starts_with("sha256:") && text.len() == 7 + 64,
        "{text}"
    );
    assert_eq!(text.parse::<CertFingerprint>().unwrap(), fp);
    assert_eq!(
        text.to_uppercase()
            .replace("SHA256:", "sha256:")
            .parse::<CertFingerprint>()
            .unwrap(),
        fp
    );
    // The form `renkei certs init` prints.
    let colons =
        fp.0.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
    assert_eq!(colons.parse::<CertFingerprint>().unwrap(), fp);
    for bad in [
        "",
        "sha256:",
        "sha256:abcd",
        &format!("sha1:{}", hex::encode([0u8; 20])),
        &format!("sha256:{}", "g".repeat(64)),
        &colons[3..],
        &format!("{colons}:00"),
        &hex::encode(fp.0),
    ] {
        assert_eq!(
            bad.parse::<CertFingerprint>(),
            Err(IdentityError::BadFingerprint(crate::text::excerpt(
                bad.trim()
            ))),
            "{bad}"
        );
    }
}

#[test]
fn pem_round_trip() {
    let sk = generate_signing_key();
    let pem = signing_key_to_pem(&sk).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = signing_key_from_pem(&pem).unwrap();
    assert_eq!(back.to_bytes(), sk.to_bytes());
    assert!(signing_key_from_pem("not a key").is_err());
}

#[test]
fn keys_are_written_in_the_rfc_8410_form_and_the_older_form_still_loads() {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let pem = signing_key_to_pem(&sk).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
    let mut want = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    want.extend_from_slice(&[7u8; 32]);
    assert_eq!(der, want, "version 1, no public key: 48 bytes");
    // What renkei wrote before (version 2, with the public key) still loads.
    let older = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    assert_ne!(older.as_str(), pem);
    assert_eq!(
        signing_key_from_pem(&older).unwrap().to_bytes(),
        sk.to_bytes()
    );
}

#[test]
fn keyring_lookup_checks_owner_validity_and_revocation() {
    let key = PublicKey::of(&SigningKey::from_bytes(&[1u8; 32]));
    let t = |ms| Timestamp::from_unix_ms(ms);
    let validity = Validity {
        not_before: Some(t(1_000)),
        not_after: Some(t(2_000)),
    };
    let mut ring = Keyring::new();
    assert!(ring.insert(pid("mod-jp"), key, validity));
    assert!(!ring.insert(pid("mod-jp"), key, Validity::default()));

    assert_eq!(
        ring.lookup(&pid("mod-jp"), &key.key_id(), t(1_000)),
        Ok(&key)
    );
    assert_eq!(
        ring.lookup(&pid("mod-jp"), &key.key_id(), t(1_999)),
        Ok(&key)
    );
    for at in [999, 2_000] {
        assert!(matches!(
            ring.lookup(&pid("mod-jp"), &key.key_id(), t(at)),
            Err(KeyLookupError::NotValidAt { .. })
        ));
    }
    // The same key does not sign for another origin.
    assert!(matches!(
        ring.lookup(&pid("mod-fr"), &key.key_id(), t(1_500)),
        Err(KeyLookupError::Unknown { .. })
    ));
    ring.revoke(key);
    assert!(matches!(
        ring.lookup(&pid("mod-jp"), &key.key_id(), t(1_500)),
        Err(KeyLookupError::Revoked { .. })
    ));
}

#[test]
fn a_private_key_given_as_a_public_one_is_never_echoed() {
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    for text in [pem.to_string(), format!("ed25519:{pem}")] {
        let err = text.parse::<PublicKey>().unwrap_err().to_string();
        assert!(!err.contains("MC4CAQAw") && !err.contains("BEGIN"), "{err}");
        assert!(err.contains("private key in PEM form, not shown"), "{err}");
    }
}
