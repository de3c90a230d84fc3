//! The keys renkei writes are the keys other tools read, and the other way round: an
//! operator checks a node's signing key with OpenSSL, loads it in Python's
//! `cryptography`, or brings a key OpenSSL generated. Each tool is driven when it is on
//! this machine; a missing one is said on stderr, not silently passed over.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{pki, renkei_ok};

/// Runs `program ARGS` in `dir`: `None` when the program is not installed.
fn tool(dir: &Path, program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            common::skipped(
                &format!("keys: {program}"),
                &format!("{program} is not installed"),
            );
            None
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

/// The 32 bytes of the public key in renkei's `signing.pub` (`ed25519:BASE64`).
fn renkei_public(dir: &Path, id: &str) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(dir.join(format!("certs/{id}/signing.pub"))).unwrap();
    let b64 = text
        .trim()
        .strip_prefix("ed25519:")
        .expect("ed25519:BASE64");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn openssl_reads_the_signing_keys_renkei_writes_and_renkei_reads_openssls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod");
    let key = "certs/jp-mod/signing.key";
    let Some(out) = tool(
        dir,
        "openssl",
        &["pkey", "-in", key, "-pubout", "-outform", "DER"],
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "openssl pkey refused renkei's key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SubjectPublicKeyInfo of Ed25519: 12 bytes of header, then the key.
    assert_eq!(out.stdout.len(), 44);
    assert_eq!(
        out.stdout[12..],
        renkei_public(dir, "jp-mod")[..],
        "the same key"
    );

    // A key OpenSSL generates signs a bulletin renkei verifies with its public half.
    let gen = tool(
        dir,
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", "ossl.key"],
    )
    .expect("openssl ran above");
    assert!(gen.status.success());
    let pem = std::fs::read_to_string(dir.join("ossl.key")).unwrap();
    let ossl = renkei::identity::signing_key_from_pem(&pem).expect("renkei reads OpenSSL's key");
    std::fs::write(
        dir.join("ossl.pub"),
        renkei::identity::PublicKey::of(&ossl).to_string(),
    )
    .unwrap();
    renkei_ok(
        dir,
        &[
            "bulletin",
            "new",
            "--key",
            "ossl.key",
            "--origin",
            "ee-mod",
            "--tlp",
            "green",
            "--kind",
            "advisory",
            "--title",
            "signed with an OpenSSL key",
            "--out",
            "b.bin",
        ],
    );
    let verified = renkei_ok(
        dir,
        &["bulletin", "verify", "--pubkey", "ossl.pub", "b.bin"],
    );
    assert!(
        verified.stdout.contains("\"verified\": true"),
        "{}",
        verified.stdout
    );
}

#[test]
fn pythons_cryptography_loads_the_signing_keys_renkei_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod");
    let script = "import sys\n\
        from cryptography.hazmat.primitives import serialization as s\n\
        k = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n\
        sys.stdout.write(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())\n";
    let probe = tool(dir, "python3", &["-c", "import cryptography"]);
    if !probe.is_some_and(|o| o.status.success()) {
        common::skipped(
            "keys: python cryptography",
            "python3 with `cryptography` is not installed",
        );
        return;
    }
    let out =
        tool(dir, "python3", &["-c", script, "certs/jp-mod/signing.key"]).expect("python3 ran");
    assert!(
        out.status.success(),
        "cryptography refused renkei's key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8(out.stdout).unwrap();
    assert_eq!(hex, hex::encode(renkei_public(dir, "jp-mod")));
}
