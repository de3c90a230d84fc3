//! The README's tour, as a new user pastes it: `renkei demo --dir fed` leaves the worked
//! setup, and every command of the tour runs against those files, in order, and prints
//! what the README says it does. The commands are read from README.md itself, so the
//! README cannot drift from what works; a command added there without a check here
//! fails this test.

use crate::common;

use std::path::{Path, PathBuf};

use common::served::{serve, Served};

/// The shell lines of the README's tour block, continuation lines joined.
fn tour_lines() -> Vec<String> {
    common::shell::sh_block("README.md", "## A short tour of the CLI")
}

/// What a tour command must print (on stdout) or leave behind; None for a command
/// the tour does not yet check, which fails the test.
fn check(line: &str, stdout: &str, cwd: &Path) -> Option<()> {
    let has = |text: &str| {
        assert!(
            stdout.contains(text),
            "`{line}` printed no {text:?}:\n{stdout}"
        )
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.get(1..3)? {
        ["demo", _] => has(
            "The worked setup of the README's tour is in fed: jp-mod.toml, nato-ccdcoe.toml, us-dod.toml, jp-cdc.toml",
        ),
        ["check-config", _] => has("jp-mod.toml: ok"),
        ["status", _] => {
            has("jp-mod: 2 peer node(s)");
            has("nato-ccdcoe (127.0.0.1:");
            has("towards us-dod: ");
        }
        ["publish", _] => {
            assert!(stdout.starts_with("accepted jp-cdc/"), "{stdout}");
            has(": shared with nato-ccdcoe\n");
            has("withheld from vn-mod: above clearance");
        }
        ["subscribe", _] => the_saved_body_is_as_sent_and_in_the_misp_feed(stdout, cwd, has)?,
        ["bulletin", "new"] => has("\"origin\":\"us-cybercom\""),
        ["bulletin", "show"] => has("not verified (no key given)"),
        ["bulletin", "verify"] => has("\"verified\": true"),
        ["policy", "explain"] => has("auditors receive no bulletins"),
        ["audit", "query"] => {
            has("vn-mod: WITHHELD, above clearance");
            has("vn-mod: shared;");
        }
        ["audit", "checkpoint"] => {
            let kept = std::fs::read_to_string(cwd.join("kept.checkpoint")).ok()?;
            assert!(kept.contains("renkei/jp-mod/audit"), "{kept}");
        }
        ["audit", "prove"] => has("\"verified\":true"),
        ["audit", "recount"] => {
            has("by country or organisation");
            // Kept for the `metrics` line, which must say the same.
            std::fs::write(cwd.join("recount.txt"), stdout).ok()?;
        }
        ["audit", "verify"] => {
            has("verified: the audit log of jp-mod (renkei/jp-mod/audit)");
            has("the kept checkpoint   of ");
        }
        ["audit", "export"] => has("\"file\":\"log.export\""),
        ["metrics", _] => the_metrics_say_what_the_recount_says(stdout, cwd, has)?,
        ["certs", "init"] => {
            has("federation CA reused");
            has("node nz-mod (created)");
        }
        ["partner", "card"] => assert!(std::fs::metadata(cwd.join("nz-mod.card")).ok()?.len() > 0),
        ["partner", "add"] => has("added partner nz-mod to jp-mod.toml"),
        ["reload", _] => has("configuration reloaded: partners added: nz-mod"),
        ["backup", _] => has("backup taken: "),
        _ => return None,
    }
    Some(())
}

/// After `renkei subscribe` printed `stdout`: the filed body (under `cwd`) is the one
/// sent, and the MISP feed lists the bulletin.
fn the_saved_body_is_as_sent_and_in_the_misp_feed(
    stdout: &str,
    cwd: &Path,
    has: impl Fn(&str),
) -> Option<()> {
    has(
        "AMBER advisory \"VPN appliance exploitation\", signature verified, saved in inbox/jp-cdc/",
    );
    let dir = stdout.trim().rsplit(' ').next()?;
    let body = std::fs::read(cwd.join(dir).join("body.json")).ok()?;
    assert_eq!(
        body,
        std::fs::read(cwd.join("bundle.json")).ok()?,
        "the body as sent"
    );
    // The MISP feed lists the bulletin (its id is the directory's name).
    let id = dir.trim_end_matches('/').rsplit('/').next()?;
    let manifest = std::fs::read_to_string(cwd.join("misp/manifest.json")).ok()?;
    assert!(manifest.contains(id), "{manifest}");
    Some(())
}

/// `renkei metrics` printed `stdout`: figures by country, the review sheet, and the same
/// figures as the recount the tour kept in `cwd`.
fn the_metrics_say_what_the_recount_says(
    stdout: &str,
    cwd: &Path,
    has: impl Fn(&str),
) -> Option<()> {
    has("by country or organisation");
    has("JP (domestic)");
    has("foreign countries engaged (both ways): 1 (previous period 0): US");
    // The review sheet: Tokyo's targets for the year (the demo sets them) and
    // the actuals, each event once.
    has("review sheet (actual, or actual / target = achievement):");
    has("1 / 2 = 50%");
    has("1 / 3 = 33%");
    // The node's figures are what its verified export adds up to
    // (the targets are the node's configuration's, not the log's).
    let recount = std::fs::read_to_string(cwd.join("recount.txt")).ok()?;
    // The figures, not the log each was computed from (the export is older).
    let figures = |text: &str| {
        let head = text.split("\nreview sheet").next()?;
        let lines = head.lines().filter(|l| !l.starts_with("computed from"));
        Some(lines.collect::<Vec<_>>().join("\n"))
    };
    has("computed from the first ");
    assert_eq!(
        figures(stdout),
        figures(&recount),
        "metrics and recount differ"
    );
    Some(())
}

#[test]
fn every_command_of_the_readme_tour_works_on_the_worked_setup() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cwd: PathBuf = tmp.path().to_owned();
    let mut nodes: Vec<Served> = Vec::new();
    let lines = tour_lines();
    assert!(lines.len() > 15, "the tour has its commands: {lines:?}");
    for line in &lines {
        if let Some(dir) = line.strip_prefix("cd ") {
            cwd = cwd.join(dir);
        } else if let Some(serve_line) = line.strip_suffix(" &") {
            let config = serve_line
                .strip_prefix("renkei serve --config ")
                .expect("serve in the background");
            nodes.push(serve(&cwd, config).0);
        } else if let Some(jobs) = line.strip_prefix("kill ") {
            // `kill %1 %2 ...` stops the background nodes, each with SIGTERM.
            assert_eq!(jobs.split_whitespace().count(), nodes.len(), "{line}");
            for node in nodes.drain(..) {
                let status = node.stop(std::time::Duration::from_secs(20));
                assert!(status.success(), "{status:?}");
            }
        } else {
            let stdout = common::shell::run_line(line, &cwd);
            assert!(
                check(line, &stdout, &cwd).is_some(),
                "the tour's `{line}` has no check in tests/tour.rs (or left nothing to check)"
            );
        }
    }
    assert!(nodes.is_empty(), "the tour stops the nodes it started");
}
