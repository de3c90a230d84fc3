//! The broker from the command line, as an operator and two liaison desks use it:
//! `renkei serve` in its own process, `renkei publish` and `renkei subscribe` against
//! it, and a clean stop on SIGTERM.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::served::serve;
use common::{pki, renkei, sh_ok};
use serde_json::Value;

fn key(dir: &Path, id: &str) -> String {
    fs::read_to_string(dir.join(format!("certs/{id}/signing.pub")))
        .unwrap()
        .trim()
        .to_string()
}

fn client_config(dir: &Path, id: &str, addr: &str) {
    let text = format!(
        "[client]\nid = \"{id}\"\nserver = \"{addr}\"\nserver_name = \"jp-mod\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/{id}/tls.crt\"\ntls_key = \"certs/{id}/tls.key\"\nsigning_key = \"certs/{id}/signing.key\"\n\n\
         [[partner]]\nid = \"us-dod\"\nkeys = [{{ public = \"{}\" }}]\n",
        key(dir, "us-dod")
    );
    fs::write(dir.join(format!("{id}.toml")), text).unwrap();
}

#[test]
fn two_desks_exchange_a_bulletin_through_a_served_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,au-dod");
    let hub = format!(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/jp-mod/tls.crt\"\ntls_key = \"certs/jp-mod/tls.key\"\nsigning_key = \"certs/jp-mod/signing.key\"\n\n\
         [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"amber\"\nkeys = [{{ public = \"{}\" }}]\n",
        key(dir, "us-dod"),
        key(dir, "au-dod")
    );
    fs::write(dir.join("hub.toml"), hub).unwrap();

    let (mut served, addr) = serve(dir, "hub.toml");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    client_config(dir, "us-dod", &addr);
    client_config(dir, "au-dod", &addr);

    // The US desk publishes a GREEN exercise notice; the node says who gets it.
    let out = sh_ok(dir, "publish --config us-dod.toml --origin us-dod --tlp green --kind exercise --title 'Cyber Coalition 2027: call for participation'");
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(result["status"], "accepted");
    assert_eq!(result["shared_with"], serde_json::json!(["au-dod"]));
    assert_eq!(result["withheld"][0]["reason"], "WITHHOLD_REASON_ORIGIN");

    // The Australian desk receives it, verified against the US key it trusts.
    let out = sh_ok(
        dir,
        "subscribe --config au-dod.toml --count 1 --idle-timeout 20",
    );
    let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(got["title"], "Cyber Coalition 2027: call for participation");
    assert_eq!(got["verified"], true);
    assert_eq!(got["digest"], result["digest"]);

    // Australia cannot pass on a US bulletin as its own.
    sh_ok(dir, "bulletin new --key certs/us-dod/signing.key --origin us-dod --tlp green --kind advisory --title 'not yours' --out us.bin");
    let refused = renkei(
        dir,
        &["publish", "--config", "au-dod.toml", "--file", "us.bin"],
    );
    assert!(!refused.ok);
    let result: Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(result["status"], "rejected");
    assert_eq!(result["error"], "ERROR_CODE_ORIGIN_MISMATCH");

    // SIGHUP (a `systemctl reload`) does not stop the node: it warns and goes on.
    served.signal("HUP");

    // Nothing more is waiting for Australia: the subscription idles out with no output.
    let idle = sh_ok(dir, "subscribe --config au-dod.toml --idle-timeout 1");
    assert!(idle.stdout.is_empty(), "{}", idle.stdout);

    // SIGTERM: the node finishes and exits 0.
    let exit = served.stop(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}");
}
