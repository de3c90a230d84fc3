//! The systemd unit and the Containerfile.

use super::*;

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let path = deploy_dir().join("systemd/renkei.service");
    let unit = read(&path);
    let examples = Examples::load();
    let (_, node) = examples.node();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    let value = |key: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };

    // The hardening an operator asks for, as written (checked with or without systemd).
    for (key, want) in [
        ("User", "renkei"),
        (
            "ExecStart",
            "/usr/local/bin/renkei serve --config /etc/renkei/node.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("ReadWritePaths", node.node.data_dir.to_str().unwrap()),
    ] {
        assert!(
            value(key).contains(&want),
            "{key}={want} missing; it has {key}={:?}",
            value(key)
        );
    }
    assert_eq!(value("ReadWritePaths").len(), 1, "the data dir only");
    assert!(!value("LimitNOFILE").is_empty(), "LimitNOFILE");
    let stop = value("TimeoutStopSec");
    let secs: u64 = stop
        .first()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("TimeoutStopSec in seconds: {stop:?}"));
    assert!(
        secs > NODE_GRACE_SECS + 2,
        "TimeoutStopSec={secs}s leaves no room after the node's {NODE_GRACE_SECS} s grace"
    );

    analyze(&unit, "renkei.service");
}

/// `systemd-analyze verify` and its exposure score, on a copy of `unit` whose
/// ExecStart runs this build's renkei (when systemd-analyze is installed).
fn analyze(unit: &str, name: &str) {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        common::skipped(
            "deploy: systemd-analyze verify",
            "systemd-analyze is not installed (the unit was only checked as text)",
        );
        return;
    };
    assert!(version.status.success());
    // systemd-analyze refuses an ExecStart binary that does not exist: verify a copy
    // whose ExecStart runs this build's renkei; everything else is the shipped unit.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join(name);
    fs::write(
        &copy,
        replace(
            unit,
            "ExecStart=/usr/local/bin/renkei ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_renkei")),
            1,
            name,
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
    // Unknown keys and unparsable values are only warnings (exit 0): refuse them too.
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{stderr}");

    // The hardening adds up: systemd's own exposure score stays at or below 2.0 of 10
    // (1.2 as shipped). `--offline` and `--threshold` (0 to 100) came in systemd 250.
    let release: u32 = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if release < 250 {
        common::skipped(
            "deploy: systemd exposure score",
            &format!("systemd {release} has no offline security check"),
        );
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&copy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"));
    assert!(
        out.status.success(),
        "exposure above 2.0: {score:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_inbox_unit_runs_a_desks_subscribe_follow_into_its_state_directory() {
    let unit = read(&deploy_dir().join("systemd/renkei-inbox@.service"));
    let exec = "ExecStart=/usr/local/bin/renkei subscribe --follow --config /etc/renkei/inbox/%i.toml --out /var/lib/renkei-inbox/%i";
    assert!(unit.lines().any(|l| l == exec), "{exec}");
    assert!(unit
        .lines()
        .any(|l| l == "ReadWritePaths=/var/lib/renkei-inbox/%i"));
    assert!(unit
        .lines()
        .any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"));
    // The options it uses are the CLI's.
    let help = common::renkei(Path::new("."), &["subscribe", "--help"]).stdout;
    for flag in ["--follow", "--out", "--config", "--exec"] {
        assert!(help.contains(flag), "subscribe has no {flag}");
    }
    // An instance name makes it a unit systemd can verify.
    analyze(&unit, "renkei-inbox@au-dod.service");
}

/// Every YAML document in a file, merge keys (`<<: *anchor`) applied, as JSON values.

#[test]
fn the_containerfile_builds_locked_and_runs_non_root_with_the_examples_ports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = read(&deploy_dir().join("Containerfile")).replace("\\\n", " ");
    let examples = Examples::load();
    let (_, node) = examples.node();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let all = |op: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|l| l.strip_prefix(op)?.strip_prefix(' '))
            .collect()
    };
    assert!(all("FROM").len() >= 2, "multi-stage");
    assert!(all("RUN")
        .iter()
        .any(|r| r.contains("cargo build --release --locked")));
    // What the build copies exists, and the ignore file lets it through.
    let ignore = read(&deploy_dir().join("Containerfile.dockerignore"));
    for copy in all("COPY").iter().filter(|c| !c.starts_with("--from")) {
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root.join(source).exists(), "COPY {source}");
            let kept = format!("!{}", source.trim_end_matches('/'));
            assert!(
                ignore.lines().any(|l| l.trim_end_matches('/') == kept),
                "{source} is not let through Containerfile.dockerignore"
            );
        }
    }
    let user = *all("USER").last().expect("USER");
    assert!(!["root", "0", "0:0"].contains(&user), "USER {user}");
    let volume: Vec<String> = serde_json::from_str(all("VOLUME")[0]).unwrap();
    assert_eq!(volume, [node.node.data_dir.to_str().unwrap()]);
    let exposed: Vec<&str> = all("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    assert!(exposed.contains(&format!("{}/udp", node.node.listen.port()).as_str()));
    let admin = node.admin.listen.unwrap().port();
    assert!(exposed.contains(&format!("{admin}/tcp").as_str()));
    let entrypoint: Vec<String> = serde_json::from_str(all("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/renkei", "serve"]);
    let health = containerfile_healthcheck().join(" ");
    assert!(health.contains(&format!("127.0.0.1/{admin} ")), "{health}");
    assert!(health.contains("GET /healthz "), "{health}");
}
