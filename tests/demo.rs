//! The README's first command: `renkei demo` runs a federation of three node processes
//! through its whole story on a fresh machine and exits 0.

use crate::common;

#[test]
fn the_demo_runs_a_federation_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let run = common::renkei_ok(tmp.path(), &["demo", "--dir", "fed"]);
    let out = &run.stdout;
    for line in [
        "jp-mod (Tokyo) on 127.0.0.1:",
        "nato-ccdcoe (Tallinn) on 127.0.0.1:",
        "us-dod (Washington) on 127.0.0.1:",
        "link jp-mod - nato-ccdcoe: up",
        // Tokyo's indicator reaches Tallinn through the NATO node (directly from
        // jp-mod, or round the triangle through us-dod: whichever copy came first).
        "GREEN  indicator from jp-cdc      via jp-mod -> ",
        // The RED note reaches its audience and no further.
        "withheld from nato-ccdcoe: red goes only to its audience",
        "nato-ccdcoe  withheld: red came through a relay and is never relayed onward",
        "nato-ccdcoe's log holds 0 record(s) of it",
        "vn-mod tries to pass off a forged jp-cdc bulletin: rejected",
        // The node that was down catches up.
        "jp-mod's status: link with nato-ccdcoe DOWN, 1 bulletin(s) queued towards it",
        "ee-mod at nato-ccdcoe: 3 bulletin(s), each origin signature verified by the desk:",
        "GREEN  exercise from jp-cdc      via jp-mod -> ",
        "verified with nato-ccdcoe's key",
        // Tokyo's figures by country, its own desks on the domestic line.
        "country/organisation   consultations exercises threat exchanges",
        "  JP (domestic)   ",
        "  US   ",
        "  events (each once)   ",
        "foreign countries engaged both ways: 1 (US)",
        "The nodes stopped cleanly",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let ee_section: String = out
        .lines()
        .skip_while(|l| !l.starts_with("  ee-mod at nato-ccdcoe"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    for kind in [
        "indicator from jp-cdc",
        "advisory from uk-mod",
        "exercise from jp-cdc",
    ] {
        assert!(ee_section.contains(kind), "{kind} in {ee_section}");
    }
    assert!(ee_section
        .lines()
        .skip(1)
        .all(|l| l.trim_end().ends_with("nato-ccdcoe")));
    for node in ["jp-mod", "nato-ccdcoe", "us-dod"] {
        assert!(tmp.path().join(format!("fed/{node}-data")).is_dir());
    }
    // Running it again over the same directory works too.
    common::renkei_ok(tmp.path(), &["demo", "--dir", "fed"]);
}
