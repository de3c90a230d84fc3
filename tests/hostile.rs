//! Hostile and broken peers: a certificate from another CA, a CA-signed certificate of
//! a stranger, an oversize frame, garbage. Each is refused clearly, and the hub goes on
//! serving its partners.

use crate::common;

use common::federation::{connect_as, eventually, receive, Federation, Plan};
use common::tables::{auditor, liaison};
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::identity::PartnerId;
use renkei::proto::PublishStatus;
use renkei::timestamp::Timestamp;

/// The hub with two RED desks.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red"))
        .partner(liaison("uk-mod", "red"))
}

async fn still_serving(fed: &Federation) {
    let us = fed.client("us-dod").await;
    let b = fed.bulletin(
        "us-dod",
        Tlp::Green,
        Kind::Advisory,
        "still serving",
        &[],
        &[],
    );
    assert_eq!(
        us.publish(b).await.unwrap().status,
        PublishStatus::Accepted as i32
    );
    us.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_of_strangers_are_refused() {
    // "cn-pla" has a certificate from the federation CA but is not a partner.
    let fed = hub().member("cn-pla").start().await;

    // An impostor with its own CA, claiming to be the UK.
    let rogue = fed.dir.path().join("rogue");
    let ids: Vec<PartnerId> = vec!["uk-mod".parse().unwrap()];
    renkei::pki::init(&rogue, &ids, Default::default(), Timestamp::now()).unwrap();
    // It trusts the real hub (so only the hub's check of the client can stop it).
    std::fs::copy(fed.certs().join("ca.crt"), rogue.join("ca.crt")).unwrap();
    let refused = match fed.client_with_certs(&rogue, "uk-mod").await {
        Err(e) => e.to_string(),
        // TLS 1.3: the client may finish before the server has checked its certificate.
        Ok(client) => client
            .hello()
            .await
            .expect_err("another CA must be refused")
            .to_string(),
    };
    // The hub aborts the handshake: the certificate does not chain to the federation CA.
    assert!(
        refused.contains("aborted by peer") && refused.contains("invalid peer certificate"),
        "{refused}"
    );

    // A stranger with a genuine federation certificate.
    let stranger = fed.client("cn-pla").await;
    let err = stranger
        .hello()
        .await
        .expect_err("a stranger must be refused")
        .to_string();
    assert!(err.contains("not a partner of this node"), "{err}");

    still_serving(&fed).await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_frames_get_clear_errors_and_harm_no_one() {
    let fed = hub().start().await;
    let uk = fed.client("uk-mod").await;

    // A length prefix of 64 MiB: refused before the body is read.
    let mut oversize = Vec::new();
    prost::encoding::encode_varint(64 << 20, &mut oversize);
    oversize.extend_from_slice(&[0u8; 32]);
    let err = uk.send_raw(&oversize).await.unwrap_err().to_string();
    assert!(err.contains("ERROR_CODE_FRAME_TOO_LARGE"), "{err}");
    assert!(err.contains("over the limit"), "{err}");

    // A well-framed message that is not protobuf.
    let mut garbage = vec![6u8];
    garbage.extend_from_slice(&[0xff; 6]);
    let err = uk.send_raw(&garbage).await.unwrap_err().to_string();
    assert!(err.contains("ERROR_CODE_MALFORMED_FRAME"), "{err}");

    // An empty frame, and a stream that opens with an Ack.
    let err = uk.send_raw(&[0]).await.unwrap_err().to_string();
    assert!(err.contains("no message set"), "{err}");
    let ack = prost::Message::encode_length_delimited_to_vec(&renkei::proto::ClientFrame {
        frame: Some(renkei::proto::client_frame::Frame::Ack(
            renkei::proto::Ack {
                seq: vec![1],
                ..Default::default()
            },
        )),
    });
    let err = uk.send_raw(&ack).await.unwrap_err().to_string();
    assert!(err.contains("ERROR_CODE_UNEXPECTED_FRAME"), "{err}");

    // A length prefix that never ends, and one whose tenth byte overflows 64 bits.
    let err = uk.send_raw(&[0xff; 11]).await.unwrap_err().to_string();
    assert!(err.contains("ERROR_CODE_MALFORMED_FRAME"), "{err}");
    let mut overflow = vec![0x80u8; 9];
    overflow.push(0x02);
    let err = uk.send_raw(&overflow).await.unwrap_err().to_string();
    assert!(err.contains("ERROR_CODE_MALFORMED_FRAME"), "{err}");

    // An Ack naming more seqs than the window (8 here) is refused.
    let mut sub = uk.subscribe(0).await.unwrap();
    sub.ack((1..=9).collect()).await.unwrap();
    let err = sub.next().await.unwrap_err().to_string();
    assert!(err.contains("at most the window of 8 seqs"), "{err}");

    // The same connection still works, and so does everyone else's.
    let welcome = uk.hello().await.unwrap();
    assert_eq!(welcome.partner_id, "uk-mod");
    assert!(
        matches!(uk.send_raw(&[]).await, Ok(None)),
        "an empty stream is simply ended"
    );
    still_serving(&fed).await;
    let got = receive(&uk, 1).await;
    assert_eq!(got[0].1, "still serving");
    uk.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partner_cannot_open_unbounded_connections() {
    let fed = hub().start().await;
    let mut held = Vec::new();
    for _ in 0..renkei::node::MAX_CONNECTIONS_PER_PARTNER {
        let c = fed.client("uk-mod").await;
        // A Hello round trip proves the node admitted this connection.
        c.hello().await.unwrap();
        held.push(c);
    }
    let extra = fed.client("uk-mod").await;
    let err = extra
        .hello()
        .await
        .expect_err("one connection too many")
        .to_string();
    assert!(err.contains("at most 8 connections per partner"), "{err}");
    // Other partners are unaffected.
    still_serving(&fed).await;
    for c in held {
        c.close().await;
    }
    fed.stop().await;
}

/// A partner's connections that die without a word (a desk's machine loses
/// power, a cable is cut) give their slots back once the node's idle timeout passes:
/// connections nobody holds do not lock the partner out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_connections_give_a_partners_slots_back() {
    let fed = hub()
        .transport("idle_timeout_secs = 2\nkeep_alive_secs = 1")
        .start()
        .await;
    let (certs, addr, hub) = (fed.certs(), fed.addr(), fed.hub.clone());
    // Every slot taken in a runtime of its own, which then stops dead: no
    // CONNECTION_CLOSE goes out, and nothing answers the node's keep-alives.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let held: Vec<Client> = rt.block_on(async {
            let mut held = Vec::new();
            for _ in 0..renkei::node::MAX_CONNECTIONS_PER_PARTNER {
                let c = connect_as(&certs, "uk-mod", addr, &hub).await.unwrap();
                c.hello().await.unwrap();
                held.push(c);
            }
            held
        });
        std::mem::forget(held);
        rt.shutdown_background();
    })
    .join()
    .unwrap();
    let refused = fed.client("uk-mod").await.hello().await;
    let refused = refused.expect_err("the dead connections still hold the slots");
    assert!(
        refused
            .to_string()
            .contains("at most 8 connections per partner"),
        "{refused}"
    );
    // Once the node's idle timeout has passed, the slots are free again.
    eventually("a new uk-mod connection is admitted", async || {
        fed.client("uk-mod").await.hello().await.is_ok()
    })
    .await;
    still_serving(&fed).await;
    fed.stop().await;
}

/// A Publish of a bulletin whose fields are `fill`ed by a hostile publisher (signature and
/// key id are filler: the node refuses the fields before it looks at them).
fn hostile(
    origin: &str,
    fill: impl FnOnce(&mut renkei::proto::Bulletin),
) -> renkei::proto::SignedBulletin {
    use prost::Message as _;
    let now = Timestamp::now();
    let mut b = renkei::proto::Bulletin {
        id: renkei::bulletin::BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: Tlp::Green.to_proto() as i32,
        kind: Kind::Advisory.to_proto() as i32,
        title: "hostile".into(),
        ..Default::default()
    };
    fill(&mut b);
    renkei::proto::SignedBulletin {
        bulletin: b.encode_to_vec().into(),
        signature: vec![7; 64].into(),
        key_id: vec![7; 8].into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_control_characters_leaves_a_record_of_bounded_size() {
    use prost::Message as _;
    let fed = hub().partner(auditor("audit-office")).start().await;
    let us = fed.client("us-dod").await;
    let megabyte = "\u{1}\u{202E}".repeat(250_000);
    let cases = [
        hostile("us-dod", |b| b.id = megabyte.clone()),
        hostile("us-dod", |b| b.references = vec![megabyte.clone()]),
        hostile("us-dod", |b| b.audience = vec![megabyte.clone()]),
        hostile("us-dod", |b| b.tags = vec![megabyte[..120].to_string()]),
    ];
    for b in cases {
        let r = us.publish(b).await.unwrap();
        assert_eq!(r.status, PublishStatus::Rejected as i32);
        assert!(
            r.message.len() < 512,
            "the answer is bounded: {} bytes",
            r.message.len()
        );
        assert!(
            !r.message.contains('\u{1}') && !r.message.contains('\u{202E}'),
            "escaped: {}",
            r.message
        );
    }
    us.close().await;

    // The auditor pages through the whole log, past every hostile record, and each
    // record is small.
    let auditor = fed.client("audit-office").await;
    let mut after = None;
    let mut rejected = 0;
    loop {
        let query = renkei::proto::AuditQuery {
            after,
            limit: 100,
            ..Default::default()
        };
        let page = auditor.audit_query(query).await.expect("a page");
        for bytes in &page.records {
            assert!(bytes.len() < 1024, "a record of {} bytes", bytes.len());
            let r = renkei::proto::AuditRecord::decode(bytes.clone()).unwrap();
            if r.event == renkei::proto::AuditEvent::BulletinRejected as i32 {
                rejected += 1;
                assert!(
                    r.reason.contains("bytes in all)"),
                    "says how long it was: {}",
                    r.reason
                );
            }
        }
        match page.next_after {
            Some(n) if !page.records.is_empty() || n < page.log_size => after = Some(n),
            _ => break,
        }
    }
    assert_eq!(rejected, 4);
    auditor.close().await;
    still_serving(&fed).await;
    fed.stop().await;
}

fn handshakes(metrics: &str, outcome: &str) -> u64 {
    let line = format!("renkei_handshakes_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_attempts_prove_their_address_before_any_handshake_work() {
    // retry_above_handshakes = 0: every attempt is asked to prove its address first,
    // as under a flood.
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let fed = hub()
        .transport("retry_above_handshakes = 0")
        .config(admin)
        .start()
        .await;
    still_serving(&fed).await;
    still_serving(&fed).await;
    assert!(
        handshakes(&fed.metrics(), "retried") >= 2,
        "each went through a Retry"
    );
    assert_eq!(handshakes(&fed.metrics(), "refused"), 0);
    fed.stop().await;

    // With no room for handshakes at all, an attempt is refused before any work.
    let fed = hub()
        .transport("max_handshakes = 0")
        .config(admin)
        .start()
        .await;
    let us = fed.client_with_certs(&fed.certs(), "us-dod").await;
    let refused = match us {
        Ok(c) => c.hello().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "no handshake, no connection");
    assert!(handshakes(&fed.metrics(), "refused") >= 1);
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_refusals_beyond_the_limit_are_counted_not_recorded_one_by_one() {
    use prost::Message as _;
    use renkei::node::PARTNER_REFUSALS_PER_MINUTE;
    let fed = hub().partner(auditor("audit-office")).start().await;
    // The UK desk sends, pipelined, bulletins signed with a key nobody configured.
    let stranger = renkei::identity::generate_signing_key();
    let sent = PARTNER_REFUSALS_PER_MINUTE as u64 + 100;
    let uk = fed.client("uk-mod").await;
    let mut p = uk.publisher().await.unwrap();
    for i in 0..sent {
        let b = common::federation::sign_as(
            &stranger,
            "uk-mod",
            Tlp::Green,
            Kind::Advisory,
            "x",
            &[],
            &[],
        );
        p.send(i, b).await.unwrap();
    }
    p.finish();
    let mut rejected = 0;
    while let Some(r) = p.recv().await.unwrap() {
        assert_eq!(r.status, PublishStatus::Rejected as i32);
        rejected += 1;
    }
    assert_eq!(rejected, sent, "every publish is answered");
    uk.close().await;

    // The log holds the limit's worth one by one, and one record counting the rest
    // (written when the connection ended): every refusal is counted, the log is not
    // flooded.
    let auditor = fed.client("audit-office").await;
    let deadline = std::time::Instant::now() + common::federation::PATIENCE;
    let (records, counted) = loop {
        let query = renkei::proto::AuditQuery {
            partner: "uk-mod".into(),
            event: renkei::proto::AuditEvent::BulletinRejected as u32,
            limit: 1000,
            ..Default::default()
        };
        let page = auditor.audit_query(query).await.unwrap();
        let records: Vec<renkei::proto::AuditRecord> = page
            .records
            .iter()
            .map(|b| renkei::proto::AuditRecord::decode(b.clone()).unwrap())
            .collect();
        let counted: u64 = records.iter().map(|r| r.count.max(1)).sum();
        if counted == sent || std::time::Instant::now() > deadline {
            break (records, counted);
        }
    };
    assert_eq!(counted, sent, "every refusal is counted");
    assert_eq!(records.len(), PARTNER_REFUSALS_PER_MINUTE as usize + 1);
    let summary = records.last().unwrap();
    assert_eq!(summary.count, 100);
    assert_eq!(summary.error, renkei::proto::ErrorCode::UnknownKey as i32);
    auditor.close().await;
    still_serving(&fed).await;
    fed.stop().await;
}
