//! The broker from the command line, as an operator and two liaison desks use it:
//! `renkei serve` in its own process, `renkei publish` and `renkei subscribe` against
//! it, and a clean stop on SIGTERM.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::configs::{client_toml, node_toml};
use common::served::serve;
use common::tables::{keyed_in, liaison};
use common::{pki, public_key, renkei, renkei_ok, sh, sh_ok, sh_until_ok};
use serde_json::Value;

fn client_config(dir: &Path, id: &str, addr: &str) {
    client_toml(id, addr, "jp-mod")
        .signing()
        .trusting("us-dod", &public_key(dir, "us-dod"))
        .write(dir, &format!("{id}.toml"));
}

#[test]
fn two_desks_exchange_a_bulletin_through_a_served_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir, "jp-mod,us-dod,au-dod,nz-mod");
    let desks = [
        liaison("us-dod", "red").with(r#"country = "US""#),
        liaison("au-dod", "amber").with(r#"country = "AU""#),
    ];
    let hub = node_toml("jp-mod").with(&format!("country = \"JP\"\n{}", keyed_in(dir, &desks)));
    hub.write(dir, "hub.toml");

    let (mut served, addr) = serve(dir, "hub.toml");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // A second node on the same data directory is told at once who holds it.
    let second = renkei(dir, &["serve", "--config", "hub.toml"]);
    assert!(!second.ok);
    let holder = format!("in use by another renkei process (PID {})", served.pid());
    assert!(second.stderr.contains(&holder), "{}", second.stderr);
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);
    client_config(dir, "us-dod", &addr);
    client_config(dir, "au-dod", &addr);

    the_us_desk_shares_an_exercise_notice_with_australia(dir);
    australia_cannot_pass_on_a_us_bulletin(dir);
    let publish_nz = new_zealand_joins_by_a_reload(dir, &mut served, &addr);
    a_broken_edit_is_refused_and_the_node_serves_on(dir, publish_nz);

    // Nothing more is waiting for Australia: the subscription idles out with no
    // bulletin on stdout, and says on stderr that nothing came and how long it waited.
    let idle = sh_ok(dir, "subscribe --config au-dod.toml --idle-timeout 1");
    assert!(idle.stdout.is_empty(), "{}", idle.stdout);
    assert!(
        idle.stderr.contains("nothing arrived in 1.") && idle.stderr.contains("audit log"),
        "{}",
        idle.stderr
    );

    // SIGTERM: the node finishes and exits 0.
    let exit = served.stop(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}");
}

/// The US desk publishes a GREEN exercise notice; the node says who gets it, and the
/// Australian desk receives it verified and keeps a MISP feed of it.
fn the_us_desk_shares_an_exercise_notice_with_australia(dir: &Path) {
    let out = sh_ok(dir, "publish --config us-dod.toml --json --origin us-dod --tlp green --kind exercise --title 'Cyber Coalition 2027: call for participation'");
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(result["status"], "accepted");
    assert_eq!(result["shared_with"], serde_json::json!(["au-dod"]));
    assert_eq!(
        result["withheld"],
        serde_json::json!([]),
        "who did not get it, and why, is not told unless the operator allows it"
    );

    // The Australian desk receives it, verified against the US key it trusts, and
    // keeps a MISP feed of what it receives for its analysts' MISP.
    let out = sh_ok(
        dir,
        "subscribe --config au-dod.toml --json --count 1 --idle-timeout 20 --misp-feed feed",
    );
    let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(got["title"], "Cyber Coalition 2027: call for participation");
    assert_eq!(got["verified"], true);
    assert_eq!(got["digest"], result["digest"]);
    let title = "Cyber Coalition 2027: call for participation";
    crate::misp::feed_lists(&dir.join("feed"), got["id"].as_str().unwrap(), title);
    crate::misp::pymisp_reads(&dir.join("feed"), 1);
}

/// Australia cannot pass on a US bulletin as its own.
fn australia_cannot_pass_on_a_us_bulletin(dir: &Path) {
    sh_ok(dir, "bulletin new --key certs/us-dod/signing.key --origin us-dod --tlp green --kind advisory --title 'not yours' --out us.bin");
    let refused = renkei(
        dir,
        &[
            "publish",
            "--config",
            "au-dod.toml",
            "--json",
            "--file",
            "us.bin",
        ],
    );
    assert!(!refused.ok);
    let result: Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(result["status"], "rejected");
    assert_eq!(result["error"], "ERROR_CODE_ORIGIN_MISMATCH");
}

/// New Zealand has a certificate from the federation CA but is not a partner yet; the
/// operator adds it to the file and sends SIGHUP, and it publishes to Australia. Its
/// publish command line.
fn new_zealand_joins_by_a_reload(
    dir: &Path,
    served: &mut common::served::Served,
    addr: &str,
) -> &'static str {
    client_config(dir, "nz-mod", addr);
    let publish_nz = "publish --config nz-mod.toml --origin nz-mod --tlp green --kind advisory --title 'Kia ora'";
    let stranger = sh(dir, publish_nz);
    assert!(
        !stranger.ok && stranger.stderr.contains("not a partner"),
        "{}",
        stranger.stderr
    );

    // The operator adds it to the file and sends SIGHUP (a `systemctl reload`): the
    // node reads the file again and New Zealand gets in, without a restart.
    let nz = keyed_in(dir, &[liaison("nz-mod", "green")]);
    let hub = fs::read_to_string(dir.join("hub.toml")).unwrap();
    fs::write(dir.join("hub.toml"), format!("{hub}{nz}")).unwrap();
    served.signal("HUP");
    // The reload runs as the signal arrives; retry until it has taken effect.
    let accepted = sh_until_ok(dir, publish_nz, Duration::from_secs(20));
    assert!(
        accepted.ok,
        "nz-mod publishes after the reload: {}",
        accepted.stderr
    );
    // Australia's desk trusts New Zealand's key too, and receives the bulletin.
    let trust = format!(
        "\n[[partner]]\nid = \"nz-mod\"\nkeys = [{{ public = \"{}\" }}]\n",
        public_key(dir, "nz-mod")
    );
    let au = fs::read_to_string(dir.join("au-dod.toml")).unwrap();
    fs::write(dir.join("au-dod.toml"), format!("{au}{trust}")).unwrap();
    let au_gets = sh_ok(
        dir,
        "subscribe --config au-dod.toml --json --count 1 --idle-timeout 20",
    );
    assert!(au_gets.stdout.contains("Kia ora"), "{}", au_gets.stdout);
    publish_nz
}

/// A broken edit is refused by `renkei reload` with the reason; the node serves on,
/// and the mended file reloads.
fn a_broken_edit_is_refused_and_the_node_serves_on(dir: &Path, publish_nz: &str) {
    let hub = fs::read_to_string(dir.join("hub.toml")).unwrap();
    fs::write(
        dir.join("hub.toml"),
        format!("{hub}\n[[partner]]\nid = \"broken\"\n"),
    )
    .unwrap();
    let refused = renkei(dir, &["reload", "--config", "hub.toml"]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("running one stays in force"),
        "{}",
        refused.stderr
    );
    assert!(
        sh(dir, publish_nz).ok,
        "still serving under the configuration in force"
    );
    fs::write(dir.join("hub.toml"), &hub).unwrap();
    let reloaded = renkei_ok(dir, &["reload", "--config", "hub.toml"]);
    assert!(
        reloaded.stdout.contains("configuration reloaded"),
        "{}",
        reloaded.stdout
    );

    let second = sh_ok(
        dir,
        "subscribe --config au-dod.toml --json --count 1 --idle-timeout 20",
    );
    assert!(second.stdout.contains("Kia ora"), "{}", second.stdout);
}
