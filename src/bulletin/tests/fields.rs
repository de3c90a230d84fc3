//! The field rules, the envelope, the one canonical encoding and the text forms of ids.

use super::*;

/// One field rule: its name, how it breaks a good bulletin, and the error it must give.
type Case = (
    &'static str,
    Box<dyn Fn(&mut proto::Bulletin)>,
    fn(&BulletinError) -> bool,
);

#[test]
fn every_field_rule_has_its_own_error() {
    let limits = Limits::default();
    let cases = id_origin_and_header_cases()
        .into_iter()
        .chain(title_summary_and_body_cases())
        .chain(tag_audience_and_reference_cases());
    for (name, mutate, expected) in cases {
        let mut b = sample();
        mutate(&mut b);
        let err = sign(&b, &key(1), &limits).expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

/// The rules on the id, the origin, the time, the TLP and the kind.
fn id_origin_and_header_cases() -> Vec<Case> {
    vec![
        ("empty id", Box::new(|b| b.id.clear()), |e| {
            matches!(e, BulletinError::MissingField("id"))
        }),
        (
            "uppercase id",
            Box::new(|b| b.id = b.id.to_uppercase()),
            |e| matches!(e, BulletinError::BadId(_)),
        ),
        (
            "nil id",
            Box::new(|b| b.id = Uuid::nil().to_string()),
            |e| matches!(e, BulletinError::BadId(_)),
        ),
        (
            "braced id",
            Box::new(|b| b.id = format!("{{{}}}", b.id)),
            |e| matches!(e, BulletinError::BadId(_)),
        ),
        ("empty origin", Box::new(|b| b.origin.clear()), |e| {
            matches!(e, BulletinError::MissingField("origin"))
        }),
        (
            "bad origin",
            Box::new(|b| b.origin = "MOD_JP".into()),
            |e| matches!(e, BulletinError::BadOrigin(_)),
        ),
        ("no time", Box::new(|b| b.created_unix_ms = 0), |e| {
            matches!(e, BulletinError::MissingField("created_unix_ms"))
        }),
        ("no tlp", Box::new(|b| b.tlp = 0), |e| {
            matches!(e, BulletinError::MissingField("tlp"))
        }),
        ("tlp 9", Box::new(|b| b.tlp = 9), |e| {
            matches!(e, BulletinError::UnknownTlp(9))
        }),
        ("no kind", Box::new(|b| b.kind = 0), |e| {
            matches!(e, BulletinError::MissingField("kind"))
        }),
        ("kind 99", Box::new(|b| b.kind = 99), |e| {
            matches!(e, BulletinError::UnknownKind(99))
        }),
    ]
}

/// The rules on the title, the summary and the body.
fn title_summary_and_body_cases() -> Vec<Case> {
    vec![
        ("blank title", Box::new(|b| b.title = "  ".into()), |e| {
            matches!(e, BulletinError::MissingField("title"))
        }),
        ("long title", Box::new(|b| b.title = "x".repeat(513)), |e| {
            matches!(e, BulletinError::FieldTooLong { field: "title", .. })
        }),
        (
            "long summary",
            Box::new(|b| b.summary = "x".repeat(8193)),
            |e| {
                matches!(
                    e,
                    BulletinError::FieldTooLong {
                        field: "summary",
                        ..
                    }
                )
            },
        ),
        (
            "body without type",
            Box::new(|b| b.content_type.clear()),
            |e| matches!(e, BulletinError::MissingField("content_type")),
        ),
        (
            "huge body",
            Box::new(|b| b.body = Bytes::from(vec![0u8; 768 * 1024 + 1])),
            |e| matches!(e, BulletinError::BodyTooLarge { .. }),
        ),
    ]
}

/// The rules on the tags, the audience and the references.
fn tag_audience_and_reference_cases() -> Vec<Case> {
    vec![
        ("empty tag", Box::new(|b| b.tags.push(String::new())), |e| {
            matches!(e, BulletinError::BadTag { .. })
        }),
        (
            "control tag",
            Box::new(|b| b.tags.push("a\nb".into())),
            |e| matches!(e, BulletinError::BadTag { .. }),
        ),
        (
            "invisible tag",
            Box::new(|b| b.tags.push("apt\u{2060}x".into())),
            |e| matches!(e, BulletinError::BadTag { problem, .. } if problem.contains("invisible")),
        ),
        (
            "long tag",
            Box::new(|b| b.tags.push("t".repeat(129))),
            |e| matches!(e, BulletinError::FieldTooLong { field: "tag", .. }),
        ),
        (
            "many tags",
            Box::new(|b| b.tags = vec!["t".into(); 65]),
            |e| matches!(e, BulletinError::TooManyEntries { field: "tags", .. }),
        ),
        (
            "bad audience",
            Box::new(|b| b.audience.push("group:".into())),
            |e| matches!(e, BulletinError::BadAudience(_)),
        ),
        (
            "big audience",
            Box::new(|b| b.audience = vec!["a".into(); 257]),
            |e| {
                matches!(
                    e,
                    BulletinError::TooManyEntries {
                        field: "audience",
                        ..
                    }
                )
            },
        ),
        (
            "bad reference",
            Box::new(|b| b.references.push("nope".into())),
            |e| matches!(e, BulletinError::BadReference(_)),
        ),
    ]
}

#[test]
fn oversize_bulletin_is_refused_on_both_sides() {
    let small = Limits {
        max_bulletin_bytes: 200,
        ..Limits::default()
    };
    let err = sign(
        &sample(),
        &key(1),
        &Limits {
            max_bulletin_bytes: 100,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, BulletinError::TooLarge { limit: 100, .. }));
    let mut b = sample();
    b.body = Bytes::from(vec![b'x'; 300]);
    let signed = sign(&b, &key(1), &Limits::default()).unwrap();
    let err = UnverifiedBulletin::decode(encode(&signed), &small).unwrap_err();
    assert_eq!(err.code(), proto::ErrorCode::BulletinTooLarge);
}

#[test]
fn envelope_field_errors() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let ring = ring_with(1, Validity::default());
    let mut short_id = signed.clone();
    short_id.key_id.truncate(4);
    assert_eq!(
        verify_bytes(encode(&short_id), &ring).unwrap_err(),
        BulletinError::KeyIdLength(4)
    );
    let mut short_sig = signed.clone();
    short_sig.signature.truncate(63);
    assert_eq!(
        verify_bytes(encode(&short_sig), &ring).unwrap_err(),
        BulletinError::SignatureLength(63)
    );
    let mut empty = signed;
    empty.bulletin = Bytes::new();
    assert_eq!(
        verify_bytes(encode(&empty), &ring).unwrap_err(),
        BulletinError::MissingField("bulletin")
    );
}

#[test]
fn only_the_canonical_encoding_is_accepted() {
    let signed = sign(&sample(), &key(1), &Limits::default()).unwrap();
    let ring = ring_with(1, Validity::default());
    let resign = |bytes: Vec<u8>| {
        let sig = key(1).sign(&signed_message(&bytes));
        proto::SignedBulletin {
            bulletin: Bytes::from(bytes),
            signature: Bytes::copy_from_slice(&sig.to_bytes()),
            key_id: signed.key_id.clone(),
        }
    };
    // A duplicated title (last one wins in most decoders), an unknown field 99 and a
    // default value written out: each is signed correctly, each is refused.
    let mut dup = signed.bulletin.to_vec();
    dup.extend_from_slice(&[0x32, 0x01, b'X']);
    let mut unknown = signed.bulletin.to_vec();
    unknown.extend_from_slice(&[0x98, 0x06, 0x01]);
    let mut default_written = signed.bulletin.to_vec();
    default_written.extend_from_slice(&[0x3a, 0x00]); // summary = "" is the default
    for bytes in [dup, unknown, default_written] {
        let err = verify_bytes(encode(&resign(bytes)), &ring).unwrap_err();
        assert_eq!(err, BulletinError::NonCanonical);
        assert_eq!(err.code(), proto::ErrorCode::InvalidBulletin);
    }
}

#[test]
fn text_forms() {
    assert_eq!("AMBER+STRICT".parse::<Tlp>(), Ok(Tlp::AmberStrict));
    assert_eq!("TLP:RED".parse::<Tlp>(), Ok(Tlp::Red));
    assert_eq!("white".parse::<Tlp>(), Ok(Tlp::Clear));
    assert!("purple"
        .parse::<Tlp>()
        .unwrap_err()
        .to_string()
        .contains("clear, green, amber, amber+strict, red"));
    assert!(
        Tlp::Clear < Tlp::Green && Tlp::Amber < Tlp::AmberStrict && Tlp::AmberStrict < Tlp::Red
    );
    for k in Kind::ALL {
        assert_eq!(k.as_str().parse::<Kind>(), Ok(*k));
        assert_eq!(Kind::from_proto(k.to_proto() as i32), Some(*k));
    }
    assert_eq!(Kind::from_proto(0), None);
}

#[test]
fn fresh_ids_are_canonical_v7() {
    let id = BulletinId::new_v7(Timestamp::from_unix_ms(CREATED));
    let text = id.to_string();
    assert_eq!(BulletinId::parse_canonical(&text), Some(id));
    assert_eq!(id.to_text(), text);
    assert_eq!(Uuid::parse_str(&text).unwrap().get_version_num(), 7);
    // Only the lowercase hyphenated form is an id.
    assert_eq!(BulletinId::parse_canonical(&text.to_uppercase()), None);
    assert_eq!(BulletinId::parse_canonical(&text.replace('-', "")), None);
}
