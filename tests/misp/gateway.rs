//! MISP at a node's gateway, as a MISP administrator connects it: a partner's MISP
//! instance subscribes to its feed by URL with its partner certificate, and a desk's
//! MISP pushes events into the node. An event built in PyMISP crosses two nodes and
//! comes back from the feed equal in attributes, objects, tags and uuid; AMBER and RED
//! go to their audience's feed only; a withdrawn bulletin leaves every feed; bad events are refused
//! and recorded.

use std::path::PathBuf;
use std::process::Command;

use renkei::bulletin::{self, Limits};
use renkei::misp::inbound::{self, Drafting, Form};
use renkei::proto::{self, AuditEvent, ErrorCode};
use renkei::timestamp::Timestamp;

use super::*;
use crate::common::federation::eventually;
use crate::common::peers::Mesh;
use crate::federation::records;

/// Whether the feed's event (argv[2]) holds the objects and event reports of the one
/// built (argv[1]).
const PYMISP_COMPARES_OBJECTS: &str = r#"
import sys
from pymisp import MISPEvent
built, got = MISPEvent(), MISPEvent()
built.load_file(sys.argv[1])
got.load_file(sys.argv[2])
def objects(e):
    return {(o.name, frozenset((a.object_relation, a.type, a.value) for a in o.attributes))
            for o in e.objects}
assert objects(built) and objects(built) == objects(got), (objects(built), objects(got))
reports = lambda e: {(r.name, r.content) for r in e.event_reports}
assert reports(built) and reports(built) == reports(got), (reports(built), reports(got))
print("the same objects")
"#;

/// Runs tests/misp/gateway.py against `node`'s gateway as `id`; its JSON report.
fn gateway(mesh: &Mesh, (node, port): (&str, u16), id: &str, args: &[&str]) -> Value {
    let certs = mesh.dir.join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/misp/gateway.py");
    // requests lets these override the CA a client names.
    let out = Command::new(common::python::python())
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .arg(script)
        .arg(format!("https://{node}:{port}"))
        .arg(certs.join("ca.crt"))
        .arg(certs.join(format!("{id}/tls.crt")))
        .arg(certs.join(format!("{id}/tls.key")))
        .args(args)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gateway.py {args:?} as {id}: {said}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Fetches `id`'s feed from the gateway into a fresh directory; the directory and how
/// many events it holds.
fn fetch(mesh: &Mesh, at: (&str, u16), id: &str) -> (PathBuf, u64) {
    let feed = mesh.dir.join(format!("feed-{id}"));
    let _ = fs::remove_dir_all(&feed);
    let got = gateway(mesh, at, id, &["fetch", feed.to_str().unwrap()]);
    (feed, got["events"].as_u64().unwrap())
}

/// The event PyMISP builds at `tlp`, titled `info`, written to `name` in the test dir.
fn built(mesh: &Mesh, name: &str, tlp: &str, info: &str) -> PathBuf {
    let path = mesh.dir.join(name);
    fs::write(&path, python(&["-c", PYMISP_BUILDS_AN_EVENT, tlp, info])).unwrap();
    path
}

/// The bulletin `renkei publish --misp-event FILE --misp-body event` makes of the event
/// in `file` for us-dod, signed with its key.
fn us_dod_carries(mesh: &Mesh, file: &Path, audience: &[&str]) -> proto::SignedBulletin {
    let raw = fs::read(file).unwrap();
    let event = inbound::read(&raw).unwrap();
    let drafting = Drafting {
        origin: "us-dod".into(),
        created: Timestamp::now(),
        tlp: None,
        kind: None,
        form: Form::Event,
        audience: audience.iter().map(|a| a.to_string()).collect(),
    };
    let b = inbound::draft(&event, &raw, &drafting).unwrap();
    bulletin::sign(&b, mesh.key("us-dod"), &Limits::default()).unwrap()
}

fn uuid_of(file: &Path) -> String {
    let event: Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
    let event = event.get("Event").unwrap_or(&event);
    event["uuid"].as_str().unwrap().to_owned()
}

/// A line us-node — nato-ccdcoe — jp-mod with Washington's desk at one end, Tokyo's
/// and Australia's at the other, and Tokyo's gateway, running.
fn washington_to_tokyo(dir: &Path) -> (Mesh, (&'static str, u16)) {
    let desks = [
        ("us-dod", "us-node"),
        ("jp-cdc", "jp-mod"),
        ("au-dod", "jp-mod"),
    ];
    let nodes = ["us-node", "nato-ccdcoe", "jp-mod"];
    let links = [("us-node", "nato-ccdcoe"), ("nato-ccdcoe", "jp-mod")];
    let mut mesh = Mesh::new(dir, &nodes, &desks, &links, "");
    let jp = ("jp-mod", mesh.gateway("jp-mod"));
    mesh.start_all();
    (mesh, jp)
}

/// Whether the event PyMISP `built` comes back from `feed` (fetched two nodes away) the
/// same in attributes, tags, uuid and objects, with the path it took.
fn comes_back_equal(built: &Path, feed: &Path) {
    let uuid = uuid_of(built);
    let got = feed.join(format!("{uuid}.json"));
    let (built_path, got_path) = (built.to_str().unwrap(), got.to_str().unwrap());
    let same = python(&["-c", PYMISP_COMPARES, built_path, got_path]);
    assert!(same.contains("the same event"), "{same}");
    same_objects(built, feed, &uuid);
    let text = fs::read_to_string(&got).unwrap();
    assert!(text.contains("us-node > nato-ccdcoe"), "the path is kept");
}

/// Washington's desk publishes two events built in PyMISP, one for the
/// community and one AMBER for Japan's desk; two nodes away, Japan's MISP reads both
/// from its feed, Australia's only the first, and once Tokyo's node stops trusting
/// the origin both leave the feeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misp_event_crosses_two_nodes_and_comes_back_from_a_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut mesh, jp) = washington_to_tokyo(tmp.path());
    let green = built(
        &mesh,
        "green.json",
        "green",
        "Loader dropped on two ministries",
    );
    let amber = built(&mesh, "amber.json", "amber", "For Japan's desk only");
    let us = mesh.client("us-dod").await;
    for (file, audience) in [(&green, vec![]), (&amber, vec!["jp-cdc"])] {
        let r = us
            .publish(us_dod_carries(&mesh, file, &audience))
            .await
            .unwrap();
        assert_eq!(r.shared_with, ["nato-ccdcoe"], "{r:?}");
    }

    eventually("both events in Japan's feed", async || {
        fetch(&mesh, jp, "jp-cdc").1 == 2
    })
    .await;
    let (feed, _) = fetch(&mesh, jp, "jp-cdc");
    pymisp_reads(&feed, 2);
    comes_back_equal(&green, &feed);

    // Australia's MISP sees the community's event, never the one for Japan's desk.
    let (feed, events) = fetch(&mesh, jp, "au-dod");
    assert_eq!(events, 1);
    assert!(!fs::read_to_string(feed.join("manifest.json"))
        .unwrap()
        .contains(&uuid_of(&amber)));
    let asked = gateway(&mesh, jp, "au-dod", &["get", &uuid_of(&amber)]);
    assert_eq!(asked["status"], 404, "not even by its uuid");

    // Every event handed over is on Tokyo's log as a delivery to its reader.
    let delivered = records(&mesh, "jp-mod", AuditEvent::Delivered).await;
    let read = |who: &str, what: &str| {
        delivered
            .iter()
            .any(|r| r.partner == who && r.reason == what)
    };
    assert!(read("jp-cdc", "MISP feed: manifest.json") && read("jp-cdc", "MISP feed: event"));
    assert!(read("au-dod", "MISP feed: hashes.csv"));

    // Tokyo's node stops trusting Washington's desk: both leave every feed.
    mesh.forget("jp-mod", "us-dod");
    let node = mesh.nodes.get_mut("jp-mod").unwrap();
    node.served.as_mut().unwrap().signal("HUP");
    eventually("withdrawn from Japan's feed", async || {
        fetch(&mesh, jp, "jp-cdc").1 == 0
    })
    .await;
    assert_eq!(fetch(&mesh, jp, "au-dod").1, 0);
    let asked = gateway(&mesh, jp, "jp-cdc", &["get", &uuid_of(&amber)]);
    assert_eq!(asked["status"], 404);
    us.close().await;
    mesh.stop_all();
}

/// Tokyo's node with the desks jp-cdc, au-dod and jp-nisc and its gateway, running.
fn tokyo(dir: &Path) -> (Mesh, (&'static str, u16)) {
    let desks = [
        ("jp-cdc", "jp-mod"),
        ("au-dod", "jp-mod"),
        ("jp-nisc", "jp-mod"),
    ];
    let mut mesh = Mesh::new(dir, &["jp-mod"], &desks, &[], "");
    let jp = ("jp-mod", mesh.gateway("jp-mod"));
    mesh.start_all();
    (mesh, jp)
}

/// Whether the event `uuid` in `feed` holds the objects and event reports of the event
/// PyMISP `built`.
fn same_objects(built: &Path, feed: &Path, uuid: &str) {
    let got = feed.join(format!("{uuid}.json"));
    let (built, got) = (built.to_str().unwrap(), got.to_str().unwrap());
    let same = python(&["-c", PYMISP_COMPARES_OBJECTS, built, got]);
    assert!(same.contains("the same objects"), "{same}");
}

/// Tokyo's desk pushes events from its MISP into the node's gateway; they
/// become bulletins the node signs for it and reach Australia's feed, the RED one no
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desks_misp_pushes_events_that_reach_their_audiences_feeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut mesh, jp) = tokyo(tmp.path());
    let green = built(&mesh, "green.json", "green", "Loader seen in Tokyo");
    let file = green.to_str().unwrap();
    let added = gateway(&mesh, jp, "jp-cdc", &["add", file, "body=event"]);
    assert_eq!(added["status"], 200, "{added}");
    assert_eq!(added["body"]["renkei"]["status"], "accepted");
    assert_eq!(added["body"]["Event"]["uuid"], uuid_of(&green));
    let shared_with = added["body"]["renkei"]["shared_with"].to_string();
    assert!(shared_with.contains("au-dod"), "{shared_with}");

    // RED for Australia's desk: in its feed, never in the NISC's.
    let red = built(&mesh, "red.json", "red", "For Australia's desk only");
    let query = "body=event&audience=au-dod";
    let added = gateway(&mesh, jp, "jp-cdc", &["add", red.to_str().unwrap(), query]);
    let shared_with = &added["body"]["renkei"]["shared_with"];
    assert_eq!(shared_with, &serde_json::json!(["au-dod"]));
    let (feed, events) = fetch(&mesh, jp, "au-dod");
    assert_eq!(events, 2);
    pymisp_reads(&feed, 2);
    same_objects(&green, &feed, &uuid_of(&green));
    assert_eq!(fetch(&mesh, jp, "jp-nisc").1, 1);
    let asked = gateway(&mesh, jp, "jp-nisc", &["get", &uuid_of(&red)]);
    assert_eq!(asked["status"], 404);
    mesh.stop_all();
}

/// An event that is not one, one too large, and one for its own
/// organisation only are each refused with their own error code, and each refusal is
/// on the log in a bounded record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_misp_events_are_refused_with_their_code_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut mesh, jp) = tokyo(tmp.path());
    let green = built(&mesh, "green.json", "green", "Loader seen in Tokyo");
    let private = fs::read_to_string(&green).unwrap();
    let private = private.replacen("\"distribution\": \"1\"", "\"distribution\": \"0\"", 1);
    let huge = format!("{{\"Event\": {{\"info\": \"{}\"}}}}", "x".repeat(5 << 20));
    let bad = [
        (
            "broken.json",
            b"{\"Event\": [not json".to_vec(),
            400,
            ErrorCode::InvalidBulletin,
        ),
        (
            "huge.json",
            huge.into_bytes(),
            413,
            ErrorCode::BulletinTooLarge,
        ),
        (
            "private.json",
            private.into_bytes(),
            403,
            ErrorCode::NotPermitted,
        ),
    ];
    for (name, bytes, status, code) in &bad {
        let path = mesh.dir.join(name);
        fs::write(&path, bytes).unwrap();
        let refused = gateway(&mesh, jp, "jp-cdc", &["add", path.to_str().unwrap(), ""]);
        assert_eq!(refused["status"], *status, "{name}: {refused}");
        assert_eq!(
            refused["body"]["name"],
            code.as_str_name(),
            "{name}: {refused}"
        );
    }
    let rejected = records(&mesh, "jp-mod", AuditEvent::BulletinRejected).await;
    let misp: Vec<_> = rejected
        .iter()
        .filter(|r| r.reason.starts_with("MISP inbox: "))
        .collect();
    for (_, _, _, code) in &bad {
        let recorded = misp.iter().any(|r| r.error == *code as i32);
        assert!(recorded, "{code:?} recorded: {misp:?}");
    }
    let bounded = misp
        .iter()
        .all(|r| r.partner == "jp-cdc" && r.reason.len() < 400);
    assert!(bounded, "{misp:?}");
    mesh.stop_all();
}
