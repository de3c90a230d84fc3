//! Store-and-forward: a partner that is offline catches up in order, a partner that
//! drops out mid-delivery gets the unacknowledged bulletins again, a partner that stops
//! acknowledging holds up nobody else, and a restarted hub has lost nothing.

use crate::common;

use common::federation::{receive_titles, Federation, Plan, PATIENCE};
use common::tables::{auditor, liaison};
use renkei::bulletin::{Kind, Tlp};
use renkei::proto::{self, PublishStatus};

/// The hub with a RED desk, two AMBER ones and an auditor.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .partner(liaison("us-dod", "red"))
        .partner(liaison("au-dod", "amber"))
        .partner(liaison("ee-mod", "amber"))
        .partner(auditor("audit-office"))
}

async fn publish_all(fed: &Federation, titles: &[String]) {
    let us = fed.client("us-dod").await;
    let mut p = us.publisher().await.unwrap();
    for (i, t) in titles.iter().enumerate() {
        p.send(
            i as u64,
            fed.bulletin("us-dod", Tlp::Green, Kind::Indicator, t, &[], &[]),
        )
        .await
        .unwrap();
    }
    p.finish();
    for _ in titles {
        let r = p.recv().await.unwrap().unwrap();
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
    }
    us.close().await;
}

fn titles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:03}")).collect()
}

fn title_of(d: &proto::Delivery) -> String {
    let b: proto::Bulletin =
        prost::Message::decode(d.bulletin.as_ref().unwrap().bulletin.clone()).unwrap();
    b.title
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_partner_catches_up_in_order() {
    let fed = hub().start().await;
    // Australia is offline while forty indicators are published.
    let sent = titles("indicator", 40);
    publish_all(&fed, &sent).await;
    let au = fed.client("au-dod").await;
    let got = receive_titles(&au, sent.len()).await;
    assert_eq!(got, sent);
    au.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_deliveries_come_again_after_a_reconnect() {
    let fed = hub().start().await;
    let sent = titles("advisory", 5);
    publish_all(&fed, &sent).await;

    // Estonia takes three, acknowledges only the first two, and drops the connection.
    let ee = fed.client("ee-mod").await;
    let mut sub = ee.subscribe(0).await.unwrap();
    let mut first = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        first.push((d.seq, title_of(&d)));
    }
    sub.ack(vec![first[0].0, first[1].0]).await.unwrap();
    // Ending the subscription cleanly waits until the hub has recorded the acks.
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    ee.close().await;

    let ee = fed.client("ee-mod").await;
    let again = receive_titles(&ee, 3).await;
    assert_eq!(
        again,
        sent[2..],
        "the third is delivered again, then the rest, in order"
    );
    ee.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_never_acknowledges_holds_up_nobody() {
    let fed = hub().start().await;
    // Estonia subscribes, reads its window (8 in these tests) and then stalls.
    let ee = fed.client("ee-mod").await;
    let mut stalled = ee.subscribe(0).await.unwrap();

    let sent = titles("exercise inject", 60);
    publish_all(&fed, &sent).await;
    for _ in 0..8 {
        tokio::time::timeout(PATIENCE, stalled.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    // Australia still receives all sixty while Estonia's window stays full.
    let au = fed.client("au-dod").await;
    let got = receive_titles(&au, sent.len()).await;
    assert_eq!(got, sent);
    au.close().await;
    ee.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_still_has_every_accepted_bulletin_and_queue() {
    let mut fed = hub().start().await;
    let sent = titles("report", 12);
    publish_all(&fed, &sent).await;
    let kept = fed.bulletin("us-dod", Tlp::Green, Kind::Report, "kept", &["au-dod"], &[]);
    let us = fed.client("us-dod").await;
    assert_eq!(
        us.publish(kept.clone()).await.unwrap().status,
        PublishStatus::Accepted as i32
    );
    us.close().await;
    // Australia takes half before the restart.
    let au = fed.client("au-dod").await;
    let before = receive_titles(&au, 6).await;
    assert_eq!(before, sent[..6]);
    au.close().await;

    fed.restart().await;

    // The duplicate check survived: publishing an accepted bulletin again is a duplicate.
    let us = fed.client("us-dod").await;
    assert_eq!(
        us.publish(kept).await.unwrap().status,
        PublishStatus::Duplicate as i32
    );
    us.close().await;
    // Both queues resume where they were.
    let au = fed.client("au-dod").await;
    let rest = receive_titles(&au, 7).await;
    assert_eq!(rest[..6], sent[6..]);
    assert_eq!(rest[6], "kept");
    let ee = fed.client("ee-mod").await;
    let all = receive_titles(&ee, 13).await;
    assert_eq!(all[..12], sent[..]);
    au.close().await;
    ee.close().await;
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_subscription_leaves_every_delivery_on_the_record() {
    use prost::Message as _;
    let fed = hub().start().await;
    let sent = titles("incident", 5);
    publish_all(&fed, &sent).await;

    // Estonia's first connection takes all five and acknowledges none; a second one
    // (its desk restarted) subscribes and replaces it, gets them again and acks them.
    let old = fed.client("ee-mod").await;
    let mut sub = old.subscribe(0).await.unwrap();
    let mut seen: std::collections::HashMap<u64, u64> = Default::default();
    for _ in 0..5 {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        *seen.entry(d.seq).or_default() += 1;
    }
    let new = fed.client("ee-mod").await;
    let again = common::federation::receive(&new, 5).await;
    for (seq, _) in &again {
        *seen.entry(*seq).or_default() += 1;
    }
    let ended = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("the old one ends");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "nothing more on the replaced subscription"
    );

    // Every delivery that reached the desk has its DELIVERED record.
    let auditor = fed.client("audit-office").await;
    let query = proto::AuditQuery {
        event: proto::AuditEvent::Delivered as u32,
        partner: "ee-mod".into(),
        limit: 1000,
        ..Default::default()
    };
    let page = auditor.audit_query(query).await.unwrap();
    let mut recorded: std::collections::HashMap<u64, u64> = Default::default();
    for r in &page.records {
        for seq in proto::AuditRecord::decode(r.clone()).unwrap().bulletin_seqs {
            *recorded.entry(seq).or_default() += 1;
        }
    }
    for (seq, times) in &seen {
        assert!(
            recorded.get(seq).copied().unwrap_or(0) >= *times,
            "seq {seq} reached the desk {times} times, recorded {recorded:?}"
        );
    }
    for c in [old, new, auditor] {
        c.close().await;
    }
    fed.stop().await;
}
