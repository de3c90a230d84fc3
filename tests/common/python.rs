//! The Python tools the tests drive as a partner's tooling would: `taxii2-client`
//! (what OpenCTI's and MISP's connectors build on), PyMISP (what MISP's own feed tools
//! and its users' scripts are written with) and OASIS's `stix2`, in one virtual
//! environment.
//!
//! `.ci/run` makes it in `target/tmp/py-venv`; a `cargo test` without it makes it
//! first (PyPI is the one network it needs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the environment holds, pinned.
const PACKAGES: &[&str] = &["taxii2-client==2.3.0", "pymisp==2.5.34.4", "stix2==3.0.2"];

/// A Python that imports taxii2client, pymisp and stix2 (made once for all the tests).
pub fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_python).clone()
}

fn make_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let python = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import taxii2client, pymisp, stix2"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works(&python) {
        eprintln!("making {} with {}", venv.display(), PACKAGES.join(", "));
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(PACKAGES)
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip install {PACKAGES:?} failed"
        );
    }
    assert!(
        works(&python),
        "taxii2client, pymisp or stix2 does not import in {}",
        python.display()
    );
    python
}
