//! `renkei check-config` as an operator runs it before starting a node: a clean
//! configuration passes, and each broken key, certificate or field is named, with a
//! non-zero exit for errors. `renkei serve` refuses to start on the same errors.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::configs::{client_toml, node_toml};
use common::federation::PATIENCE;
use common::{pki, renkei, Run};
use renkei::files::{self, Access};
use renkei::pki::Ca;
use renkei::timestamp::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

/// A federation PKI for the hub `jp-mod` and the US desk, and the hub's commented config.
fn node(dir: &Path) {
    pki(dir, "jp-mod,us-dod");
    let us = fs::read_to_string(dir.join("certs/us-dod/signing.pub")).unwrap();
    let hub = node_toml("jp-mod").with(&format!(
        "country = \"JP\"\n\n\
         # The US desk.\n[[partner]]\nid = \"us-dod\"\ncountry = \"US\"\nrole = \"liaison\"\nclearance = \"red\"\n\
         keys = [{{ public = \"{}\" }}]\n",
        us.trim()
    ));
    fs::write(dir.join("hub.toml"), format!("# Japan's hub.\n{hub}")).unwrap();
}

fn check(dir: &Path) -> Run {
    renkei(dir, &["check-config", "--config", "hub.toml"])
}

/// The run failed and said, on one line, `error: FIELD: …NEEDLE…`.
fn refused(run: &Run, field: &str, needle: &str) {
    refused_because(run, field, needle, "the node would not start");
}

/// As [`refused`], with the consequence the summary line gives.
fn refused_because(run: &Run, field: &str, needle: &str, consequence: &str) {
    assert!(!run.ok, "expected a failure:\n{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("error: {field}: ")))
        .unwrap_or_else(|| panic!("no error for {field}:\n{}{}", run.stdout, run.stderr));
    assert!(line.contains(needle), "{line}");
    assert!(run.stderr.contains(consequence), "{}", run.stderr);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_clean_configuration_passes() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    let run = check(tmp.path());
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "hub.toml: ok as a node's configuration (1 partner, 0 warnings; key and certificate files checked)"
    );
}

#[test]
fn a_missing_key_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    fs::remove_file(tmp.path().join("certs/jp-mod/tls.key")).unwrap();
    refused(
        &check(tmp.path()),
        "node.tls_key",
        "certs/jp-mod/tls.key does not exist",
    );
}

#[test]
fn a_world_readable_private_key_is_an_error_and_a_group_readable_one_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    let key = tmp.path().join("certs/jp-mod/signing.key");
    chmod(&key, 0o644);
    refused(&check(tmp.path()), "node.signing_key", "must be 0600");

    // A Kubernetes Secret mounted with fsGroup: 0440, readable by the service's group.
    chmod(&key, 0o440);
    let run = check(tmp.path());
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("warning: node.signing_key: ")
            && run.stdout.contains("mode 0440")
            && run.stdout.contains("fsGroup"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_certificate_from_another_ca_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    node(dir);
    common::renkei_ok(
        dir,
        &["certs", "init", "--dir", "other", "--nodes", "jp-mod"],
    );
    let text = fs::read_to_string(dir.join("hub.toml"))
        .unwrap()
        .replace("certs/jp-mod/tls.", "other/jp-mod/tls.");
    fs::write(dir.join("hub.toml"), text).unwrap();
    refused(&check(dir), "node.tls_cert", "another CA");
}

#[test]
fn an_expired_certificate_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    node(dir);
    let certs = dir.join("certs");
    let ca = Ca::from_pem(
        &fs::read_to_string(certs.join("ca.crt")).unwrap(),
        &fs::read_to_string(certs.join("ca.key")).unwrap(),
    )
    .unwrap();
    let now = Timestamp::now();
    let year_ago = Timestamp::from_unix_ms(now.unix_ms() - 365 * DAY.as_millis() as u64);
    let yesterday = Timestamp::from_unix_ms(now.unix_ms() - DAY.as_millis() as u64);
    let tls = ca
        .issue_valid(&"jp-mod".parse().unwrap(), year_ago, yesterday)
        .unwrap();
    let node_dir = certs.join("jp-mod");
    files::write(
        &node_dir.join("tls.crt"),
        tls.cert_pem.as_bytes(),
        Access::Public,
        true,
    )
    .unwrap();
    files::write(
        &node_dir.join("tls.key"),
        tls.key_pem.as_bytes(),
        Access::Private,
        true,
    )
    .unwrap();
    refused(&check(dir), "node.tls_cert", "expired on");
}

#[test]
fn an_unknown_field_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    let path = tmp.path().join("hub.toml");
    let text = fs::read_to_string(&path).unwrap() + "clearence = \"amber\"\n";
    fs::write(&path, text).unwrap();
    refused(
        &check(tmp.path()),
        "partner[0].clearence",
        "unknown field `clearence`",
    );
}

#[test]
fn a_liaison_without_keys_is_a_warning_naming_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    let path = tmp.path().join("hub.toml");
    let text = fs::read_to_string(&path).unwrap()
        + "\n[[partner]]\nid = \"mod-fr\"\nrole = \"liaison\"\nclearance = \"amber\"\n";
    fs::write(&path, text).unwrap();
    let run = check(tmp.path());
    assert!(run.ok, "warnings alone pass:\n{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("warning: partner[1].keys: liaison mod-fr has no signing keys"),
        "{}",
        run.stdout
    );

    // With an error as well, the exit is non-zero and both are listed.
    fs::remove_file(tmp.path().join("certs/jp-mod/signing.key")).unwrap();
    let run = check(tmp.path());
    refused(&run, "node.signing_key", "does not exist");
    assert!(
        run.stdout.contains("warning: partner[1].keys:"),
        "{}",
        run.stdout
    );
}

#[test]
fn serve_refuses_to_start_with_an_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    chmod(&tmp.path().join("certs/jp-mod/tls.key"), 0o604);
    let child = Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["serve", "--config", "hub.toml"])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should it start after all, it is killed rather than left to hang the test.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(PATIENCE).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let out: Run = waiter.join().unwrap().unwrap().into();
    assert!(!out.ok, "serve started:\n{}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("node.tls_key: certs/jp-mod/tls.key is mode 0604"),
        "{}",
        out.stderr
    );
    assert!(!tmp.path().join("data").exists(), "nothing was started");
}

/// The US desk's configuration for the hub, signing key and one origin.
fn desk(dir: &Path) {
    let us = fs::read_to_string(dir.join("certs/us-dod/signing.pub")).unwrap();
    client_toml("us-dod", "127.0.0.1:1", "jp-mod")
        .signing()
        .trusting("us-dod", us.trim())
        .write(dir, "desk.toml");
}

#[test]
fn a_desk_configuration_is_checked_as_a_desk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    node(dir);
    desk(dir);
    let run = renkei(dir, &["check-config", "--config", "desk.toml"]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "desk.toml: ok as a desk's or auditor's configuration (us-dod of jp-mod at \
         127.0.0.1:1, 1 origin, 0 warnings; key and certificate files checked)"
    );

    // The hub's certificate in the desk's place: it would be refused as us-dod.
    let text = fs::read_to_string(dir.join("desk.toml"))
        .unwrap()
        .replace("certs/us-dod/tls.", "certs/jp-mod/tls.");
    fs::write(dir.join("desk.toml"), text).unwrap();
    let run = renkei(dir, &["check-config", "--config", "desk.toml"]);
    refused_because(
        &run,
        "client.tls_cert",
        "names jp-mod, not client.id us-dod: its node would take it for jp-mod",
        "the desk or auditor could not connect",
    );
}

#[test]
fn parties_without_a_country_or_organisation_are_named_and_both_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    node(tmp.path());
    let path = tmp.path().join("hub.toml");
    let text = fs::read_to_string(&path).unwrap();
    // The figures count by country; a party without one counts as unknown.
    let without = text.replace("country = \"US\"\n", "");
    fs::write(&path, &without).unwrap();
    let run = check(tmp.path());
    assert!(run.ok, "a warning only:\n{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "warning: partner[0].country: liaison us-dod names no country or organisation"
        ),
        "{}",
        run.stdout
    );
    let both = text.replace(
        "country = \"US\"\n",
        "country = \"US\"\norganisation = \"NATO\"\n",
    );
    fs::write(&path, both).unwrap();
    refused(&check(tmp.path()), "partner[0].organisation", "not both");
    let uk = text.replace("country = \"US\"", "country = \"UK\"");
    fs::write(&path, uk).unwrap();
    let run = check(tmp.path());
    assert!(
        !run.ok && run.stdout.contains("the United Kingdom is GB"),
        "{}",
        run.stdout
    );
}
