//! compose.yaml and the Kubernetes manifests: they parse, and refer only to what exists.

use super::*;

fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// `--config PATH` in a command line.
fn config_arg<'a>(args: &[&'a str]) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == "--config").map(|w| w[1])
}

fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
    let (net, bits) = subnet.split_once('/').unwrap();
    let (net, bits): (Ipv4Addr, u32) = (net.parse().unwrap(), bits.parse().unwrap());
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Compose's services, by name.
type Services = serde_json::Map<String, Value>;

/// Where each (service, target) mounts from: a path under deploy/ or a named volume.
type Mounts<'a> = BTreeMap<(&'a str, &'a str), &'a str>;

#[test]
fn compose_parses_and_refers_only_to_files_and_ports_that_exist() {
    let deploy = deploy_dir();
    let docs = yaml_documents(&deploy.join("compose.yaml"));
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    let examples = Examples::load();
    let (node_file, _) = examples.node();
    let services = compose["services"].as_object().expect("services");
    let volumes = compose["volumes"].as_object().cloned().unwrap_or_default();

    let mounts = every_build_and_mount_exists(&deploy, services, &volumes);
    the_services_read_configs_the_setup_renders(&deploy, services, &mounts, node_file);
    the_hub_listens_where_the_desks_look_and_checks_health(compose, &examples);
}

/// What every service builds from and mounts exists under deploy/ or is a declared
/// volume; returns where each service mounts what.
fn every_build_and_mount_exists<'a>(
    deploy: &Path,
    services: &'a Services,
    volumes: &Services,
) -> Mounts<'a> {
    // What every service builds from and mounts exists.
    let mut mounts: Mounts = BTreeMap::new();
    for (name, s) in services {
        if let Some(build) = s.get("build") {
            let context = deploy.join(build["context"].as_str().unwrap());
            assert!(context.join("Cargo.toml").exists(), "{name}: build context");
            let file = context.join(build["dockerfile"].as_str().unwrap());
            assert!(file.exists(), "{name}: {}", file.display());
        }
        for m in strings(&s["volumes"]) {
            let mut parts = m.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    source.starts_with("./") && deploy.join(source).exists(),
                    "{name}: mounts {source}, which is not a path under deploy/"
                );
            } else {
                assert!(volumes.contains_key(source), "{name}: volume {source}");
            }
            mounts.insert((name.as_str(), target), source);
        }
    }
    mounts
}

/// The setup service renders the examples into a volume, and every other service reads
/// its `--config` (the hub's is `node_file`) from that volume, on the hub's network.
fn the_services_read_configs_the_setup_renders(
    deploy: &Path,
    services: &Services,
    mounts: &Mounts,
    node_file: &str,
) {
    let mounted_at = |service: &str, target: &str| mounts.get(&(service, target)).copied();

    // The one-shot setup: the examples mounted where its script reads them, the
    // certificates and rendered configs in the volume every other service mounts.
    let setup = &services["setup"];
    let script = strings(&setup["entrypoint"])[1];
    assert_eq!(mounted_at("setup", script), Some("./compose/setup.sh"));
    let env = |k: &str| setup["environment"][k].as_str().unwrap();
    assert_eq!(mounted_at("setup", env("EXAMPLES")), Some("./examples"));
    let etc_volume = mounted_at("setup", env("ETC")).expect("setup writes a volume");

    // Each long-running service reads a config the setup renders from an example,
    // through that volume.
    for (name, s) in services.iter().filter(|(n, _)| *n != "setup") {
        let args = strings(&s["command"]);
        let config = config_arg(&args).unwrap_or_else(|| panic!("{name}: no --config"));
        let (dir, file) = config.rsplit_once('/').unwrap();
        assert_eq!(dir, env("ETC"), "{name}: {config}");
        assert!(
            deploy.join("examples").join(file).exists(),
            "{name}: {file} is not an example"
        );
        assert_eq!(
            mounted_at(name, dir),
            Some(etc_volume),
            "{name} mounts the rendered configs"
        );
        assert!(
            s["depends_on"].as_object().is_some(),
            "{name} waits for what it needs"
        );
        let networks = &s["networks"];
        assert!(
            networks.get("federation").is_some() || strings(networks).contains(&"federation"),
            "{name} is on the hub's network"
        );
    }
    assert_eq!(
        config_arg(&strings(&services["hub"]["command"])),
        Some(format!("{}/{node_file}", env("ETC")).as_str())
    );
    assert!(strings(&services["publisher"]["command"]).contains(&"publish"));
    assert!(strings(&services["subscriber"]["command"]).contains(&"subscribe"));
}

/// The hub in `compose` publishes the example node's QUIC port over UDP, sits at the
/// address the example desks use, and is checked healthy on the example's admin port.
fn the_hub_listens_where_the_desks_look_and_checks_health(compose: &Value, examples: &Examples) {
    let (_, node) = examples.node();
    // The hub: the example's QUIC port over UDP, at the address the example desks use,
    // healthy by the image's own check on the example's admin port.
    let hub = &compose["services"]["hub"];
    let udp: Vec<&str> = strings(&hub["ports"])
        .into_iter()
        .filter(|p| p.ends_with("/udp"))
        .collect();
    assert_eq!(udp.len(), 1, "{udp:?}");
    let container_port = udp[0].trim_end_matches("/udp").rsplit(':').next().unwrap();
    assert_eq!(container_port, node.node.listen.port().to_string());
    let hub_ip: Ipv4Addr = hub["networks"]["federation"]["ipv4_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let subnet = compose["networks"]["federation"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap();
    assert!(in_subnet(hub_ip, subnet), "{hub_ip} in {subnet}");
    for (file, c) in examples.clients() {
        assert_eq!(
            c.client.server,
            SocketAddr::from((hub_ip, node.node.listen.port())),
            "{file}: the hub's address in compose"
        );
    }
    let check: Vec<String> = strings(&hub["healthcheck"]["test"])
        .iter()
        .map(|a| a.replace("$$", "$"))
        .collect();
    assert_eq!(check[0], "CMD");
    assert_eq!(check[1..], containerfile_healthcheck()[..]);
    let admin_port = node.admin.listen.unwrap().port();
    assert!(check[3].contains(&format!("127.0.0.1/{admin_port} ")));
    assert!(check[3].contains("GET /healthz "));
}

#[test]
fn the_compose_setup_renders_the_examples_with_generated_keys() {
    let deploy = deploy_dir();
    let examples = Examples::load();
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    fs::create_dir_all(&etc).unwrap();
    let run = || {
        let out = Command::new("sh")
            .arg(deploy.join("compose/setup.sh"))
            .env("RENKEI", env!("CARGO_BIN_EXE_renkei"))
            .env("EXAMPLES", deploy.join("examples"))
            .env("ETC", &etc)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "compose/setup.sh:\n{stderr}");
    };
    run();
    let ca = read(&etc.join("certs/ca.crt"));
    // A certificate and key for every id the examples name.
    for id in examples.ids() {
        assert!(etc.join("certs").join(&id).join("tls.crt").exists(), "{id}");
    }
    let generated = |id: &str| read(&etc.join(format!("certs/{id}/signing.pub")));
    for e in &examples.0 {
        let path = etc.join(&e.name);
        match &e.config {
            ExampleConfig::Node(_) => {
                let cfg = NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                for p in cfg.partners.iter().filter(|p| !p.keys.is_empty()) {
                    assert_eq!(
                        p.keys[0].public.to_string(),
                        generated(p.id.as_str()).trim(),
                        "{}: {}",
                        e.name,
                        p.id
                    );
                }
            }
            ExampleConfig::Client(_) => {
                let cfg = ClientConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                for p in &cfg.partners {
                    assert_eq!(
                        p.keys[0].public.to_string(),
                        generated(p.id.as_str()).trim(),
                        "{}: {}",
                        e.name,
                        p.id
                    );
                }
            }
        }
    }
    // A second `docker compose up` keeps the PKI.
    run();
    assert_eq!(read(&etc.join("certs/ca.crt")), ca);
}

/// The Kubernetes objects in `deploy/k8s/`, by kind and name.
struct Manifests(BTreeMap<(String, String), Value>);

impl Manifests {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.0
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .filter(move |((k, _), _)| k == kind)
            .map(|(_, v)| v)
    }
}

#[test]
fn kubernetes_manifests_parse_and_refer_only_to_what_exists() {
    let k8s = deploy_dir().join("k8s");
    let examples = Examples::load();
    let (_, example) = examples.node();
    let (m, files, kustomization) = load_k8s(&k8s);
    kustomize_builds_every_object(&k8s, &m);
    // kustomization.yaml lists every manifest, and only files that exist.
    let listed = strings(&kustomization["resources"])
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>();
    let manifests: BTreeSet<String> = files
        .iter()
        .filter(|f| *f != "kustomization.yaml")
        .cloned()
        .collect();
    assert_eq!(listed, manifests);

    // The StatefulSet runs one node, non-root on a read-only root filesystem.
    let sts = m.get("StatefulSet", "renkei");
    assert_eq!(sts["spec"]["replicas"], 1);
    let pod = Pod::of(sts);
    assert_eq!(pod.spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod.spec["securityContext"]["runAsUser"], 0);
    let c = pod.container;
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(
        pod.spec["terminationGracePeriodSeconds"].as_u64().unwrap() > NODE_GRACE_SECS + 2,
        "room for the node's grace period and flush"
    );
    let cfg = the_config_is_the_examples(&m, &pod, example);
    // The data dir is the volume claim.
    let data_mount = pod.mount(cfg.node.data_dir.to_str().unwrap());
    let claims = sts["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert!(claims
        .iter()
        .any(|t| t["metadata"]["name"] == data_mount["name"]));
    the_secret_provides_every_key_file_and_no_key(&m, &pod, &cfg);
    the_ports_reach_the_node(&m, &pod, sts, example, &cfg);
}

/// The manifests in `k8s` by (kind, name), the files, and the kustomization.
fn load_k8s(k8s: &Path) -> (Manifests, Vec<String>, Value) {
    let mut files: Vec<String> = fs::read_dir(k8s)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut objects = BTreeMap::new();
    let mut kustomization = None;
    for f in &files {
        for doc in yaml_documents(&k8s.join(f)) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{f}: kind"));
            assert!(doc["apiVersion"].is_string(), "{f}: apiVersion");
            if kind == "Kustomization" {
                kustomization = Some(doc);
                continue;
            }
            let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
            assert!(objects.insert((kind.to_owned(), name), doc).is_none());
        }
    }
    let kustomization = kustomization.expect("kustomization.yaml");
    (Manifests(objects), files, kustomization)
}

/// kustomize (inside kubectl, no cluster needed) builds them, when installed.
fn kustomize_builds_every_object(k8s: &Path, m: &Manifests) {
    match Command::new("kubectl")
        .args(["kustomize"])
        .arg(k8s)
        .output()
    {
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "kubectl kustomize:\n{why}");
            let built = String::from_utf8_lossy(&out.stdout);
            let kinds = built.lines().filter(|l| l.starts_with("kind: ")).count();
            assert_eq!(kinds, m.0.len(), "kustomize builds every object");
        }
        Err(_) => common::skipped("deploy: kubectl kustomize", "kubectl is not installed"),
    }
}

/// The StatefulSet's pod and its one container.
struct Pod<'a> {
    spec: &'a Value,
    container: &'a Value,
    labels: &'a serde_json::Map<String, Value>,
}

impl<'a> Pod<'a> {
    fn of(sts: &'a Value) -> Pod<'a> {
        let spec = &sts["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let labels = sts["spec"]["template"]["metadata"]["labels"].as_object();
        Pod {
            spec,
            container: &containers[0],
            labels: labels.unwrap(),
        }
    }

    /// What is mounted at `path`.
    fn mount(&self, path: &str) -> &'a Value {
        let mounts = self.container["volumeMounts"].as_array().unwrap();
        let found = mounts.iter().find(|v| v["mountPath"] == path);
        found.unwrap_or_else(|| panic!("nothing mounted at {path}"))
    }

    /// The volume `name`.
    fn volume(&self, name: &str) -> &'a Value {
        let volumes = self.spec["volumes"].as_array().unwrap();
        let found = volumes.iter().find(|v| v["name"] == name);
        found.unwrap_or_else(|| panic!("no volume {name}"))
    }

    /// The container port named or numbered so: (number, protocol).
    fn port(&self, name_or_number: &Value) -> (u64, String) {
        let ports = self.container["ports"].as_array().unwrap();
        let p = ports
            .iter()
            .find(|p| p["name"] == *name_or_number || p["containerPort"] == *name_or_number)
            .unwrap_or_else(|| panic!("no container port {name_or_number}"));
        let protocol = p["protocol"].as_str().unwrap_or("TCP").to_owned();
        (p["containerPort"].as_u64().unwrap(), protocol)
    }
}

/// The node's config is the ConfigMap's node.toml: the example's node and policy, with
/// the admin listener where the kubelet can reach it.
fn the_config_is_the_examples(m: &Manifests, pod: &Pod<'_>, example: &NodeConfig) -> NodeConfig {
    let args = strings(&pod.container["args"]);
    let config_mount = pod.mount(config_arg(&args).expect("--config"));
    let config_volume = pod.volume(config_mount["name"].as_str().unwrap());
    let cm = m.get(
        "ConfigMap",
        config_volume["configMap"]["name"].as_str().unwrap(),
    );
    let key = config_mount["subPath"].as_str().expect("subPath");
    let text = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap has no {key}"));
    let cfg = NodeConfig::parse(text, Path::new("configmap.yaml: node.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.node.id, example.node.id);
    assert_eq!(cfg.node.listen, example.node.listen);
    assert_eq!(cfg.node.data_dir, example.node.data_dir);
    assert_eq!(
        cfg.policy_digest(),
        example.policy_digest(),
        "the ConfigMap's partners, keys and revocations are the example's"
    );
    let admin = cfg.admin.listen.expect("[admin] listen");
    assert_eq!(admin.port(), example.admin.listen.unwrap().port());
    assert!(
        admin.ip().is_unspecified(),
        "probes come from the kubelet, not from loopback"
    );
    cfg
}

/// Every key and certificate path of `cfg` is a file the mounted Secret provides; the
/// Secret holds placeholders, never a key.
fn the_secret_provides_every_key_file_and_no_key(m: &Manifests, pod: &Pod<'_>, cfg: &NodeConfig) {
    let n = &cfg.node;
    for file in [&n.ca_cert, &n.tls_cert, &n.tls_key, &n.signing_key] {
        let file = file.to_str().unwrap();
        let mounts = pod.container["volumeMounts"].as_array().unwrap();
        let provided = mounts.iter().any(|vm| {
            let Some(rest) = file.strip_prefix(vm["mountPath"].as_str().unwrap()) else {
                return false;
            };
            let v = pod.volume(vm["name"].as_str().unwrap());
            let Some(secret) = v["secret"]["secretName"].as_str() else {
                return false;
            };
            let s = m.get("Secret", secret);
            v["secret"]["items"].as_array().unwrap().iter().any(|item| {
                let key = item["key"].as_str().unwrap();
                format!("/{}", item["path"].as_str().unwrap()) == rest
                    && s["stringData"]
                        .get(key)
                        .or_else(|| s["data"].get(key))
                        .is_some()
            })
        });
        assert!(provided, "{file} is not a file of the mounted Secret");
    }
    for s in m.of_kind("Secret") {
        for (k, v) in s["stringData"].as_object().unwrap() {
            let v = v.as_str().unwrap();
            assert!(v.starts_with("PLACEHOLDER"), "{k}: {v}");
            assert!(!v.contains("-----BEGIN"), "{k} holds a real PEM block");
        }
        assert!(
            s.get("data").is_none(),
            "Secret data must stay placeholders"
        );
    }
}

/// Ports: the example's UDP port for QUIC, its admin port for the probes, each behind
/// a Service that selects the pod and let in by the NetworkPolicy, and nothing else.
fn the_ports_reach_the_node(
    m: &Manifests,
    pod: &Pod<'_>,
    sts: &Value,
    example: &NodeConfig,
    cfg: &NodeConfig,
) {
    let quic = u64::from(example.node.listen.port());
    let admin_port = u64::from(cfg.admin.listen.expect("[admin] listen").port());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &pod.container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(pod.port(&get["port"]), (admin_port, "TCP".into()));
    }
    let mut service_ports = BTreeSet::new();
    for svc in m.of_kind("Service") {
        let selector = svc["spec"]["selector"].as_object().unwrap();
        assert!(selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)));
        for p in svc["spec"]["ports"].as_array().unwrap() {
            let (port, protocol) = pod.port(&p["targetPort"]);
            assert_eq!(p["protocol"].as_str().unwrap_or("TCP"), protocol);
            service_ports.insert((port, protocol));
        }
    }
    assert!(
        service_ports.contains(&(quic, "UDP".into())),
        "a UDP Service for QUIC"
    );
    assert!(service_ports.contains(&(admin_port, "TCP".into())));
    let governing = sts["spec"]["serviceName"].as_str().unwrap();
    m.get("Service", governing);
    for np in m.of_kind("NetworkPolicy") {
        let ports: BTreeSet<(u64, String)> = np["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap())
            .map(|p| {
                let protocol = p["protocol"].as_str().unwrap().to_owned();
                (p["port"].as_u64().unwrap(), protocol)
            })
            .collect();
        assert_eq!(
            ports,
            BTreeSet::from([(quic, "UDP".into()), (admin_port, "TCP".into())])
        );
    }
}
