//! The README's first command: `renkei demo` plays a whole federation scenario on a
//! fresh machine and exits 0.

mod common;

#[test]
fn the_demo_runs_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let run = common::renkei_ok(tmp.path(), &["demo", "--dir", "fed"]);
    let out = &run.stdout;
    for line in [
        "hub jp-mod listening on 127.0.0.1:",
        "withheld from vn-mod: red is above the partner's clearance green",
        "vn-mod tries to pass off a forged US bulletin: rejected",
        "ee-mod comes back online and catches up:",
        "ee-mod received 4 bulletin(s), each signature verified:",
        "The hub stopped cleanly",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(tmp.path().join("fed/hub-data").is_dir());
    // Running it again over the same directory works too.
    common::renkei_ok(tmp.path(), &["demo", "--dir", "fed"]);
}
