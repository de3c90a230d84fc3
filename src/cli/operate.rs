//! `renkei reload`, `renkei backup` and `renkei restore`: operating a node. The first
//! two ask the running node through its operator socket (so only its own user or root
//! can); restore works on a stopped node's files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::config::NodeConfig;
use crate::node::operator::{self, OperatorRequest};
use crate::store::Store;

/// How long a reload may take to answer.
const RELOAD_PATIENCE: Duration = Duration::from_secs(60);
/// How long a backup may take: it copies the whole database.
const BACKUP_PATIENCE: Duration = Duration::from_secs(6 * 3600);

/// The data directory a configuration names. A file that no longer validates still
/// names it, so that `reload` reaches the node, which refuses the file and records it.
fn data_dir_of(config: &Path) -> anyhow::Result<PathBuf> {
    let invalid = match NodeConfig::load(config) {
        Ok(cfg) => return Ok(cfg.node.data_dir),
        Err(e) => e,
    };
    let named = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| Some(PathBuf::from(t.get("node")?.get("data_dir")?.as_str()?)));
    match named {
        Some(dir) if dir.is_relative() => Ok(config.parent().unwrap_or(Path::new("")).join(dir)),
        Some(dir) => Ok(dir),
        None => Err(invalid.into()),
    }
}

async fn ask(config: &Path, request: OperatorRequest, patience: Duration) -> anyhow::Result<()> {
    let reply = operator::request(&data_dir_of(config)?, &request, patience).await?;
    if !reply.ok {
        bail!("{}", reply.message);
    }
    emitln!("{}", reply.message);
    Ok(())
}

/// Asks the running node to read its configuration file again.
pub(super) async fn reload(config: &Path) -> anyhow::Result<()> {
    ask(config, OperatorRequest::Reload, RELOAD_PATIENCE).await
}

/// How long a status may take: it asks each linked peer (a second or so each, together).
const STATUS_PATIENCE: Duration = Duration::from_secs(30);

/// Prints the running node's peer links.
pub(super) async fn status(config: &Path, as_json: bool) -> anyhow::Result<()> {
    let request = OperatorRequest::Status;
    let reply = operator::request(&data_dir_of(config)?, &request, STATUS_PATIENCE).await?;
    let status = match reply.status {
        Some(s) if reply.ok => s,
        _ => bail!("the node gave no status: {}", reply.message),
    };
    if as_json {
        emitln!("{}", serde_json::to_string(&status)?);
        return Ok(());
    }
    emitln!("{}", status_text(&status));
    Ok(())
}

/// The status as an operator reads it: one paragraph per peer.
fn status_text(s: &operator::NodeStatus) -> String {
    if s.links.is_empty() {
        return format!(
            "{}: no peer nodes (no relay partner has an address)",
            s.node
        );
    }
    let mut out = format!("{}: {} peer node(s)\n", s.node, s.links.len());
    for l in &s.links {
        let state = if l.up { "UP" } else { "DOWN" };
        out += &format!("\n{} ({}): {state} since {}", l.peer, l.address, l.since);
        if let Some(by) = &l.dialled_by {
            out += &format!(", {by}");
        }
        out += &format!(
            "\n  towards {}: {} queued, oldest {}",
            l.peer,
            l.to_peer.depth,
            age(l.to_peer.oldest_ms)
        );
        match &l.from_peer {
            Some(q) => {
                out += &format!(
                    "\n  from {}: {} queued, oldest {}",
                    l.peer,
                    q.depth,
                    age(q.oldest_ms)
                )
            }
            None => out += &format!("\n  from {}: unknown while the link is down", l.peer),
        }
        if l.copies_received > 0 {
            out += &format!(
                "\n  copies of stored bulletins received again: {}",
                l.copies_received
            );
        }
        if l.refused_by_peer > 0 {
            out += &format!(
                "\n  refused by {} (taken, not shared on; see PEER_REFUSED in the audit log): {}",
                l.peer, l.refused_by_peer
            );
            if let Some(why) = &l.last_refusal {
                out += &format!(", the last: {why}");
            }
        }
        if let Some(why) = &l.witness_alarm {
            out += &format!(
                "\n  WITNESS ALARM: {}'s audit log {why}; this node cosigns nothing more of it",
                l.peer
            );
        }
        let witnessed = l
            .witnessed
            .map_or("nothing yet".to_owned(), |s| format!("up to {s} records"));
        out += &format!(
            "\n  witnessing: {} cosigned this node's log up to {} records; this node cosigned {}'s {witnessed}",
            l.peer, l.cosigned_by_peer, l.peer
        );
        if l.refused_kept > 0 {
            out += &format!(
                "\n  refused deliveries kept, offered again when either node's configuration changes: {}",
                l.refused_kept
            );
        }
        if let Some(e) = &l.last_error {
            out += &format!("\n  last error: {e}");
            if !l.up && l.dial_failures > 0 {
                out += &format!(" ({} failed dials)", l.dial_failures);
            }
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Milliseconds as people read an age: "none", "850 ms", "12 s", "3 min".
fn age(ms: u64) -> String {
    match ms {
        0 => "none".into(),
        1..=999 => format!("{ms} ms"),
        1_000..=119_999 => format!("{} s", ms / 1000),
        _ => format!("{} min", ms / 60_000),
    }
}

/// Asks the running node to copy its database into `out`, a new directory.
pub(super) async fn backup(config: &Path, out: &Path) -> anyhow::Result<()> {
    // The node resolves nothing against the operator's working directory.
    let out: PathBuf =
        std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
    ask(config, OperatorRequest::Backup { out }, BACKUP_PATIENCE).await
}

/// Restores a backup into a new data directory (the config's, or `data_dir`) and
/// verifies the restored audit log, with the node's key when it is known (`--config` or
/// `key`). The copy is made and verified beside the target and only then renamed into
/// place, so a refused backup leaves nothing a node could start on.
/// Checks the backup's manifest signature with the node's key (`key`, or the key the
/// restored log names when only a trusted checkpoint vouched for it). A manifest with
/// no signature is refused unless `unsigned_ok` (one from before manifests were
/// signed, which a stripped signature cannot be told from); its log was verified.
fn check_manifest(
    manifest: &crate::store::Manifest,
    key: Option<&str>,
    staging: &Path,
    unsigned_ok: bool,
) -> anyhow::Result<()> {
    if manifest.signature.is_empty() {
        if !unsigned_ok {
            bail!("the backup's manifest carries no signature (stripped, or made by a renkei from before manifests were signed); nothing was restored. Pass --allow-unsigned-manifest only for a backup you know predates signed manifests");
        }
        eprintln!("renkei: warning: the backup's manifest is unsigned (made by an older renkei); its audit log verified, its bulletin and key counts are unsigned");
        return Ok(());
    }
    let key = match key {
        Some(k) => *super::public_key_arg("--key", k)?.verifying_key(),
        None => {
            let store = Store::open(staging, 1 << 20)?;
            match store.identity()? {
                Some((_, key)) => key,
                None => bail!("the restored database names no node key to check its manifest with"),
            }
        }
    };
    manifest
        .verify(&key)
        .context("the backup's manifest is not the node's; nothing was restored")
}

/// Where `renkei restore` takes a backup from and puts it, and what it checks it with.
pub(super) struct RestoreArgs<'a> {
    pub from: &'a Path,
    pub config: Option<&'a Path>,
    pub data_dir: Option<&'a Path>,
    /// With `data_dir`: the node's checkpoint key.
    pub key: Option<&'a str>,
    /// A checkpoint kept from the node: the backup must not be older.
    pub trusted: Option<&'a Path>,
    /// Whether a manifest without a signature may restore (`--allow-unsigned-manifest`).
    pub unsigned_ok: bool,
    /// One JSON line instead of sentences.
    pub as_json: bool,
}

pub(super) fn restore(args: RestoreArgs<'_>) -> anyhow::Result<()> {
    let RestoreArgs {
        from,
        config,
        data_dir,
        key,
        trusted,
        unsigned_ok,
        as_json,
    } = args;
    if key.is_none() && config.is_none() && trusted.is_none() {
        bail!("give --key (the node's checkpoint key, from its card) or --trusted-checkpoint with --data-dir: without one, a backup re-signed with another key would restore");
    }
    let (target, key, cache) = match (config, data_dir) {
        (Some(c), None) => {
            let cfg = NodeConfig::load(c)?;
            // The node's own key, so a backup of another node's log is refused.
            let signing = crate::files::read_text(&cfg.node.signing_key)
                .map_err(anyhow::Error::from)
                .and_then(|pem| Ok(crate::identity::signing_key_from_pem(&pem)?))
                .with_context(|| format!("node.signing_key {}", cfg.node.signing_key.display()))?;
            let own = crate::identity::PublicKey::of(&signing).to_string();
            (cfg.node.data_dir, Some(own), cfg.storage.cache_mib << 20)
        }
        (None, Some(d)) => (d.to_owned(), key.map(str::to_owned), 64 << 20),
        _ => bail!("give either --config (restore into its node.data_dir) or --data-dir"),
    };
    if std::fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} exists and is not empty; restore into a new directory",
            target.display()
        );
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = target.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    let restored = (|| {
        let manifest = Store::restore(from, &staging, cache)
            .with_context(|| format!("restoring {}", from.display()))?;
        // The same check an auditor runs: every record, every checkpoint signature.
        let verdict = super::audit::check(super::audit::VerifyArgs {
            file: None,
            data_dir: Some(&staging),
            key: key.as_deref(),
            trusted,
            self_signed_ok: false,
        })
        .context(
            "the restored audit log does not verify against what you trust; nothing was restored",
        )?;
        check_manifest(&manifest, key.as_deref(), &staging, unsigned_ok)?;
        if trusted.is_none() {
            eprintln!("renkei: note: no --trusted-checkpoint given, so an old backup would restore as well as a recent one; keep the node's checkpoints (`renkei audit checkpoint --config auditor.toml > kept.checkpoint`) and pass the newest to refuse anything older");
        }
        Ok::<_, anyhow::Error>((manifest, verdict))
    })();
    let (manifest, verdict) = match restored {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&staging, &target) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e)
            .with_context(|| format!("moving the restored database to {}", target.display()));
    }
    print_restored(&target, &manifest, &verdict, as_json)
}

/// Says what was restored and that its log verified (or one JSON line).
fn print_restored(
    target: &Path,
    manifest: &crate::store::Manifest,
    verdict: &super::audit::Verdict,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        emitln!(
            "{}",
            json!({
                "restored": target.display().to_string(),
                "node": manifest.node,
                "bulletins": manifest.bulletins,
                "audit_records": manifest.audit_records,
                "taken_at": manifest.taken_at,
            })
        );
        return Ok(());
    }
    emitln!(
        "restored {}: node {}'s backup of {}, {} bulletins, {} audit records",
        target.display(),
        manifest.node.as_deref().unwrap_or("(unnamed)"),
        manifest.taken_at,
        manifest.bulletins,
        manifest.audit_records
    );
    emitln!("{}", verdict.describe());
    Ok(())
}
