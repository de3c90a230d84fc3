//! The gateway under operation: a reload, wrong requests, the benchmark.

use super::*;

/// A desk removed from the configuration while its CTI tool holds a connection open:
/// the next request on that same connection is refused, as a reload closes a QUIC
/// connection, and the refusal is on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_partner_ends_its_open_taxii_connection() {
    use std::io::{BufRead as _, Write as _};
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, _addr, port) = start_hub(dir);
    let config = fs::read_to_string(dir.join("hub.toml")).unwrap();
    let certs = dir.join("certs");
    let mut kept = Command::new(&python)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/taxii/kept.py"))
        .arg(format!("https://jp-mod:{port}"))
        .arg(certs.join("ca.crt"))
        .arg(certs.join("jp-cdc/tls.crt"))
        .arg(certs.join("jp-cdc/tls.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(kept.stdout.take().unwrap()).lines();
    assert_eq!(said.next().unwrap().unwrap(), "200");

    let desk = jp_cdc_table(dir, "green");
    assert!(config.contains(&desk));
    fs::write(dir.join("hub.toml"), config.replace(&desk, "")).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    writeln!(kept.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(said.next().unwrap().unwrap(), "403");
    assert!(kept.wait().unwrap().success());
    assert!(served.stop(PATIENCE).success());

    let log = common::renkei_ok(
        dir,
        &[
            "audit",
            "query",
            "--data-dir",
            "data",
            "--partner",
            "jp-cdc",
            "--format",
            "json",
        ],
    );
    assert!(
        log.stdout
            .contains("no longer admitted on this connection: not a partner of this node"),
        "{}",
        log.stdout
    );
}

/// What a client should not ask gets the TAXII error message with the status TAXII
/// names for it, in the TAXII media type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_requests_get_taxii_errors_with_the_right_status() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);
    let out = Command::new(&python)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/taxii/errors.py"))
        .arg(format!("https://jp-mod:{port}"))
        .arg(dir.join("certs/ca.crt"))
        .arg(dir.join("certs/jp-cdc/tls.crt"))
        .arg(dir.join("certs/jp-cdc/tls.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let wanted = [
        ("wrong accept", 406),
        ("unknown collection", 404),
        ("write to the shared one", 403),
        ("read the inbox", 403),
        ("wrong content type", 415),
        ("not json", 400),
        ("bad added_after", 400),
        ("unknown object", 404),
        ("unknown status", 404),
    ];
    assert_eq!(answers.len(), wanted.len());
    for (a, (ask, status)) in answers.iter().zip(wanted) {
        assert_eq!(a["ask"], ask);
        assert_eq!(a["status"], status, "{a}");
        assert_eq!(a["type"], "application/taxii+json;version=2.1", "{a}");
        assert_eq!(a["body"]["http_status"], status.to_string(), "{a}");
        assert!(
            a["body"]["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{a}"
        );
    }
    // Each refusal is on the log once, as a refused QUIC request would be.
    let refused = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinRejected).await;
    let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(refused.len(), wanted.len(), "{reasons:#?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("TAXII")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("refused with 406 Not Acceptable")),
        "{reasons:#?}"
    );
    assert!(served.stop(PATIENCE).success());
}

/// `renkei bench --phases taxii`, small: its own HTTPS client pages through 300 objects
/// and adds objects one and a hundred per envelope; it fails if a page or a write is
/// short.
#[test]
fn the_taxii_benchmark_reads_everything_back_and_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::renkei_ok(
        tmp.path(),
        &[
            "bench",
            "--phases",
            "taxii",
            "--bulletins",
            "300",
            "--json",
            "taxii.json",
        ],
    );
    let report: Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("taxii.json")).unwrap()).unwrap();
    assert_eq!(report["taxii"]["stored"], 300, "{}", out.stdout);
    assert_eq!(report["taxii"]["pages_limit_100"], 3);
}
