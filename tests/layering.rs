//! The pure core stays pure: no module of it reaches for the network, the async
//! runtime or the database, directly or through the shell's modules. (ARCHITECTURE.md: the
//! decisions are synchronous functions with no sockets, no tokio and no clock reads
//! inside; the shell only moves frames and bytes.)

use std::fs;
use std::path::{Path, PathBuf};

/// The core: what decides. Everything else (node, transport, store, client, cli) is
/// the shell around it.
const CORE: &[&str] = &[
    "audit",
    "bulletin",
    "config",
    "identity",
    "inbox",
    "metrics",
    "policy",
    "files",
    "pki",
    "text",
    "timestamp",
    "wire",
];

/// What the core must not name outside comments.
const SHELL: &[&str] = &[
    "tokio",
    "quinn",
    "sled",
    "crate::transport",
    "crate::store",
    "crate::node",
    "crate::client",
    "crate::cli",
];

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join(format!("{module}.rs"))];
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

#[test]
fn no_core_module_imports_the_runtime_the_network_or_the_database() {
    let mut found = Vec::new();
    for module in CORE {
        let files = sources(module);
        assert!(!files.is_empty(), "no sources for core module {module}");
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for name in SHELL {
                    if code.contains(name) {
                        found.push(format!(
                            "{}:{}: {name}: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core reaches into the shell:\n{}",
        found.join("\n")
    );
}
