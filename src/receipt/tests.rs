//! Receipts: signed by a receiver, verified against its key and the delivery they are
//! given for, and the worked example of proto/testdata/receipt-v1.json reproduced.

use super::*;
use crate::identity::Validity;

const NOW: u64 = 1_790_000_000_000;

fn pid(s: &str) -> PartnerId {
    s.parse().expect("an id")
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Keys of ee-cert (1) and au-dod (2).
fn keys() -> Keyring {
    let mut keys = Keyring::new();
    keys.insert(pid("ee-cert"), PublicKey::of(&key(1)), Validity::default());
    keys.insert(pid("au-dod"), PublicKey::of(&key(2)), Validity::default());
    keys
}

fn receipt(receiver: &str, id: u8) -> Receipt {
    Receipt {
        receiver: pid(receiver),
        node: pid("nato-ccdcoe"),
        origin: pid("jp-cdc"),
        bulletin_id: BulletinId::new_v7(Timestamp::from_unix_ms(NOW + u64::from(id))),
        digest: Digest([id; 32]),
        received: Timestamp::from_unix_ms(NOW),
    }
}

fn expected(r: &Receipt) -> (String, String) {
    (r.origin.to_string(), r.bulletin_id.to_string())
}

fn check(signed: &proto::SignedReceipt, of: &Receipt) -> Result<VerifiedReceipt, ReceiptError> {
    let (origin, id) = expected(of);
    let v = VerifiedReceipt::verify(signed, &keys())?;
    v.is_of(&Expected {
        receiver: &of.receiver,
        node: &of.node,
        origin: &origin,
        bulletin_id: &id,
        digest: &of.digest.0,
    })?;
    Ok(v)
}

#[test]
fn a_receipt_verifies_against_its_receivers_key_and_its_delivery() {
    let r = receipt("ee-cert", 7);
    let signed = r.sign(&key(1));
    let v = check(&signed, &r).expect("a good receipt");
    assert_eq!(v.receipt(), &r);
    assert_eq!(v.key(), &PublicKey::of(&key(1)));
}

#[test]
fn a_receipt_of_another_bulletin_or_receiver_is_not_this_deliverys() {
    let r = receipt("ee-cert", 7);
    let signed = r.sign(&key(1));
    let other_bulletin = receipt("ee-cert", 8);
    let e = check(&signed, &other_bulletin).expect_err("another bulletin");
    assert!(matches!(e, ReceiptError::Mismatch { .. }), "{e}");
    // ee-cert's receipt replayed by au-dod as its own.
    let mut other_receiver = r.clone();
    other_receiver.receiver = pid("au-dod");
    let e = check(&signed, &other_receiver).expect_err("another receiver");
    assert!(e.to_string().contains("ee-cert's receipt"), "{e}");
}

#[test]
fn a_forged_or_unknown_or_twice_readable_receipt_is_refused() {
    let r = receipt("ee-cert", 7);
    // Signed with au-dod's key but claiming ee-cert: no key of ee-cert has that id.
    let e = check(&r.sign(&key(2)), &r).expect_err("another's key");
    assert!(
        matches!(e, ReceiptError::Key(KeyLookupError::Unknown { .. })),
        "{e}"
    );
    let mut forged = r.sign(&key(1));
    let mut body = forged.body.to_vec();
    let last = body.len() - 1;
    body[last] ^= 1; // another time
    forged.body = body.into();
    let e = check(&forged, &r).expect_err("forged");
    assert!(matches!(e, ReceiptError::BadSignature { .. }), "{e}");
    // An unknown field appended reads the same but is not the signed encoding.
    let mut padded = r.sign(&key(1));
    padded.body = [&padded.body[..], &[0x3a, 0x00]].concat().into();
    assert_eq!(
        check(&padded, &r).expect_err("padded"),
        ReceiptError::NotCanonical
    );
    let mut short = r.sign(&key(1));
    short.signature = short.signature.slice(..10);
    assert!(matches!(check(&short, &r), Err(ReceiptError::Malformed(_))));
}

#[test]
fn the_worked_example_is_reproduced_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proto/testdata/receipt-v1.json"
    );
    let text = std::fs::read_to_string(path).expect("the vector");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let hex = |k: &str| hex::decode(v[k].as_str().expect(k)).expect("hex");
    let seed: [u8; 32] = hex("signing_key_seed_hex").try_into().expect("32 bytes");
    let f = &v["receipt_fields"];
    let text_of = |k: &str| f[k].as_str().expect(k).to_owned();
    let r = Receipt {
        receiver: pid(&text_of("receiver")),
        node: pid(&text_of("node")),
        origin: pid(&text_of("origin")),
        bulletin_id: BulletinId::parse_canonical(&text_of("bulletin_id")).expect("an id"),
        digest: Digest(
            hex::decode(text_of("digest_sha256_hex"))
                .expect("hex")
                .try_into()
                .expect("32 bytes"),
        ),
        received: Timestamp::from_unix_ms(f["received_unix_ms"].as_u64().expect("ms")),
    };
    let signed = r.sign(&SigningKey::from_bytes(&seed));
    assert_eq!(signed.body.to_vec(), hex("body_hex"));
    assert_eq!(signed.signature.to_vec(), hex("signature_hex"));
    assert_eq!(signed.key_id.to_vec(), hex("key_id_hex"));
    assert_eq!(signed.encode_to_vec(), hex("signed_receipt_hex"));
    assert_eq!(hex("receipt_domain_hex"), RECEIPT_DOMAIN);
    let mut keys = Keyring::new();
    let public: PublicKey = v["public_key"]
        .as_str()
        .expect("key")
        .parse()
        .expect("a key");
    keys.insert(r.receiver.clone(), public, Validity::default());
    let verified = VerifiedReceipt::verify(&signed, &keys).expect("verifies");
    assert_eq!(verified.receipt(), &r);
}

#[test]
fn a_batch_says_of_each_receipt_what_it_alone_would() {
    let good = receipt("ee-cert", 7).sign(&key(1));
    let other = receipt("au-dod", 8).sign(&key(2));
    let mut forged = receipt("ee-cert", 9).sign(&key(1));
    forged.signature = good.signature.clone();
    let unknown = receipt("ee-cert", 10).sign(&key(3));
    let batch = [good, forged, other, unknown];
    let all = VerifiedReceipt::verify_all(&batch, &keys());
    let alone: Vec<_> = batch
        .iter()
        .map(|s| VerifiedReceipt::verify(s, &keys()))
        .collect();
    assert_eq!(all, alone);
    assert!(all[0].is_ok() && all[2].is_ok());
    assert!(matches!(all[1], Err(ReceiptError::BadSignature { .. })));
    assert!(matches!(all[3], Err(ReceiptError::Key(_))));
}
