//! Every example configuration boots on 127.0.0.1 and a bulletin flows through them.

use super::*;

/// The title of the notice the publishing example desk sends.
const NOTICE: &str = "Locked Shields 2027: planning conference";

#[test]
fn every_example_config_boots_and_a_bulletin_flows_from_one_example_desk_to_another() {
    let examples = Examples::load();
    let (node_file, node) = examples.node();
    let image_admin_port = node
        .admin
        .listen
        .unwrap_or_else(|| panic!("{node_file} has no [admin] listen"))
        .port();
    let (liaisons, auditors) = desks_of_one_federation(&examples, node);
    let publisher = "client.toml";
    assert!(liaisons.contains(&publisher));
    let receivers: Vec<&str> = liaisons
        .iter()
        .copied()
        .filter(|f| *f != publisher)
        .collect();

    // The operator makes a PKI for every id the examples name, where they expect it,
    // and starts the hub on its example file, rewritten only where a test must.
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::new(&examples, tmp.path());
    let (node_path, rewritten) = site.write_node(node_file, node);
    let mut served = Served::start(site.dir, &node_path);
    let addr = served.quic_addr();
    let admin = served.admin_addr();
    assert!(addr.ip().is_loopback() && admin.ip().is_loopback());
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    // The container image's health check, run as the image runs it.
    match run_healthcheck(admin, image_admin_port) {
        Some(healthy) => assert!(healthy, "the image's HEALTHCHECK fails on a healthy node"),
        None => common::skipped(
            "deploy: the image's HEALTHCHECK",
            "its interpreter is not installed",
        ),
    }
    site.write_desks(addr);

    // The French desk publishes a GREEN exercise notice; the hub shares it with every
    // liaison desk and withholds it from the auditor.
    let published = site.publish_notice(publisher);
    let shared: Vec<&str> = published["shared_with"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for file in &receivers {
        assert!(shared.contains(&site.desk_id(file).as_str()), "{published}");
    }
    let auditor_id = site.desk_id(auditors[0]);
    assert!(
        !published.to_string().contains(&format!("\"{auditor_id}\"")),
        "an answer never names an auditor: {published}"
    );
    // Every other liaison desk receives it and verifies the French signature itself.
    for file in &receivers {
        site.receives_the_notice(file, publisher, &published);
    }
    site.auditor_finds_the_exchange(auditors[0], &published, &receivers);
    monitoring_counts_the_notice(admin, &site.desk_id(publisher));

    // SIGTERM: the node finishes, flushes and exits 0; the health check then fails.
    let exit = served.terminate();
    assert!(exit.success(), "{exit:?}\n{}", served.logs());
    if let Some(healthy) = run_healthcheck(admin, image_admin_port) {
        assert!(!healthy, "the HEALTHCHECK passes with no node running");
    }
    // The stopped node's log verifies offline (what an operator checks on a copy).
    let data = rewritten.node.data_dir.to_str().unwrap();
    let verify = ["audit", "verify", "--data-dir", data, "--self-signed-ok"];
    renkei_ok(site.dir, &verify);
}

/// The examples form one federation: every desk is a partner of the hub and names it;
/// there are two liaison desks (one publishes, one receives) and an auditor. Their
/// files: (liaisons, auditors).
fn desks_of_one_federation<'a>(
    examples: &'a Examples,
    node: &NodeConfig,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut liaisons, mut auditors) = (Vec::new(), Vec::new());
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
    (liaisons, auditors)
}

/// The examples installed under a temporary root: `etc/renkei` with a generated PKI.
struct Site<'a> {
    examples: &'a Examples,
    dir: &'a Path,
    etc: PathBuf,
    placeholders: BTreeMap<String, String>,
}

impl<'a> Site<'a> {
    /// Makes the PKI for every id the examples name, where they expect it.
    fn new(examples: &'a Examples, dir: &'a Path) -> Site<'a> {
        let etc = dir.join("etc/renkei");
        fs::create_dir_all(&etc).unwrap();
        let ids: Vec<String> = examples.ids().into_iter().collect();
        let certs = etc.join("certs");
        let init = ["certs", "init", "--dir", certs.to_str().unwrap(), "--nodes"];
        renkei_ok(dir, &[&init[..], &[&ids.join(",")]].concat());
        Site {
            placeholders: examples.placeholder_keys(),
            examples,
            dir,
            etc,
        }
    }

    fn generated(&self, id: &str) -> String {
        read(&self.etc.join(format!("certs/{id}/signing.pub")))
    }

    /// An example's text with paths into the temp dir and each placeholder key
    /// replaced by its partner's generated key.
    fn rewrite(&self, file: &str) -> String {
        let e = self.examples.0.iter().find(|e| e.name == file).unwrap();
        let root = self.dir.to_str().unwrap();
        let mut text = e
            .text
            .replace("\"/etc/renkei/", &format!("\"{root}/etc/renkei/"));
        for (id, placeholder) in &self.placeholders {
            text = text.replace(placeholder.as_str(), self.generated(id).trim());
        }
        text
    }

    /// The hub's file, rewritten and on 127.0.0.1 with ports the OS picks; nothing else
    /// changed (same partners, rules and revocations, apart from the keys).
    fn write_node(&self, file: &str, node: &NodeConfig) -> (PathBuf, NodeConfig) {
        let mut text = self.rewrite(file);
        let listen = format!("\"{}\"", node.node.listen);
        text = replace(&text, &listen, "\"127.0.0.1:0\"", 1, file);
        let admin = format!("\"{}\"", node.admin.listen.unwrap());
        text = replace(&text, &admin, "\"127.0.0.1:0\"", 1, file);
        let data = format!("\"{}\"", node.node.data_dir.display());
        let local_data = format!("\"{}/var/lib/renkei\"", self.dir.display());
        text = replace(&text, &data, &local_data, 1, file);
        let path = self.etc.join(file);
        fs::write(&path, text).unwrap();
        let rewritten = NodeConfig::load(&path).unwrap();
        let n = &rewritten.node;
        for p in [
            &n.data_dir,
            &n.ca_cert,
            &n.tls_cert,
            &n.tls_key,
            &n.signing_key,
        ] {
            assert!(
                p.starts_with(self.dir),
                "{} is outside the test",
                p.display()
            );
        }
        for p in rewritten.partners.iter().filter(|p| !p.keys.is_empty()) {
            let key = self.generated(p.id.as_str());
            assert_eq!(p.keys[0].public.to_string(), key.trim(), "{}'s key", p.id);
        }
        assert_eq!(rewritten.partners.len(), node.partners.len());
        assert_eq!(rewritten.revoked.len(), node.revoked.len());
        assert_eq!(rewritten.node.id, node.node.id);
        (path, rewritten)
    }

    /// Each desk's file, pointed at the hub's actual address.
    fn write_desks(&self, addr: SocketAddr) {
        for (file, c) in self.examples.clients() {
            let from = format!("\"{}\"", c.client.server);
            let text = replace(&self.rewrite(file), &from, &format!("\"{addr}\""), 1, file);
            fs::write(self.etc.join(file), text).unwrap();
        }
    }

    fn config(&self, file: &str) -> String {
        self.etc.join(file).to_str().unwrap().to_owned()
    }

    fn desk_id(&self, file: &str) -> String {
        let (_, c) = self.examples.clients().find(|(f, _)| *f == file).unwrap();
        c.client.id.to_string()
    }

    /// The desk of `publisher` publishes a GREEN exercise notice: the node's answer.
    fn publish_notice(&self, publisher: &str) -> Value {
        let config = self.config(publisher);
        let fields = ["--tlp", "green", "--kind", "exercise", "--title", NOTICE];
        let publish = ["publish", "--config", &config, "--json"];
        let out = renkei_ok(self.dir, &[&publish[..], &fields[..]].concat());
        let published: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(published["status"], "accepted", "{published}");
        published
    }

    /// The desk of `file` receives the notice and verifies its signature itself.
    fn receives_the_notice(&self, file: &str, publisher: &str, published: &Value) {
        let config = self.config(file);
        let subscribe = ["subscribe", "--config", &config, "--json"];
        let wait = ["--count", "1", "--idle-timeout", "20"];
        let out = renkei_ok(self.dir, &[&subscribe[..], &wait[..]].concat());
        let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(got["verified"], true, "{file}: {got}");
        assert_eq!(got["digest"], published["digest"], "{file}");
        assert_eq!(got["origin"], self.desk_id(publisher).as_str(), "{file}");
        assert_eq!(got["title"], NOTICE);
    }

    /// The auditor of `auditor` finds the decision in the audit log (shared with the
    /// receiving desks, withheld from itself) and the receivers' acknowledgements.
    fn auditor_finds_the_exchange(&self, auditor: &str, published: &Value, receivers: &[&str]) {
        let config = self.config(auditor);
        let query = |filter: &[&str]| -> String {
            let q = ["audit", "query", "--config", &config, "--format", "json"];
            renkei_ok(self.dir, &[&q[..], filter].concat()).stdout
        };
        let bulletin = published["bulletin_id"].as_str().unwrap();
        let records = query(&["--bulletin", bulletin]);
        let accepted: Value = records
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["event"] == "bulletin_accepted")
            .unwrap_or_else(|| panic!("no bulletin_accepted record:\n{records}"));
        let decision = |id: &str| {
            let decisions = accepted["decisions"].as_array().unwrap();
            let d = decisions.iter().find(|d| d["partner"] == id);
            d.unwrap_or_else(|| panic!("no decision for {id}: {accepted}"))
                .clone()
        };
        for file in receivers {
            assert_eq!(decision(&self.desk_id(file))["shared"], true);
            let acked = query(&["--partner", &self.desk_id(file), "--event", "acked"]);
            assert!(!acked.trim().is_empty(), "{file}: no ACKED record");
        }
        assert_eq!(decision(&self.desk_id(auditor))["reason"], "auditor");
    }
}

/// Monitoring counts the publisher's exercise notice on the admin listener at `admin`.
fn monitoring_counts_the_notice(admin: SocketAddr, publisher: &str) {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let received = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "renkei_bulletins_received_total"
                && s.labels.get("partner") == Some(publisher)
                && s.labels.get("kind") == Some("exercise")
        })
        .unwrap_or_else(|| panic!("no received count for the publisher:\n{body}"));
    assert!(matches!(
        received.value,
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v == 1.0
    ));
}
