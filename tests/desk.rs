//! A desk's daily work from the command line. Publishing: an audience typo is refused,
//! the answer says who got the bulletin, and nobody is an error for scripts. Receiving
//! with `renkei subscribe`: what arrives is saved as sent (the body byte for byte),
//! what does not verify is held back and comes again once the desk's config is fixed,
//! a command decides what is acknowledged, and the inbox service (`--follow`) picks up
//! a fixed config on SIGHUP.

use crate::common;

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::configs::{client_toml, node_toml};
use common::served::serve;
use common::tables::{auditor, keyed_in, liaison};
use common::{pki, public_key, renkei, sh, sh_ok};
use serde_json::Value;

const STIX: &[u8] = br#"{"type":"bundle","id":"bundle--8e2b5a64-7a3c-4d0e-9f5b-2d8c1e6f0a11","objects":[{"type":"indicator","id":"indicator--1c5b1f7e-4a0d-4a53-9d3b-6a2f0c8e7b21","spec_version":"2.1","created":"2026-11-30T00:00:00Z","modified":"2026-11-30T00:00:00Z","pattern":"[ipv4-addr:value = '198.51.100.7']","pattern_type":"stix","valid_from":"2026-11-30T00:00:00Z"}]}"#;

/// A desk's config; it trusts us-dod's key only when `trusting`.
fn desk(dir: &Path, id: &str, addr: &str, trusting: bool) {
    let mut config = client_toml(id, addr, "jp-mod").signing();
    if trusting {
        config = config.trusting("us-dod", &public_key(dir, "us-dod"));
    }
    config.write(dir, &format!("{id}.toml"));
}

fn hub(dir: &Path) {
    let partners = keyed_in(
        dir,
        &[liaison("us-dod", "amber"), liaison("au-dod", "amber")],
    );
    node_toml("jp-mod").with(&partners).write(dir, "hub.toml");
}

/// A temp dir with the federation's PKI and the hub serving from it.
fn hub_running() -> (tempfile::TempDir, common::served::Served, String) {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path(), "jp-mod,us-dod,au-dod");
    hub(tmp.path());
    let (served, addr) = serve(tmp.path(), "hub.toml");
    (tmp, served, addr)
}

fn publish(dir: &Path, title: &str) -> Value {
    let out = sh_ok(
        dir,
        &format!("publish --config us-dod.toml --json --tlp green --kind indicator --title '{title}' --body-file ioc.json"),
    );
    serde_json::from_str(out.stdout.trim()).unwrap()
}

#[test]
fn a_desk_saves_what_it_receives_and_never_loses_what_it_cannot_verify() {
    let (tmp, served, addr) = hub_running();
    let dir = tmp.path();
    desk(dir, "us-dod", &addr, true);
    fs::write(dir.join("ioc.json"), STIX).unwrap();
    let sent = publish(dir, "C2 server of the VPN campaign");
    let id = sent["bulletin_id"].as_str().unwrap().to_owned();

    let held = a_desk_without_the_key_holds_the_bulletin_back(dir, &addr, &id);
    with_the_key_the_bulletin_is_filed_as_sent(dir, &addr, &sent, &held);

    // It was acknowledged: nothing more comes.
    let idle = sh_ok(
        dir,
        "subscribe --config au-dod.toml --out inbox --idle-timeout 1",
    );
    assert!(idle.stdout.is_empty(), "{}", idle.stdout);

    the_exec_command_decides_what_is_acknowledged(dir);

    drop(served);
}

/// Australia's desk, without the US key, gets bulletin `id` into quarantine and nowhere
/// else, and fails; returns the quarantine entry.
fn a_desk_without_the_key_holds_the_bulletin_back(dir: &Path, addr: &str, id: &str) -> PathBuf {
    // Australia's desk does not have the US key yet: nothing is acknowledged or lost.
    desk(dir, "au-dod", addr, false);
    let first = sh(
        dir,
        "subscribe --config au-dod.toml --out inbox --count 1 --idle-timeout 20",
    );
    assert!(!first.ok, "a bulletin held back is an error for scripts");
    assert!(first.stderr.contains("does not verify"), "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("To fix: add origin us-dod's signing key"),
        "{}",
        first.stderr
    );
    let held: Vec<_> = fs::read_dir(dir.join("inbox/quarantine"))
        .unwrap()
        .collect();
    assert_eq!(held.len(), 1, "one bulletin in quarantine");
    let held = held[0].as_ref().unwrap().path();
    let why: Value = serde_json::from_slice(&fs::read(held.join("reason.json")).unwrap()).unwrap();
    assert_eq!(why["claims"]["id"], id);
    assert!(
        !dir.join("inbox/us-dod").exists(),
        "nothing unverified is filed"
    );
    held
}

/// Once the desk trusts the US key, the bulletin the node `sent` again is filed byte for
/// byte, verifies offline, and its quarantine entry `held` is cleared.
fn with_the_key_the_bulletin_is_filed_as_sent(dir: &Path, addr: &str, sent: &Value, held: &Path) {
    let id = sent["bulletin_id"].as_str().unwrap();
    // The desk's operator adds the key; the node sends the bulletin again.
    desk(dir, "au-dod", addr, true);
    let second = sh_ok(
        dir,
        "subscribe --config au-dod.toml --out inbox --count 1 --idle-timeout 20",
    );
    assert!(
        second
            .stdout
            .starts_with(&format!("received us-dod/{id} (seq ")),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains("GREEN indicator \"C2 server of the VPN campaign\""),
        "{}",
        second.stdout
    );
    let filed = dir.join("inbox/us-dod").join(id);
    assert_eq!(
        fs::read(filed.join("body.json")).unwrap(),
        STIX,
        "the body, byte for byte"
    );
    let side: Value =
        serde_json::from_slice(&fs::read(filed.join("bulletin.json")).unwrap()).unwrap();
    assert_eq!(side["verified"], true);
    assert_eq!(side["digest"], sent["digest"]);
    assert_eq!(side["signed_by"], public_key(dir, "us-dod").as_str());
    assert!(
        !held.exists(),
        "the quarantine entry is cleared once it verifies"
    );
    // The envelope as received verifies offline with the origin's key.
    let envelope = filed.join("bulletin.bin");
    let pubkey = dir.join("certs/us-dod/signing.pub");
    let verified = renkei(
        dir,
        &[
            "bulletin",
            "verify",
            "--pubkey",
            pubkey.to_str().unwrap(),
            envelope.to_str().unwrap(),
        ],
    );
    assert!(verified.ok, "{}", verified.stderr);
}

/// A second bulletin stays on the node while `--exec` fails and is taken, handed to the
/// command whole, once it succeeds.
fn the_exec_command_decides_what_is_acknowledged(dir: &Path) {
    // A command that fails leaves the bulletin on the node; one that succeeds takes it.
    publish(dir, "second indicator");
    let failed = sh(
        dir,
        "subscribe --config au-dod.toml --count 1 --idle-timeout 20 --exec 'exit 3'",
    );
    assert!(!failed.ok);
    assert!(
        failed.stderr.contains("--exec command failed"),
        "{}",
        failed.stderr
    );
    let taken = sh_ok(dir, "subscribe --config au-dod.toml --json --count 1 --idle-timeout 20 --exec 'cat > handed.json'");
    let line: Value = serde_json::from_str(taken.stdout.trim()).unwrap();
    let handed: Value =
        serde_json::from_slice(&fs::read(dir.join("handed.json")).unwrap()).unwrap();
    assert_eq!(handed["title"], "second indicator");
    assert_eq!(handed["body"], std::str::from_utf8(STIX).unwrap());
    assert_eq!(handed["digest"], line["digest"]);
    let idle = sh_ok(dir, "subscribe --config au-dod.toml --idle-timeout 1");
    assert!(
        idle.stdout.is_empty(),
        "acknowledged once the command succeeded: {}",
        idle.stdout
    );
}

/// `renkei subscribe --follow` as a child process, its stdout lines in a channel.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(dir: &Path, args: &[&str]) -> Follow {
        let mut child = Command::new(env!("CARGO_BIN_EXE_renkei"))
            .args(["subscribe", "--follow"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follow { child, lines }
    }

    fn next_line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from the inbox service");
        serde_json::from_str(&line).unwrap()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_inbox_service_takes_a_fixed_config_on_sighup() {
    let (tmp, served, addr) = hub_running();
    let dir = tmp.path();
    desk(dir, "us-dod", &addr, true);
    desk(dir, "au-dod", &addr, false);
    fs::write(dir.join("ioc.json"), STIX).unwrap();

    let mut inbox = Follow::start(
        dir,
        &["--config", "au-dod.toml", "--json", "--out", "inbox"],
    );
    publish(dir, "while the desk lacks the key");
    let held = inbox.next_line();
    assert_eq!(held["verified"], false, "{held}");
    assert!(held["quarantine"].as_str().is_some(), "{held}");

    desk(dir, "au-dod", &addr, true);
    inbox.signal("HUP");
    let got = inbox.next_line();
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(got["title"], "while the desk lacks the key");

    // Published while the service runs: it arrives with no signal.
    publish(dir, "while the service runs");
    assert_eq!(inbox.next_line()["title"], "while the service runs");

    inbox.signal("TERM");
    let status = inbox.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(served);
}

#[test]
fn a_desk_learns_who_got_its_bulletin_and_an_audience_typo_is_refused() {
    let (tmp, served, addr) = hub_running();
    let dir = tmp.path();
    desk(dir, "us-dod", &addr, true);

    // For people: who got it, in a sentence.
    let out = sh_ok(dir, "publish --config us-dod.toml --tlp green --kind advisory --title 'Patch the VPN appliances'");
    assert!(out.stdout.starts_with("accepted us-dod/"), "{}", out.stdout);
    assert!(
        out.stdout.trim_end().ends_with(": shared with au-dod"),
        "{}",
        out.stdout
    );

    // `group:natoo` is no group of any partner: refused, counted, and on the record.
    let typo = sh(dir, "publish --config us-dod.toml --tlp amber --kind advisory --title 'For NATO' --audience group:natoo --audience au-dod");
    assert!(!typo.ok, "{}", typo.stdout);
    assert!(
        typo.stderr.contains("rejected (UNKNOWN_AUDIENCE)"),
        "{}",
        typo.stderr
    );
    // How many entries are unknown, not which: that would tell a desk who is
    // configured here unless the operator discloses it.
    assert!(
        typo.stderr
            .contains("the audience names 1 entry this node knows as no partner"),
        "{}",
        typo.stderr
    );
    assert!(!typo.stderr.contains("natoo"), "{}", typo.stderr);
    let json = sh(dir, "publish --config us-dod.toml --json --tlp amber --kind advisory --title 'For NATO' --audience group:natoo");
    let answer: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(answer["error"], "ERROR_CODE_UNKNOWN_AUDIENCE");

    // Meant: accepted, but shared with nobody, which is an error unless allowed.
    let meant = "publish --config us-dod.toml --tlp amber --kind advisory --title 'For a group to come' --audience group:natoo --allow-unknown-audience";
    let nobody = sh(dir, meant);
    assert!(!nobody.ok);
    assert!(
        nobody.stdout.contains(": shared with nobody"),
        "{}",
        nobody.stdout
    );
    // It says where the reasons are ("see above" used to point at nothing when the
    // node did not disclose them).
    assert!(
        nobody.stderr.contains("nobody receives this bulletin")
            && nobody.stderr.contains("reason")
            && !nobody.stderr.contains("see above"),
        "{}",
        nobody.stderr
    );
    let allowed = sh(dir, &format!("{meant} --allow-no-recipients"));
    assert!(allowed.ok, "{}", allowed.stderr);

    drop(served);
}

#[test]
fn an_auditor_sees_who_did_not_get_a_bulletin_and_which_bulletins_went_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,au-dod,nz-mod,jp-audit");
    hub(dir);
    let more = keyed_in(dir, &[liaison("nz-mod", "green"), auditor("jp-audit")]);
    let text = fs::read_to_string(dir.join("hub.toml")).unwrap();
    fs::write(dir.join("hub.toml"), text + &more).unwrap();
    let (served, addr) = serve(dir, "hub.toml");
    desk(dir, "us-dod", &addr, true);
    desk(dir, "au-dod", &addr, true);
    desk(dir, "jp-audit", &addr, false);
    let sent = sh_ok(dir, "publish --config us-dod.toml --json --tlp amber --kind advisory --title 'Router firmware implant'");
    let sent: Value = serde_json::from_str(sent.stdout.trim()).unwrap();
    let id = sent["bulletin_id"].as_str().unwrap();
    sh_ok(
        dir,
        "subscribe --config au-dod.toml --count 1 --idle-timeout 20",
    );

    // New Zealand did not get it: its records show that, and why.
    let nz = sh_ok(dir, "audit query --config jp-audit.toml --partner nz-mod");
    let accepted = nz
        .stdout
        .lines()
        .find(|l| l.contains("bulletin_accepted"))
        .unwrap_or_else(|| {
            panic!(
                "the withheld bulletin is among nz-mod's records:\n{}",
                nz.stdout
            )
        });
    assert!(accepted.contains(&format!("us-dod/{id}")), "{accepted}");
    assert!(
        accepted.contains("nz-mod: WITHHELD, above clearance"),
        "{accepted}"
    );
    assert!(accepted.contains("shared with au-dod"), "{accepted}");

    // A delivery names the bulletin, not an internal seq.
    let delivered = sh_ok(
        dir,
        "audit query --config jp-audit.toml --partner au-dod --event delivered",
    );
    let line = delivered.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        line.contains(&format!("us-dod/{id} \"Router firmware implant\"")),
        "{}",
        delivered.stdout
    );
    // Every time has the same width, so the columns line up.
    let starts: Vec<usize> = nz
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            l.find("  bulletin_")
                .or(l.find("  connection_"))
                .unwrap_or(0)
        })
        .filter(|&i| i > 0)
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{}", nz.stdout);

    drop(served);
}

#[test]
fn errors_name_one_cause_and_what_to_check() {
    let (tmp, served, addr) = hub_running();
    let dir = tmp.path();

    // The node's certificate does not hold the name the desk expects: the TLS error
    // says what it held, once, and which setting to check.
    desk(dir, "us-dod", &addr, true);
    let text = fs::read_to_string(dir.join("us-dod.toml")).unwrap();
    fs::write(
        dir.join("us-dod.toml"),
        text.replace("server_name = \"jp-mod\"", "server_name = \"jp-hub\""),
    )
    .unwrap();
    let publish = "publish --config us-dod.toml --tlp green --kind advisory --title 'x'";
    let wrong_name = sh(dir, publish);
    assert!(!wrong_name.ok);
    let e = wrong_name.stderr.trim();
    assert!(
        e.starts_with(&format!("renkei: cannot connect to {addr} (node jp-hub): ")),
        "{e}"
    );
    assert_eq!(e.matches("not valid for name \"jp-hub\"").count(), 1, "{e}");
    assert!(e.contains("only valid for DnsName(\"jp-mod\")"), "{e}");
    assert!(e.contains("check client.server_name"), "{e}");

    // Nothing listens where the desk looks: it gives up when told to, and says where.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nowhere = silent.local_addr().unwrap().to_string();
    desk(dir, "us-dod", &nowhere, true);
    let no_node = sh(dir, &format!("{publish} --connect-timeout 1"));
    let e = no_node.stderr.trim();
    assert_eq!(
        e,
        format!("renkei: cannot connect to {nowhere} (node jp-mod): no answer within 1 s; check that the node is running and listens on that UDP port (client.server), and that no firewall drops UDP on the way; --connect-timeout waits longer")
    );
    let idle = sh(dir, "subscribe --config us-dod.toml --idle-timeout 1");
    assert!(
        idle.stderr.contains("no answer within 1 s"),
        "--idle-timeout bounds the wait: {}",
        idle.stderr
    );

    // A missing file: its name and the system's words, once.
    let missing = sh(
        dir,
        "publish --config nothere.toml --tlp green --kind advisory --title 'x'",
    );
    assert_eq!(
        missing.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("nothere.toml"),
        "{}",
        missing.stderr
    );

    drop(served);
}
