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
    "stix",
    "bulletin",
    "config",
    "identity",
    "inbox",
    "metrics",
    "misp",
    "policy",
    "receipt",
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
    "fjall",
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

/// The module path of a source file: `src/node/taxii/routes.rs` is `node::taxii::routes`
/// (a `mod.rs` is its folder's module, `lib.rs` the crate).
fn module_of(file: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = file.strip_prefix(&src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text with comments blanked, line breaks kept (string literals are left as
/// they are: a path inside one is named too, which errs on the safe side).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `a, b::{c, d}, e` at its top-level commas.
fn top_level(items: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, ch) in items.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&items[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&items[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every path a `use` tree names: `crate::{node, store::Store}` is `crate::node` and
/// `crate::store::Store`.
fn expand(prefix: &str, tree: &str) -> Vec<String> {
    let join = |p: &str, s: &str| match (p.is_empty(), s) {
        (true, _) => s.to_owned(),
        (false, "self") => p.to_owned(),
        (false, _) => format!("{p}::{s}"),
    };
    let tree = tree.trim();
    match tree.find('{') {
        Some(open) => {
            // "use" in a string's text, not a use tree: it names nothing.
            let Some(close) = tree.rfind('}').filter(|&c| c > open) else {
                return Vec::new();
            };
            let head = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..close];
            let prefix = join(prefix, head);
            let prefix = prefix.trim_end_matches("::");
            top_level(inner)
                .into_iter()
                .flat_map(|t| expand(prefix, t))
                .collect()
        }
        None => vec![join(prefix, tree.split(" as ").next().unwrap_or(tree))],
    }
}

/// Every path `file` names, made absolute (`crate::…`) where it is relative: its `use`
/// trees expanded, and the `crate::`, `super::` and `self::` paths in its code.
fn paths_named(file: &Path) -> Vec<String> {
    let code = code_only(&fs::read_to_string(file).unwrap());
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            let tree: String = tail[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            found.extend(expand("", &tree));
        }
        rest = &tail[end.min(tail.len())..];
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            if i > 0
                && (bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b':')
            {
                continue;
            }
            let len = code[i..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - i);
            found.push(code[i..i + len].trim_end_matches(':').to_owned());
        }
    }
    let module = module_of(file);
    found.into_iter().map(|p| absolute(&module, &p)).collect()
}

/// `path` as named from `module`, from the crate root.
fn absolute(module: &[String], path: &str) -> String {
    let mut parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = module.to_vec();
    match parts.first().copied() {
        Some("crate") => {
            parts.remove(0);
            base.clear();
        }
        Some("super" | "self") => {
            while let Some(first) = parts.first().copied() {
                match first {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                parts.remove(0);
            }
        }
        // An outside crate, or an item in scope.
        _ => return path.to_owned(),
    }
    let joined: Vec<String> = base
        .into_iter()
        .chain(parts.into_iter().map(String::from))
        .collect();
    format!("crate::{}", joined.join("::"))
}

#[test]
fn use_trees_are_expanded_and_relative_paths_resolved() {
    assert_eq!(
        expand("", "crate::{node, store::{Store, self}, cli::run as go}"),
        [
            "crate::node",
            "crate::store::Store",
            "crate::store",
            "crate::cli::run"
        ]
    );
    let module = ["policy".to_owned(), "tests".to_owned()];
    assert_eq!(
        absolute(&module, "super::super::node::Shared"),
        "crate::node::Shared"
    );
    assert_eq!(absolute(&module, "tokio::sync"), "tokio::sync");
}

/// The core may not name the shell by a grouped or relative path either.
#[test]
fn no_core_module_names_the_shell_through_a_use_tree_or_a_relative_path() {
    let mut found = Vec::new();
    for module in CORE {
        for file in sources(module) {
            for path in paths_named(&file) {
                if SHELL
                    .iter()
                    .any(|s| path == *s || path.starts_with(&format!("{s}::")))
                {
                    found.push(format!("{}: {path}", file.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core names the shell:\n{}",
        found.join("\n")
    );
}

/// The storage layer sits under the shell: it names neither the runtime nor the
/// modules that serve it.
#[test]
fn the_store_names_neither_the_runtime_nor_the_shell_above_it() {
    const ABOVE: &[&str] = &[
        "tokio",
        "quinn",
        "crate::transport",
        "crate::node",
        "crate::client",
        "crate::cli",
    ];
    let mut found = Vec::new();
    for file in sources("store") {
        let code = code_only(&fs::read_to_string(&file).unwrap());
        // Inline paths to the runtime, which `paths_named` leaves to the use trees.
        let inline = ["tokio::", "quinn::"]
            .into_iter()
            .filter(|n| code.contains(n));
        let named = paths_named(&file).into_iter().filter(|path| {
            ABOVE
                .iter()
                .any(|s| path == s || path.starts_with(&format!("{s}::")))
        });
        for path in inline.map(String::from).chain(named) {
            found.push(format!("{}: {path}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "the store names what is above it:\n{}",
        found.join("\n")
    );
}

/// What the modules of `files` re-export (`pub use`, `pub(crate) use`): the name it
/// is known by (`node::Shared`) → where it is defined (`node::shared::Shared`).
fn reexports(files: &[PathBuf]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in files {
        let module = module_of(file);
        let code = code_only(&fs::read_to_string(file).unwrap());
        for statement in code.split(';') {
            let s = statement.trim_start();
            let Some(tree) = s.strip_prefix("pub ").or_else(|| {
                s.strip_prefix("pub(crate) ")
                    .or_else(|| s.strip_prefix("pub(super) "))
            }) else {
                continue;
            };
            let Some(tree) = tree.trim_start().strip_prefix("use ") else {
                continue;
            };
            let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
            // A path relative to the module itself, as `use` in a module is.
            let relative = match tree.starts_with("crate::")
                || tree.starts_with("super::")
                || tree.starts_with("self::")
            {
                true => tree,
                false => format!("self::{tree}"),
            };
            for path in expand("", &relative) {
                let name = path.rsplit("::").next().unwrap_or_default();
                let to = absolute(&module, &path);
                let known = module
                    .iter()
                    .cloned()
                    .chain([name.to_owned()])
                    .collect::<Vec<_>>();
                found.push((
                    known.join("::"),
                    to.trim_start_matches("crate::").to_owned(),
                ));
            }
        }
    }
    found
}

/// The imports between the node's modules: module → the modules it names. (A
/// module's use of what its ancestors hold or re-export is not counted: they contain
/// it.)
fn node_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let files = sources("node");
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f).join("::")).collect();
    let reexported = reexports(&files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file).join("::");
        for path in paths_named(file) {
            let Some(inner) = path.strip_prefix("crate::") else {
                continue;
            };
            // An item a parent re-exports is its defining module's.
            let inner = reexported
                .iter()
                .find(|(name, _)| inner == name.as_str() || inner.starts_with(&format!("{name}::")))
                .map_or(inner.to_owned(), |(name, to)| {
                    format!("{to}{}", &inner[name.len()..])
                });
            // The longest module the path is in.
            let parts: Vec<&str> = inner.split("::").collect();
            let to = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|m| modules.contains(m));
            let Some(to) = to else { continue };
            let contains = |a: &str, b: &str| b == a || b.starts_with(&format!("{a}::"));
            if contains(&to, &from) || contains(&from, &to) {
                continue;
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    edges
}

/// A loop in `edges`, if there is one.
fn cycle_in(
    edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        trail: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = trail.iter().position(|t| t == m) {
            let mut cycle = trail[at..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        trail.push(m.to_owned());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, trail, done) {
                return Some(c);
            }
        }
        trail.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

/// Within the node, no two modules import each other, directly or round a loop: each
/// room of the shell can be read knowing only the rooms below it.
#[test]
fn the_node_modules_import_each_other_without_cycles() {
    let cycle = cycle_in(&node_imports());
    assert!(
        cycle.is_none(),
        "an import cycle: {}",
        cycle.unwrap_or_default().join(" → ")
    );
}

/// The same for the node's rooms taken whole (each child of `node` with everything in
/// its folder): `link` and `deliver` may not reach each other through their children.
#[test]
fn the_node_rooms_taken_whole_import_each_other_without_cycles() {
    let room = |m: &str| m.split("::").take(2).collect::<Vec<_>>().join("::");
    let mut rooms: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for (from, to) in node_imports() {
        for to in to {
            let (from, to) = (room(&from), room(&to));
            if from != to && from != "node" && to != "node" {
                rooms.entry(from).or_default().insert(to);
            }
        }
    }
    let cycle = cycle_in(&rooms);
    assert!(
        cycle.is_none(),
        "an import cycle between rooms: {}",
        cycle.unwrap_or_default().join(" → ")
    );
}
