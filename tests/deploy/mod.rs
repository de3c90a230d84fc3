//! What an operator ships from `deploy/`, used as an operator would use it.
//!
//! Every example configuration in `deploy/examples/` boots on 127.0.0.1 with
//! certificates generated for the ids it names: the hub serves, one example liaison
//! desk publishes, the other receives and verifies, the example auditor reads the
//! decision from the audit log, the container image's health check passes against the
//! running node, SIGTERM stops it with exit status 0, and its audit log verifies
//! offline. The systemd unit has the hardening asked for and passes `systemd-analyze
//! verify` and `security` (when installed). The Containerfile builds locked, runs
//! non-root and exposes the examples' ports. `compose.yaml` and the Kubernetes
//! manifests parse as YAML and refer only to files, ids and ports that exist in the
//! examples, and the compose setup script renders the examples with the generated
//! keys.

use crate::common;

mod boot;
mod manifests;
mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::renkei_ok;
use renkei::config::{ClientConfig, NodeConfig};
use renkei::identity::Role;
use serde_json::Value;

/// How long any single wait may take before it counts as a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// The `renkei serve` grace period for in-flight work after SIGTERM (src/cli/serve.rs).
const NODE_GRACE_SECS: u64 = 10;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One example configuration file.
struct Example {
    name: String,
    text: String,
    config: ExampleConfig,
}

enum ExampleConfig {
    Node(Box<NodeConfig>),
    Client(Box<ClientConfig>),
}

/// Every `*.toml` in `deploy/examples/`, each loaded as a node or a client config.
struct Examples(Vec<Example>);

impl Examples {
    fn load() -> Examples {
        let dir = deploy_dir().join("examples");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        let examples = names
            .into_iter()
            .map(|name| {
                let path = dir.join(&name);
                let text = read(&path);
                let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
                let config = if table.contains_key("node") {
                    ExampleConfig::Node(Box::new(
                        NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}")),
                    ))
                } else if table.contains_key("client") {
                    ExampleConfig::Client(Box::new(
                        ClientConfig::load(&path).unwrap_or_else(|e| panic!("{e}")),
                    ))
                } else {
                    panic!("{name} is neither a node ([node]) nor a client ([client]) config")
                };
                Example { name, text, config }
            })
            .collect();
        Examples(examples)
    }

    /// The one node config (the hub) and its file name.
    fn node(&self) -> (&str, &NodeConfig) {
        let nodes: Vec<_> = self
            .0
            .iter()
            .filter_map(|e| match &e.config {
                ExampleConfig::Node(n) => Some((e.name.as_str(), &**n)),
                ExampleConfig::Client(_) => None,
            })
            .collect();
        assert_eq!(nodes.len(), 1, "exactly one example node config");
        nodes[0]
    }

    fn clients(&self) -> impl Iterator<Item = (&str, &ClientConfig)> {
        self.0.iter().filter_map(|e| match &e.config {
            ExampleConfig::Client(c) => Some((e.name.as_str(), &**c)),
            ExampleConfig::Node(_) => None,
        })
    }

    /// The hub's role for each client file's id.
    fn role_of(&self, client: &ClientConfig) -> Role {
        let (name, node) = self.node();
        node.partner(&client.client.id)
            .unwrap_or_else(|| panic!("{} is not a [[partner]] in {name}", client.client.id))
            .role
    }

    /// Every partner id the examples name.
    fn ids(&self) -> BTreeSet<String> {
        let (_, node) = self.node();
        let mut ids: BTreeSet<String> = node.partners.iter().map(|p| p.id.to_string()).collect();
        ids.insert(node.node.id.to_string());
        for (_, c) in self.clients() {
            ids.insert(c.client.id.to_string());
            ids.extend(c.partners.iter().map(|p| p.id.to_string()));
        }
        ids
    }

    /// The placeholder public key each partner is known by in the examples (the first
    /// key the hub lists for it), checked to mean the same partner in every file.
    fn placeholder_keys(&self) -> BTreeMap<String, String> {
        let (name, node) = self.node();
        let mut owner = BTreeMap::new();
        let mut first = BTreeMap::new();
        for p in &node.partners {
            for (i, k) in p.keys.iter().enumerate() {
                owner.insert(k.public.to_string(), p.id.to_string());
                if i == 0 {
                    first.insert(p.id.to_string(), k.public.to_string());
                }
            }
        }
        for (file, c) in self.clients() {
            for p in &c.partners {
                for k in &p.keys {
                    assert_eq!(
                        owner.get(&k.public.to_string()),
                        Some(&p.id.to_string()),
                        "{file}: {} is listed for {}, but {name} gives it to another partner or none",
                        k.public,
                        p.id
                    );
                }
            }
        }
        first
    }
}

/// `text` with every `from` replaced by `to`; panics unless `from` occurs `times` times.
fn replace(text: &str, from: &str, to: &str, times: usize, file: &str) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, times,
        "{file}: {from:?} occurs {found} times, not {times}"
    );
    text.replace(from, to)
}

/// A `renkei serve` child whose stdout and stderr lines arrive on channels (read by
/// threads, so the node never blocks on a full pipe). Killed if the test fails first.
struct Served {
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    seen_stderr: Vec<String>,
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Served {
    fn start(dir: &Path, config: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_renkei"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Served {
            child: Some(child),
            stdout,
            stderr,
            seen_stderr: Vec::new(),
        }
    }

    fn logs(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen_stderr.push(line);
        }
        self.seen_stderr.join("\n")
    }

    /// The QUIC address from "renkei node listening on ADDR".
    fn quic_addr(&mut self) -> SocketAddr {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("renkei node listening on ")
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
                addr.parse().unwrap()
            }
            Err(e) => panic!("the node did not start ({e}):\n{}", self.logs()),
        }
    }

    /// The admin listener's address, from the node's JSON log line announcing it.
    fn admin_addr(&mut self) -> SocketAddr {
        loop {
            let line = match self.stderr.recv_timeout(PATIENCE) {
                Ok(line) => line,
                Err(e) => panic!(
                    "no admin listener in the log ({e}):\n{}",
                    self.seen_stderr.join("\n")
                ),
            };
            self.seen_stderr.push(line.clone());
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let fields = &v["fields"];
            if fields["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin listener"))
            {
                return fields["bound"].as_str().unwrap().parse().unwrap();
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait()));
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        rx.recv_timeout(PATIENCE)
            .expect("the node stops on SIGTERM")
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 GET; the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// The exec-form command of the Containerfile's HEALTHCHECK.
fn containerfile_healthcheck() -> Vec<String> {
    let text = read(&deploy_dir().join("Containerfile")).replace("\\\n", " ");
    let line = text
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("the Containerfile has a HEALTHCHECK");
    let json = &line[line.find("CMD [").expect("HEALTHCHECK ... CMD [...]") + 4..];
    serde_json::from_str(json).expect("the HEALTHCHECK command is a JSON array")
}

/// Runs the image's health check against `admin` (its port put in place of the
/// image's); `None` when its interpreter is not installed here.
fn run_healthcheck(admin: SocketAddr, image_port: u16) -> Option<bool> {
    let image = containerfile_healthcheck();
    let argv: Vec<String> = image
        .iter()
        .map(|a| a.replace(&format!("/{image_port} "), &format!("/{} ", admin.port())))
        .collect();
    assert_ne!(
        argv, image,
        "the HEALTHCHECK does not name port {image_port}"
    );
    if !Path::new(&argv[0]).exists() {
        return None;
    }
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    Some(status.success())
}
