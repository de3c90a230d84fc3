//! The broker from the command line, as an operator and two liaison desks use it:
//! `renkei serve` in its own process, `renkei publish` and `renkei subscribe` against
//! it, and a clean stop on SIGTERM.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{pki, renkei, sh_ok};
use serde_json::Value;

/// A `renkei serve` child process, killed if the test fails before stopping it.
struct Served(Option<Child>);

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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

    let mut child = Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["serve", "--config", "hub.toml"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut served = Served(Some(child));
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        line.starts_with("renkei node listening on 127.0.0.1:"),
        "{line}"
    );
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
    let pid = served.0.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());

    // Nothing more is waiting for Australia: the subscription idles out with no output.
    let idle = sh_ok(dir, "subscribe --config au-dod.toml --idle-timeout 1");
    assert!(idle.stdout.is_empty(), "{}", idle.stdout);

    // SIGTERM: the node finishes and exits 0.
    let mut child = served.0.take().unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let exit = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the node stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
