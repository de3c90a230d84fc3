//! Audit-key rotation: the hub's operator moves its log to a new checkpoint
//! key; the log records the change signed by both keys, an auditor who knew the old
//! key follows the chain across it, and a forged rotation fails.

use super::*;
use crate::audit::verify::{edited, json, read_export};

/// A day's log under the old key, a rotation, a day under the new key: the
/// export verifies from the old key (the one the auditor held), not from the new one
/// alone, and a rotation not signed by the old key is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_audit_key_verifies_across_the_rotation() {
    let mut fed = hub().start().await;
    working_day(&fed, "Monday").await;
    fed.halt().await;
    let dir = fed.dir.path().to_owned();
    let new_pub = renkei_ok(&dir, &["keygen", "--out", "audit-2.key"]).stdout;
    let old_key = format!("certs/{HUB}/signing.key");
    let args = [
        "audit",
        "rotate-key",
        "--data-dir",
        "data",
        "--old-key",
        &old_key,
    ];
    renkei_ok(&dir, &[&args[..], &["--new-key", "audit-2.key"]].concat());
    // The node signs with the new key from now on.
    let config = fs::read_to_string(fed.config_path()).unwrap();
    let config = config.replace(
        &format!("signing_key = \"{old_key}\""),
        "signing_key = \"audit-2.key\"",
    );
    fs::write(fed.config_path(), config).unwrap();
    fed.resume().await;
    working_day(&fed, "Tuesday").await;
    fed.halt().await;

    renkei_ok(
        &dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "log.export",
        ],
    );
    let old_pub = PublicKey::of(fed.key(HUB)).to_string();
    let verify = |key: &str| {
        renkei(
            &dir,
            &["audit", "verify", "--json", "log.export", "--key", key],
        )
    };
    let from_old = verify(&old_pub);
    assert!(from_old.ok, "{}{}", from_old.stdout, from_old.stderr);
    assert_eq!(json(&from_old.stdout)["verified"], true);
    let new_pub = new_pub
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .unwrap();
    let from_new = verify(new_pub);
    assert!(
        !from_new.ok,
        "Monday's checkpoints are the old key's: {}",
        from_new.stdout
    );

    // A rotation whose old signature is not the old key's is refused where it stands.
    let old = *PublicKey::of(fed.key(HUB)).verifying_key();
    let why = export::verify(&forged_rotation(&dir), &old, None).expect_err("forged");
    assert!(
        why.to_string().contains("not signed by the old key"),
        "{why}"
    );
    fed.stop().await;
}

/// The export in `dir` with its rotation's old signature replaced by the new key's: what
/// someone holding only the new key could write.
fn forged_rotation(dir: &Path) -> Export {
    let e = read_export(&dir.join("log.export"));
    let rotation_of = |r: &Bytes| proto::AuditRecord::decode(r.clone()).unwrap();
    let at = e
        .records
        .iter()
        .position(|r| rotation_of(r).key_rotation.is_some())
        .expect("the rotation is on the log");
    let mut records = e.records.clone();
    let mut r = rotation_of(&records[at]);
    let mut rotation = r.key_rotation.take().unwrap();
    rotation.old_signature = rotation.new_signature.clone();
    r.key_rotation = Some(rotation);
    records[at] = r.encode_to_vec().into();
    edited(&e, &records, &e.checkpoints)
}
