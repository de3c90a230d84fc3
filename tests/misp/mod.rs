//! MISP, which most partners run: a desk keeps a MISP feed of what it receives, which
//! PyMISP reads as MISP would, and publishes events PyMISP builds, which reach another
//! desk with their attributes, tags and uuid. `gateway`: the same through a node's
//! gateway, across two nodes.

use crate::common;

mod gateway;

use std::fs;
use std::path::Path;

use common::configs::{client_toml, node_toml};
use common::served::serve;
use common::tables::{keyed_in, liaison};
use common::{pki, sh_ok};
use serde_json::Value;

/// The desk's MISP feed in `feed` holds the GREEN bulletin `id` of us-dod, titled
/// `info`, as an event with its TLP tag, in its manifest and its hashes.
pub fn feed_lists(feed: &Path, id: &str, info: &str) {
    let read = |name: &str| -> Value {
        serde_json::from_str(&fs::read_to_string(feed.join(name)).unwrap()).unwrap()
    };
    let event = read(&format!("{id}.json"));
    assert_eq!(event["Event"]["Orgc"]["name"], "us-dod");
    assert_eq!(event["Event"]["Tag"][0]["name"], "tlp:green");
    let manifest = read("manifest.json");
    assert_eq!(manifest[id]["info"], info);
    let hashes = fs::read_to_string(feed.join("hashes.csv")).unwrap();
    assert!(
        !hashes.is_empty() && hashes.lines().all(|l| l.ends_with(&format!(",{id}"))),
        "{hashes}"
    );
}

/// What PyMISP makes of the feed in `feed`: every event of the manifest loads, and the
/// manifest entry and the hashes it works out itself are the feed's.
const PYMISP_READS_THE_FEED: &str = r#"
import json, sys
from pathlib import Path
from pymisp import MISPEvent
feed = Path(sys.argv[1])
manifest = json.loads((feed / "manifest.json").read_text())
hashes = sorted((feed / "hashes.csv").read_text().split())
theirs, mine = {}, []
for uuid in manifest:
    event = MISPEvent()
    event.load_file(str(feed / f"{uuid}.json"))
    for u, entry in event.manifest.items():
        entry["Tag"] = [{"name": t["name"]} for t in entry["Tag"]]
        theirs[u] = entry
    mine += [f"{h},{event.uuid}" for h in event.attributes_hashes("md5")]
assert theirs == manifest, (theirs, manifest)
assert sorted(mine) == hashes, (mine, hashes)
print(f"pymisp read {len(manifest)} event(s)")
"#;

/// PyMISP reads the feed in `feed`, of `events` events, as MISP would.
pub fn pymisp_reads(feed: &Path, events: usize) {
    let out = std::process::Command::new(common::python::python())
        .args(["-c", PYMISP_READS_THE_FEED])
        .arg(feed)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains(&format!("pymisp read {events} event(s)")),
        "{said}"
    );
}

/// An event as an analyst builds it in PyMISP, tagged with the TLP of argv[1] and
/// titled argv[2]: observables, a vulnerability, a note, a file object and an event
/// report, for the community. Printed as MISP JSON.
const PYMISP_BUILDS_AN_EVENT: &str = r#"
import sys
from pymisp import MISPEvent, MISPObject
e = MISPEvent()
e.info = sys.argv[2]
e.distribution = 1
e.add_tag(f"tlp:{sys.argv[1]}")
e.add_attribute("ip-dst", "198.51.100.9")
e.add_attribute("url", "http://drop.example/a")
e.add_attribute("vulnerability", "CVE-2026-0003")
e.add_attribute("text", "the loader reached two ministries")
f = MISPObject("file")
f.add_attribute("filename", value="invoice.pdf.exe")
f.add_attribute("sha256", value="b" * 64)
e.add_object(f)
e.add_event_report("Loader analysis", "The loader drops invoice.pdf.exe.\n\nSeen twice.")
print(e.to_json())
"#;

/// Whether the event in `feed` (by PyMISP) holds every attribute, by type and value,
/// and every tag of the event PyMISP built in `built`.
const PYMISP_COMPARES: &str = r#"
import sys
from pymisp import MISPEvent
built, got = MISPEvent(), MISPEvent()
built.load_file(sys.argv[1])
got.load_file(sys.argv[2])
want = {(a.type, a.value) for a in built.attributes}
have = {(a.type, a.value) for a in got.attributes}
assert want <= have, (want - have)
assert {t.name for t in built.tags} <= {t.name for t in got.tags}, (built.tags, got.tags)
assert built.uuid == got.uuid, (built.uuid, got.uuid)
print("the same event")
"#;

/// Whether OASIS's `stix2` parses a bundle, refusing anything custom.
const STIX2_PARSES: &str = r#"
import sys, stix2
bundle = stix2.parse(open(sys.argv[1]).read(), allow_custom=False)
print(f"stix2 parsed {len(bundle.objects)} objects")
"#;

fn python(args: &[&str]) -> String {
    let out = std::process::Command::new(common::python::python())
        .args(args)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// A node with the desks us-dod and au-dod (cleared to AMBER) as `renkei serve`, and
/// each desk's client configuration trusting us-dod's key.
fn node_and_desks(dir: &Path) -> common::served::Served {
    pki(dir, "jp-mod,us-dod,au-dod");
    let partners = keyed_in(dir, &[liaison("us-dod", "red"), liaison("au-dod", "amber")]);
    node_toml("jp-mod").with(&partners).write(dir, "hub.toml");
    let (served, addr) = serve(dir, "hub.toml");
    for id in ["us-dod", "au-dod"] {
        client_toml(id, &addr, "jp-mod")
            .signing()
            .trusting("us-dod", &common::public_key(dir, "us-dod"))
            .write(dir, &format!("{id}.toml"));
    }
    served
}

/// An event built with PyMISP is published by the US desk, reaches the
/// Australian desk as a signed bulletin, and comes out of its MISP feed with the same
/// uuid, tags and attributes. An event for its own organisation only is refused.
#[test]
fn an_event_built_with_pymisp_reaches_another_desk_and_its_misp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let served = node_and_desks(dir);
    fs::write(
        dir.join("event.json"),
        python(&[
            "-c",
            PYMISP_BUILDS_AN_EVENT,
            "green",
            "Phishing wave against two ministries",
        ]),
    )
    .unwrap();
    let out = sh_ok(
        dir,
        "publish --config us-dod.toml --json --misp-event event.json",
    );
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(result["status"], "accepted", "{result}");
    assert_eq!(result["shared_with"], serde_json::json!(["au-dod"]));

    let args = "--json --count 1 --idle-timeout 20 --misp-feed feed";
    let received = sh_ok(dir, &format!("subscribe --config au-dod.toml {args}"));
    let received: Value = serde_json::from_str(received.stdout.trim()).unwrap();
    // The body is STIX 2.1 that OASIS's own library reads, strictly.
    fs::write(dir.join("body.json"), received["body"].as_str().unwrap()).unwrap();
    let parsed = python(&["-c", STIX2_PARSES, dir.join("body.json").to_str().unwrap()]);
    assert!(parsed.contains("stix2 parsed 8 objects"), "{parsed}");
    let id = result["bulletin_id"].as_str().unwrap();
    feed_lists(
        &dir.join("feed"),
        id,
        "Phishing wave against two ministries",
    );
    pymisp_reads(&dir.join("feed"), 1);
    let got = dir.join("feed").join(format!("{id}.json"));
    let (built, got) = (dir.join("event.json"), got.to_str().unwrap().to_owned());
    let same = python(&["-c", PYMISP_COMPARES, built.to_str().unwrap(), &got]);
    assert!(same.contains("the same event"), "{same}");

    let private = fs::read_to_string(dir.join("event.json"))
        .unwrap()
        .replacen("\"distribution\": \"1\"", "\"distribution\": \"0\"", 1);
    fs::write(dir.join("private.json"), private).unwrap();
    let refused = common::sh(
        dir,
        "publish --config us-dod.toml --misp-event private.json",
    );
    assert!(
        !refused.ok && refused.stderr.contains("your organisation only"),
        "{}",
        refused.stderr
    );
    assert!(served.stop(common::federation::PATIENCE).success());
}
