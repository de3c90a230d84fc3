//! Debian packages a scenario test drives (Chromium, libfaketime): installed when
//! missing and the tests run as root, as `.ci/run` installs them; otherwise the test
//! fails saying what to install.

use std::process::Command;

/// Installs Debian's `package` for `test` unless `present` says it is there already.
pub fn ensure(package: &str, test: &str, present: impl Fn() -> bool) {
    if present() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    assert!(
        root,
        "the {test} test needs {package}: apt-get install {package} (or run .ci/run)"
    );
    let installed = Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
            ),
        ])
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "installing {package} failed"
    );
    assert!(present(), "{package} is missing after installing it");
}
