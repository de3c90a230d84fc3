//! One subscription's deliveries, window and cursor, driven without a stream.

use bytes::Bytes;

use super::*;
use crate::proto::AuditEvent;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

fn item(seq: u64) -> Pending {
    Pending {
        seq,
        accepted: t(100),
        signed: Bytes::from_static(b"envelope"),
        path: Vec::new(),
    }
}

fn page(seqs: &[u64], scanned_through: u64) -> Page {
    Page {
        items: seqs.iter().copied().map(item).collect(),
        scanned_through,
    }
}

fn progress(window: usize) -> Progress {
    Progress::new("au-dod".parse().unwrap(), Cursor::default(), window)
}

#[test]
fn the_cursor_moves_over_a_prefix_of_acknowledged_deliveries() {
    let mut p = progress(8);
    p.take_page(page(&[3, 5, 9], 9), Vec::new());
    let record = p.take_acks([vec![5]], t(110)).unwrap();
    assert_eq!(record.record().event, AuditEvent::Acked as i32);
    assert_eq!(record.record().latencies_ms, [10]);
    assert_eq!(p.cursor.acked_through, 2);
    assert_eq!(p.cursor.acked_above, [5].into_iter().collect());
    let twice = p.take_acks([vec![3, 3]], t(120)).unwrap();
    assert_eq!(twice.record().bulletin_seqs, [3], "counted once");
    assert_eq!(p.cursor.acked_through, 8, "up to the oldest unacked (9)");
    assert!(p.cursor.acked_above.is_empty());
    assert!(
        p.take_acks([vec![42]], t(130)).is_none(),
        "an ack for something not in flight changes nothing"
    );
    let back = p.take_acks([vec![9]], t(90)).unwrap();
    assert_eq!(back.record().latencies_ms, [0], "a clock step back is 0 ms");
    assert_eq!(p.cursor.acked_through, 9);
}

#[test]
fn one_unacknowledged_delivery_closes_the_window_after_window_more() {
    let mut p = progress(4);
    let out = p.take_page(page(&[1, 2, 3, 4], 4), Vec::new());
    assert_eq!(out.delivered.unwrap().record().bulletin_seqs, [1, 2, 3, 4]);
    assert_eq!(p.room(), 0);
    // Seq 1 is never acked: the others are, but they still count against the window.
    p.take_acks([vec![2], vec![3, 4]], t(100));
    assert_eq!(p.cursor.acked_through, 0);
    assert_eq!(p.room(), 0, "acked_above cannot grow past the window");
    p.take_acks([vec![1]], t(100));
    assert_eq!(p.cursor.acked_through, 4);
    assert_eq!(p.room(), 4);
}

#[test]
fn a_page_cut_off_by_a_replacement_comes_again_to_the_next_subscription() {
    let mut p = progress(8);
    p.take_page(page(&[1, 2], 2), Vec::new());
    p.take_acks([vec![1, 2]], t(100));
    assert_eq!(p.cursor.acked_through, 2);
    // The next page is handed to the stream, and the subscription is replaced before
    // its write completes. Acks that were already on their way are still recorded.
    p.take_page(page(&[5, 6], 7), Vec::new());
    assert!(p.take_acks([Vec::new()], t(100)).is_none());
    assert_eq!(
        p.cursor.acked_through, 4,
        "the cursor saved for the next subscription stops before 5, the cut-off page's first"
    );
}

#[test]
fn what_the_rules_withdraw_is_recorded_and_taken_off_the_queue() {
    let mut p = progress(8);
    // The rules now in force lowered au-dod's clearance to green.
    let why = || Withdrawal {
        header: crate::bulletin::Header {
            id: crate::bulletin::BulletinId::new_v7(t(50)),
            origin: "us-dod".parse().unwrap(),
            created: t(50),
            tlp: crate::bulletin::Tlp::Amber,
            kind: crate::bulletin::Kind::Advisory,
            tags: Vec::new(),
            audience: Vec::new(),
        },
        digest: crate::bulletin::Digest([7; 32]),
        why: crate::policy::Withhold::AboveClearance {
            tlp: crate::bulletin::Tlp::Amber,
            clearance: Some(crate::bulletin::Tlp::Green),
        },
    };
    let out = p.take_page(page(&[2], 3), vec![(1, why()), (3, why())]);
    assert_eq!(out.progressed, 3, "withdrawn bulletins are progress too");
    assert_eq!(out.withdrawn.len(), 2);
    assert!(
        out.withdrawn[0].1.is_none(),
        "only the last record moves the cursor"
    );
    let cursor = out.withdrawn[1].1.clone().unwrap();
    assert_eq!(cursor.acked_above, [1, 3].into_iter().collect());
    assert_eq!(
        out.withdrawn[0].0.record().event,
        AuditEvent::Withdrawn as i32
    );
    assert_eq!(out.delivered.unwrap().record().bulletin_seqs, [2]);
    assert_eq!(
        p.room(),
        5,
        "withdrawn ones count against the window until passed"
    );
    p.take_acks([vec![2]], t(100));
    assert_eq!(p.cursor.acked_through, 3);
    assert!(p.cursor.acked_above.is_empty());
    assert_eq!(p.room(), 8);
}

#[test]
fn it_reads_on_while_it_makes_progress_has_room_and_more_is_stored() {
    let mut p = progress(2);
    let out = p.take_page(page(&[1], 1), Vec::new());
    assert!(
        p.read_on(out.progressed, 5),
        "room for one more, and 2..5 are stored"
    );
    let out = p.take_page(page(&[4], 4), Vec::new());
    assert!(!p.read_on(out.progressed, 5), "the window is full");
    p.take_acks([vec![1, 4]], t(100));
    // A page with nothing for this partner: examined, skipped, and nothing to wait for.
    let out = p.take_page(page(&[], 5), Vec::new());
    assert!(out.delivered.is_none());
    assert!(!p.read_on(out.progressed, 5));
    assert_eq!(
        p.cursor.acked_through, 5,
        "what was examined is skipped once idle"
    );
}

#[test]
fn deliveries_offered_again_below_the_cursor_neither_hold_nor_move_it() {
    let cursor = Cursor {
        acked_through: 20,
        ..Cursor::default()
    };
    let mut p = Progress::new("au-dod".parse().unwrap(), cursor, 8);
    let again = p.take_retries(&[item(4), item(7)]).unwrap();
    assert_eq!(again.record().bulletin_seqs, [4, 7]);
    assert!(p.is_retry_in_flight(4) && p.is_retry_in_flight(7));
    assert_eq!(p.room(), 6, "in flight, they count against the window");
    p.take_page(page(&[21, 22], 22), Vec::new());
    p.take_acks([vec![21, 22]], t(110));
    assert_eq!(
        p.cursor.acked_through, 22,
        "an old retry does not hold the cursor"
    );
    let acked = p.take_acks([vec![4]], t(120)).unwrap();
    assert_eq!(acked.record().bulletin_seqs, [4]);
    assert!(!p.is_retry_in_flight(4));
    assert_eq!(p.cursor.acked_through, 22, "nor does its ack move it back");
    assert!(p.cursor.acked_above.is_empty());
    assert_eq!(p.room(), 7, "7 is still out");
}

fn refusal(seq: u64, code: ErrorCode) -> proto::Refusal {
    proto::Refusal {
        seq,
        code: code as i32,
        message: String::new(),
    }
}

#[test]
fn a_refusal_configuration_could_change_is_kept_and_a_retry_taken_is_forgotten() {
    let cursor = Cursor {
        acked_through: 10,
        ..Cursor::default()
    };
    let mut p = Progress::new("au-dod".parse().unwrap(), cursor, 8);
    p.take_retries(&[item(4)]);
    p.take_page(page(&[11, 12, 13], 13), Vec::new());
    let acks = [proto::Ack {
        seq: vec![4, 11, 12, 13, 13, 99],
        refused: vec![
            refusal(11, ErrorCode::UnknownOrigin),
            refusal(12, ErrorCode::BadSignature),
            refusal(99, ErrorCode::UnknownKey),
        ],
        receipts: vec![],
    }];
    let au: PartnerId = "au-dod".parse().unwrap();
    let kept = Refusal {
        seq: 11,
        code: ErrorCode::UnknownOrigin as i32,
        own_digest: [1; 32],
        peer_digest: vec![2; 32],
    };
    assert_eq!(
        p.refused_changes(&acks, [1; 32], &[2; 32]),
        [
            RefusedChange::Forget(au.clone(), 4),
            RefusedChange::Keep(au, kept)
        ],
        "a forged one is not kept, 13 was taken, 99 was never delivered"
    );
    assert!(
        p.refused_changes(&acks, [1; 32], &[]).is_empty(),
        "nothing is kept for a peer that declares no digest"
    );
}

#[test]
fn only_refusals_a_configuration_could_change_are_kept_for_another_try() {
    for code in [
        ErrorCode::UnknownOrigin,
        ErrorCode::UnknownKey,
        ErrorCode::NotViaPeer,
    ] {
        assert!(may_change_with_configuration(code), "{code:?}");
    }
    for code in [
        ErrorCode::BadSignature,
        ErrorCode::Conflict,
        ErrorCode::TooOld,
        ErrorCode::InvalidBulletin,
    ] {
        assert!(!may_change_with_configuration(code), "{code:?}");
    }
}
