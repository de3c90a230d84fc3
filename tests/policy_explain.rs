//! An operator asks, before any node runs: who would get this RED note, and why not?

use crate::common;

use std::path::Path;

use common::configs::node_toml;
use common::tables::{auditor, keyed_in, liaison, relay};
use common::{pki, renkei, renkei_ok, sh_ok};
use serde_json::Value;

#[test]
fn an_operator_explains_who_receives_a_red_note() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_node_with_five_partners(dir);
    the_red_note_goes_to_its_cleared_audience(dir);
    through_the_relay_it_goes_no_further(dir);
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

/// A node whose partners are three desks and a relay, in groups, and an auditor.
fn write_node_with_five_partners(dir: &Path) {
    pki(dir, "jp-mod,us-dod,uk-mod,nato-ccdcoe,au-dod,vn-mod");
    let partners = keyed_in(
        dir,
        &[
            liaison("us-dod", "red").with(r#"groups = ["five-eyes"]"#),
            liaison("uk-mod", "amber").with(r#"groups = ["five-eyes", "nato"]"#),
            relay("nato-ccdcoe", "red")
                .keyed()
                .with(r#"groups = ["nato"]"#),
            liaison("au-dod", "red").with(r#"groups = ["five-eyes"]"#),
            auditor("vn-mod"),
        ],
    );
    node_toml("jp-mod").with(&partners).write(dir, "node.toml");
}

/// The US liaison writes a RED note for the Five Eyes group: the table says who gets it
/// and why each other does not.
fn the_red_note_goes_to_its_cleared_audience(dir: &Path) {
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
}

/// The same note arriving through the NATO relay (its first relay) still reaches the
/// audience here, but goes no further, and JSON says why.
fn through_the_relay_it_goes_no_further(dir: &Path) {
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
}
