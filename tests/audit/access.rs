//! Over QUIC, as the auditor: queries, checkpoints and proofs; who may ask, and the record of every question.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_reads_the_log_and_proves_it_against_signed_checkpoints() {
    let mut fed = hub().start().await;
    let monday = working_day(&fed, "Monday").await;
    let auditor = fed.client("audit-office").await;
    let hub_key = fed.key(HUB).verifying_key();
    let (vn_page, given) = what_was_decided_for_vn_mod(&auditor, &monday).await;
    uk_mod_was_given_all_three(&auditor, &monday).await;
    every_vn_mod_record_concerns_it(&auditor).await;

    // The hub signs a checkpoint of its log with its own key; the exercise notice's
    // record is in the tree, under it and under the latest.
    let first = signed_checkpoint(&auditor, &hub_key).await;
    assert!(first.size > given.seq);
    let latest =
        the_record_is_proved_in_the_tree(&auditor, &hub_key, &vn_page, given.seq, &first).await;

    // Tuesday's work grows the log; the second checkpoint extends the first.
    working_day(&fed, "Tuesday").await;
    let second = signed_checkpoint(&auditor, &hub_key).await;
    assert!(second.size > latest.size);
    let p = auditor
        .consistency_proof(first.size, second.size)
        .await
        .unwrap();
    let path = hashes(&p.hashes);
    merkle::check_consistency(&path, second.size, second.root, first.size, first.root).unwrap();
    // A history that differs from what the first checkpoint signed does not fit.
    let other = TreeHash([0x5a; 32]);
    assert!(matches!(
        merkle::check_consistency(&path, second.size, second.root, first.size, other),
        Err(MerkleError::ProofFailed)
    ));
    // Up to the latest (0): the hub signs again and proves from the first checkpoint.
    let p = auditor.consistency_proof(first.size, 0).await.unwrap();
    assert_eq!(p.old_size, first.size);
    assert_eq!(
        p.old_root.as_ref(),
        first.root.0,
        "the root the auditor holds"
    );
    assert!(p.new_size > second.size);
    let new_root = TreeHash(p.new_root.as_ref().try_into().unwrap());
    let path = hashes(&p.hashes);
    merkle::check_consistency(&path, p.new_size, new_root, first.size, first.root).unwrap();
    the_report_counts_what_each_was_given(&auditor).await;
    auditor.close().await;

    // Stopped, the hub's database holds a checkpoint of exactly the size and root the
    // last consistency proof ended at: the root it gave was one it signed.
    fed.halt().await;
    let store = renkei::store::Store::open(&fed.data_dir(), 16 << 20).unwrap();
    let signed: Vec<(u64, String)> = store
        .audit()
        .checkpoints()
        .collect::<Result<_, _>>()
        .unwrap();
    let (_, note) = signed
        .iter()
        .find(|(size, _)| *size == p.new_size)
        .expect("a checkpoint of the proof's new size");
    assert_eq!(
        checkpoint::verify(note, &origin(), &hub_key).unwrap().root,
        new_root
    );
    drop(store);
    fed.stop().await;
}

/// What was decided for vn-mod? It was given only Monday's GREEN exercise notice, and
/// the record says so: who published it, its digest, and vn-mod's decision. The others
/// are among its records too, each saying why vn-mod did not get it. The page, and
/// the record of the notice.
async fn what_was_decided_for_vn_mod(
    auditor: &Client,
    monday: &[proto::PublishResult],
) -> (proto::AuditPage, proto::AuditRecord) {
    let vn_page = auditor
        .audit_query(query("vn-mod", Some(AuditEvent::BulletinAccepted)))
        .await
        .unwrap();
    let (vn, not_vn): (Vec<_>, Vec<_>) = records(&vn_page)
        .into_iter()
        .partition(|r| decision(r, "vn-mod").shared);
    assert_eq!(bulletin_ids(&vn), [monday[0].bulletin_id.as_str()]);
    assert_eq!(not_vn.len(), 2, "the advisory and the incident note");
    let above = WithholdReason::AboveClearance as i32;
    assert!(not_vn.iter().all(|r| decision(r, "vn-mod").reason == above));
    assert_eq!(vn[0].partner, "us-dod");
    assert_eq!(vn[0].digest, monday[0].digest);
    assert!(decision(&vn[0], "vn-mod").shared);
    let given = vn[0].clone();
    (vn_page, given)
}

/// uk-mod was given all three; the advisory's record says vn-mod was not, and why.
async fn uk_mod_was_given_all_three(auditor: &Client, monday: &[proto::PublishResult]) {
    let page = auditor
        .audit_query(query("uk-mod", Some(AuditEvent::BulletinAccepted)))
        .await
        .unwrap();
    let uk = records(&page);
    let all: Vec<&str> = monday.iter().map(|r| r.bulletin_id.as_str()).collect();
    assert_eq!(bulletin_ids(&uk), all);
    assert!(uk.iter().all(|r| decision(r, "uk-mod").shared));
    let withheld = decision(&uk[1], "vn-mod");
    assert_eq!(uk[1].bulletin_id, monday[1].bulletin_id);
    assert!(!withheld.shared);
    assert_eq!(withheld.reason, WithholdReason::AboveClearance as i32);
    assert!(withheld.detail.contains("amber"), "{}", withheld.detail);
}

/// Without the event filter, vn-mod's own connection, delivery and ack are there too,
/// and nothing that does not concern vn-mod.
async fn every_vn_mod_record_concerns_it(auditor: &Client) {
    let everything_vn = records(&auditor.audit_query(query("vn-mod", None)).await.unwrap());
    for event in [
        AuditEvent::ConnectionAccepted,
        AuditEvent::BulletinAccepted,
        AuditEvent::Delivered,
        AuditEvent::Acked,
    ] {
        assert!(
            everything_vn.iter().any(|r| r.event == event as i32),
            "no {event:?} for vn-mod"
        );
    }
    for r in &everything_vn {
        let concerns = r.partner == "vn-mod" || r.decisions.iter().any(|d| d.partner == "vn-mod");
        assert!(concerns, "record {} does not concern vn-mod: {r:?}", r.seq);
    }
}

/// Record `seq` (the first of `page`) is proved against the latest checkpoint (signed
/// afresh by `hub_key`, as the request itself was recorded) and against `first` when asked for its
/// size; a record changed by one bit, or claimed at another place, does not verify.
/// The latest checkpoint.
async fn the_record_is_proved_in_the_tree(
    auditor: &Client,
    hub_key: &VerifyingKey,
    page: &proto::AuditPage,
    seq: u64,
    first: &Verified,
) -> Verified {
    let proof = auditor.inclusion_proof(seq, 0).await.unwrap();
    assert_eq!(proof.record, page.records[0], "the record as queried");
    let latest = checkpoint::verify(&proof.checkpoint, &origin(), hub_key).unwrap();
    assert_eq!(latest.size, proof.tree_size);
    assert!(latest.size > first.size, "the request grew the log");
    let path = hashes(&proof.hashes);
    let leaf = merkle::leaf_hash(&proof.record);
    merkle::check_inclusion(&path, latest.size, latest.root, seq, leaf).unwrap();
    let old = auditor.inclusion_proof(seq, first.size).await.unwrap();
    assert!(
        old.checkpoint.is_empty(),
        "the auditor holds that checkpoint"
    );
    let old_path = hashes(&old.hashes);
    merkle::check_inclusion(&old_path, first.size, first.root, seq, leaf).unwrap();
    let mut altered = proof.record.to_vec();
    altered[0] ^= 0x01;
    let altered = merkle::leaf_hash(&altered);
    assert!(matches!(
        merkle::check_inclusion(&path, latest.size, latest.root, seq, altered),
        Err(MerkleError::ProofFailed)
    ));
    assert!(merkle::check_inclusion(&path, latest.size, latest.root, seq + 1, leaf).is_err());
    latest
}

/// The metrics report counts what each partner was given over the two days.
async fn the_report_counts_what_each_was_given(auditor: &Client) {
    let report = auditor.metrics(Default::default()).await.unwrap();
    assert_eq!(report.node_id, HUB);
    let figure = |partner: &str, name: &str| {
        report
            .partners
            .iter()
            .find(|p| p.partner == partner)
            .and_then(|p| p.figures.iter().find(|f| f.name == name))
            .map_or(0, |f| f.value)
    };
    assert_eq!(figure("us-dod", "received.exercise"), 2);
    assert_eq!(figure("uk-mod", "shared.consultation"), 2);
    assert_eq!(figure("vn-mod", "shared.exercise"), 2);
    assert_eq!(figure("vn-mod", "shared.advisory"), 0);
    assert!(figure("vn-mod", "withheld.above_clearance") >= 2);
}

/// Why a liaison is refused the log.
const ONLY: &str = "only auditors may read the audit log";
/// Why the auditor is refused bulletins.
const NEITHER: &str = "auditors may neither publish nor receive";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_auditor_reads_the_log_and_every_question_is_on_the_record() {
    let fed = hub().start().await;
    working_day(&fed, "Monday").await;
    let hub_key = fed.key(HUB).verifying_key();

    a_liaison_is_refused_the_log_three_ways(&fed).await;
    let auditor = fed.client("audit-office").await;
    the_auditor_may_not_trade_bulletins(&fed, &auditor).await;
    let (asked, barrier) = the_auditor_asks_one_question_of_each_kind(&auditor, &hub_key).await;
    every_question_is_on_the_record(&auditor, &asked, barrier).await;
    every_refusal_is_on_the_record(&auditor, barrier).await;
    auditor.close().await;
    fed.stop().await;
}

/// The US liaison asks for the log, a checkpoint and a proof, and is refused each time.
async fn a_liaison_is_refused_the_log_three_ways(fed: &Federation) {
    // The US liaison asks for the log three ways and is refused each time.
    let us = fed.client("us-dod").await;
    let err = us.audit_query(query("", None)).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", ONLY);
    let err = us.checkpoint().await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", ONLY);
    let err = us.inclusion_proof(0, 0).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", ONLY);
    us.close().await;
}

/// The auditor is refused when it publishes a bulletin and when it subscribes.
async fn the_auditor_may_not_trade_bulletins(fed: &Federation, auditor: &Client) {
    // The auditor may neither publish nor receive bulletins.
    let b = fed.bulletin("us-dod", Tlp::Green, Kind::Report, "relayed", &[], &[]);
    let err = auditor.publish(b).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", NEITHER);
    let mut sub = auditor.subscribe(0).await.unwrap();
    let err = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("an answer in time")
        .unwrap_err();
    assert_refused(&err, "ERROR_CODE_NOT_PERMITTED", NEITHER);
}

/// The auditor asks a query, for metrics, checkpoints and both proofs, and one proof
/// that cannot be given; returns what the log should say of each question, and a log
/// size below which they all are.
async fn the_auditor_asks_one_question_of_each_kind(
    auditor: &Client,
    hub_key: &VerifyingKey,
) -> (Vec<String>, u64) {
    // The auditor asks one question of each kind, and one that cannot be answered.
    let mut asked = Vec::new();
    auditor.audit_query(query("vn-mod", None)).await.unwrap();
    asked.push("audit query partner=vn-mod".to_string());
    auditor.metrics(Default::default()).await.unwrap();
    asked.push("metrics".into());
    let size = signed_checkpoint(auditor, hub_key).await.size;
    asked.push("latest checkpoint".into());
    auditor.inclusion_proof(1, size).await.unwrap();
    asked.push(format!("inclusion proof of record 1 in tree size {size}"));
    auditor.consistency_proof(1, size).await.unwrap();
    asked.push(format!("consistency proof from tree size 1 to {size}"));
    let beyond = size + 1000;
    let err = auditor.inclusion_proof(beyond, 0).await.unwrap_err();
    assert_refused(&err, "ERROR_CODE_INVALID_REQUEST", "is not in a tree");
    asked.push(format!("inclusion proof of record {beyond} in tree size 0"));
    // A checkpoint covers every event the hub had heard of when asked, this request's
    // own record included: everything above is on the record below `barrier`.
    let barrier = signed_checkpoint(auditor, hub_key).await.size;
    asked.push("latest checkpoint".into());
    (asked, barrier)
}

/// Below `barrier`, the log holds one auditor-query record per question `asked`, in order.
async fn every_question_is_on_the_record(auditor: &Client, asked: &[String], barrier: u64) {
    let questions: Vec<proto::AuditRecord> = records(
        &auditor
            .audit_query(query("", Some(AuditEvent::AuditorQuery)))
            .await
            .unwrap(),
    )
    .into_iter()
    .filter(|r| r.seq < barrier)
    .collect();
    let logged: Vec<&str> = questions.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(questions.len(), asked.len(), "{logged:#?}");
    for (r, what) in questions.iter().zip(asked) {
        assert_eq!(r.partner, "audit-office");
        assert!(
            r.reason.starts_with(what.as_str()),
            "{:?} for {what:?}",
            r.reason
        );
    }
}

/// Below `barrier`, the log records the US liaison's three refusals and the auditor's two.
async fn every_refusal_is_on_the_record(auditor: &Client, barrier: u64) {
    // The refused attempts are on the record too, with who tried and why it was refused.
    let refusals = |partner: &'static str| {
        let auditor = &auditor;
        async move {
            let page = auditor
                .audit_query(query(partner, Some(AuditEvent::BulletinRejected)))
                .await
                .unwrap();
            records(&page)
                .into_iter()
                .filter(|r| r.seq < barrier)
                .collect::<Vec<_>>()
        }
    };
    let us_tried = refusals("us-dod").await;
    assert_eq!(us_tried.len(), 3, "{us_tried:#?}");
    for r in &us_tried {
        assert_eq!(r.partner, "us-dod");
        assert_eq!(r.error, ErrorCode::NotPermitted as i32);
        assert!(r.reason.contains(ONLY), "{}", r.reason);
    }
    let auditor_tried = refusals("audit-office").await;
    assert_eq!(auditor_tried.len(), 2, "{auditor_tried:#?}");
    for r in &auditor_tried {
        assert_eq!(r.error, ErrorCode::NotPermitted as i32);
        assert!(r.reason.contains(NEITHER), "{}", r.reason);
    }
}
