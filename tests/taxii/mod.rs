//! A CTI tool reads a node through its TAXII 2.1 gateway: the Python `taxii2-client`
//! (what OpenCTI's and MISP's connectors build on) discovers the API root, lists the
//! collections its partner certificate gives it, pages through the STIX objects of the
//! bulletins shared with it (published by another desk over QUIC), and reads the
//! manifest. It sees what the policy shares with it and nothing else, every page it is
//! handed is on the node's log, and a client without a federation certificate gets
//! nothing.
//!
//! `read` pages and what a partner may see, `write` the inbox, `operate` a reload, the
//! errors and the benchmark.
//!
//! taxii2-client comes from `common::python`.

use crate::common;

mod operate;
mod read;
mod write;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::configs::node_toml;
use common::federation::{connect_as, sign_as, PATIENCE};
use common::pki;
use common::python::python;
use common::served::serve;
use common::tables::{auditor, keyed_in, liaison, tables};
use prost::Message as _;
use renkei::bulletin::{self, Kind, Limits, Tlp};
use renkei::client::Client;
use renkei::proto::{self, PublishStatus};
use renkei::timestamp::Timestamp;
use serde_json::{json, Value};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The Japanese desk's table: its clearance and its signing key (the node signs what
/// it adds to its inbox only while that key is in force).
fn jp_cdc_table(dir: &Path, clearance: &str) -> String {
    keyed_in(dir, &[liaison("jp-cdc", clearance)])
}

fn hub_config(dir: &Path, port: u16) -> String {
    let us = keyed_in(dir, &[liaison("us-dod", "amber").with("kinds = []")]);
    let others = tables(&[
        liaison("au-dod", "amber").unkeyed(),
        auditor("audit-office"),
    ]);
    let taxii =
        format!("[taxii]\nlisten = \"127.0.0.1:{port}\"\nurl = \"https://jp-mod:{port}\"\n");
    node_toml("jp-mod")
        .with(&(taxii + &us + &jp_cdc_table(dir, "green") + &others))
        .to_string()
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

/// A QUIC client of jp-mod at `addr` with the certificate of `id`.
async fn desk(dir: &Path, addr: std::net::SocketAddr, id: &str) -> Client {
    let hub = "jp-mod".parse().unwrap();
    connect_as(&dir.join("certs"), id, addr, &hub)
        .await
        .unwrap()
}

/// jp-cdc's records of `event` on the node's log, as its audit office reads them.
async fn jp_cdc_records(
    dir: &Path,
    addr: std::net::SocketAddr,
    event: proto::AuditEvent,
) -> Vec<proto::AuditRecord> {
    let auditor = desk(dir, addr, "audit-office").await;
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

/// Adds the objects of `envelope` to `id`'s inbox with tests/taxii/write.py; the
/// status resource the gateway answers.
async fn write_as(dir: &Path, python: &Path, port: u16, id: &str, envelope: &Value) -> Value {
    let file = tempfile::NamedTempFile::new_in(dir).unwrap();
    fs::write(file.path(), envelope.to_string()).unwrap();
    let (dir, python, id) = (dir.to_owned(), python.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let path = file.path().to_str().unwrap().to_owned();
        run_script(&dir, &python, port, &id, &["write.py", &path])
    })
    .await
    .unwrap()
    .expect("taxii2-client adds objects")
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

const GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
const AMBER: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";

const RED: &str = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1";
