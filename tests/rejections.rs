//! What a hub refuses: forged and unknown signatures, revoked keys, a liaison speaking
//! for another partner, reused ids. Each gets its own reason, and nothing refused is
//! ever queued for anyone.

use crate::common;

use common::federation::{receive_titles, sign_as, Federation, Plan};
use common::tables::{auditor, liaison, relay};
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::identity;
use renkei::proto::{self, ErrorCode, PublishResult, PublishStatus};
use renkei::timestamp::Timestamp;

/// The hub with two RED desks, us-dod also trusting the `revoked` key, and a keyed
/// relay.
fn hub(revoked: &str) -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red").other_key(&format!("{{ public = \"{revoked}\" }}")))
        .partner(liaison("uk-mod", "red"))
        .partner(relay("nato-ccdcoe", "red").keyed())
        .config(&format!(
            "\n[[revoked]]\nkey = \"{revoked}\"\nreason = \"laptop lost\"\n"
        ))
}

fn assert_rejected(r: &PublishResult, code: ErrorCode, words: &str) {
    assert_eq!(r.status, PublishStatus::Rejected as i32, "{r:?}");
    assert_eq!(r.error, code as i32, "{}", r.message);
    assert!(r.message.contains(words), "{}", r.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_revoked_and_impersonated_bulletins_are_refused_with_distinct_reasons() {
    let old_key = identity::generate_signing_key();
    let old_public = identity::PublicKey::of(&old_key).to_string();
    let fed = hub(&old_public).start().await;
    let us = fed.client("us-dod").await;
    let uk = fed.client("uk-mod").await;

    let genuine = each_refusal_has_its_own_reason(&fed, &us, &uk, &old_key).await;

    // A relay may forward it: the origin's signature still verifies.
    let nato = fed.client("nato-ccdcoe").await;
    let r = nato.publish(genuine).await.unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    assert_eq!(
        r.shared_with,
        ["uk-mod"],
        "neither back to its origin nor to the relay that sent it"
    );

    // Nothing refused was queued: the UK's first delivery is the relayed bulletin, then the barrier.
    let barrier = fed.bulletin("us-dod", Tlp::Clear, Kind::Indicator, "barrier", &[], &[]);
    assert_eq!(
        us.publish(barrier).await.unwrap().status,
        PublishStatus::Accepted as i32
    );
    let got = receive_titles(&uk, 2).await;
    assert_eq!(got, ["relayed by a liaison", "barrier"]);

    for c in [us, uk, nato] {
        c.close().await;
    }
    the_log_holds_each_refusal_and_the_revocation(fed).await;
}

/// Forged, unknown-key, revoked-key, impersonated and unknown-origin bulletins are each
/// refused with their own code and words. The genuine US bulletin the UK liaison tried
/// to pass on.
async fn each_refusal_has_its_own_reason(
    fed: &Federation,
    us: &Client,
    uk: &Client,
    old_key: &ed25519_dalek::SigningKey,
) -> proto::SignedBulletin {
    let advisory = |key: &ed25519_dalek::SigningKey, origin: &str, title: &str| {
        sign_as(key, origin, Tlp::Green, Kind::Advisory, title, &[], &[])
    };
    // Forged: signed by the UK key, naming the US key id.
    let mut forged = advisory(fed.key("uk-mod"), "us-dod", "forged");
    forged.key_id = fed
        .bulletin("us-dod", Tlp::Green, Kind::Advisory, "x", &[], &[])
        .key_id;
    assert_rejected(
        &us.publish(forged).await.unwrap(),
        ErrorCode::BadSignature,
        "does not verify",
    );

    // Unknown: a key nobody configured.
    let stranger = identity::generate_signing_key();
    let unknown = advisory(&stranger, "us-dod", "unknown key");
    assert_rejected(
        &us.publish(unknown).await.unwrap(),
        ErrorCode::UnknownKey,
        "no signing key",
    );

    // Revoked: the old US key, listed but revoked.
    let revoked = advisory(old_key, "us-dod", "revoked key");
    assert_rejected(
        &us.publish(revoked).await.unwrap(),
        ErrorCode::KeyRevoked,
        "revoked",
    );

    // Impersonation: the UK liaison passes on a genuine US bulletin as if it could.
    let genuine = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "relayed by a liaison",
        &[],
        &[],
    );
    assert_rejected(
        &uk.publish(genuine.clone()).await.unwrap(),
        ErrorCode::OriginMismatch,
        "may only publish its own",
    );

    // An origin the hub does not know.
    let outsider = advisory(&stranger, "cn-pla", "outsider");
    assert_rejected(
        &us.publish(outsider).await.unwrap(),
        ErrorCode::UnknownOrigin,
        "neither a partner",
    );
    genuine
}

/// The audit log holds each refusal with its reason, and the revocation in force.
async fn the_log_holds_each_refusal_and_the_revocation(mut fed: Federation) {
    fed.halt().await;
    let store = renkei::store::Store::open(&fed.data_dir(), 16 << 20).unwrap();
    let records: Vec<proto::AuditRecord> = store
        .audit()
        .records_from(0)
        .map(|r| prost::Message::decode(r.unwrap()).unwrap())
        .collect();
    let errors: Vec<i32> = records
        .iter()
        .filter(|r| r.event == proto::AuditEvent::BulletinRejected as i32)
        .map(|r| r.error)
        .collect();
    for code in [
        ErrorCode::BadSignature,
        ErrorCode::KeyRevoked,
        ErrorCode::OriginMismatch,
    ] {
        assert!(errors.contains(&(code as i32)), "{code:?} in {errors:?}");
    }
    assert!(records
        .iter()
        .any(|r| r.event == proto::AuditEvent::KeyRevoked as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_twice_is_idempotent_and_reusing_an_id_is_a_conflict() {
    let fed = hub(&identity::PublicKey::of(&identity::generate_signing_key()).to_string())
        .start()
        .await;
    let us = fed.client("us-dod").await;
    let first = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Report,
        "weekly report",
        &[],
        &[],
    );
    assert_eq!(
        us.publish(first.clone()).await.unwrap().status,
        PublishStatus::Accepted as i32
    );
    let again = us.publish(first.clone()).await.unwrap();
    assert_eq!(again.status, PublishStatus::Duplicate as i32);
    assert_eq!(
        again.digest,
        us.publish(first.clone()).await.unwrap().digest
    );

    // Same id, other content: a conflict, whatever the signature.
    let original: renkei::proto::Bulletin = prost::Message::decode(first.bulletin.clone()).unwrap();
    let mut altered = original.clone();
    altered.title = "weekly report (amended)".into();
    let altered = renkei::bulletin::sign(&altered, fed.key("us-dod"), &Default::default()).unwrap();
    assert_rejected(
        &us.publish(altered).await.unwrap(),
        ErrorCode::Conflict,
        "accepted before with digest",
    );

    // The UK receives the report once.
    let barrier = fed.bulletin("us-dod", Tlp::Clear, Kind::Indicator, "barrier", &[], &[]);
    us.publish(barrier).await.unwrap();
    let uk = fed.client("uk-mod").await;
    let got = receive_titles(&uk, 2).await;
    assert_eq!(got, ["weekly report", "barrier"]);
    us.close().await;
    uk.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_verified_together_are_answered_one_by_one_in_order() {
    let old_key = identity::generate_signing_key();
    let fed = hub(&identity::PublicKey::of(&old_key).to_string())
        .start()
        .await;
    let us = fed.client("us-dod").await;
    // Two hundred sent before any result is read, so the node takes them in batches;
    // every seventh is forged with the UK key under the US key id.
    let us_key_id = fed
        .bulletin("us-dod", Tlp::Green, Kind::Advisory, "x", &[], &[])
        .key_id;
    let mut p = us.publisher().await.unwrap();
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let title = format!("pipelined {i:03}");
        let b = if i % 7 == 3 {
            let mut forged = sign_as(
                fed.key("uk-mod"),
                "us-dod",
                Tlp::Green,
                Kind::Indicator,
                &title,
                &[],
                &[],
            );
            forged.key_id = us_key_id.clone();
            expected.push(None);
            forged
        } else {
            expected.push(Some(title.clone()));
            fed.bulletin("us-dod", Tlp::Green, Kind::Indicator, &title, &[], &[])
        };
        p.send(i, b).await.unwrap();
    }
    p.finish();
    for (i, want) in expected.iter().enumerate() {
        let r = p.recv().await.unwrap().unwrap();
        assert_eq!(r.request_id, i as u64, "results come in request order");
        match want {
            Some(_) => assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message),
            None => assert_rejected(&r, ErrorCode::BadSignature, "does not verify"),
        }
    }
    // The UK receives exactly the genuine ones, in order.
    let genuine: Vec<String> = expected.into_iter().flatten().collect();
    let uk = fed.client("uk-mod").await;
    assert_eq!(receive_titles(&uk, genuine.len()).await, genuine);
    us.close().await;
    uk.close().await;
    fed.stop().await;
}

/// A bulletin of `origin` signed with `key`, claiming to be created at `created`.
fn signed_at(
    key: &ed25519_dalek::SigningKey,
    origin: &str,
    created: renkei::timestamp::Timestamp,
    title: &str,
) -> proto::SignedBulletin {
    let b = proto::Bulletin {
        id: renkei::bulletin::BulletinId::new_v7(created).to_string(),
        origin: origin.into(),
        created_unix_ms: created.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: Kind::Advisory.to_proto() as i32,
        title: title.into(),
        ..Default::default()
    };
    renkei::bulletin::sign(&b, key, &renkei::bulletin::Limits::default()).unwrap()
}

/// An hour, in milliseconds.
const HOUR: u64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_and_backdated_bulletins_are_refused_and_recorded() {
    // uk-mod's old key stopped being valid an hour ago (a rotation); whoever holds it
    // now cannot sign with it by claiming an earlier time.
    let old_uk = identity::generate_signing_key();
    let now = Timestamp::now().unix_ms() / 1000 * 1000;
    let expired_at = Timestamp::from_unix_ms(now - HOUR);
    let fed = hub_with_an_expired_uk_key(&old_uk, expired_at)
        .start()
        .await;
    let us = fed.client("us-dod").await;
    let uk = fed.client("uk-mod").await;

    a_captured_and_a_backdated_bulletin_are_refused(&fed, &us, &uk, &old_uk, now).await;
    // A bulletin of yesterday under a key valid today still goes through.
    let yesterday = signed_at(
        fed.key("uk-mod"),
        "uk-mod",
        Timestamp::from_unix_ms(now - 24 * HOUR),
        "yesterday",
    );
    let ok = uk.publish(yesterday).await.unwrap();
    assert_eq!(ok.status, PublishStatus::Accepted as i32, "{}", ok.message);

    let auditor = fed.client("nato-ccdcoe").await;
    both_refusals_are_on_the_record(&auditor).await;
    for c in [us, uk, auditor] {
        c.close().await;
    }
    fed.stop().await;
}

/// The hub with us-dod, uk-mod with its current key and `old_uk`'s, valid until
/// `expired_at`, and the auditor nato-ccdcoe.
fn hub_with_an_expired_uk_key(old_uk: &ed25519_dalek::SigningKey, expired_at: Timestamp) -> Plan {
    let old = identity::PublicKey::of(old_uk);
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red"))
        .partner(liaison("uk-mod", "red").other_key(&format!(
            "{{ public = \"{old}\", not_after = {expired_at} }}"
        )))
        .partner(auditor("nato-ccdcoe"))
}

/// `us` republishes a US bulletin of 40 days before `now`, and `uk` one signed with the
/// expired `old_uk` dated to when it was valid: each is refused with its own code.
async fn a_captured_and_a_backdated_bulletin_are_refused(
    fed: &Federation,
    us: &Client,
    uk: &Client,
    old_uk: &ed25519_dalek::SigningKey,
    now: u64,
) {
    // A genuine US bulletin captured 40 days ago and published again today.
    let captured = signed_at(
        fed.key("us-dod"),
        "us-dod",
        Timestamp::from_unix_ms(now - 40 * 24 * HOUR),
        "captured",
    );
    assert_rejected(
        &us.publish(captured).await.unwrap(),
        ErrorCode::TooOld,
        "captured ones cannot be replayed",
    );
    // The expired UK key, backdated to when it was still valid.
    let backdated = signed_at(
        old_uk,
        "uk-mod",
        Timestamp::from_unix_ms(now - 2 * HOUR),
        "backdated",
    );
    assert_rejected(
        &uk.publish(backdated).await.unwrap(),
        ErrorCode::KeyNotValid,
        "had expired when the bulletin arrived",
    );
}

/// The log's rejections are exactly the TOO_OLD and the KEY_NOT_VALID, in that order.
async fn both_refusals_are_on_the_record(auditor: &Client) {
    // Both refusals are on the record with their codes.
    let query = proto::AuditQuery {
        event: proto::AuditEvent::BulletinRejected as u32,
        limit: 100,
        ..Default::default()
    };
    let page = auditor.audit_query(query).await.unwrap();
    let codes: Vec<i32> = page
        .records
        .iter()
        .map(|b| {
            <proto::AuditRecord as prost::Message>::decode(b.clone())
                .unwrap()
                .error
        })
        .collect();
    assert_eq!(
        codes,
        [ErrorCode::TooOld as i32, ErrorCode::KeyNotValid as i32]
    );
}
