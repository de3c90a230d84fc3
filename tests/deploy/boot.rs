//! Every example configuration boots on 127.0.0.1 and a bulletin flows through them.

use super::*;

#[test]
fn every_example_config_boots_and_a_bulletin_flows_from_one_example_desk_to_another() {
    let examples = Examples::load();
    let (node_file, node) = examples.node();
    let image_admin_port = node
        .admin
        .listen
        .unwrap_or_else(|| panic!("{node_file} has no [admin] listen"))
        .port();

    // The examples form one federation: every desk is a partner of the hub and names
    // it; there are two liaison desks (one publishes, one receives) and an auditor.
    let mut liaisons = Vec::new();
    let mut auditors = Vec::new();
    for (file, c) in examples.clients() {
        assert_eq!(c.client.server_name, node.node.id, "{file}: server_name");
        assert_eq!(
            c.client.server.port(),
            node.node.listen.port(),
            "{file}: the hub's port"
        );
        match examples.role_of(c) {
            Role::Liaison => liaisons.push(file),
            Role::Auditor => auditors.push(file),
            Role::Relay => panic!("{file}: relays come with the federation issue"),
        }
    }
    assert!(liaisons.len() >= 2, "two liaison desks: {liaisons:?}");
    assert_eq!(auditors.len(), 1, "one auditor: {auditors:?}");
    let publisher = "client.toml";
    assert!(liaisons.contains(&publisher));
    let placeholders = examples.placeholder_keys();

    // The operator makes a PKI for every id the examples name, where they expect it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let etc = dir.join("etc/renkei");
    fs::create_dir_all(&etc).unwrap();
    let ids: Vec<String> = examples.ids().into_iter().collect();
    renkei_ok(
        dir,
        &[
            "certs",
            "init",
            "--dir",
            etc.join("certs").to_str().unwrap(),
            "--nodes",
            &ids.join(","),
        ],
    );
    let generated = |id: &str| read(&etc.join(format!("certs/{id}/signing.pub")));

    // Rewrite only what a test must: paths into the temp dir, 127.0.0.1 with ports the
    // OS picks, and each placeholder key replaced by its partner's generated key.
    let rewrite = |e: &Example| -> String {
        let root = dir.to_str().unwrap();
        let mut text = e
            .text
            .replace("\"/etc/renkei/", &format!("\"{root}/etc/renkei/"));
        for (id, placeholder) in &placeholders {
            text = text.replace(placeholder.as_str(), generated(id).trim());
        }
        text
    };
    let node_text = {
        let e = examples.0.iter().find(|e| e.name == node_file).unwrap();
        let mut text = rewrite(e);
        let listen = format!("\"{}\"", node.node.listen);
        text = replace(&text, &listen, "\"127.0.0.1:0\"", 1, node_file);
        let admin = format!("\"{}\"", node.admin.listen.unwrap());
        text = replace(&text, &admin, "\"127.0.0.1:0\"", 1, node_file);
        let data = format!("\"{}\"", node.node.data_dir.display());
        let local_data = format!("\"{}/var/lib/renkei\"", dir.display());
        replace(&text, &data, &local_data, 1, node_file)
    };
    let node_path = etc.join(node_file);
    fs::write(&node_path, node_text).unwrap();
    let rewritten = NodeConfig::load(&node_path).unwrap();
    for p in [
        &rewritten.node.data_dir,
        &rewritten.node.ca_cert,
        &rewritten.node.tls_cert,
        &rewritten.node.tls_key,
        &rewritten.node.signing_key,
    ] {
        assert!(p.starts_with(dir), "{} is outside the test", p.display());
    }
    for p in rewritten.partners.iter().filter(|p| !p.keys.is_empty()) {
        assert_eq!(
            p.keys[0].public.to_string(),
            generated(p.id.as_str()).trim(),
            "{}'s key",
            p.id
        );
    }
    // Nothing else changed: same partners, rules and revocations, apart from the keys.
    assert_eq!(rewritten.partners.len(), node.partners.len());
    assert_eq!(rewritten.revoked.len(), node.revoked.len());
    assert_eq!(rewritten.node.id, node.node.id);

    // The operator starts the hub.
    let mut served = Served::start(dir, &node_path);
    let addr = served.quic_addr();
    let admin = served.admin_addr();
    assert!(addr.ip().is_loopback() && admin.ip().is_loopback());
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    // The container image's health check, run as the image runs it.
    match run_healthcheck(admin, image_admin_port) {
        Some(healthy) => assert!(healthy, "the image's HEALTHCHECK fails on a healthy node"),
        None => eprintln!("skipped the image's HEALTHCHECK: its interpreter is not installed"),
    }

    // Each desk's file, pointed at the hub's actual address.
    for (file, c) in examples.clients() {
        let e = examples.0.iter().find(|e| e.name == file).unwrap();
        let text = replace(
            &rewrite(e),
            &format!("\"{}\"", c.client.server),
            &format!("\"{addr}\""),
            1,
            file,
        );
        fs::write(etc.join(file), text).unwrap();
    }
    let config = |file: &str| etc.join(file).to_str().unwrap().to_owned();

    // The French desk publishes a GREEN exercise notice; the hub shares it with every
    // liaison desk and withholds it from the auditor.
    let out = renkei_ok(
        dir,
        &[
            "publish",
            "--config",
            &config(publisher),
            "--json",
            "--tlp",
            "green",
            "--kind",
            "exercise",
            "--title",
            "Locked Shields 2027: planning conference",
        ],
    );
    let published: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(published["status"], "accepted", "{published}");
    let desk_id = |file: &str| -> String {
        let (_, c) = examples.clients().find(|(f, _)| *f == file).unwrap();
        c.client.id.to_string()
    };
    let shared: Vec<&str> = published["shared_with"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for file in liaisons.iter().filter(|f| **f != publisher) {
        assert!(shared.contains(&desk_id(file).as_str()), "{published}");
    }
    let auditor_id = desk_id(auditors[0]);
    assert!(
        !published.to_string().contains(&format!("\"{auditor_id}\"")),
        "an answer never names an auditor: {published}"
    );

    // Every other liaison desk receives it and verifies the French signature itself.
    for file in liaisons.iter().filter(|f| **f != publisher) {
        let out = renkei_ok(
            dir,
            &[
                "subscribe",
                "--config",
                &config(file),
                "--json",
                "--count",
                "1",
                "--idle-timeout",
                "20",
            ],
        );
        let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(got["verified"], true, "{file}: {got}");
        assert_eq!(got["digest"], published["digest"], "{file}");
        assert_eq!(got["origin"], desk_id(publisher).as_str(), "{file}");
        assert_eq!(got["title"], "Locked Shields 2027: planning conference");
    }

    // The auditor finds the decision in the audit log: shared with the receiving
    // desks, withheld from itself.
    let bulletin = published["bulletin_id"].as_str().unwrap();
    let out = renkei_ok(
        dir,
        &[
            "audit",
            "query",
            "--config",
            &config(auditors[0]),
            "--bulletin",
            bulletin,
            "--format",
            "json",
        ],
    );
    let records: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accepted = records
        .iter()
        .find(|r| r["event"] == "bulletin_accepted")
        .unwrap_or_else(|| panic!("no bulletin_accepted record:\n{}", out.stdout));
    let decision = |id: &str| {
        accepted["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["partner"] == id)
            .unwrap_or_else(|| panic!("no decision for {id}: {accepted}"))
            .clone()
    };
    for file in liaisons.iter().filter(|f| **f != publisher) {
        assert_eq!(decision(&desk_id(file))["shared"], true);
    }
    assert_eq!(decision(&auditor_id)["reason"], "auditor");
    // ...and the receiving desks' acknowledgements.
    for file in liaisons.iter().filter(|f| **f != publisher) {
        let out = renkei_ok(
            dir,
            &[
                "audit",
                "query",
                "--config",
                &config(auditors[0]),
                "--partner",
                &desk_id(file),
                "--event",
                "acked",
                "--format",
                "json",
            ],
        );
        assert!(!out.stdout.trim().is_empty(), "{file}: no ACKED record");
    }

    // Monitoring sees the same exchange.
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let received = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "renkei_bulletins_received_total"
                && s.labels.get("partner") == Some(desk_id(publisher).as_str())
                && s.labels.get("kind") == Some("exercise")
        })
        .unwrap_or_else(|| panic!("no received count for the publisher:\n{body}"));
    assert!(matches!(
        received.value,
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v == 1.0
    ));

    // SIGTERM: the node finishes, flushes and exits 0; the health check then fails.
    let exit = served.terminate();
    assert!(exit.success(), "{exit:?}\n{}", served.logs());
    if let Some(healthy) = run_healthcheck(admin, image_admin_port) {
        assert!(!healthy, "the HEALTHCHECK passes with no node running");
    }
    // The stopped node's log verifies offline (what an operator checks on a copy).
    renkei_ok(
        dir,
        &[
            "audit",
            "verify",
            "--data-dir",
            rewritten.node.data_dir.to_str().unwrap(),
            "--self-signed-ok",
        ],
    );
}
