//! `renkei partner update`: a renewed card (a new signing key with the old one kept
//! until a time, a renewed certificate, a new address) applied to the `[[partner]]` or
//! `[[origin]]` it belongs to, keeping every comment. Pure: text in, text and the list
//! of what changed out.

use std::path::Path;

use super::{keys_value, EditError};
use crate::config::card::PartnerCard;
use crate::config::{ClientConfig, KeyConfig, NodeConfig};
use crate::identity::Role;

/// The configuration `text` with `card` applied to the partner or origin of its id,
/// and one line per change (none: the card says what the file already does).
pub fn update_partner(
    text: &str,
    file: &Path,
    card: &PartnerCard,
) -> Result<(String, Vec<String>), EditError> {
    let cfg = NodeConfig::parse(text, file).map_err(EditError::Current)?;
    super::check_card_keys(&cfg, card, true)?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|_| EditError::Layout)?;
    let mut changes = Vec::new();
    if let Some(index) = cfg.partners.iter().position(|p| p.id == card.id) {
        let p = &cfg.partners[index];
        let table = nth_table(&mut doc, "partner", index)?;
        if p.role != Role::Auditor {
            set_keys(table, &p.keys, card, &mut changes);
        }
        changes.extend(super::set_affiliation(table, card));
        let pinned = p.tls_fingerprint;
        if pinned != Some(card.tls_fingerprint) {
            table["tls_fingerprint"] = toml_edit::value(card.tls_fingerprint.to_string());
            changes.push(match pinned {
                Some(old) => format!("tls_fingerprint {old} -> {}", card.tls_fingerprint),
                None => format!("tls_fingerprint pinned to {}", card.tls_fingerprint),
            });
        }
        if let (Role::Relay, Some(address)) = (p.role, card.address.as_deref()) {
            if p.address.as_ref().map(ToString::to_string).as_deref() != Some(address) {
                table["address"] = toml_edit::value(address);
                changes.push(format!("address -> {address}"));
            }
        }
    } else if let Some(index) = cfg.origins.iter().position(|o| o.id == card.id) {
        let table = nth_table(&mut doc, "origin", index)?;
        set_keys(table, &cfg.origins[index].keys, card, &mut changes);
        changes.extend(super::set_affiliation(table, card));
    } else {
        return Err(EditError::NotConfigured(card.id.clone()));
    }
    let edited = super::ending_newline(doc.to_string());
    NodeConfig::parse(&edited, file).map_err(EditError::Result)?;
    Ok((edited, changes))
}

/// The desk's or auditor's configuration `text` with `card`'s keys applied to the
/// `[[partner]]` of its id, and one line per change.
pub fn update_client(
    text: &str,
    file: &Path,
    card: &PartnerCard,
) -> Result<(String, Vec<String>), EditError> {
    let cfg = ClientConfig::parse(text, file).map_err(EditError::Current)?;
    let index = cfg
        .partners
        .iter()
        .position(|p| p.id == card.id)
        .ok_or_else(|| EditError::NotConfigured(card.id.clone()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|_| EditError::Layout)?;
    let mut changes = Vec::new();
    let table = nth_table(&mut doc, "partner", index)?;
    set_keys(table, &cfg.partners[index].keys, card, &mut changes);
    let edited = super::ending_newline(doc.to_string());
    ClientConfig::parse(&edited, file).map_err(EditError::Result)?;
    Ok((edited, changes))
}

/// The `index`th `[[name]]` table of `doc`.
fn nth_table<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    name: &str,
    index: usize,
) -> Result<&'a mut toml_edit::Table, EditError> {
    match doc.get_mut(name) {
        Some(toml_edit::Item::ArrayOfTables(list)) => list.get_mut(index).ok_or(EditError::Layout),
        _ => Err(EditError::Layout),
    }
}

/// Sets the table's keys to the card's, saying what that adds, ends and drops.
fn set_keys(
    table: &mut toml_edit::Table,
    old: &[KeyConfig],
    card: &PartnerCard,
    changes: &mut Vec<String>,
) {
    let new = card.keys();
    let before = changes.len();
    for k in &new {
        match old.iter().find(|o| o.public == k.public) {
            None => changes.push(format!("adds key {}{}", k.public, until(k))),
            Some(o) if o.validity() != k.validity() => {
                changes.push(format!("key {}{}", k.public, until(k)));
            }
            Some(_) => {}
        }
    }
    for o in old
        .iter()
        .filter(|o| new.iter().all(|k| k.public != o.public))
    {
        changes.push(format!("drops key {}", o.public));
    }
    if changes.len() > before {
        table.remove("keys");
        table["keys"] = toml_edit::value(keys_value(&new));
    }
}

fn until(k: &KeyConfig) -> String {
    k.not_after
        .map(|t| format!(" (valid until {t})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{generate_signing_key, CertFingerprint, PublicKey};
    use crate::timestamp::Timestamp;

    fn key() -> PublicKey {
        PublicKey::of(&generate_signing_key())
    }

    fn node(us: &PublicKey, ee: &PublicKey) -> String {
        format!(
            "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\
             ca_cert = \"c\"\ntls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
             # The US desk, pinned.\n[[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\n\
             tls_fingerprint = \"{}\"\n[[partner.keys]]\npublic = \"{us}\"\n\n\
             [[partner]]\nid = \"nato-ccdcoe\"\nrole = \"relay\"\nclearance = \"amber\"\naddress = \"192.0.2.1:4433\"\n\n\
             # Estonia, through NATO.\n[[origin]]\nid = \"ee-mod\"\nvia = [\"nato-ccdcoe\"]\nkeys = [{{ public = \"{ee}\" }}]\n",
            CertFingerprint::of_der(b"old certificate")
        )
    }

    fn card(id: &str, signing_key: PublicKey, cert: &[u8]) -> PartnerCard {
        PartnerCard {
            id: id.parse().unwrap(),
            signing_key,
            tls_fingerprint: CertFingerprint::of_der(cert),
            address: None,
            previous_keys: Vec::new(),
            country: None,
            organisation: None,
        }
    }

    #[test]
    fn a_rotated_card_and_a_renewed_certificate_apply_to_the_partner() {
        let (us, ee, us2) = (key(), key(), key());
        let text = node(&us, &ee);
        let until: Timestamp = "2026-12-13T00:00:00Z".parse().unwrap();
        let renewed = card("us-dod", us, b"new certificate")
            .rotated(us2, until)
            .unwrap();
        let (edited, changes) = update_partner(&text, Path::new("n.toml"), &renewed).unwrap();
        assert!(edited.contains("# The US desk, pinned."), "{edited}");
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        let p = cfg.partner(&"us-dod".parse().unwrap()).unwrap();
        assert_eq!(p.keys, renewed.keys());
        assert_eq!(p.tls_fingerprint, Some(renewed.tls_fingerprint));
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(
            changes[0].starts_with(&format!("adds key {us2}")),
            "{changes:?}"
        );
        assert!(changes[1].contains("valid until 2026-12-13"), "{changes:?}");
        assert!(
            changes[2].starts_with("tls_fingerprint sha256:"),
            "{changes:?}"
        );

        // The same card again changes nothing.
        let (_, none) = update_partner(&edited, Path::new("n.toml"), &renewed).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn an_origins_keys_follow_its_card_and_strangers_are_refused() {
        let (us, ee, ee2) = (key(), key(), key());
        let text = node(&us, &ee);
        let (edited, changes) =
            update_partner(&text, Path::new("n.toml"), &card("ee-mod", ee2, b"x")).unwrap();
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        assert_eq!(cfg.origins[0].keys[0].public, ee2);
        assert_eq!(
            changes,
            [format!("adds key {ee2}"), format!("drops key {ee}")]
        );
        assert!(edited.contains("# Estonia, through NATO."), "{edited}");

        let err =
            update_partner(&text, Path::new("n.toml"), &card("fr-mod", key(), b"y")).unwrap_err();
        assert!(err.to_string().contains("partner add"), "{err}");
        let err =
            update_partner(&text, Path::new("n.toml"), &card("ee-mod", us, b"y")).unwrap_err();
        assert!(matches!(err, EditError::KeyInUse { .. }), "{err}");
    }
}
