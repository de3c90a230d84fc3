//! deploy/README.md's "Two ministries, from scratch", as a new operator follows it:
//! every line of the runbook runs as it stands, in order, from an empty directory
//! (its two listening ports swapped for free ones), and prints what it should. A
//! bulletin Washington's node refuses is seen in Tokyo and arrives once Washington
//! fixes its configuration; a desk's certificate is renewed and its key rotated
//! without a restart. A line added to the runbook without a check here fails.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::federation::PATIENCE;
use common::served::{serve, Served};

/// What the `n`th run (from 0) of a runbook line must print; `None` for a line with
/// no check (which fails the test). Shell lines that print nothing need none.
fn expected(line: &str, n: usize) -> Option<Vec<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let needles: Vec<&str> = match (words.first()?, words.get(1..3)?) {
        (&"cp" | &"mv", _) => vec![],
        (_, ["certs", "init"]) => vec!["federation CA created"],
        (_, ["certs", "request"]) => vec!["wrote ", "tls"],
        (_, ["certs", "sign"]) => vec!["signed a certificate for "],
        (_, ["config", _]) => vec!["wrote "],
        (_, ["partner", "card"]) => vec![],
        (_, ["partner", "add"]) => vec!["added "],
        (_, ["partner", "update"]) => vec!["updated us-cybercom in "],
        (_, ["check-config", _]) => vec![": ok as a", " 0 warnings"],
        (_, ["status", _]) if n == 1 => vec![
            "refused by us-dod (taken, not shared on; see PEER_REFUSED in the audit log): 3, \
             the last: ERROR_CODE_UNKNOWN_ORIGIN",
            "refused deliveries kept, offered again when either node's configuration changes: 3",
        ],
        (_, ["status", _]) => vec!["us-dod (127.0.0.1:", ": UP since"],
        (_, ["publish", _]) if line.contains("tokyo/") => vec!["shared with us-dod"],
        (_, ["publish", _]) => vec!["shared with jp-mod"],
        (_, ["audit", "query"]) => vec!["peer_refused"; 3],
        (_, ["metrics", _]) => vec!["peer_refused.unknown_origin"],
        (_, ["reload", _]) => vec!["configuration reloaded"],
        (_, ["subscribe", _]) if line.contains("--count 3") => vec![
            "GREEN advisory \"Phishing wave against defence suppliers\", signature verified",
            "AMBER indicator \"C2 addresses of the phishing wave\", signature verified",
            "RED incident \"Compromise at a Tokyo supplier\", signature verified",
        ],
        (_, ["subscribe", _]) => vec!["received us-cybercom/", "signature verified"],
        (_, ["keygen", _]) => vec!["ed25519:"],
        (_, ["backup", _]) => vec!["backup taken: "],
        (_, ["audit", "export"]) => vec!["\"file\":\"tokyo.export\""],
        (_, ["audit", "verify"]) => vec![
            "verified: the audit log of jp-mod",
            "checked against       the key given with --key",
        ],
        _ => return None,
    };
    Some(needles.into_iter().map(str::to_owned).collect())
}

/// Whether `stdout` holds every needle, each as often as listed.
fn holds(stdout: &str, needles: &[String]) -> bool {
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for n in needles {
        *wanted.entry(n).or_default() += 1;
    }
    wanted
        .iter()
        .all(|(n, times)| stdout.matches(n).count() >= *times)
}

/// Runs a line that only reads (`status`, `audit query`) until it prints what it
/// should, for what the nodes do in their own time (links, refusals); any other line
/// runs once.
fn run_checked(line: &str, cwd: &Path, needles: &[String]) -> String {
    let retry = [" status ", " audit query ", " metrics "]
        .iter()
        .any(|w| line.contains(w));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stdout = common::shell::try_line(line, cwd);
        match stdout {
            Ok(out) if holds(&out, needles) => return out,
            Ok(_) | Err(_) if retry && Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(out) => panic!("`{line}` printed not all of {needles:?}:\n{out}"),
            Err(e) => panic!("`{line}` failed:\n{e}"),
        }
    }
}

/// The runbook's lines with its two node ports swapped for free ones.
fn lines() -> Vec<String> {
    let ports = [
        ("127.0.0.1:4501", common::peers::free_port()),
        ("127.0.0.1:4502", common::peers::free_port()),
    ];
    common::shell::sh_block("deploy/README.md", "## 5. Two ministries, from scratch")
        .into_iter()
        .map(|mut line| {
            for (placeholder, port) in ports {
                line = line.replace(placeholder, &format!("127.0.0.1:{port}"));
            }
            line
        })
        .collect()
}

#[test]
fn two_ministries_set_up_from_scratch_exchange_as_the_runbook_says() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd: PathBuf = tmp.path().to_owned();
    let mut nodes: Vec<Served> = Vec::new();
    let mut runs: HashMap<String, usize> = HashMap::new();
    let lines = lines();
    assert!(lines.len() > 50, "the runbook has its lines: {lines:?}");
    for line in &lines {
        if let Some(serve_line) = line.strip_suffix(" &") {
            let config = serve_line
                .strip_prefix("renkei serve --config ")
                .expect("serve in the background");
            nodes.push(serve(&cwd, config).0);
        } else if let Some(jobs) = line.strip_prefix("kill ") {
            assert_eq!(jobs.split_whitespace().count(), nodes.len(), "{line}");
            for node in nodes.drain(..) {
                let status = node.stop(PATIENCE);
                assert!(status.success(), "{status:?}");
            }
        } else {
            let kind: String = line
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            let n = runs.entry(kind).or_default();
            let needles = expected(line, *n).unwrap_or_else(|| {
                panic!("the runbook's `{line}` has no check in tests/runbook.rs")
            });
            *n += 1;
            run_checked(line, &cwd, &needles);
        }
    }
    assert!(nodes.is_empty(), "the runbook stops the nodes it started");
    // The cards it wrote carry what the other side needs, and no secret.
    let card = std::fs::read_to_string(cwd.join("us-cybercom.card")).unwrap();
    assert!(
        card.contains("previous_keys") && !card.contains("PRIVATE"),
        "{card}"
    );
}
