//! Signed receipts: a desk acknowledging a delivery signs a receipt with its
//! key; the node verifies it before recording it with the ack, refuses an Ack whose
//! receipt is forged, another receiver's or another bulletin's (and records why), and
//! records an unsigned ack as unsigned. An auditor lists who signed for a bulletin and
//! checks the set again offline.

use crate::common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use common::configs::{client_toml, node_toml};
use common::federation::{connect_as, eventually, sign_as, PATIENCE};
use common::peers::Mesh;
use common::served::{serve, Served};
use common::tables::{auditor, keyed_in, liaison};
use common::{pki, public_key, renkei, renkei_ok, signing_key};
use prost::Message as _;
use renkei::bulletin::{Kind, Limits, Tlp, UnverifiedBulletin};
use renkei::client::{Client, ClientError};
use renkei::identity::PartnerId;
use renkei::proto::{self, AuditEvent, ErrorCode};
use renkei::receipt::Receipt;
use renkei::timestamp::Timestamp;
use serde_json::Value;

fn pid(s: &str) -> PartnerId {
    s.parse().unwrap()
}

/// jp-mod with the desks us-dod, jp-cdc and au-dod (each with its signing key) and the
/// audit office, running; a client configuration for jp-cdc and for the audit office.
fn tokyo(dir: &Path) -> (Served, SocketAddr) {
    pki(dir, "jp-mod,us-dod,jp-cdc,au-dod,audit-office");
    let partners = keyed_in(
        dir,
        &[
            liaison("us-dod", "amber"),
            liaison("jp-cdc", "amber"),
            liaison("au-dod", "amber"),
            auditor("audit-office"),
        ],
    );
    node_toml("jp-mod").with(&partners).write(dir, "node.toml");
    let (served, addr) = serve(dir, "node.toml");
    for id in ["jp-cdc", "audit-office"] {
        let config = client_toml(id, &addr, "jp-mod");
        let config = match id {
            "jp-cdc" => config.signing(),
            _ => config,
        };
        config
            .trusting("us-dod", &public_key(dir, "us-dod"))
            .write(dir, &format!("{id}.toml"));
    }
    (served, addr.parse().unwrap())
}

async fn client(dir: &Path, addr: SocketAddr, id: &str) -> Client {
    connect_as(&dir.join("certs"), id, addr, &pid("jp-mod"))
        .await
        .unwrap()
}

/// us-dod publishes a GREEN bulletin titled `title`; its id.
async fn publish(dir: &Path, addr: SocketAddr, title: &str) -> String {
    let us = client(dir, addr, "us-dod").await;
    let key = signing_key(dir, "us-dod");
    let b = sign_as(&key, "us-dod", Tlp::Green, Kind::Advisory, title, &[], &[]);
    let r = us.publish(b).await.unwrap();
    assert_eq!(r.status, proto::PublishStatus::Accepted as i32, "{r:?}");
    us.close().await;
    r.bulletin_id
}

/// `id`'s receipt of the delivery `d` at jp-mod, signed with `key`, as an Ack carries it.
fn receipt(id: &str, d: &proto::Delivery, key: &ed25519_dalek::SigningKey) -> proto::Receipted {
    receipt_at(id, "jp-mod", d, key)
}

/// `id`'s receipt of the delivery `d` at `node`, signed with `key`.
fn receipt_at(
    id: &str,
    node: &str,
    d: &proto::Delivery,
    key: &ed25519_dalek::SigningKey,
) -> proto::Receipted {
    let signed = d.bulletin.clone().unwrap();
    let b = UnverifiedBulletin::from_signed(signed, &Limits::default()).unwrap();
    let h = b.header();
    let r = Receipt {
        receiver: pid(id),
        node: pid(node),
        origin: h.origin.clone(),
        bulletin_id: h.id,
        digest: b.digest(),
        received: Timestamp::now(),
    };
    proto::Receipted {
        seq: d.seq,
        receipt: Some(r.sign(key)),
    }
}

/// The records of `event` on jp-mod's log, as its audit office reads them.
async fn records(dir: &Path, addr: SocketAddr, event: AuditEvent) -> Vec<proto::AuditRecord> {
    records_read_by(client(dir, addr, "audit-office").await, event).await
}

/// The records of `event` on a node's log, as its audit office `office` reads them.
async fn records_read_by(office: Client, event: AuditEvent) -> Vec<proto::AuditRecord> {
    let q = proto::AuditQuery {
        event: event as u32,
        limit: 1000,
        ..Default::default()
    };
    let page = office.audit_query(q).await.unwrap();
    office.close().await;
    page.records
        .iter()
        .map(|r| proto::AuditRecord::decode(r.as_ref()).unwrap())
        .collect()
}

/// Tokyo's desk signs for the bulletin it receives, Australia's acknowledges
/// it unsigned; the audit office lists both, checks the signed receipt with the desk's
/// key, writes the set, and checks it again offline, where a tampered set fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desks_signed_receipt_is_recorded_listed_and_checked_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr) = tokyo(dir);
    let id = publish(dir, addr, "exercise schedule").await;
    let args = "subscribe --config jp-cdc.toml --count 1 --idle-timeout 20 --json";
    common::sh_ok(dir, args);
    let au = client(dir, addr, "au-dod").await;
    assert_eq!(common::federation::receive(&au, 1).await.len(), 1);
    au.close().await;

    let key = format!("jp-cdc={}", public_key(dir, "jp-cdc"));
    let listed = renkei_ok(
        dir,
        &[
            "audit",
            "receipts",
            "--config",
            "audit-office.toml",
            "--bulletin",
            &id,
            "--key",
            &key,
            "--out",
            "set.json",
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    assert_eq!(v["receipts"][0]["receiver"], "jp-cdc", "{v}");
    assert_eq!(v["receipts"][0]["node"], "jp-mod");
    let verdict = v["receipts"][0]["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("verified with ed25519:"), "{verdict}");
    assert!(
        v["unsigned"]["au-dod"].is_u64(),
        "au-dod acked unsigned: {v}"
    );

    checks_offline(dir, &key);

    let metrics = receipts_figures(dir, &["--config", "audit-office.toml"]);
    assert_eq!(metrics.0.get("jp-cdc"), Some(&1), "{metrics:?}");
    assert_eq!(
        metrics.0.get("au-dod"),
        None,
        "an unsigned ack counts no receipt"
    );
    let acked = records(dir, addr, AuditEvent::Acked).await;
    let signed = acked.iter().filter(|r| r.partner == "jp-cdc");
    assert!(signed.clone().all(|r| r.receipts.len() == 1), "{acked:?}");
    let unsigned = acked.iter().filter(|r| r.partner == "au-dod");
    assert!(unsigned.clone().all(|r| r.receipts.is_empty()), "{acked:?}");
    assert!(served.stop(PATIENCE).success());
    // An auditor recounting an export at the size the report names gets the same.
    renkei_ok(
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
    let size = metrics.1.to_string();
    let recount = ["log.export", "--self-signed-ok", "--size", &size];
    let recounted = receipts_figures(dir, &[&["audit", "recount"][..], &recount].concat());
    assert_eq!(recounted, metrics);
}

/// A desk that takes six bulletins that arrived together signs for them at once: the
/// node keeps six receipts under fewer signatures, and each verifies alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_signs_for_what_arrived_together_with_one_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr) = tokyo(dir);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(publish(dir, addr, &format!("exercise inject {n}")).await);
    }
    common::sh_ok(
        dir,
        "subscribe --config jp-cdc.toml --count 6 --idle-timeout 20",
    );
    let acked = records(dir, addr, AuditEvent::Acked).await;
    let desks = acked.into_iter().filter(|r| r.partner == "jp-cdc");
    let receipted = desks.flat_map(|r| r.receipts);
    let shares: Vec<proto::SignedReceipt> = receipted.filter_map(|x| x.receipt).collect();
    let signatures: std::collections::BTreeSet<_> =
        shares.iter().map(|s| s.signature.clone()).collect();
    assert_eq!(shares.len(), 6);
    assert!(signatures.len() < 6, "{} signatures", signatures.len());
    let key = format!("jp-cdc={}", public_key(dir, "jp-cdc"));
    for id in [&ids[0], &ids[5]] {
        let verdicts = verdicts(dir, "audit-office.toml", id, &key);
        assert!(
            verdicts[0].starts_with("verified with ed25519:"),
            "{verdicts:?}"
        );
    }
    assert!(served.stop(PATIENCE).success());
}

/// `renkei metrics` by partner (or `audit recount`, whose `args` say so) as JSON: each
/// partner's count of acks with a verified receipt, and the log size it names.
fn receipts_figures(dir: &Path, args: &[&str]) -> (std::collections::BTreeMap<String, u64>, u64) {
    let mut all = match args[0] {
        "audit" => vec![],
        _ => vec!["metrics"],
    };
    all.extend(args);
    all.extend(["--by", "partner", "--format", "json"]);
    let v: Value = serde_json::from_str(&renkei_ok(dir, &all).stdout).unwrap();
    let figures = v["partners"].as_array().unwrap().iter().filter_map(|p| {
        let f = p["figures"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == "receipts")?;
        Some((p["partner"].as_str()?.to_owned(), f["value"].as_u64()?))
    });
    (
        figures.collect(),
        v["computed_from"]["log_size"].as_u64().unwrap(),
    )
}

/// The audit office checks the set in `set.json` offline: with the desk's `key` it
/// verifies; without it, it says so; tampered with, it fails.
fn checks_offline(dir: &Path, key: &str) {
    let offline = renkei_ok(
        dir,
        &["audit", "receipts", "--verify", "set.json", "--key", key],
    );
    assert!(
        offline.stdout.contains("jp-cdc at jp-mod"),
        "{}",
        offline.stdout
    );
    assert!(offline
        .stdout
        .contains("au-dod: acknowledged WITHOUT a signed receipt"));
    // Without the desk's key the receipt cannot be checked here, and says so.
    let keyless = renkei_ok(dir, &["audit", "receipts", "--verify", "set.json"]);
    assert!(
        keyless.stdout.contains("not checked: no key of jp-cdc"),
        "{}",
        keyless.stdout
    );
    let tampered = tamper(&dir.join("set.json"));
    fs::write(dir.join("tampered.json"), tampered).unwrap();
    let bad = renkei(
        dir,
        &[
            "audit",
            "receipts",
            "--verify",
            "tampered.json",
            "--key",
            key,
        ],
    );
    assert!(
        !bad.ok && bad.stdout.contains("BAD"),
        "{}{}",
        bad.stdout,
        bad.stderr
    );
}

/// The set in `file` with the time of its receipt changed: the signature no longer
/// covers it.
fn tamper(file: &Path) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut set: Value = serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap();
    let signed = b64
        .decode(set["receipts"][0]["signed"].as_str().unwrap())
        .unwrap();
    let mut s = proto::SignedReceipt::decode(signed.as_slice()).unwrap();
    let mut body = proto::ReceiptBody::decode(s.body.clone()).unwrap();
    body.received_unix_ms += 1;
    s.body = body.encode_to_vec().into();
    set["receipts"][0]["signed"] = b64.encode(s.encode_to_vec()).into();
    set.to_string()
}

/// Australia's desk sends a receipt signed with another key, Tokyo's receipt
/// as its own, and its receipt of another bulletin: each Ack is refused with
/// BAD_RECEIPT, nothing in it is taken (the delivery comes again), and each refusal is
/// on the log; its honest receipt is then taken and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_replayed_receipt_is_refused_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr) = tokyo(dir);
    publish(dir, addr, "first").await;
    publish(dir, addr, "second").await;
    let au = client(dir, addr, "au-dod").await;
    let (au_key, jp_key) = (signing_key(dir, "au-dod"), signing_key(dir, "jp-cdc"));
    let other = |d: &proto::Delivery| receipt("au-dod", d, &au_key);
    let bad: [&MakeReceipt<'_>; 3] = [
        &|d, _| receipt("au-dod", d, &jp_key),
        &|d, _| receipt("jp-cdc", d, &jp_key),
        &|d, second| proto::Receipted {
            seq: d.seq,
            ..other(second)
        },
    ];
    for make in bad {
        let mut sub = au.subscribe(0).await.unwrap();
        let (first, second) = (next(&mut sub).await, next(&mut sub).await);
        sub.ack_with_receipts(vec![first.seq], vec![make(&first, &second)])
            .await
            .unwrap();
        let refused = tokio::time::timeout(PATIENCE, sub.next()).await.unwrap();
        match refused {
            Err(ClientError::Refused { code, .. }) => assert_eq!(code, "ERROR_CODE_BAD_RECEIPT"),
            other => panic!("the Ack is refused: {other:?}"),
        }
    }
    // Nothing was taken: both come again, and honest receipts are recorded.
    let mut sub = au.subscribe(0).await.unwrap();
    let (first, second) = (next(&mut sub).await, next(&mut sub).await);
    let receipts = vec![other(&first), other(&second)];
    sub.ack_with_receipts(vec![first.seq, second.seq], receipts)
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    au.close().await;

    let refusals = records(dir, addr, AuditEvent::AckRefused).await;
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    let why: Vec<&str> = refusals.iter().map(|r| r.reason.as_str()).collect();
    assert!(refusals
        .iter()
        .all(|r| r.error == ErrorCode::BadReceipt as i32));
    assert!(why[0].contains("no signing key with id"), "{why:?}");
    assert!(why[1].contains("jp-cdc's receipt"), "{why:?}");
    assert!(why[2].contains(", not au-dod's receipt"), "{why:?}");
    let acked = records(dir, addr, AuditEvent::Acked).await;
    let au_acks: Vec<_> = acked.iter().filter(|r| r.partner == "au-dod").collect();
    assert_eq!(
        au_acks.iter().map(|r| r.receipts.len()).sum::<usize>(),
        2,
        "{au_acks:?}"
    );
    assert!(served.stop(PATIENCE).success());
}

/// A receipt made for the first of two deliveries.
type MakeReceipt<'a> = dyn Fn(&proto::Delivery, &proto::Delivery) -> proto::Receipted + 'a;

async fn next(sub: &mut renkei::client::Subscription<'_>) -> proto::Delivery {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .unwrap()
        .unwrap()
        .expect("a delivery")
}

/// In a line jp-mod — nato-ccdcoe — ee-mod, Tokyo's bulletin reaches the
/// desks of both other nodes, who sign for it; each node signs for what it takes from
/// the one before it, and the receipts travel back along the path: Tokyo's audit
/// office lists and verifies all four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_travel_back_along_the_path_to_the_origins_node() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = ["jp-mod", "nato-ccdcoe", "ee-mod"];
    let desks = [
        ("jp-cdc", "jp-mod"),
        ("nato-desk", "nato-ccdcoe"),
        ("ee-cert", "ee-mod"),
    ];
    let links = [("jp-mod", "nato-ccdcoe"), ("nato-ccdcoe", "ee-mod")];
    let mut mesh = Mesh::new(tmp.path(), &nodes, &desks, &links, "");
    mesh.start_all();
    let jp = mesh.client("jp-cdc").await;
    let b = sign_as(
        mesh.key("jp-cdc"),
        "jp-cdc",
        Tlp::Green,
        Kind::Advisory,
        "to all",
        &[],
        &[],
    );
    let id = jp.publish(b).await.unwrap().bulletin_id;
    for (desk, node) in [("nato-desk", "nato-ccdcoe"), ("ee-cert", "ee-mod")] {
        signs_for_one(&mesh, desk, node).await;
    }
    let config = mesh.office("jp-mod");
    let keys: Vec<String> = ["nato-ccdcoe", "nato-desk", "ee-mod", "ee-cert"]
        .iter()
        .flat_map(|k| ["--key".to_owned(), format!("{k}={}", mesh.public(k))])
        .collect();
    let mut listed = Value::Null;
    eventually("four receipts at Tokyo", async || {
        let mut args = vec!["audit", "receipts", "--config", &config, "--bulletin", &id];
        args.extend(keys.iter().map(String::as_str));
        args.extend(["--format", "json"]);
        listed = serde_json::from_str(renkei_ok(&mesh.dir, &args).stdout.trim()).unwrap();
        listed["receipts"].as_array().map_or(0, Vec::len) == 4
    })
    .await;
    let mut got: Vec<(String, String)> = listed["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|r| assert!(r["verdict"].as_str().unwrap().starts_with("verified with")))
        .map(|r| {
            (
                r["receiver"].as_str().unwrap().into(),
                r["node"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    let at = |r: &str, n: &str| (r.to_owned(), n.to_owned());
    let want = [
        at("ee-cert", "ee-mod"),
        at("ee-mod", "nato-ccdcoe"),
        at("nato-ccdcoe", "jp-mod"),
        at("nato-desk", "nato-ccdcoe"),
    ];
    assert_eq!(got, want);
    jp.close().await;
    mesh.stop_all();
}

/// A node that takes many deliveries from its peer at once signs for them with one
/// signature: Tokyo's log keeps each bulletin's share of NATO's batch receipt (its leaf
/// and proof), and Tokyo's audit office verifies each share alone with NATO's key. A
/// hundred are held for NATO: a node signs for what arrived together, and on a loaded
/// machine all of twenty were once signed alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signs_for_what_it_takes_at_once_with_one_signature() {
    const HELD: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let nodes = ["jp-mod", "nato-ccdcoe"];
    let desks = [("jp-cdc", "jp-mod"), ("nato-desk", "nato-ccdcoe")];
    let mut mesh = Mesh::new(tmp.path(), &nodes, &desks, &[("jp-mod", "nato-ccdcoe")], "");
    mesh.start("jp-mod");
    let ids = mesh
        .publish_advisories("jp-cdc", "held for NATO", HELD)
        .await;
    // NATO's node comes up to a queue of a hundred, and takes them in a few batches.
    mesh.start("nato-ccdcoe");
    let mut shares: Vec<proto::SignedReceipt> = Vec::new();
    eventually("a receipt at Tokyo for each", async || {
        shares = receipts_kept(&mesh, "jp-mod").await;
        shares.len() == HELD
    })
    .await;
    let signatures: std::collections::BTreeSet<_> =
        shares.iter().map(|s| s.signature.clone()).collect();
    assert!(
        signatures.len() < shares.len() && shares.iter().any(|s| s.proof.is_some()),
        "{} signatures for {} receipts",
        signatures.len(),
        shares.len()
    );
    let config = mesh.office("jp-mod");
    let key = format!("nato-ccdcoe={}", mesh.public("nato-ccdcoe"));
    for id in [&ids[0], &ids[HELD / 2], &ids[HELD - 1]] {
        let verdicts = verdicts(&mesh.dir, &config, id, &key);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert!(verdicts[0].starts_with("verified with"), "{verdicts:?}");
    }
    mesh.stop_all();
}

/// What `audit receipts` (with the audit office's `config` and the receiver's `key`)
/// says of each receipt of bulletin `id`.
fn verdicts(dir: &Path, config: &str, id: &str, key: &str) -> Vec<String> {
    let args = [
        "audit",
        "receipts",
        "--config",
        config,
        "--bulletin",
        id,
        "--key",
        key,
        "--format",
        "json",
    ];
    let listed: Value = serde_json::from_str(renkei_ok(dir, &args).stdout.trim()).unwrap();
    let receipts = listed["receipts"].as_array().unwrap().iter();
    receipts
        .filter_map(|r| Some(r["verdict"].as_str()?.to_owned()))
        .collect()
}

/// The receipts kept in node `n`'s ack records, as its audit office reads them.
async fn receipts_kept(mesh: &Mesh, n: &str) -> Vec<proto::SignedReceipt> {
    let office = mesh.client(&format!("{n}-audit")).await;
    let acked = records_read_by(office, AuditEvent::Acked).await;
    let receipted = acked.into_iter().flat_map(|r| r.receipts);
    receipted.filter_map(|x| x.receipt).collect()
}

/// Desk `desk` of `node` takes one delivery and acknowledges it with its receipt.
async fn signs_for_one(mesh: &Mesh, desk: &str, node: &str) {
    let client = mesh.client(desk).await;
    let mut sub = client.subscribe(0).await.unwrap();
    let d = next(&mut sub).await;
    let r = receipt_at(desk, node, &d, mesh.key(desk));
    sub.ack_with_receipts(vec![d.seq], vec![r]).await.unwrap();
    tokio::time::timeout(PATIENCE, sub.close())
        .await
        .unwrap()
        .unwrap();
    client.close().await;
}
