//! Onboarding a partner, as two operators do it: the new partner's operator prints
//! its card, the hub's operator adds it to the hub's configuration (comments kept),
//! sends the running hub SIGHUP, and the new partner exchanges bulletins through it
//! without a restart. Adding the same card twice is refused and leaves the file as it
//! was.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::configs::client_toml;
use common::served::serve;
use common::{pki, renkei, renkei_ok, sh_ok, sh_until_ok};
use serde_json::Value;

const HUB: &str = "# Japan's hub. Partners are onboarded with `renkei partner add`.
[node]
id = \"jp-mod\"                 # the DNS name in our certificate
listen = \"127.0.0.1:0\"
data_dir = \"data\"
ca_cert = \"certs/ca.crt\"
tls_cert = \"certs/jp-mod/tls.crt\"
tls_key = \"certs/jp-mod/tls.key\"
signing_key = \"certs/jp-mod/signing.key\"

# The US desk, configured by hand before cards existed.
[[partner]]
id = \"us-dod\"
role = \"liaison\"
clearance = \"red\"            # RED only when named in the audience
keys = [{ public = \"US_KEY\" }]
";

/// A desk's client configuration, trusting the origins `trusted` (id, public key).
fn desk(dir: &Path, id: &str, addr: &str, trusted: &[(&str, &str)]) {
    let mut config = client_toml(id, addr, "jp-mod").signing();
    for (origin, key) in trusted {
        config = config.trusting(origin, key);
    }
    config.write(dir, &format!("{id}.toml"));
}

fn published(dir: &Path, desk: &str, title: &str) -> Value {
    let out = sh_ok(
        dir,
        &format!(
            "publish --config {desk}.toml --json --tlp green --kind exercise --title '{title}'"
        ),
    );
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn received(dir: &Path, desk: &str) -> Value {
    let out = sh_ok(
        dir,
        &format!("subscribe --config {desk}.toml --json --count 1 --idle-timeout 20"),
    );
    serde_json::from_str(out.stdout.trim()).unwrap()
}

#[test]
fn a_new_partner_is_onboarded_from_its_card_and_exchanges_bulletins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The hub runs with the US desk.
    pki(dir, "jp-mod,us-dod");
    let us_key = fs::read_to_string(dir.join("certs/us-dod/signing.pub")).unwrap();
    let us_key = us_key.trim();
    fs::write(dir.join("hub.toml"), HUB.replace("US_KEY", us_key)).unwrap();
    let (mut served, addr) = serve(dir, "hub.toml");

    let fr_key = france_joins_and_prints_its_card(dir);
    let after = japan_adds_the_card_keeping_every_comment(dir);

    // SIGHUP (`systemctl reload`) applies it to the running hub: no restart. The reload
    // runs as the signal arrives; France retries until it is in.
    desk(dir, "mod-fr", &addr, &[("us-dod", us_key)]);
    desk(dir, "us-dod", &addr, &[("mod-fr", &fr_key)]);
    served.signal("HUP");
    france_and_the_us_exchange_bulletins(dir);

    the_same_card_again_is_refused(dir, &after);

    let exit = served.stop(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}");
}

/// France gets a certificate from the same CA in `dir` and writes its card, without
/// secrets, to `mod-fr.card`; returns France's public signing key.
fn france_joins_and_prints_its_card(dir: &Path) -> String {
    // France joins the federation (its certificate from the same CA) and prints its card.
    renkei_ok(
        dir,
        &["certs", "init", "--dir", "certs", "--nodes", "mod-fr"],
    );
    let card = renkei_ok(
        dir,
        &[
            "partner",
            "card",
            "--node-dir",
            "certs/mod-fr",
            "--address",
            "192.0.2.7:4433",
        ],
    )
    .stdout;
    assert!(!card.contains("PRIVATE"), "{card}");
    let fr_key = fs::read_to_string(dir.join("certs/mod-fr/signing.pub")).unwrap();
    let fr_key = fr_key.trim();
    assert!(
        card.contains(&format!("signing_key = \"{fr_key}\"")),
        "{card}"
    );
    assert!(card.contains("tls_fingerprint = \"sha256:"), "{card}");
    fs::write(dir.join("mod-fr.card"), &card).unwrap();
    fr_key.to_owned()
}

/// `renkei partner add` appends France to `hub.toml`, keeping the text before it, and the
/// result checks; returns the file's new text.
fn japan_adds_the_card_keeping_every_comment(dir: &Path) -> String {
    // Japan's operator adds it; the file keeps every comment and gains one partner.
    let before = fs::read_to_string(dir.join("hub.toml")).unwrap();
    let added = sh_ok(
        dir,
        "partner add --config hub.toml --card mod-fr.card --role liaison --clearance amber --group allies",
    );
    assert!(
        added.stdout.contains("added partner mod-fr to hub.toml"),
        "{}",
        added.stdout
    );
    assert!(added.stdout.contains("renkei reload"), "{}", added.stdout);
    let after = fs::read_to_string(dir.join("hub.toml")).unwrap();
    assert!(
        after.starts_with(&before),
        "the existing text is kept:\n{after}"
    );
    assert!(
        after.contains("# mod-fr: added by `renkei partner add`"),
        "{after}"
    );
    renkei_ok(dir, &["check-config", "--config", "hub.toml"]);
    after
}

/// Once the hub has reloaded, France publishes to the US desk and the US desk to France,
/// each received and verified.
fn france_and_the_us_exchange_bulletins(dir: &Path) {
    let publish = "publish --config mod-fr.toml --json --tlp green --kind exercise --title 'Locked Shields: team assignments'";
    let out = sh_until_ok(dir, publish, Duration::from_secs(20));
    assert!(out.ok, "mod-fr publishes after the reload: {}", out.stderr);

    // France published; the US desk receives it, verified against the key on the card.
    let result: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(result["status"], "accepted", "{result}");
    assert_eq!(result["shared_with"], serde_json::json!(["us-dod"]));
    let got = received(dir, "us-dod");
    assert_eq!(got["title"], "Locked Shields: team assignments");
    assert_eq!(got["verified"], true);

    // And the other way.
    published(dir, "us-dod", "Cyber Coalition: call for participation");
    let got = received(dir, "mod-fr");
    assert_eq!(got["title"], "Cyber Coalition: call for participation");
    assert_eq!(got["verified"], true);
}

/// Adding France's card a second time fails and leaves `hub.toml` as `after`.
fn the_same_card_again_is_refused(dir: &Path, after: &str) {
    // The same card again is refused, and the file is untouched.
    let again = renkei(
        dir,
        &[
            "partner",
            "add",
            "--config",
            "hub.toml",
            "--card",
            "mod-fr.card",
            "--role",
            "liaison",
            "--clearance",
            "green",
        ],
    );
    assert!(!again.ok);
    assert!(
        again
            .stderr
            .contains("partner mod-fr is already configured"),
        "{}",
        again.stderr
    );
    assert_eq!(fs::read_to_string(dir.join("hub.toml")).unwrap(), after);
}
