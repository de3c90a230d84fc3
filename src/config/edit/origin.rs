//! Onboarding an organisation whose bulletins arrive through peers, from its card:
//! an `[[origin]]` in a node's configuration (its keys, the peers it comes through,
//! its groups), or a `[[partner]]` in a desk's (the keys it verifies deliveries with).
//! Pure: text in, text out, validated as a whole.

use std::path::Path;

use super::{append_table, keys_value, string_array, EditError};
use crate::config::card::PartnerCard;
use crate::config::{ClientConfig, NodeConfig};
use crate::identity::{GroupName, PartnerId};

/// Appends an `[[origin]]` for `card` to the node configuration `text`: bulletins it
/// signed are taken through the peers `via` (the first is the way towards it).
pub fn add_origin(
    text: &str,
    file: &Path,
    card: &PartnerCard,
    via: &[PartnerId],
    groups: &[GroupName],
) -> Result<String, EditError> {
    let cfg = NodeConfig::parse(text, file).map_err(EditError::Current)?;
    if card.id == cfg.node.id {
        return Err(EditError::OwnId(card.id.clone()));
    }
    if let Some(index) = cfg.partners.iter().position(|p| p.id == card.id) {
        return Err(EditError::DuplicatePartner {
            id: card.id.clone(),
            index,
        });
    }
    if let Some(index) = cfg.origins.iter().position(|o| o.id == card.id) {
        return Err(EditError::DuplicateOrigin {
            id: card.id.clone(),
            index,
        });
    }
    super::check_card_keys(&cfg, card, true)?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|_| EditError::Layout)?;
    let mut table = toml_edit::Table::new();
    table["id"] = toml_edit::value(card.id.as_str());
    super::set_affiliation(&mut table, card);
    table["via"] = toml_edit::Item::Value(string_array(via.iter().map(PartnerId::as_str)));
    if !groups.is_empty() {
        table["groups"] =
            toml_edit::Item::Value(string_array(groups.iter().map(GroupName::as_str)));
    }
    table["keys"] = toml_edit::value(keys_value(&card.keys()));
    table.decor_mut().set_prefix(format!(
        "\n# {}: an origin added by `renkei partner add --role origin` from its card.\n",
        card.id
    ));
    append_table(&mut doc, "origin", table)?;
    let edited = super::ending_newline(doc.to_string());
    NodeConfig::parse(&edited, file).map_err(EditError::Result)?;
    Ok(edited)
}

/// Appends a `[[partner]]` for `card` to the desk's or auditor's configuration `text`:
/// deliveries of bulletins it signed then verify.
pub fn add_to_client(text: &str, file: &Path, card: &PartnerCard) -> Result<String, EditError> {
    let cfg = ClientConfig::parse(text, file).map_err(EditError::Current)?;
    if let Some(index) = cfg.partners.iter().position(|p| p.id == card.id) {
        return Err(EditError::DuplicatePartner {
            id: card.id.clone(),
            index,
        });
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|_| EditError::Layout)?;
    let mut table = toml_edit::Table::new();
    table["id"] = toml_edit::value(card.id.as_str());
    table["keys"] = toml_edit::value(keys_value(&card.keys()));
    table.decor_mut().set_prefix(format!(
        "\n# {}: added by `renkei partner add` from its card.\n",
        card.id
    ));
    append_table(&mut doc, "partner", table)?;
    let edited = super::ending_newline(doc.to_string());
    ClientConfig::parse(&edited, file).map_err(EditError::Result)?;
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{generate_signing_key, CertFingerprint, PublicKey};

    const NODE: &str = "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\
        ca_cert = \"c\"\ntls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
        # NATO's node.\n[[partner]]\nid = \"nato-ccdcoe\"\nrole = \"relay\"\nclearance = \"amber\"\n";

    fn card(id: &str) -> PartnerCard {
        PartnerCard {
            id: id.parse().unwrap(),
            signing_key: PublicKey::of(&generate_signing_key()),
            tls_fingerprint: CertFingerprint::of_der(id.as_bytes()),
            address: None,
            previous_keys: Vec::new(),
            country: None,
            organisation: None,
        }
    }

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn an_origin_is_onboarded_through_a_peer_from_its_card() {
        let ee = card("ee-mod");
        let nato = [pid("nato-ccdcoe")];
        let groups = ["nato".parse().unwrap()];
        let edited = add_origin(NODE, Path::new("n.toml"), &ee, &nato, &groups).unwrap();
        assert!(edited.starts_with(NODE), "{edited}");
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        let o = cfg.origin(&ee.id).unwrap();
        assert_eq!(
            (o.via.clone(), o.groups.clone()),
            (nato.to_vec(), groups.to_vec())
        );
        assert_eq!(o.keys, ee.keys());

        let twice = add_origin(&edited, Path::new("n.toml"), &ee, &nato, &[]).unwrap_err();
        assert!(
            matches!(twice, EditError::DuplicateOrigin { index: 0, .. }),
            "{twice}"
        );
        let stranger = [pid("fr-mod")];
        let err = add_origin(NODE, Path::new("n.toml"), &ee, &stranger, &[]).unwrap_err();
        assert!(matches!(err, EditError::Result(_)), "not a peer: {err}");
    }

    #[test]
    fn a_desk_learns_an_origins_keys_from_its_card() {
        let desk =
            "[client]\nid = \"jp-cdc\"\nserver = \"127.0.0.1:4433\"\nserver_name = \"jp-mod\"\n\
            ca_cert = \"c\"\ntls_cert = \"t\"\ntls_key = \"k\"\n";
        let ee = card("ee-mod");
        let edited = add_to_client(desk, Path::new("d.toml"), &ee).unwrap();
        let cfg = ClientConfig::parse(&edited, Path::new("d.toml")).unwrap();
        assert_eq!(cfg.partners[0].id, ee.id);
        assert_eq!(cfg.partners[0].keys, ee.keys());
        assert!(add_to_client(&edited, Path::new("d.toml"), &ee).is_err());
    }
}
