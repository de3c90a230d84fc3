//! Helpers shared by the scenario tests: running the `renkei` binary in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The outcome of one `renkei` run.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `renkei ARGS` in `dir` and waits for it.
pub fn renkei(dir: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the renkei binary runs")
        .into()
}

/// Runs `renkei ARGS` and panics with its stderr unless it succeeds.
pub fn renkei_ok(dir: &Path, args: &[&str]) -> Run {
    let run = renkei(dir, args);
    assert!(run.ok, "renkei {args:?} failed:\n{}", run.stderr);
    run
}

/// Runs `renkei bench ARGS --json report.json` in `dir`, which must succeed, and
/// returns its report.
pub fn bench_report(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--json", "report.json"]);
    renkei_ok(dir, &all);
    let text =
        std::fs::read_to_string(dir.join("report.json")).expect("the bench wrote its report");
    serde_json::from_str(&text).expect("the report is JSON")
}

/// `renkei audit verify --json` on the node `node`'s stopped data in `dir/data_dir`,
/// pinned to the node's key from `certs init`: asserts it verified, and returns the
/// summary for what else a test checks.
pub fn log_verifies_offline(dir: &Path, data_dir: &str, node: &str) -> serde_json::Value {
    let key = public_key(dir, node);
    let args = [
        "audit",
        "verify",
        "--json",
        "--data-dir",
        data_dir,
        "--key",
        &key,
    ];
    let out = renkei_ok(dir, &args);
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(summary["verified"], true, "{summary}");
    summary
}

/// The public signing key of `id` that `certs init` wrote under `dir/certs`.
pub fn public_key(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join(format!("certs/{id}/signing.pub")))
        .expect("signing.pub")
        .trim()
        .to_string()
}

/// The signing key of `id` that `certs init` wrote under `dir/certs`.
pub fn signing_key(dir: &Path, id: &str) -> ed25519_dalek::SigningKey {
    let pem =
        std::fs::read_to_string(dir.join(format!("certs/{id}/signing.key"))).expect("signing.key");
    renkei::identity::signing_key_from_pem(&pem).expect("a signing key")
}

/// A federation PKI for `nodes` made by `renkei certs init` under `dir/certs`.
pub fn pki(dir: &Path, nodes: &str) -> PathBuf {
    renkei_ok(dir, &["certs", "init", "--dir", "certs", "--nodes", nodes]);
    dir.join("certs")
}

/// Runs `renkei LINE` until it succeeds or `patience` runs out, for what a signal sets
/// off in a node (a SIGHUP reload): each try is a whole client process, which paces the
/// loop. Returns the last run.
pub fn sh_until_ok(dir: &Path, line: &str, patience: std::time::Duration) -> Run {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let run = sh(dir, line);
        if run.ok || std::time::Instant::now() > deadline {
            return run;
        }
    }
}

/// Says, loudly and countably, that a check did not run here and why: one line on
/// stderr, and one file in `target/tmp/skipped/` named after the check, which
/// `.ci/run` lists at the end (a passing test's stderr is not shown).
pub fn skipped(check: &str, why: &str) {
    eprintln!("SKIPPED {check}: {why}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped");
    let name: String = check
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), why));
    if let Err(e) = written {
        eprintln!("cannot record the skip in {}: {e}", dir.display());
    }
}

pub mod configs;
pub mod debian;
pub mod federation;
pub mod lossy;
pub mod peers;
pub mod python;
pub mod served;
pub mod shell;
pub mod tables;

/// Splits a command line into words; single quotes group words with spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// Runs `renkei` with a command line written as in a shell (single quotes only).
pub fn sh(dir: &Path, line: &str) -> Run {
    let args = words(line);
    renkei(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Like [`sh`], and panics with stderr unless it succeeds.
pub fn sh_ok(dir: &Path, line: &str) -> Run {
    let run = sh(dir, line);
    assert!(run.ok, "renkei {line} failed:\n{}", run.stderr);
    run
}
