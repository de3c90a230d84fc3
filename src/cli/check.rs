//! `renkei check-config`, and the same checks run by `renkei serve` before it starts.

use std::path::Path;

use crate::config::check::{self, Finding, Severity};
use crate::config::NodeConfig;
use crate::timestamp::Timestamp;

fn count(findings: &[Finding], severity: Severity) -> usize {
    findings.iter().filter(|f| f.severity == severity).count()
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Prints every finding; fails when any is an error.
pub(super) fn run(config: &Path) -> anyhow::Result<()> {
    let (cfg, findings) = check::check_file(config, Timestamp::now());
    for f in &findings {
        emitln!("{f}");
    }
    let errors = count(&findings, Severity::Error);
    let warnings = count(&findings, Severity::Warning);
    if errors > 0 {
        anyhow::bail!(
            "{}: {} and {}: the node would not start",
            config.display(),
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    let partners = cfg.map_or(0, |c| c.partners.len());
    emitln!(
        "{}: ok ({}, {}; key and certificate files checked)",
        config.display(),
        plural(partners, "partner"),
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
