//! `renkei check-config`, and the same checks run by `renkei serve` before it starts.

use std::path::Path;

use crate::config::check::{self, Checked, Finding, Severity};
use crate::config::NodeConfig;
use crate::timestamp::Timestamp;

fn count(findings: &[Finding], severity: Severity) -> usize {
    findings.iter().filter(|f| f.severity == severity).count()
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Prints every finding; fails when any is an error. Says which kind of configuration
/// it took the file for.
pub(super) fn run(config: &Path) -> anyhow::Result<()> {
    let (cfg, findings) = check::check_file(config, Timestamp::now());
    for f in &findings {
        emitln!("{f}");
    }
    let errors = count(&findings, Severity::Error);
    let warnings = count(&findings, Severity::Warning);
    let kind = match &cfg {
        Some(Checked::Client(_)) => "a desk's or auditor's configuration",
        _ => "a node's configuration",
    };
    if errors > 0 {
        let consequence = match &cfg {
            Some(Checked::Client(_)) => "the desk or auditor could not connect",
            _ => "the node would not start",
        };
        anyhow::bail!(
            "{}: {} and {}: {consequence}",
            config.display(),
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    let what = match &cfg {
        Some(Checked::Client(c)) => format!(
            "{} of {} at {}, {}{}",
            c.client.id,
            c.client.server_name,
            c.client.server,
            plural(c.partners.len(), "origin"),
            if c.client.signing_key.is_none() {
                ", no signing key: it cannot publish"
            } else {
                ""
            }
        ),
        Some(Checked::Node(c)) => plural(c.partners.len(), "partner"),
        None => plural(0, "partner"),
    };
    emitln!(
        "{}: ok as {kind} ({what}, {}; key and certificate files checked)",
        config.display(),
        plural(warnings, "warning")
    );
    Ok(())
}

/// Before a node starts: logs the warnings, and refuses with every error listed.
pub(super) fn preflight(cfg: &NodeConfig) -> anyhow::Result<()> {
    let findings = check::check(cfg, &check::gather(&cfg.node), Timestamp::now());
    for f in findings.iter().filter(|f| f.severity == Severity::Warning) {
        tracing::warn!("{}: {}", f.field, f.problem);
    }
    let errors: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("  {}: {}", f.field, f.problem))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "the configuration has {} (renkei check-config lists them too):\n{}",
            plural(errors.len(), "error"),
            errors.join("\n")
        );
    }
    Ok(())
}
