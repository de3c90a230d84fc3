//! A CTI tool reads a node through its TAXII 2.1 gateway: the Python `taxii2-client`
//! (what OpenCTI's and MISP's connectors build on) discovers the API root, lists the
//! collections its partner certificate gives it, pages through the STIX objects of the
//! bulletins shared with it (published by another desk over QUIC), and reads the
//! manifest. It sees what the policy shares with it and nothing else, every page it is
//! handed is on the node's log, and a client without a federation certificate gets
//! nothing.
//!
//! `.ci/run` installs taxii2-client into `target/tmp/taxii-venv`; a `cargo test` without
//! it makes that virtual environment first (PyPI is the one network it needs).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::federation::{connect_as, sign_as, PATIENCE};
use common::pki;
use common::served::serve;
use prost::Message as _;
use renkei::bulletin::{self, Kind, Limits, Tlp};
use renkei::client::Client;
use renkei::proto::{self, PublishStatus};
use renkei::timestamp::Timestamp;
use serde_json::{json, Value};

/// A Python that can import taxii2client: the virtual environment `.ci/run` makes, or
/// one made now (once for all the tests here).
fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_python).clone()
}

fn make_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("taxii-venv");
    let python = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import taxii2client"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works(&python) {
        eprintln!("making {} with taxii2-client", venv.display());
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "taxii2-client==2.3.0"])
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip install taxii2-client failed"
        );
    }
    assert!(
        works(&python),
        "taxii2client does not import in {}",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The Japanese desk's table: its clearance and its signing key (the node signs what
/// it adds to its inbox only while that key is in force).
fn jp_cdc_table(dir: &Path, clearance: &str) -> String {
    format!(
        "[[partner]]\nid = \"jp-cdc\"\nrole = \"liaison\"\nclearance = \"{clearance}\"\n\
         keys = [{{ public = \"{}\" }}]\n\n",
        common::public_key(dir, "jp-cdc")
    )
}

fn hub_config(dir: &Path, port: u16) -> String {
    format!(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/jp-mod/tls.crt\"\ntls_key = \"certs/jp-mod/tls.key\"\nsigning_key = \"certs/jp-mod/signing.key\"\n\
         [taxii]\nlisten = \"127.0.0.1:{port}\"\nurl = \"https://jp-mod:{port}\"\n\n\
         [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\nkinds = []\nkeys = [{{ public = \"{}\" }}]\n\n\
         {}\
         [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\n\n\
         [[partner]]\nid = \"audit-office\"\nrole = \"auditor\"\n",
        common::public_key(dir, "us-dod"),
        jp_cdc_table(dir, "green"),
    )
}

/// The PKI, jp-mod's configuration with its gateway on a free port, and jp-mod
/// running: the node, its QUIC address and the gateway's port.
fn start_hub(dir: &Path) -> (common::served::Served, std::net::SocketAddr, u16) {
    pki(dir, "jp-mod,us-dod,jp-cdc,au-dod,audit-office");
    let port = free_port();
    fs::write(dir.join("hub.toml"), hub_config(dir, port)).unwrap();
    let (served, addr) = serve(dir, "hub.toml");
    (served, addr.parse().unwrap(), port)
}

/// jp-cdc's records of `event` on the node's log, as its audit office reads them.
async fn jp_cdc_records(
    dir: &Path,
    addr: std::net::SocketAddr,
    event: proto::AuditEvent,
) -> Vec<proto::AuditRecord> {
    let hub = "jp-mod".parse().unwrap();
    let auditor = connect_as(&dir.join("certs"), "audit-office", addr, &hub)
        .await
        .unwrap();
    let page = auditor
        .audit_query(proto::AuditQuery {
            partner: "jp-cdc".into(),
            event: event as u32,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    auditor.close().await;
    page.records
        .iter()
        .map(|r| proto::AuditRecord::decode(r.as_ref()).unwrap())
        .collect()
}

/// A bulletin from us-dod whose body is a STIX bundle of an indicator and a malware
/// object numbered `n`.
fn stix_bulletin(dir: &Path, n: u32, tlp: Tlp) -> proto::SignedBulletin {
    stix_bulletin_to(dir, n, tlp, &[])
}

/// [`stix_bulletin`] for `audience`.
fn stix_bulletin_to(dir: &Path, n: u32, tlp: Tlp, audience: &[&str]) -> proto::SignedBulletin {
    let id = |t: &str| format!("{t}--00000000-0000-4000-8000-{n:012}");
    let objects = vec![
        json!({"type": "indicator", "spec_version": "2.1", "id": id("indicator"),
         "created": "2026-11-30T09:00:00.000Z", "modified": "2026-11-30T09:00:00.000Z",
         "pattern": format!("[ipv4-addr:value = '198.51.100.{n}']"), "pattern_type": "stix",
         "valid_from": "2026-11-30T09:00:00Z"}),
        json!({"type": "malware", "spec_version": "2.1", "id": id("malware"),
         "created": "2026-11-30T09:00:00.000Z", "modified": "2026-11-30T09:00:00.000Z",
         "name": format!("sample {n}"), "is_family": false}),
    ];
    bundle_bulletin(dir, n, (tlp, audience), objects)
}

/// A bulletin from us-dod numbered `n` whose body is a bundle of `objects`.
fn bundle_bulletin(
    dir: &Path,
    n: u32,
    (tlp, audience): (Tlp, &[&str]),
    objects: Vec<Value>,
) -> proto::SignedBulletin {
    let bundle = json!({
        "type": "bundle", "id": format!("bundle--00000000-0000-4000-8000-{n:012}"),
        "objects": objects,
    });
    let key = common::signing_key(dir, "us-dod");
    let plain = sign_as(
        &key,
        "us-dod",
        tlp,
        Kind::Indicator,
        &format!("stix {n}"),
        audience,
        &[],
    );
    let mut b = proto::Bulletin::decode(plain.bulletin).unwrap();
    b.content_type = bulletin::STIX_CONTENT_TYPE.into();
    b.body = bundle.to_string().into();
    bulletin::sign(&b, &key, &Limits::default()).unwrap()
}

async fn publish(us: &Client, b: proto::SignedBulletin) {
    let r = tokio::time::timeout(PATIENCE, us.publish(b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
}

/// Runs tests/taxii/read.py as `id`; its JSON report.
fn read_as(dir: &Path, python: &Path, port: u16, id: &str) -> Result<Value, String> {
    run_script(dir, python, port, id, &["read.py", "3"])
}

/// Runs the script `args[0]` of tests/taxii/ as `id` with the rest of `args` after the
/// URL and the certificate files; its JSON report, or its stderr.
fn run_script(
    dir: &Path,
    python: &Path,
    port: u16,
    id: &str,
    args: &[&str],
) -> Result<Value, String> {
    let certs = dir.join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/taxii")
        .join(args[0]);
    // requests lets these override the CA a client names (`verify=`): a machine-wide
    // bundle would then be asked to vouch for the federation's CA.
    let out = Command::new(python)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .arg(script)
        .arg(format!("https://jp-mod:{port}"))
        .arg(certs.join("ca.crt"))
        .arg(certs.join(format!("{id}/tls.crt")))
        .arg(certs.join(format!("{id}/tls.key")))
        .args(&args[1..])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taxii_client_pages_through_what_is_shared_with_its_partner() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);
    let hub: renkei::identity::PartnerId = "jp-mod".parse().unwrap();

    // The US desk publishes over QUIC: five GREEN STIX bundles, one AMBER (beyond the
    // Japanese desk's clearance) and one plain-text note (no STIX to serve).
    let us = connect_as(&dir.join("certs"), "us-dod", addr, &hub)
        .await
        .unwrap();
    for n in 1..=5 {
        publish(&us, stix_bulletin(dir, n, Tlp::Green)).await;
    }
    publish(&us, stix_bulletin(dir, 6, Tlp::Amber)).await;
    let key = common::signing_key(dir, "us-dod");
    publish(
        &us,
        sign_as(
            &key,
            "us-dod",
            Tlp::Green,
            Kind::Advisory,
            "plain",
            &[],
            &[],
        ),
    )
    .await;

    // The Japanese desk's CTI tool reads its collection in pages of three.
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        move || read_as(&dir, &python, port, "jp-cdc")
    })
    .await
    .unwrap()
    .expect("taxii2-client reads the gateway");
    assert_eq!(seen["title"], "renkei node jp-mod");
    assert_eq!(
        seen["api_roots"],
        json!([format!("https://jp-mod:{port}/api/")])
    );
    assert_eq!(
        seen["versions"],
        json!(["application/taxii+json;version=2.1"])
    );
    let collections = seen["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 2);
    assert_eq!(collections[0]["title"], "Shared with jp-cdc");
    assert_eq!(collections[0]["can_read"], true);
    assert_eq!(collections[1]["title"], "From jp-cdc to node jp-mod");
    assert_eq!(collections[1]["can_write"], true);
    // Ten objects (two per GREEN bundle), none of the AMBER one's.
    assert_eq!(seen["pages"], json!([3, 3, 3, 1]));
    let ids: Vec<&str> = seen["object_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let wanted: Vec<String> = (1..=5u32)
        .flat_map(|n| {
            ["indicator", "malware"].map(|t| format!("{t}--00000000-0000-4000-8000-{n:012}"))
        })
        .collect();
    assert_eq!(ids, wanted);
    for id in &wanted {
        assert_eq!(seen["markings"][id], json!([GREEN]), "{id} carries its TLP");
    }
    let manifest = seen["manifest"].as_array().unwrap();
    assert_eq!(manifest.len(), 10);
    assert_eq!(manifest[0]["version"], "2026-11-30T09:00:00.000Z");
    assert_eq!(
        manifest[0]["media_type"],
        "application/stix+json;version=2.1"
    );
    let added: Timestamp = manifest[0]["date_added"].as_str().unwrap().parse().unwrap();
    assert!(added <= Timestamp::now());
    assert_eq!(seen["one_object"], json!([wanted[0]]));
    assert_eq!(seen["indicators"], 5);

    // A client with a certificate of another CA gets no further than the handshake.
    let stranger = tempfile::tempdir().unwrap();
    pki(stranger.path(), "jp-cdc");
    fs::copy(
        dir.join("certs/ca.crt"),
        stranger.path().join("certs/ca.crt"),
    )
    .unwrap();
    let refused = tokio::task::spawn_blocking({
        let (s, python) = (stranger.path().to_owned(), python.clone());
        move || read_as(&s, &python, port, "jp-cdc")
    })
    .await
    .unwrap();
    assert!(refused.is_err(), "{refused:?}");

    // Every page handed over is on the log, as deliveries to jp-cdc through TAXII.
    let reasons: Vec<String> = jp_cdc_records(dir, addr, proto::AuditEvent::Delivered)
        .await
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert!(
        reasons.iter().filter(|r| *r == "TAXII: objects").count() >= 4,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "TAXII: manifest"),
        "{reasons:?}"
    );
    us.close().await;
    assert!(served.stop(PATIENCE).success());
}

const GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
const AMBER: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";

/// The Japanese desk's CTI tool pushes intelligence into its inbox; it becomes
/// bulletins of the node, signed with the node's key, one per TLP marking, and the
/// Australian desk receives them over QUIC and verifies them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_added_to_the_inbox_become_bulletins_signed_by_the_node() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);
    let hub: renkei::identity::PartnerId = "jp-mod".parse().unwrap();

    let object = |t: &str, n: u32, marking: Option<&str>| {
        let mut o = json!({"type": t, "spec_version": "2.1",
            "id": format!("{t}--10000000-0000-4000-8000-{n:012}"),
            "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z"});
        if let Some(m) = marking {
            o["object_marking_refs"] = json!([m]);
        }
        o
    };
    let envelope = json!({"x_renkei_audience": ["au-dod"], "objects": [
        object("indicator", 1, Some(GREEN)),
        object("report", 2, Some(AMBER)),
        object("malware", 3, None),
        {"type": "indicator", "spec_version": "2.1"},
    ]});
    fs::write(dir.join("envelope.json"), envelope.to_string()).unwrap();
    let status = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        let file = dir.join("envelope.json");
        move || {
            run_script(
                &dir,
                &python,
                port,
                "jp-cdc",
                &["write.py", file.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap()
    .expect("taxii2-client adds objects");
    assert_eq!(status["inbox"], "From jp-cdc to node jp-mod");
    assert_eq!(status["status"], "complete");
    assert_eq!(
        (
            status["total_count"].as_u64(),
            status["success_count"].as_u64()
        ),
        (Some(4), Some(3)),
        "{status}"
    );
    assert_eq!(status["failures"][0]["message"], "object 3: no \"id\"");

    // The Australian desk (cleared for AMBER) receives two bulletins from the node, and
    // the node's own published key verifies them.
    let au = connect_as(&dir.join("certs"), "au-dod", addr, &hub)
        .await
        .unwrap();
    let mut sub = au.subscribe(0).await.unwrap();
    let mut keyring = renkei::identity::Keyring::new();
    let node_key: renkei::identity::PublicKey = common::public_key(dir, "jp-mod").parse().unwrap();
    keyring.insert(hub.clone(), node_key, Default::default());
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let u = renkei::bulletin::UnverifiedBulletin::from_signed(
            d.bulletin.unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let v = renkei::bulletin::UnverifiedBulletin::verify_all(
            vec![u],
            &keyring,
            Timestamp::now(),
            &Limits::default(),
        )
        .pop()
        .unwrap()
        .expect("signed by the node");
        let h = v.header();
        assert_eq!(h.origin.as_str(), "jp-mod");
        got.push(h.tlp);
        sub.ack(vec![d.seq]).await.unwrap();
    }
    got.sort_by_key(|t| t.to_proto() as i32);
    assert_eq!(got, [Tlp::Green, Tlp::Amber]);

    // And through TAXII, the Australian desk's CTI tool reads them back as STIX.
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        move || read_as(&dir, &python, port, "au-dod")
    })
    .await
    .unwrap()
    .expect("taxii2-client reads what was added");
    let read: Vec<&str> = seen["object_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for t in ["indicator", "report", "malware"] {
        let id = format!(
            "{t}--10000000-0000-4000-8000-{:012}",
            match t {
                "indicator" => 1,
                "report" => 2,
                _ => 3,
            }
        );
        assert!(read.contains(&id.as_str()), "{id} not in {read:?}");
    }

    // The log names the desk that wrote them.
    let origins: Vec<String> = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinAccepted)
        .await
        .into_iter()
        .filter(|r| r.partner == "jp-cdc")
        .map(|r| r.origin)
        .collect();
    assert_eq!(origins, ["jp-mod", "jp-mod"]);

    // The node signs for the desk only while the desk could publish itself: once its
    // key is revoked, what it adds is refused and the refusal recorded.
    let config = fs::read_to_string(dir.join("hub.toml")).unwrap();
    let revoked = format!(
        "{config}\n[[revoked]]\nkey = \"{}\"\nreason = \"desk compromised\"\n",
        common::public_key(dir, "jp-cdc")
    );
    fs::write(dir.join("hub.toml"), revoked).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    let again = json!({"objects": [object("indicator", 4, Some(GREEN))]});
    fs::write(dir.join("again.json"), again.to_string()).unwrap();
    let status = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        let file = dir.join("again.json");
        move || {
            run_script(
                &dir,
                &python,
                port,
                "jp-cdc",
                &["write.py", file.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap()
    .expect("taxii2-client adds objects");
    assert_eq!(status["success_count"].as_u64(), Some(0), "{status}");
    let why = status["failures"][0]["message"].as_str().unwrap();
    assert!(why.contains("no signing key in force"), "{why}");
    let refused = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinRejected).await;
    assert!(
        refused
            .iter()
            .any(|r| r.error == proto::ErrorCode::KeyRevoked as i32),
        "{refused:?}"
    );
    drop(sub);
    au.close().await;
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

const RED: &str = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1";

/// Issue 25, defects 3 and 5: a huge invalid object id in an inbox write made a
/// 2.4-million-character record, and a page was capped in objects but not in bytes
/// (a 21 MB response). Records and pages are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ids_and_large_objects_stay_bounded_in_records_and_pages() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr, port) = start_hub(dir);
    let hub: renkei::identity::PartnerId = "jp-mod".parse().unwrap();

    // Six GREEN bulletins of one 760 KB indicator each: 4.5 MB in all.
    let us = connect_as(&dir.join("certs"), "us-dod", addr, &hub)
        .await
        .unwrap();
    for n in 1..=6u32 {
        let o = json!({"type": "indicator", "spec_version": "2.1",
            "id": format!("indicator--20000000-0000-4000-8000-{n:012}"),
            "created": "2026-11-30T09:00:00.000Z", "modified": "2026-11-30T09:00:00.000Z",
            "description": "x".repeat(760_000),
            "pattern": "[ipv4-addr:value = '198.51.100.1']", "pattern_type": "stix",
            "valid_from": "2026-11-30T09:00:00Z"});
        publish(
            &us,
            bundle_bulletin(dir, 100 + n, (Tlp::Green, &[]), vec![o]),
        )
        .await;
    }
    let args = ["read.py", "100"];
    let seen = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        move || run_script(&dir, &python, port, "jp-cdc", &args)
    })
    .await
    .unwrap()
    .expect("taxii2-client reads");
    assert_eq!(seen["pages"], json!([5, 1]), "4 MiB a page at most");

    // A 900 KB object id, which is no STIX id.
    let huge = json!({"objects": [{"type": "indicator", "id": "y".repeat(900_000)}]});
    fs::write(dir.join("huge.json"), huge.to_string()).unwrap();
    let status = tokio::task::spawn_blocking({
        let (dir, python) = (dir.to_owned(), python.clone());
        let file = dir.join("huge.json");
        move || {
            run_script(
                &dir,
                &python,
                port,
                "jp-cdc",
                &["write.py", file.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap()
    .expect("taxii2-client adds objects");
    assert_eq!(
        status["failure_count"].as_u64(),
        Some(1),
        "{}",
        status["status"]
    );
    let refused = jp_cdc_records(dir, addr, proto::AuditEvent::BulletinRejected).await;
    assert!(!refused.is_empty());
    for r in &refused {
        assert!(
            r.reason.len() < 4096,
            "a record of {} bytes",
            r.reason.len()
        );
    }
    us.close().await;
    assert!(served.stop(PATIENCE).success());
    // The auditor's export reads the whole log.
    common::renkei_ok(
        dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "log.export",
        ],
    );
}

/// Issue 25, defects 2 and 6: a RED bulletin sent to a desk that was then removed and
/// added again was still served through TAXII (unmarked), though QUIC withdrew it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_withdrawn_from_a_partner_id_stays_withdrawn_through_taxii() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,jp-cdc,au-dod,audit-office");
    let port = free_port();
    let red_desk = jp_cdc_table(dir, "red");
    let config = hub_config(dir, port).replace(&jp_cdc_table(dir, "green"), &red_desk);
    fs::write(dir.join("hub.toml"), &config).unwrap();
    let (served, addr) = serve(dir, "hub.toml");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let hub: renkei::identity::PartnerId = "jp-mod".parse().unwrap();
    let us = connect_as(&dir.join("certs"), "us-dod", addr, &hub)
        .await
        .unwrap();
    publish(&us, stix_bulletin_to(dir, 7, Tlp::Red, &["jp-cdc"])).await;
    let read = |dir: &Path| {
        let (dir, python) = (dir.to_owned(), python.clone());
        tokio::task::spawn_blocking(move || read_as(&dir, &python, port, "jp-cdc"))
    };

    // The desk's tool reads the RED objects, each marked RED.
    let seen = read(dir).await.unwrap().expect("taxii2-client reads");
    assert_eq!(seen["object_ids"].as_array().unwrap().len(), 2);
    for (id, marking) in seen["markings"].as_object().unwrap() {
        assert_eq!(marking, &json!([RED]), "{id}");
    }

    // The desk is removed (its queue withdrawn) and its id added again.
    assert!(config.contains(&red_desk));
    fs::write(dir.join("hub.toml"), config.replace(&red_desk, "")).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    fs::write(dir.join("hub.toml"), &config).unwrap();
    common::renkei_ok(dir, &["reload", "--config", "hub.toml"]);

    // The id starts afresh: nothing from before its removal, through either door.
    let again = read(dir).await.unwrap().expect("taxii2-client reads");
    assert_eq!(again["object_ids"], json!([]), "{again}");
    let withdrawn = jp_cdc_records(dir, addr, proto::AuditEvent::Withdrawn).await;
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    let after: Vec<_> = jp_cdc_records(dir, addr, proto::AuditEvent::Delivered)
        .await
        .into_iter()
        .filter(|r| r.seq > withdrawn[0].seq && !r.bulletin_seqs.is_empty())
        .collect();
    assert!(
        after.is_empty(),
        "handed over after its withdrawal: {after:?}"
    );
    us.close().await;
    assert!(served.stop(PATIENCE).success());
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
    // Issue 25: each refusal is on the log once, as a refused QUIC request would be.
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
