//! `renkei partner card` and `renkei partner add`: onboarding a partner from the card
//! its operator sends.

use std::path::Path;

use anyhow::Context as _;

use crate::config::card::PartnerCard;
use crate::config::edit::{self, NewPartner};
use crate::files;
use crate::identity::PublicKey;
use crate::timestamp::Timestamp;

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub(super) fn card(
    node_dir: &Path,
    address: Option<&str>,
    rotation: Option<(PublicKey, Timestamp)>,
) -> anyhow::Result<()> {
    let crt_path = node_dir.join("tls.crt");
    let crt = files::read_text(&crt_path)?;
    let public = read_optional(&node_dir.join("signing.pub"))?;
    // The private key only when there is no public file; it is dropped once derived.
    let private = match public {
        Some(_) => None,
        None => read_optional(&node_dir.join("signing.key"))?,
    };
    let mut card =
        PartnerCard::from_node_files(&crt, public.as_deref(), private.as_deref(), address)
            .with_context(|| format!("making the card of {}", node_dir.display()))?;
    match rotation {
        Some((new, until)) => card = card.rotated(new, until)?,
        None => warn_of_newer_keys(node_dir),
    }
    emitln!("{}", card.to_toml().trim_end());
    Ok(())
}

/// A `.pub` in the node's directory newer than `signing.pub` is most likely a rotation
/// under way that the card would not announce.
fn warn_of_newer_keys(node_dir: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(current) = modified(&node_dir.join("signing.pub")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(node_dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let newer = modified(&path).is_some_and(|m| m > current);
        if newer && path.extension().is_some_and(|e| e == "pub") {
            eprintln!(
                "note: {} is newer than signing.pub; to announce it, run again with \
                 --new-key {} --old-key-until TIME",
                path.display(),
                path.display()
            );
        }
    }
}

/// `renkei partner update`: applies a renewed card and says what changed.
pub(super) fn update(config: &Path, card_path: &Path) -> anyhow::Result<()> {
    let card_text = files::read_text(card_path)?;
    let card = PartnerCard::parse(&card_text, card_path)?;
    let text = files::read_text(config)?;
    let (edited, changes) = edit::update_partner(&text, config, &card)
        .with_context(|| format!("updating {} in {}", card.id, config.display()))?;
    if changes.is_empty() {
        emitln!(
            "{} in {}: already as the card says; nothing changed",
            card.id,
            config.display()
        );
        return Ok(());
    }
    files::replace(config, edited.as_bytes())
        .with_context(|| format!("writing {}", config.display()))?;
    emitln!("updated {} in {}:", card.id, config.display());
    for change in &changes {
        emitln!("  {change}");
    }
    emitln!(
        "Apply it to the running node with `renkei reload --config {}` (or SIGHUP).",
        config.display()
    );
    Ok(())
}

pub(super) fn add(config: &Path, card_path: &Path, new: NewPartner) -> anyhow::Result<()> {
    let card_text = files::read_text(card_path)?;
    let card = PartnerCard::parse(&card_text, card_path)?;
    let text = files::read_text(config)?;
    let edited = edit::add_partner(&text, config, &card, &new)
        .with_context(|| format!("adding partner {} to {}", card.id, config.display()))?;
    files::replace(config, edited.as_bytes())
        .with_context(|| format!("writing {}", config.display()))?;
    emitln!("added partner {} to {}:", card.id, config.display());
    emitln!("  role            {}", new.role);
    if let Some(c) = new.clearance {
        emitln!("  clearance       {}", c.as_str());
    }
    if !new.groups.is_empty() {
        let groups: Vec<&str> = new.groups.iter().map(|g| g.as_str()).collect();
        emitln!("  groups          {}", groups.join(", "));
    }
    if let Some(kinds) = &new.kinds {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        emitln!("  kinds           {}", kinds.join(", "));
    }
    if new.role != crate::identity::Role::Auditor {
        emitln!("  signing key     {}", card.signing_key);
        for k in &card.previous_keys {
            emitln!("  previous key    {} (until {})", k.public, k.not_after);
        }
    }
    emitln!("  tls_fingerprint {}", card.tls_fingerprint);
    emitln!(
        "Apply it to the running node with `renkei reload --config {0}` (or SIGHUP); \
         `renkei check-config --config {0}` checks the file first.",
        config.display()
    );
    Ok(())
}
