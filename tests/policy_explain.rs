//! An operator asks, before any node runs: who would get this RED note, and why not?

use crate::common;

use std::fs;

use common::{pki, renkei, renkei_ok, sh_ok};
use serde_json::Value;

#[test]
fn an_operator_explains_who_receives_a_red_note() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,uk-mod,nato-ccdcoe,au-dod,vn-mod");
    let key = |id: &str| {
        fs::read_to_string(dir.join(format!("certs/{id}/signing.pub")))
            .unwrap()
            .trim()
            .to_string()
    };
    let config = format!(
        r#"
[node]
id = "jp-mod"
listen = "127.0.0.1:0"
data_dir = "data"
ca_cert = "certs/ca.crt"
tls_cert = "certs/jp-mod/tls.crt"
tls_key = "certs/jp-mod/tls.key"
signing_key = "certs/jp-mod/signing.key"

[[partner]]
id = "us-dod"
role = "liaison"
clearance = "red"
groups = ["five-eyes"]
keys = [{{ public = "{us}" }}]

[[partner]]
id = "uk-mod"
role = "liaison"
clearance = "amber"
groups = ["five-eyes", "nato"]
keys = [{{ public = "{uk}" }}]

[[partner]]
id = "nato-ccdcoe"
role = "relay"
clearance = "red"
groups = ["nato"]
keys = [{{ public = "{nato}" }}]

[[partner]]
id = "au-dod"
role = "liaison"
clearance = "red"
groups = ["five-eyes"]
keys = [{{ public = "{au}" }}]

[[partner]]
id = "vn-mod"
role = "auditor"
"#,
        us = key("us-dod"),
        uk = key("uk-mod"),
        nato = key("nato-ccdcoe"),
        au = key("au-dod"),
    );
    fs::write(dir.join("node.toml"), config).unwrap();

    // The US liaison writes a RED note for the Five Eyes group.
    sh_ok(dir, "bulletin new --key certs/us-dod/signing.key --origin us-dod --tlp red --kind consultation --title 'Staff talks: attribution findings' --audience group:five-eyes --out red.bin");
    let table = sh_ok(dir, "policy explain --config node.toml --bulletin red.bin");
    assert!(
        table.stdout.contains("signature: valid"),
        "{}",
        table.stdout
    );
    let line = |p: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .unwrap()
            .to_string()
    };
    assert!(line("us-dod").contains("the partner is the bulletin's origin"));
    assert!(line("uk-mod").contains("red is above the partner's clearance amber"));
    assert!(line("nato-ccdcoe").contains("goes only to its audience"));
    assert!(line("au-dod").trim_end().ends_with("share"));
    assert!(line("vn-mod").contains("auditors receive no bulletins"));

    // The same note arriving through the NATO relay (its first relay) still reaches the
    // audience here, but goes no further, and JSON says why.
    let json = sh_ok(
        dir,
        "policy explain --config node.toml --bulletin red.bin --from nato-ccdcoe --json",
    );
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let reasons: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["reason"]
                .as_str()
                .unwrap_or(d["decision"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "WITHHOLD_REASON_ORIGIN",
            "WITHHOLD_REASON_ABOVE_CLEARANCE",
            "WITHHOLD_REASON_SENDER",
            "share",
            "WITHHOLD_REASON_AUDITOR"
        ]
    );

    // A GREEN exercise notice reaches every cleared non-auditor partner.
    sh_ok(dir, "bulletin new --key certs/us-dod/signing.key --origin us-dod --tlp green --kind exercise --title 'Cyber Coalition: registration open' --out green.bin");
    let table = sh_ok(
        dir,
        "policy explain --config node.toml --bulletin green.bin",
    );
    let shared: Vec<&str> = table
        .stdout
        .lines()
        .filter(|l| l.trim_end().ends_with("share"))
        .collect();
    assert_eq!(shared.len(), 3, "{}", table.stdout);

    // A bulletin signed by a key the node does not know is flagged, not silently explained.
    renkei_ok(dir, &["keygen", "--out", "rogue.key"]);
    sh_ok(dir, "bulletin new --key rogue.key --origin us-dod --tlp green --kind advisory --title forged --out forged.bin");
    let table = sh_ok(
        dir,
        "policy explain --config node.toml --bulletin forged.bin",
    );
    assert!(table.stdout.contains("NOT VALID"), "{}", table.stdout);
    assert!(
        !renkei(
            dir,
            &[
                "policy",
                "explain",
                "--config",
                "missing.toml",
                "--bulletin",
                "green.bin"
            ]
        )
        .ok
    );
}
