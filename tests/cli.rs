//! The command-line round trip an operator and a liaison officer go through: create the
//! federation's keys, sign a bulletin, verify it, and see tampering and wrong keys fail.

use crate::common;

use std::fs;
use std::path::Path;

use common::configs::node_toml;
use common::{pki, renkei, renkei_ok, sh, sh_ok};
use serde_json::Value;

#[test]
fn a_liaison_signs_a_bulletin_and_a_partner_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "mod-jp,mod-fr,nato-ccdcoe");

    // The operator's PKI: a CA and, per node, TLS and signing keys with private files 0600.
    for f in ["ca.key", "mod-jp/tls.key", "mod-jp/signing.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.join("certs").join(f))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // The Japanese liaison officer writes an AMBER advisory with a STIX body.
    fs::write(
        dir.join("bundle.json"),
        r#"{"type":"bundle","id":"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d","objects":[]}"#,
    )
    .unwrap();
    let created = sh_ok(dir, "bulletin new --key certs/mod-jp/signing.key --origin mod-jp --tlp amber --kind advisory --title 'Phishing wave against logistics units' --tag phishing --audience group:nato --audience mod-fr --body-file bundle.json --out advisory.bin");
    let summary: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(summary["origin"], "mod-jp");

    // A partner verifies it with the Japanese node's published key.
    let ok = sh_ok(
        dir,
        "bulletin verify --pubkey certs/mod-jp/signing.pub advisory.bin",
    );
    let view: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(view["verified"], true);
    assert_eq!(view["tlp"], "amber");
    assert_eq!(view["content_type"], "application/stix+json;version=2.1");
    assert_eq!(view["digest"], summary["digest"]);
    assert_eq!(view["id"], summary["id"]);
    let pubtext = fs::read_to_string(dir.join("certs/mod-jp/signing.pub")).unwrap();
    assert_eq!(view["signed_by"], pubtext.trim());
    // The text form of the key works as well as the file.
    renkei_ok(
        dir,
        &[
            "bulletin",
            "verify",
            "--pubkey",
            pubtext.trim(),
            "advisory.bin",
        ],
    );

    // Another node's key does not verify it.
    let wrong = sh(
        dir,
        "bulletin verify --pubkey certs/mod-fr/signing.pub advisory.bin",
    );
    assert!(!wrong.ok);
    assert_eq!(
        wrong.stderr.lines().count(),
        1,
        "one-line reason: {}",
        wrong.stderr
    );
    assert!(
        wrong.stderr.contains("not signed by that key"),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stdout.is_empty());
}

#[test]
fn any_one_byte_change_to_the_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "mod-jp");
    sh_ok(dir, "bulletin new --key certs/mod-jp/signing.key --origin mod-jp --tlp green --kind indicator --title 'Scanner from 203.0.113.7' --out b.bin");
    let original = fs::read(dir.join("b.bin")).unwrap();
    // Every 7th position keeps the run short while touching the bulletin bytes, the
    // signature, the key id and the framing; the unit tests cover every position.
    for i in (0..original.len()).step_by(7) {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        fs::write(dir.join("t.bin"), &bytes).unwrap();
        let run = sh(
            dir,
            "bulletin verify --pubkey certs/mod-jp/signing.pub t.bin",
        );
        assert!(!run.ok, "byte {i} changed and it still verified");
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

#[test]
fn garbage_gets_a_decode_error_and_show_reports_problems_without_verifying() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "mod-jp");
    fs::write(
        dir.join("garbage.bin"),
        b"\xff\xff\xff\xff this is not protobuf",
    )
    .unwrap();
    let run = sh(
        dir,
        "bulletin verify --pubkey certs/mod-jp/signing.pub garbage.bin",
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("not a SignedBulletin protobuf message"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
    let run = renkei(dir, &["bulletin", "show", "garbage.bin"]);
    assert!(
        !run.ok && run.stderr.contains("not a SignedBulletin"),
        "{}",
        run.stderr
    );

    // A bulletin with a bad field is shown, with the problem named.
    sh_ok(dir, "bulletin new --key certs/mod-jp/signing.key --origin mod-jp --tlp red --kind incident --title t --audience mod-fr --out b.bin");
    let shown = renkei_ok(dir, &["bulletin", "show", "b.bin"]);
    let view: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert!(
        view.get("verified").is_none(),
        "show checks no signature, so it claims nothing about one: {view}"
    );
    assert!(view["verification"]
        .as_str()
        .unwrap()
        .starts_with("not verified (no key given)"));
    assert_eq!(view["tlp"], "red");
    assert!(view.get("problem").is_none());

    // Someone else's tool wrote a bulletin without a title: show names the problem.
    use prost::Message as _;
    let untitled = renkei::proto::Bulletin {
        id: "019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b".into(),
        origin: "x".into(),
        created_unix_ms: 1,
        tlp: 1,
        kind: 1,
        ..Default::default()
    };
    let signed = renkei::proto::SignedBulletin {
        bulletin: untitled.encode_to_vec().into(),
        signature: vec![0; 64].into(),
        key_id: vec![0; 8].into(),
    };
    fs::write(dir.join("untitled.bin"), signed.encode_to_vec()).unwrap();
    let shown = renkei_ok(dir, &["bulletin", "show", "untitled.bin"]);
    let view: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(view["problem"], "required field `title` is empty");
}

#[test]
fn invalid_bulletins_are_refused_before_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "mod-jp");
    let base = [
        "bulletin",
        "new",
        "--key",
        "certs/mod-jp/signing.key",
        "--origin",
        "mod-jp",
        "--kind",
        "report",
        "--out",
        "x.bin",
    ];
    let run = renkei(
        dir,
        &[&base[..], &["--tlp", "purple", "--title", "t"]].concat(),
    );
    assert!(
        !run.ok && run.stderr.contains("not a TLP level"),
        "{}",
        run.stderr
    );
    let run = renkei(
        dir,
        &[
            &base[..],
            &["--tlp", "red", "--title", "t", "--audience", "Group:X"],
        ]
        .concat(),
    );
    assert!(!run.ok && run.stderr.contains("audience"), "{}", run.stderr);
    let run = renkei(
        dir,
        &[
            &base[..],
            &["--tlp", "red", "--title", "t", "--id", "not-a-uuid"],
        ]
        .concat(),
    );
    assert!(
        !run.ok && run.stderr.contains("not a UUID"),
        "{}",
        run.stderr
    );
    let run = renkei(dir, &[&base[..], &["--tlp", "red"]].concat());
    assert!(
        !run.ok && run.stderr.contains("--title is required"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("x.bin").exists());
}

#[test]
fn pki_and_keys_are_never_overwritten_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "mod-jp");
    let key = fs::read(dir.join("certs/mod-jp/signing.key")).unwrap();
    // Listing the federation again with a new node adds it; what exists is kept,
    // the federation CA first of all.
    let ca = fs::read(dir.join("certs/ca.crt")).unwrap();
    a_new_node_is_added_and_the_rest_kept(dir, &ca, &key);
    only_force_issues_anew_and_the_ca_stays(dir, &ca, &key);

    let bad = renkei(
        dir,
        &["certs", "init", "--dir", "certs", "--nodes", "MOD_DE"],
    );
    assert!(
        !bad.ok && bad.stderr.contains("not a valid partner id"),
        "{}",
        bad.stderr
    );

    a_key_is_generated_private_and_only_forced_over(dir);
}

/// `certs init` with one node more creates it and keeps the CA `ca` and mod-jp's
/// signing key `key`.
fn a_new_node_is_added_and_the_rest_kept(dir: &Path, ca: &[u8], key: &[u8]) {
    let added = renkei_ok(
        dir,
        &[
            "certs",
            "init",
            "--dir",
            "certs",
            "--nodes",
            "mod-jp,mod-fr",
        ],
    );
    assert!(
        added.stdout.contains("federation CA reused"),
        "{}",
        added.stdout
    );
    assert!(
        added.stdout.contains("node mod-jp (exists, kept)"),
        "{}",
        added.stdout
    );
    assert!(
        added.stdout.contains("node mod-fr (created)"),
        "{}",
        added.stdout
    );
    assert_eq!(fs::read(dir.join("certs/ca.crt")).unwrap(), ca);
    assert_eq!(fs::read(dir.join("certs/mod-jp/signing.key")).unwrap(), key);
}

/// `--force` gives mod-jp a new signing key (it was `key`) under the same CA `ca`, and
/// `--new-ca` without `--force` is refused, the CA kept.
fn only_force_issues_anew_and_the_ca_stays(dir: &Path, ca: &[u8], key: &[u8]) {
    // --force issues a node anew, under the same CA; a new CA needs its own flag.
    let reissued = renkei_ok(
        dir,
        &[
            "certs", "init", "--dir", "certs", "--nodes", "mod-jp", "--force",
        ],
    );
    assert!(
        reissued.stdout.contains("node mod-jp (issued anew)"),
        "{}",
        reissued.stdout
    );
    assert_ne!(fs::read(dir.join("certs/mod-jp/signing.key")).unwrap(), key);
    assert_eq!(
        fs::read(dir.join("certs/ca.crt")).unwrap(),
        ca,
        "--force keeps the CA"
    );
    let new_ca = renkei(
        dir,
        &[
            "certs", "init", "--dir", "certs", "--nodes", "mod-jp", "--new-ca",
        ],
    );
    assert!(
        !new_ca.ok && new_ca.stderr.contains("pass --force as well"),
        "{}",
        new_ca.stderr
    );
    assert_eq!(fs::read(dir.join("certs/ca.crt")).unwrap(), ca);
}

/// `keygen` writes a 0600 key with its public half beside it, refuses to overwrite it,
/// and with `--force` replaces both.
fn a_key_is_generated_private_and_only_forced_over(dir: &Path) {
    let out = renkei_ok(dir, &["keygen", "--out", "k.pem"]);
    assert!(out.stdout.trim().starts_with("ed25519:"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(dir.join("k.pem")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Its public half is beside it, for the card that announces it.
    assert_eq!(
        fs::read_to_string(dir.join("k.pub")).unwrap().trim(),
        out.stdout.trim()
    );
    assert!(!renkei(dir, &["keygen", "--out", "k.pem"]).ok);
    let again = renkei_ok(dir, &["keygen", "--out", "k.pem", "--force"]);
    assert_eq!(
        fs::read_to_string(dir.join("k.pub")).unwrap().trim(),
        again.stdout.trim()
    );
}

#[test]
fn verify_against_a_node_configuration_honours_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "hub,mod-jp");
    let jp_pub = fs::read_to_string(dir.join("certs/mod-jp/signing.pub")).unwrap();
    let config = |revoked: bool| {
        let mut node = node_toml("hub").listen("127.0.0.1:4433").with(&format!(
            "\n[[partner]]\nid = \"mod-jp\"\nrole = \"liaison\"\nclearance = \"amber\"\nkeys = [{{ public = \"{}\" }}]\n",
            jp_pub.trim()
        ));
        if revoked {
            node = node.with(&format!(
                "\n[[revoked]]\nkey = \"{}\"\nreason = \"compromised\"\n",
                jp_pub.trim()
            ));
        }
        node.write(dir, "node.toml");
    };
    sh_ok(dir, "bulletin new --key certs/mod-jp/signing.key --origin mod-jp --tlp green --kind exercise --title 'Locked Shields planning' --out b.bin");
    config(false);
    renkei_ok(
        dir,
        &["bulletin", "verify", "--config", "node.toml", "b.bin"],
    );
    config(true);
    let run = renkei(
        dir,
        &["bulletin", "verify", "--config", "node.toml", "b.bin"],
    );
    assert!(!run.ok && run.stderr.contains("revoked"), "{}", run.stderr);
}
