//! Secrets never echoed: every command that reads a key file, handed the wrong file
//! (a private key where a public one belongs, a certificate, a TLS key, a key with junk
//! after it, garbage), refuses it with an error that names the file and never shows a
//! byte of what is in it: no PEM marker, no line of any key's base64.

use crate::common;

use std::fs;
use std::path::Path;

use common::{pki, sh, Run};

/// Every secret a run must never print: the PEM body lines of the private keys.
fn secrets(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "certs/ca.key",
        "certs/jp-mod/tls.key",
        "certs/jp-mod/signing.key",
        "certs/us-dod/signing.key",
        "certs/us-dod/tls.key",
    ] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            out.push(line[..16].to_owned());
        }
    }
    out
}

fn hub(dir: &Path, signing_key: &str, tls_key: &str) {
    let text = format!(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/jp-mod/tls.crt\"\ntls_key = \"{tls_key}\"\nsigning_key = \"{signing_key}\"\n"
    );
    fs::write(dir.join("hub.toml"), text).unwrap();
}

fn desk(dir: &Path, signing_key: &str, tls_key: &str) {
    let text = format!(
        "[client]\nid = \"us-dod\"\nserver = \"127.0.0.1:9\"\nserver_name = \"jp-mod\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/us-dod/tls.crt\"\ntls_key = \"{tls_key}\"\nsigning_key = \"{signing_key}\"\n"
    );
    fs::write(dir.join("desk.toml"), text).unwrap();
}

/// Every command that reads a key, run with `file` in the key's place: (what, run).
fn runs_with_key(dir: &Path, file: &str) -> Vec<(String, Run)> {
    let mut runs = Vec::new();
    let mut run = |what: &str, line: String| runs.push((format!("{what}: {line}"), sh(dir, &line)));
    let sign = "--origin us-dod --tlp green --kind advisory --title t --out b.bin";
    run("a signing key", format!("bulletin new --key {file} {sign}"));
    run(
        "a public key",
        format!("bulletin verify --pubkey {file} b.bin"),
    );
    run(
        "a checkpoint key",
        format!("audit verify x.export --key {file}"),
    );
    let publish = "publish --config desk.toml --tlp green --kind advisory --title t";
    desk(dir, file, "certs/us-dod/tls.key");
    run("desk signing_key", publish.to_owned());
    desk(dir, "certs/us-dod/signing.key", file);
    run("desk tls_key", format!("{publish} --connect-timeout 1"));
    for (what, signing, tls) in [
        ("node signing_key", file, "certs/jp-mod/tls.key"),
        ("node tls_key", "certs/jp-mod/signing.key", file),
    ] {
        hub(dir, signing, tls);
        run(what, "check-config --config hub.toml".into());
        run(what, "serve --config hub.toml".into());
    }
    runs
}

#[test]
fn no_error_shows_what_a_key_file_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod");
    let signing = fs::read_to_string(dir.join("certs/us-dod/signing.key")).unwrap();
    fs::write(
        dir.join("junk-after.key"),
        format!("{signing}trailing junk {signing}"),
    )
    .unwrap();
    fs::write(
        dir.join("garbage.key"),
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let wrong = [
        "certs/us-dod/tls.key",
        "certs/ca.key",
        "certs/ca.crt",
        "certs/us-dod/signing.pub",
        "junk-after.key",
        "garbage.key",
    ];
    let secrets = secrets(dir);
    let mut runs = Vec::new();
    for file in wrong {
        runs.extend(runs_with_key(dir, file));
    }
    // A node directory whose files are swapped, for its card.
    let swapped = dir.join("certs/swapped");
    fs::create_dir_all(&swapped).unwrap();
    fs::copy(
        dir.join("certs/us-dod/signing.key"),
        swapped.join("signing.pub"),
    )
    .unwrap();
    fs::copy(dir.join("certs/us-dod/tls.key"), swapped.join("tls.crt")).unwrap();
    let card = "partner card --node-dir certs/swapped";
    runs.push((card.to_owned(), sh(dir, card)));

    let mut refused = 0;
    for (what, run) in &runs {
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !output.contains("-----BEGIN") && !output.contains("-----END"),
            "{what} printed a PEM marker:\n{output}"
        );
        for s in &secrets {
            assert!(
                !output.contains(s.as_str()),
                "{what} printed key material {s:?}:\n{output}"
            );
        }
        if !run.ok {
            refused += 1;
            assert!(
                !run.stderr.trim().is_empty(),
                "{what} failed without saying why"
            );
        }
    }
    // The right files were refused: nearly every run is an error (a TLS key or a CA
    // key is a valid Ed25519 key only where it happens to be one).
    assert!(
        refused >= runs.len() * 3 / 4,
        "{refused} of {} runs refused",
        runs.len()
    );
}
