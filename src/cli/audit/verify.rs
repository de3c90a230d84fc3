//! `renkei audit verify`: an export (or a stopped node's log) checked record by
//! record against its checkpoints, anchored to a key or checkpoint the auditor holds,
//! and, with `--witness`, to the cosignatures of witnesses it trusts.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use serde_json::json;

use super::exporting::write_export;
use super::{Source, Witnesses};
use crate::audit::export;

/// Exports a running node's log through the auditor's config and verifies it against
/// `key`, the node's checkpoint key as the auditor knows it.
pub(in crate::cli) async fn verify_node(
    config: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> anyhow::Result<export::Summary> {
    let tmp = export_to_temp(Source::Node(config)).await?;
    Ok(verify_file(tmp.path(), Some(key))?.1)
}

/// Exports `source`'s log to a temporary file (removed when dropped) as it is read.
pub(in crate::cli) async fn export_to_temp(
    source: Source<'_>,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let tmp = tempfile::NamedTempFile::new().context("making a temporary export")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    write_export(source, &mut out).await?;
    out.flush().context("writing the temporary export")?;
    drop(out);
    Ok(tmp)
}

/// Verifies the export in `file` from `key` (else from the key its log starts with),
/// reading it as it streams; its outline and what the check found.
pub(in crate::cli) fn verify_file(
    file: &Path,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> anyhow::Result<(export::Outline, export::Summary)> {
    let outline = export::outline(open_export(file)?)?;
    let start = key.copied().unwrap_or(outline.starting_key);
    let records = export::records(open_export(file)?);
    let summary =
        export::verify_records(&outline.header, records, &outline.checkpoints, &start, &[])?;
    Ok((outline, summary))
}

/// What `audit verify` is asked to check, and against what.
pub(in crate::cli) struct VerifyArgs<'a> {
    pub file: Option<&'a Path>,
    pub data_dir: Option<&'a Path>,
    /// The node's checkpoint key as the auditor knows it.
    pub key: Option<&'a str>,
    /// A checkpoint the auditor kept.
    pub trusted: Option<&'a Path>,
    /// Accept a check against the key the log itself names.
    pub self_signed_ok: bool,
}

/// `renkei audit verify`: checks, then says so in sentences (or one JSON line).
pub(in crate::cli) fn verify(
    witnesses: Witnesses,
    args: VerifyArgs<'_>,
    as_json: bool,
) -> anyhow::Result<()> {
    let self_signed_ok = args.self_signed_ok;
    let CheckedFile {
        verdict: v,
        checkpoints,
        ..
    } = check_file_of(args)?;
    let witnessed = match witnesses.asked() {
        true => Some(witnesses.newest(&checkpoints, &v.summary.node_id, &v.key)?),
        false => None,
    };
    match as_json {
        true => {
            let mut j = v.to_json();
            if let Some(w) = &witnessed {
                j["witnessed"] = json!({"size": w.size, "by": w.by});
            }
            emitln!("{j}")
        }
        false => {
            emitln!("{}", v.describe());
            if let Some(w) = &witnessed {
                emitln!(
                    "  witnessed             up to {} records, cosigned by {}",
                    w.size,
                    w.by.join(", ")
                );
            }
        }
    }
    if !v.anchored {
        let what = "this proves the log internally consistent only: a log re-signed with another key would pass too. Pass --key (the node's checkpoint key as you know it, e.g. from its card) or --trusted-checkpoint (one you kept)";
        if !self_signed_ok {
            bail!("not verified: {what}, or --self-signed-ok to accept this");
        }
        eprintln!("renkei: note: {what}");
    }
    Ok(())
}

/// What `audit verify` found: every check passed; `anchored` says whether against
/// something the auditor holds.
pub(in crate::cli) struct Verdict {
    summary: export::Summary,
    /// Checked against a key or checkpoint the auditor holds.
    pub(in crate::cli) anchored: bool,
    pinned: bool,
    trust: &'static str,
    key: ed25519_dalek::VerifyingKey,
}

impl Verdict {
    /// The node whose log was checked.
    pub(in crate::cli) fn node_id(&self) -> &str {
        &self.summary.node_id
    }

    /// Records checked.
    pub(in crate::cli) fn records(&self) -> u64 {
        self.summary.records
    }

    /// The root of every record checked, in hex.
    pub(in crate::cli) fn root(&self) -> &str {
        &self.summary.root
    }

    fn to_json(&self) -> serde_json::Value {
        let s = &self.summary;
        json!({
            "verified": self.anchored,
            "internally_consistent": true,
            "trust": self.trust,
            "node_id": s.node_id,
            "origin": s.origin,
            "records": s.records,
            "checkpoints": s.checkpoints,
            "covered_by_checkpoints": s.covered,
            "root": s.root,
            "checkpoint_key": crate::identity::PublicKey::new(self.key).map(|k| k.to_string()),
            "key_pinned": self.pinned,
            "consistent_with_trusted_checkpoint": s.trusted,
        })
    }

    /// The verdict for people.
    pub(in crate::cli) fn describe(&self) -> String {
        let s = &self.summary;
        let head = match self.anchored {
            true => "verified",
            false => "internally consistent only (not verified)",
        };
        let kept = s
            .trusted
            .map(|size| {
                format!("\n  the kept checkpoint   of {size} records, extended by this log (no rollback, no fork)")
            })
            .unwrap_or_default();
        format!(
            "{head}: the audit log of {} ({}), {} records\n  \
             signed checkpoints    {} (covering {} records)\n  \
             checked against       {}{kept}\n  \
             root                  {}",
            s.node_id, s.origin, s.records, s.checkpoints, s.covered, self.trust, s.root
        )
    }
}

/// Runs every check of `audit verify`; an error for anything that does not hold.
pub(in crate::cli) fn check(args: VerifyArgs<'_>) -> anyhow::Result<Verdict> {
    Ok(check_file_of(args)?.verdict)
}

/// An export file that passed every check, with its checkpoints, to be read again.
pub(in crate::cli) struct CheckedFile {
    pub verdict: Verdict,
    pub checkpoints: Vec<String>,
    /// The file checked: the auditor's, or a stopped node's log exported for the check
    /// (removed when this is dropped).
    file: ExportFile,
}

enum ExportFile {
    Given(std::path::PathBuf),
    Temporary(tempfile::NamedTempFile),
}

impl ExportFile {
    fn path(&self) -> &Path {
        match self {
            ExportFile::Given(path) => path,
            ExportFile::Temporary(tmp) => tmp.path(),
        }
    }
}

impl CheckedFile {
    /// The records of the export checked, one at a time, read from its file again.
    pub(in crate::cli) fn records(
        &self,
    ) -> anyhow::Result<impl Iterator<Item = Result<Bytes, export::VerifyError>>> {
        Ok(export::records(open_export(self.file.path())?))
    }
}

/// [`check`], keeping the file. An export file is read twice, its outline then its
/// records, and never held whole: a log of any length verifies in little memory. A
/// stopped node's log is exported to a temporary file first and read so.
pub(in crate::cli) fn check_file_of(args: VerifyArgs<'_>) -> anyhow::Result<CheckedFile> {
    let file = match (args.file, args.data_dir) {
        (Some(file), None) => ExportFile::Given(file.to_path_buf()),
        (None, Some(dir)) => ExportFile::Temporary(
            tokio::runtime::Builder::new_current_thread()
                .build()?
                .block_on(export_to_temp(Source::DataDir(dir)))?,
        ),
        _ => bail!("give either an export FILE or --data-dir"),
    };
    let path = file.path();
    let outline = export::outline(open_export(path)?)?;
    let verdict = check_records(&outline, export::records(open_export(path)?), &args)?;
    Ok(CheckedFile {
        verdict,
        checkpoints: outline.checkpoints,
        file,
    })
}

fn open_export(file: &Path) -> anyhow::Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f))
}

/// Checks the `records` of the export `outline` describes against what `args` anchor
/// it to.
fn check_records(
    outline: &export::Outline,
    records: impl Iterator<Item = Result<Bytes, export::VerifyError>>,
    args: &VerifyArgs<'_>,
) -> anyhow::Result<Verdict> {
    let named = export::header_key(&outline.header)?;
    let pinned = args.key.is_some();
    // With --key, the chain of checkpoint keys starts at it (and must end at the key
    // the export names); without, where the log says it starts.
    let logged = outline.starting_key;
    let start = match args.key {
        Some(k) => *crate::cli::public_key_arg("--key", k)?.verifying_key(),
        None => logged,
    };
    // A log that never rotated its key is signed by the key it names, or is another's.
    if start != named && logged == named {
        bail!("the export is signed by another key than --key: it is not this node's log");
    }
    let trusted = args
        .trusted
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let summary = export::verify_records(
        &outline.header,
        records,
        &outline.checkpoints,
        &start,
        trusted.as_deref().as_slice(),
    )?;
    // Without a key or checkpoint the auditor holds, a log re-signed with another key
    // passes every check above: it is consistent, not verified.
    let trust = match (pinned, trusted.is_some()) {
        (true, true) => "the key given with --key and the trusted checkpoint",
        (true, false) => "the key given with --key",
        (false, true) => "the trusted checkpoint",
        (false, false) => "none: checked only with the key the log itself names (self-signed)",
    };
    Ok(Verdict {
        summary,
        anchored: pinned || trusted.is_some(),
        pinned,
        trust,
        key: named,
    })
}
