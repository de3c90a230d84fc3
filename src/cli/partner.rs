//! `renkei partner card` and `renkei partner add`: onboarding a partner from the card
//! its operator sends.

use std::path::Path;

use anyhow::Context as _;

use crate::config::card::PartnerCard;
use crate::config::edit::{self, NewPartner};
use crate::files;

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub(super) fn card(node_dir: &Path, address: Option<&str>) -> anyhow::Result<()> {
    let crt_path = node_dir.join("tls.crt");
    let crt = files::read_text(&crt_path)?;
    let public = read_optional(&node_dir.join("signing.pub"))?;
    // The private key only when there is no public file; it is dropped once derived.
    let private = match public {
        Some(_) => None,
        None => read_optional(&node_dir.join("signing.key"))?,
    };
    let card = PartnerCard::from_node_files(&crt, public.as_deref(), private.as_deref(), address)
        .with_context(|| format!("making the card of {}", node_dir.display()))?;
    emitln!("{}", card.to_toml().trim_end());
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
    }
    emitln!("  tls_fingerprint {}", card.tls_fingerprint);
    emitln!(
        "Apply it to the running node with `renkei reload --config {0}` (or SIGHUP); \
         `renkei check-config --config {0}` checks the file first.",
        config.display()
    );
    Ok(())
}
