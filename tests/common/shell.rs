//! Documentation run as a reader pastes it: the lines of a `sh` block in one of the
//! repository's Markdown files, each run with bash, the `renkei` under test first on
//! the PATH.

use std::path::Path;
use std::process::Command;

/// The shell lines of the first `sh` block after `heading` in the repository file
/// `doc`, comments and blank lines left out, continuation lines joined.
pub fn sh_block(doc: &str, heading: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).expect("the document");
    let block = text
        .split(heading)
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|block| block.split("\n```").next())
        .unwrap_or_else(|| panic!("a sh block after {heading:?} in {doc}"));
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// Runs `line` with bash in `cwd`; its stdout, or its stderr as the error.
pub fn try_line(line: &str, cwd: &Path) -> Result<String, String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_renkei"))
        .parent()
        .expect("the binary's dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", line])
        .env("PATH", path)
        .current_dir(cwd)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() {
        true => Ok(stdout),
        false => Err(format!("{}{stdout}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// Runs `line` with bash in `cwd`, which must succeed; its stdout.
pub fn run_line(line: &str, cwd: &Path) -> String {
    try_line(line, cwd).unwrap_or_else(|e| panic!("`{line}` failed:\n{e}"))
}
