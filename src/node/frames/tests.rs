use super::*;
use crate::identity::PartnerId;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

fn hello(version: u32) -> Frame {
    Frame::Hello(proto::Hello {
        protocol_version: version,
        software: String::new(),
    })
}

#[test]
fn each_role_opens_only_the_streams_it_may() {
    let us = pid("us-dod");
    let publish = || Frame::Publish(proto::Publish::default());
    let query = || Frame::AuditQuery(proto::AuditQuery::default());
    assert!(matches!(
        opening(Some(hello(1)), &Partner::new(us.clone(), Role::Liaison)),
        Opening::Hello
    ));
    assert!(matches!(
        opening(Some(publish()), &Partner::new(us.clone(), Role::Relay)),
        Opening::Publish(_)
    ));
    assert!(matches!(
        opening(
            Some(Frame::Subscribe(proto::Subscribe::default())),
            &Partner::new(us.clone(), Role::Liaison)
        ),
        Opening::Subscribe(_)
    ));
    assert!(matches!(
        opening(Some(publish()), &Partner::new(us.clone(), Role::Auditor)),
        Opening::NotPermitted(_)
    ));
    assert!(matches!(
        opening(Some(query()), &Partner::new(us.clone(), Role::Auditor)),
        Opening::Auditor(_)
    ));
    let Opening::NotPermitted(why) =
        opening(Some(query()), &Partner::new(us.clone(), Role::Liaison))
    else {
        panic!("a liaison reads no log");
    };
    assert_eq!(
        why,
        "only auditors may read the audit log; us-dod is a liaison"
    );
}

#[test]
fn what_no_stream_may_open_with_is_refused_with_its_code() {
    let us = pid("us-dod");
    let code = |f| match opening(f, &Partner::new(us.clone(), Role::Liaison)) {
        Opening::Refused(code, _) => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(Some(hello(2))), ErrorCode::UnsupportedVersion);
    assert_eq!(
        code(Some(Frame::Ack(proto::Ack::default()))),
        ErrorCode::UnexpectedFrame
    );
    assert_eq!(code(None), ErrorCode::MalformedFrame);
}

#[test]
fn a_stream_carries_only_its_own_frames_after_the_first() {
    let frame = |f| proto::ClientFrame { frame: f };
    assert!(on_publish_stream(frame(Some(Frame::Publish(proto::Publish::default())))).is_ok());
    let ack = || {
        Frame::Ack(proto::Ack {
            seq: vec![1, 2, 3],
            refused: vec![],
            receipts: vec![],
        })
    };
    assert_eq!(
        on_publish_stream(frame(Some(ack()))).unwrap_err().0,
        ErrorCode::UnexpectedFrame
    );
    assert_eq!(
        on_subscribe_stream(frame(Some(ack())), 3).unwrap().seq,
        [1, 2, 3]
    );
    assert_eq!(
        on_subscribe_stream(frame(Some(ack())), 2).unwrap_err().0,
        ErrorCode::MalformedFrame
    );
    assert_eq!(
        on_subscribe_stream(frame(None), 2).unwrap_err().0,
        ErrorCode::MalformedFrame
    );
}
