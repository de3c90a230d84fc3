//! `renkei partner card`, `partner add` and `partner update`: onboarding a partner, an
//! origin behind a peer, or a desk's origin from the card its operator sends, and
//! applying a renewed card.

use std::path::Path;

use anyhow::Context as _;

use crate::bulletin::{Kind, Tlp};
use crate::config::card::PartnerCard;
use crate::config::edit::{self, NewPartner};
use crate::files;
use crate::identity::{GroupName, PartnerId, PublicKey};
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
    who: Option<crate::identity::Affiliation>,
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
            .with_context(|| format!("making the card of {}", node_dir.display()))?
            .of(who);
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
    let is_client = crate::config::check::is_client(&text);
    let updated = match is_client {
        true => edit::update_client(&text, config, &card),
        false => edit::update_partner(&text, config, &card),
    };
    let (edited, changes) =
        updated.with_context(|| format!("updating {} in {}", card.id, config.display()))?;
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
    if !is_client {
        emitln!(
            "Apply it to the running node with `renkei reload --config {}` (or SIGHUP).",
            config.display()
        );
    }
    Ok(())
}

/// What `partner add` was told besides the card.
pub(super) struct Onboard {
    pub role: Option<String>,
    pub via: Vec<PartnerId>,
    pub clearance: Option<Tlp>,
    pub groups: Vec<GroupName>,
    pub kinds: Option<Vec<Kind>>,
}

/// `renkei partner add`: a partner or an origin on a node, or an origin's keys on a desk.
pub(super) fn onboard(config: &Path, card_path: &Path, o: Onboard) -> anyhow::Result<()> {
    let card_text = files::read_text(card_path)?;
    let card = PartnerCard::parse(&card_text, card_path)?;
    let text = files::read_text(config)?;
    let is_client = crate::config::check::is_client(&text);
    let edited = match (is_client, o.role.as_deref()) {
        (true, None) => edit::add_to_client(&text, config, &card)?,
        (true, Some(_)) => anyhow::bail!(
            "{} is a desk's or an auditor's configuration: it takes an origin's keys \
             only; leave out --role",
            config.display()
        ),
        (false, Some("origin")) => {
            anyhow::ensure!(
                !o.via.is_empty(),
                "--role origin needs --via PEER: the peer node(s) its bulletins come through"
            );
            edit::add_origin(&text, config, &card, &o.via, &o.groups)?
        }
        (false, role) => {
            let role = role.context("--role is required: liaison, relay, auditor or origin")?;
            let new = NewPartner {
                role: role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?,
                clearance: o.clearance,
                groups: o.groups,
                kinds: o.kinds,
            };
            return add(config, &card, &text, new);
        }
    };
    files::replace(config, edited.as_bytes())
        .with_context(|| format!("writing {}", config.display()))?;
    emitln!("added {} to {}:", card.id, config.display());
    if !o.via.is_empty() {
        let via: Vec<&str> = o.via.iter().map(PartnerId::as_str).collect();
        emitln!("  origin through  {}", via.join(", "));
    }
    emitln!("  signing key     {}", card.signing_key);
    for k in &card.previous_keys {
        emitln!("  previous key    {} (until {})", k.public, k.not_after);
    }
    if !is_client {
        emitln!(
            "Apply it to the running node with `renkei reload --config {}` (or SIGHUP).",
            config.display()
        );
    }
    Ok(())
}

fn add(config: &Path, card: &PartnerCard, text: &str, new: NewPartner) -> anyhow::Result<()> {
    let edited = edit::add_partner(text, config, card, &new)
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

/// `renkei config node|desk|auditor`: writes DIR/ID.toml, refusing to replace one.
pub(super) fn new_config(command: super::ConfigCommand) -> anyhow::Result<()> {
    use super::ConfigCommand;
    use crate::config::template;
    let (dir, id, text) = match command {
        ConfigCommand::Node {
            id,
            listen,
            dir,
            admin,
            who,
        } => {
            let text = template::node(&id, &listen, admin.as_deref(), who.affiliation())?;
            (dir, id, text)
        }
        ConfigCommand::Desk { client: c } => {
            let text = template::client(&c.id, &c.node, &c.server, true)?;
            (c.dir, c.id, text)
        }
        ConfigCommand::Auditor { client: c } => {
            let text = template::client(&c.id, &c.node, &c.server, false)?;
            (c.dir, c.id, text)
        }
    };
    let path = dir.join(format!("{id}.toml"));
    files::write(&path, text.as_bytes(), files::Access::Public, false)
        .with_context(|| format!("writing {}", path.display()))?;
    emitln!("wrote {}", path.display());
    Ok(())
}
