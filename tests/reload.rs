//! An operator changes a running hub's partners: one is onboarded, one is removed, and
//! a broken edit is refused, all without a restart and with every step on the record.
//! Only the node's own user reaches these operations (the operator socket); the
//! metrics port reaches none of them.

use crate::common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::federation::{receive_titles, Federation, Plan, PATIENCE};
use common::tables::{auditor, liaison, relay};
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::{Client, Subscription};
use renkei::node::operator::{self, OperatorRequest};
use renkei::proto::{self, AuditEvent};

/// The hub with an admin listener, two AMBER desks and an auditor.
fn hub() -> Plan {
    Federation::around("jp-mod")
        .config("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .partner(liaison("us-dod", "amber"))
        .partner(liaison("au-dod", "amber"))
        .partner(auditor("nato-ccdcoe"))
}

async fn operate(fed: &Federation, request: OperatorRequest) -> operator::OperatorReply {
    operator::request(&fed.data_dir(), &request, PATIENCE)
        .await
        .expect("the operator socket answers")
}

async fn events(auditor: &Client, event: AuditEvent) -> Vec<proto::AuditRecord> {
    let query = proto::AuditQuery {
        event: event as u32,
        limit: 1000,
        ..Default::default()
    };
    let page = auditor.audit_query(query).await.expect("the auditor reads");
    page.records
        .iter()
        .map(|b| proto::AuditRecord::decode(b.clone()).expect("a record decodes"))
        .collect()
}

/// One HTTP request to the admin listener; returns the status line.
fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("admin listener");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_are_onboarded_and_removed_without_a_restart() {
    let fed = hub().member("nz-mod").start().await;
    let auditor = fed.client("nato-ccdcoe").await;

    // nz-mod has a certificate from the federation CA but is not a partner yet.
    let stranger = fed.client("nz-mod").await;
    assert!(stranger.hello().await.is_err(), "not a partner: refused");

    // au-dod is connected and subscribed when it is removed; us-dod is connected too.
    let au = fed.client("au-dod").await;
    let au_sub = au.subscribe(0).await.unwrap();
    let us = fed.client("us-dod").await;
    us.hello().await.unwrap();

    // The operator onboards nz-mod and removes au-dod in the file, then reloads.
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    let nz_key = renkei::identity::PublicKey::of(fed.key("nz-mod")).to_string();
    let au_table = text
        .split("[[partner]]")
        .find(|t| t.contains("\"au-dod\""))
        .unwrap()
        .to_string();
    let edited = text.replace(&format!("[[partner]]{au_table}"), "")
        + &format!("\n[[partner]]\nid = \"nz-mod\"\nrole = \"liaison\"\nclearance = \"green\"\nkeys = [{{ public = \"{nz_key}\" }}]\n");
    std::fs::write(fed.config_path(), &edited).unwrap();
    let reply = operate(&fed, OperatorRequest::Reload).await;
    assert!(reply.ok, "{reply:?}");
    assert!(
        reply.message.contains("partners added: nz-mod"),
        "{}",
        reply.message
    );
    assert!(
        reply.message.contains("partners removed: au-dod"),
        "{}",
        reply.message
    );

    au_dod_is_closed_and_us_dod_stays(&au, au_sub, &us).await;

    // The newcomer connects without a restart, and its bulletin reaches us-dod over the
    // connection us-dod already had.
    let nz = fed.client("nz-mod").await;
    let b = fed.bulletin("nz-mod", Tlp::Green, Kind::Incident, "onboarded", &[], &[]);
    let result = nz.publish(b).await.unwrap();
    assert_eq!(
        result.shared_with,
        vec!["us-dod".to_string()],
        "au-dod is gone"
    );
    assert_eq!(receive_titles(&us, 1).await, vec!["onboarded"]);

    a_broken_edit_is_refused_and_the_rules_stay(&fed, &edited, &nz).await;
    nothing_on_the_metrics_port_reaches_an_operation(&fed);
    the_record_says_what_changed_and_what_was_refused(&auditor).await;

    for c in [stranger, us, nz, auditor] {
        c.close().await;
    }
    fed.stop().await;
}

/// au-dod's connection is closed with the reason (its subscription `sub` ends);
/// us-dod's stays open.
async fn au_dod_is_closed_and_us_dod_stays(au: &Client, mut sub: Subscription<'_>, us: &Client) {
    let ended = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("closed in time");
    assert!(ended.is_err(), "the removed partner's subscription ends");
    // The stream may end a moment before the connection's close arrives: wait for it.
    let closed = tokio::time::timeout(PATIENCE, au.closed())
        .await
        .expect("closed in time");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(proto::CloseCode::PartnerRemoved as u32)
            );
        }
        other => panic!("expected PARTNER_REMOVED, got {other:?}"),
    }
    assert!(us.close_reason().is_none(), "other partners stay connected");
}

/// A broken edit of `edited` is refused with the place it breaks, and the rules stay in
/// force: nz-mod is still served.
async fn a_broken_edit_is_refused_and_the_rules_stay(fed: &Federation, edited: &str, nz: &Client) {
    std::fs::write(
        fed.config_path(),
        edited.replace("clearance = \"green\"", "clearance = \"mauve\""),
    )
    .unwrap();
    let refused = operate(fed, OperatorRequest::Reload).await;
    assert!(!refused.ok);
    assert!(
        refused.message.contains("running one stays in force"),
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("hub.toml:"),
        "names the file and line: {}",
        refused.message
    );
    let b = fed.bulletin(
        "nz-mod",
        Tlp::Green,
        Kind::Incident,
        "still served",
        &[],
        &[],
    );
    assert_eq!(
        nz.publish(b).await.unwrap().shared_with,
        vec!["us-dod".to_string()]
    );
}

/// Nothing on the metrics port reaches an operation.
fn nothing_on_the_metrics_port_reaches_an_operation(fed: &Federation) {
    let admin = fed.node.as_ref().unwrap().admin_addr().unwrap();
    for (method, path) in [
        ("POST", "/reload"),
        ("GET", "/reload"),
        ("POST", "/backup"),
        ("GET", "/backup"),
        ("PUT", "/metrics"),
    ] {
        let status = http(admin, method, path);
        assert!(
            status.contains(" 404 ") || status.contains(" 405 "),
            "{method} {path}: {status}"
        );
    }
}

/// On the record: the policy at start and after the reload (two digests), the
/// disconnection, and the refused reload with its reason.
async fn the_record_says_what_changed_and_what_was_refused(auditor: &Client) {
    let loaded = events(auditor, AuditEvent::ConfigLoaded).await;
    assert_eq!(loaded.len(), 2, "start and one successful reload");
    assert_ne!(loaded[0].config_digest, loaded[1].config_digest);
    assert!(loaded[1].reason.contains("partners added: nz-mod"));
    let operations = events(auditor, AuditEvent::Operator).await;
    assert!(
        operations
            .iter()
            .any(|r| r.partner == "au-dod" && r.reason.contains("removed")),
        "{operations:?}"
    );
    assert!(
        operations
            .iter()
            .any(|r| r.reason.contains("refused") && r.reason.contains("mauve")),
        "{operations:?}"
    );
    assert_eq!(operations.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_socket_is_private_to_the_node_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let fed = Federation::around("jp-mod").member("us-dod").start().await;
    let socket = operator::socket_path(&fed.data_dir());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the operator socket is owner-only");
    // A request it does not know is refused, not guessed at.
    let mut raw = tokio::net::UnixStream::connect(&socket).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"{\"op\":\"shutdown\"}\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read_to_string(&mut raw, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        answer.contains("\"ok\":false") && answer.contains("not an operator request"),
        "{answer}"
    );
    let data_dir = fed.data_dir();
    fed.stop().await;
    assert!(
        !operator::socket_path(&data_dir).exists(),
        "removed when the node stops"
    );
    let gone = operator::request(&data_dir, &OperatorRequest::Reload, Duration::from_secs(5)).await;
    assert!(gone.is_err_and(|e| e.to_string().contains("is the node running")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_pinned_to_a_certificate_connects_with_that_one_only() {
    let fed = hub().start().await;
    // us-dod gets a second certificate from the same CA (say, a new server of its own).
    let certs = fed.certs();
    let ca = renkei::pki::Ca::from_pem(
        &std::fs::read_to_string(certs.join("ca.crt")).unwrap(),
        &std::fs::read_to_string(certs.join("ca.key")).unwrap(),
    )
    .unwrap();
    let renewed = ca
        .issue(
            &"us-dod".parse().unwrap(),
            renkei::timestamp::Timestamp::now(),
        )
        .unwrap();
    let other = fed.dir.path().join("renewed");
    std::fs::create_dir_all(other.join("us-dod")).unwrap();
    std::fs::copy(certs.join("ca.crt"), other.join("ca.crt")).unwrap();
    std::fs::write(other.join("us-dod/tls.crt"), &renewed.cert_pem).unwrap();
    std::fs::write(other.join("us-dod/tls.key"), &renewed.key_pem).unwrap();
    let old_cert = fed.client("us-dod").await;
    old_cert.hello().await.unwrap();

    // The operator pins us-dod to the new certificate and reloads.
    let pin = renkei::pki::fingerprint(&renewed.cert_pem).unwrap();
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    let pinned = text.replacen(
        "id = \"us-dod\"\n",
        &format!("id = \"us-dod\"\ntls_fingerprint = \"{pin}\"\n"),
        1,
    );
    std::fs::write(fed.config_path(), pinned).unwrap();
    let reply = operate(&fed, OperatorRequest::Reload).await;
    assert!(reply.ok, "{reply:?}");

    // The connection made with the old certificate is closed, saying why; a new one
    // with it is refused; the pinned certificate connects.
    let closed = tokio::time::timeout(PATIENCE, old_cert.closed())
        .await
        .expect("closed in time");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert!(
                String::from_utf8_lossy(&c.reason).contains("pinned to"),
                "{c:?}"
            );
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    let again = fed.client("us-dod").await;
    assert!(
        again.hello().await.is_err(),
        "the old certificate is refused"
    );
    let renewed_client = fed.client_with_certs(&other, "us-dod").await.unwrap();
    renewed_client.hello().await.unwrap();

    let auditor = fed.client("nato-ccdcoe").await;
    let refused = events(&auditor, AuditEvent::ConnectionRefused).await;
    assert!(
        refused
            .iter()
            .any(|r| r.partner == "us-dod" && r.reason.contains("pinned to")),
        "{refused:?}"
    );
    for c in [again, renewed_client, auditor, old_cert] {
        c.close().await;
    }
    fed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_laptop_is_cut_off_by_revoking_its_certificate() {
    let fed = hub().start().await;
    // us-dod's desk laptop is connected and subscribed when it is lost.
    let laptop = fed.client("us-dod").await;
    let mut sub = laptop.subscribe(0).await.unwrap();
    let au = fed.client("au-dod").await;
    au.hello().await.unwrap();

    // One config change and a reload: its certificate is revoked.
    let cert = std::fs::read_to_string(fed.certs().join("us-dod/tls.crt")).unwrap();
    let fingerprint: renkei::identity::CertFingerprint =
        renkei::pki::fingerprint(&cert).unwrap().parse().unwrap();
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    std::fs::write(
        fed.config_path(),
        format!("{text}\n[[revoked]]\ncertificate = \"{fingerprint}\"\nreason = \"laptop lost\"\n"),
    )
    .unwrap();
    let reply = operate(&fed, OperatorRequest::Reload).await;
    assert!(reply.ok, "{reply:?}");
    assert!(
        reply
            .message
            .contains(&format!("newly revoked: TLS certificate {fingerprint}")),
        "{}",
        reply.message
    );

    // Its live connection is dropped, saying why; others stay.
    let ended = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("in time");
    assert!(ended.is_err(), "the subscription ends");
    match tokio::time::timeout(PATIENCE, laptop.closed())
        .await
        .expect("closed in time")
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let why = String::from_utf8_lossy(&c.reason).to_string();
            assert!(why.contains("is revoked (laptop lost)"), "{why}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert!(au.close_reason().is_none(), "other partners stay connected");

    // It cannot connect again, and the refusal is on the record.
    let again = fed.client("us-dod").await;
    assert!(
        again.hello().await.is_err(),
        "a revoked certificate is refused"
    );
    let auditor = fed.client("nato-ccdcoe").await;
    let refused = events(&auditor, AuditEvent::ConnectionRefused).await;
    assert!(
        refused
            .iter()
            .any(|r| r.partner == "us-dod" && r.reason.contains("is revoked (laptop lost)")),
        "{refused:?}"
    );
    let revoked = events(&auditor, AuditEvent::KeyRevoked).await;
    assert!(
        revoked
            .iter()
            .any(|r| r.reason.contains(&format!("TLS certificate {fingerprint}"))),
        "{revoked:?}"
    );
    for c in [again, au, auditor, laptop] {
        c.close().await;
    }
    fed.stop().await;
}

const TALLINN: &str = r#"
[[origin]]
id = "ee-mod"
via = ["nato-ccdcoe"]
keys = [{ public = "KEY(ee-mod)" }]
"#;

/// Publishes `b` as the NATO relay, expecting UNKNOWN_ORIGIN.
async fn unknown_origin(nato: &renkei::client::Client, b: proto::SignedBulletin) {
    let r = nato.publish(b).await.unwrap();
    let unknown = proto::ErrorCode::UnknownOrigin as i32;
    assert_eq!(r.error, unknown, "{}", r.message);
}

/// A GREEN advisory from Tallinn's desk, which reaches jp-mod only through NATO.
fn tallinn(fed: &Federation, title: &str) -> proto::SignedBulletin {
    fed.bulletin("ee-mod", Tlp::Green, Kind::Advisory, title, &[], &[])
}

/// A reload once kept removed `[[origin]]`s (and `[federation]`, `[disclosure]`) as
/// they were, and recorded a digest it did not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_the_whole_file_in_force_or_none_of_it() {
    let mut fed = Federation::around("jp-mod")
        .partner(liaison("us-dod", "amber"))
        .partner(relay("nato-ccdcoe", "amber"))
        .partner(auditor("ca-audit"))
        .member("ee-mod")
        .config(TALLINN)
        .start()
        .await;
    let nato = fed.client("nato-ccdcoe").await;
    let first = nato.publish(tallinn(&fed, "through nato")).await.unwrap();
    assert_eq!(
        first.status,
        proto::PublishStatus::Accepted as i32,
        "{}",
        first.message
    );

    let without_origin = an_edit_needing_a_restart_is_refused_whole(&fed, &nato).await;
    let us = without_it_the_whole_edit_applies(&fed, &nato, &without_origin).await;

    let auditor = fed.client("ca-audit").await;
    let digest = config_loaded_names_the_rules_in_force(&fed, &auditor).await;
    for c in [nato, us, auditor] {
        c.close().await;
    }
    a_restart_on_the_same_file_puts_the_same_rules_in_force(&mut fed, &digest).await;
    fed.stop().await;
}

/// An edit dropping Tallinn and changing a restart-only limit is refused whole: `nato`
/// still publishes Tallinn's bulletins. Returns the edit without the limit.
async fn an_edit_needing_a_restart_is_refused_whole(fed: &Federation, nato: &Client) -> String {
    // The operator drops Tallinn and, in the same edit, a limit only a restart applies:
    // the reload is refused whole and Tallinn's bulletins still come through.
    let text = std::fs::read_to_string(fed.config_path()).unwrap();
    let origin_at = text.find("[[origin]]").unwrap();
    let without_origin = format!("{}\n[disclosure]\nwithheld = true\n", &text[..origin_at]);
    std::fs::write(
        fed.config_path(),
        format!("{without_origin}\n[limits]\nmax_age_days = 3\n"),
    )
    .unwrap();
    let refused = operate(fed, OperatorRequest::Reload).await;
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused.message.contains("needs a restart: limits"),
        "{}",
        refused.message
    );
    let still = nato.publish(tallinn(fed, "still known")).await.unwrap();
    assert_eq!(
        still.status,
        proto::PublishStatus::Accepted as i32,
        "{}",
        still.message
    );
    without_origin
}

/// The edit `without_origin` reloads: Tallinn is unknown to `nato` and `[disclosure]`
/// withholds from nato what the US desk shares. Returns the US desk's client.
async fn without_it_the_whole_edit_applies(
    fed: &Federation,
    nato: &Client,
    without_origin: &str,
) -> Client {
    // Without the restart-only change it applies, origins and disclosure included.
    std::fs::write(fed.config_path(), without_origin).unwrap();
    let reply = operate(fed, OperatorRequest::Reload).await;
    assert!(reply.ok, "{reply:?}");
    assert!(
        reply.message.contains("origins removed: ee-mod")
            && reply.message.contains("[disclosure] changed"),
        "{}",
        reply.message
    );
    unknown_origin(nato, tallinn(fed, "after the reload")).await;
    let us = fed.client("us-dod").await;
    let amber = fed.bulletin(
        "us-dod",
        Tlp::Amber,
        Kind::Advisory,
        "told",
        &["us-dod"],
        &[],
    );
    let told = us.publish(amber).await.unwrap();
    assert!(
        told.withheld.iter().any(|w| w.partner == "nato-ccdcoe"),
        "[disclosure] withheld is in force: {:?}",
        told.withheld
    );
    us
}

/// The log's CONFIG_LOADED records name the applied file's digest and the refusal is an
/// operator record; returns the digest of the file as it is.
async fn config_loaded_names_the_rules_in_force(fed: &Federation, auditor: &Client) -> [u8; 32] {
    // CONFIG_LOADED names the rules in force: the digest of the file as applied, and a
    // restart on the same file puts the same ones in force.
    let loaded = events(auditor, AuditEvent::ConfigLoaded).await;
    let digest = renkei::config::NodeConfig::load(fed.config_path())
        .unwrap()
        .policy_digest();
    assert_eq!(loaded.len(), 2, "start and the reload that applied");
    assert_eq!(loaded[1].config_digest.as_ref(), &digest[..]);
    let operations = events(auditor, AuditEvent::Operator).await;
    assert!(
        operations
            .iter()
            .any(|r| r.reason.contains("needs a restart: limits")),
        "the refusal is on the record: {operations:?}"
    );
    digest
}

/// After a restart Tallinn is still unknown and the rules loaded have `digest`.
async fn a_restart_on_the_same_file_puts_the_same_rules_in_force(
    fed: &mut Federation,
    digest: &[u8; 32],
) {
    fed.restart().await;
    let nato = fed.client("nato-ccdcoe").await;
    unknown_origin(&nato, tallinn(fed, "after a restart")).await;
    let auditor = fed.client("ca-audit").await;
    let loaded = events(&auditor, AuditEvent::ConfigLoaded).await;
    assert_eq!(loaded.last().unwrap().config_digest.as_ref(), &digest[..]);
    nato.close().await;
    auditor.close().await;
}
