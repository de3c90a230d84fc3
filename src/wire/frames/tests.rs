use bytes::Bytes;

use super::*;

#[test]
fn delivery_and_publish_result_frames_are_the_bytes_prost_would_write() {
    let envelope = |n: usize| proto::SignedBulletin {
        bulletin: Bytes::from(vec![7; n]),
        signature: Bytes::from(vec![1; 64]),
        key_id: Bytes::from(vec![2; 8]),
    };
    let mut written = Vec::new();
    let mut expected = Vec::new();
    let refused = proto::PublishResult {
        request_id: 9,
        status: proto::PublishStatus::Rejected as i32,
        error: 3,
        message: "x".into(),
        ..Default::default()
    };
    let result = proto::ServerFrame {
        frame: Some(proto::server_frame::Frame::PublishResult(refused.clone())),
    };
    let paths: [&[&str]; 3] = [&[], &["jp-mod"], &["jp-mod", "nato-ccdcoe"]];
    for (i, (seq, n)) in [(0, 0), (1, 5), (127, 1_000), (128, 20_000), (1 << 40, 90)]
        .into_iter()
        .enumerate()
    {
        let signed = envelope(n);
        let path: Vec<String> = paths[i % 3].iter().map(|s| s.to_string()).collect();
        let mut full = path.clone();
        full.push("us-dod".into());
        let frame = proto::ServerFrame {
            frame: Some(proto::server_frame::Frame::Delivery(proto::Delivery {
                seq,
                bulletin: Some(signed.clone()),
                path: full,
            })),
        };
        delivery_frame(&mut written, seq, &signed.encode_to_vec(), &path, "us-dod");
        expected.extend(frame.encode_length_delimited_to_vec());
        publish_result_frame(&mut written, &refused, &[]);
        expected.extend(result.encode_length_delimited_to_vec());
    }
    assert_eq!(written, expected);
    // And a reader takes them back one by one.
    let mut buf = &written[..];
    for _ in 0..5 {
        let f = proto::ServerFrame::decode_length_delimited(&mut buf).unwrap();
        assert!(matches!(
            f.frame,
            Some(proto::server_frame::Frame::Delivery(_))
        ));
        assert_eq!(
            proto::ServerFrame::decode_length_delimited(&mut buf).unwrap(),
            result
        );
    }
    assert!(buf.is_empty());
}

#[test]
fn partner_lists_are_the_fields_prost_would_write() {
    let d = |partner: &str, shared, reason: i32, detail: &str| proto::Decision {
        partner: partner.into(),
        shared,
        reason,
        detail: detail.into(),
        affiliation: "EE".into(),
    };
    let decisions = [
        d("au-dod", true, 0, ""),
        d("uk-mod", true, 0, ""),
        d(
            "vn-mod",
            false,
            proto::WithholdReason::AboveClearance as i32,
            "amber is above green",
        ),
        d("", false, -1, ""),
    ];
    let shared = decisions.iter().filter(|d| d.shared);
    let told = decisions.iter().filter(|d| !d.shared);
    let lists = publish_result_lists(shared, told, 0);
    let expected = proto::PublishResult {
        shared_with: vec!["au-dod".into(), "uk-mod".into()],
        withheld: vec![
            proto::Withheld {
                partner: "vn-mod".into(),
                reason: proto::WithholdReason::AboveClearance as i32,
                detail: "amber is above green".into(),
            },
            proto::Withheld {
                partner: String::new(),
                reason: -1,
                detail: String::new(),
            },
        ],
        ..Default::default()
    };
    assert_eq!(lists, expected.encode_to_vec());
}
