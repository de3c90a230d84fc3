//! Editing a node's configuration text in place: adding a `[[partner]]` from its card,
//! or applying a renewed card (`update`), while keeping every comment and the
//! formatting of the rest of the file (toml_edit).
//!
//! Pure: text in, text out, and the result is validated as a whole before it is
//! returned. Writing the file is the caller's (`files::replace`); deciding who should
//! be a partner is the operator's.

use std::path::Path;

use super::card::PartnerCard;
use super::{ConfigError, KeyConfig, NodeConfig};
use crate::bulletin::{Kind, Tlp};
use crate::identity::{GroupName, PartnerId, Role};

mod origin;
mod update;
pub use origin::{add_origin, add_to_client};
pub use update::{update_client, update_partner};

/// A partner could not be added or updated.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file is not a valid configuration before the edit.
    #[error("the configuration is not valid as it stands; fix it first: {0}")]
    Current(ConfigError),
    /// The id is this node's own.
    #[error("{0} is this node's own id")]
    OwnId(PartnerId),
    /// A partner with this id is already configured.
    #[error("partner {id} is already configured (partner[{index}]); nothing was changed")]
    DuplicatePartner {
        /// The id.
        id: PartnerId,
        /// Its index among the `[[partner]]` tables.
        index: usize,
    },
    /// An origin with this id is already configured.
    #[error("{id} is already configured as origin[{index}]; nothing was changed (`renkei partner update` applies a renewed card)")]
    DuplicateOrigin {
        /// The id.
        id: PartnerId,
        /// Its index among the `[[origin]]` tables.
        index: usize,
    },
    /// The card's signing key already signs for another partner.
    #[error("signing key {key} is already a key of partner {owner}; a key belongs to one partner")]
    KeyInUse {
        /// The key, as text (a whole verifying key would make every result large).
        key: String,
        /// The partner that has it.
        owner: PartnerId,
    },
    /// `partner update` was given the card of an id the file does not configure.
    #[error("{0} is neither a [[partner]] nor an [[origin]] of this node; onboard it with `renkei partner add`")]
    NotConfigured(PartnerId),
    /// The card's signing key or certificate is revoked.
    #[error("{0} is on this node's revocation list")]
    KeyRevoked(String),
    /// `partner` or `origin` is not written as a list of tables, so it cannot be
    /// appended to.
    #[error("`partner` or `origin` is not a list of [[…]] tables in this file; edit it by hand")]
    Layout,
    /// The edited text does not validate (a rule the checks above do not cover).
    #[error("the configuration with this partner would not be valid: {0}")]
    Result(ConfigError),
}

/// What the operator decided about a new partner; the rest comes from its card.
#[derive(Clone, Debug)]
pub struct NewPartner {
    /// What it may do.
    pub role: Role,
    /// Highest TLP it may receive (required unless an auditor).
    pub clearance: Option<Tlp>,
    /// Groups it belongs to.
    pub groups: Vec<GroupName>,
    /// Kinds shared with it; all when `None`.
    pub kinds: Option<Vec<Kind>>,
}

/// Refuses a card whose keys another partner or origin has, or that this node
/// revoked (its signing keys only when `with_keys`; its certificate always).
fn check_card_keys(cfg: &NodeConfig, card: &PartnerCard, with_keys: bool) -> Result<(), EditError> {
    let others = cfg
        .partners
        .iter()
        .filter(|p| p.id != card.id)
        .map(|p| (&p.id, &p.keys))
        .chain(
            cfg.origins
                .iter()
                .filter(|o| o.id != card.id)
                .map(|o| (&o.id, &o.keys)),
        );
    let keys = if with_keys { card.keys() } else { Vec::new() };
    for (owner, theirs) in others {
        if let Some(k) = keys
            .iter()
            .find(|k| theirs.iter().any(|t| t.public == k.public))
        {
            return Err(EditError::KeyInUse {
                key: k.public.to_string(),
                owner: owner.clone(),
            });
        }
    }
    for k in &keys {
        if cfg.revoked.iter().any(|r| r.key() == Some(k.public)) {
            return Err(EditError::KeyRevoked(format!("signing key {}", k.public)));
        }
    }
    if cfg.certificate_revoked(&card.tls_fingerprint).is_some() {
        return Err(EditError::KeyRevoked(format!(
            "TLS certificate {}",
            card.tls_fingerprint
        )));
    }
    Ok(())
}

/// Writes the card's country or organisation into `table` (replacing the other), if
/// the card names one; what changed, for `partner update`.
fn set_affiliation(table: &mut toml_edit::Table, card: &PartnerCard) -> Option<String> {
    let (key, other, value) = match (card.country, &card.organisation) {
        (Some(c), _) => ("country", "organisation", c.to_string()),
        (None, Some(o)) => ("organisation", "country", o.to_string()),
        (None, None) => return None,
    };
    let before = table.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if before.as_deref() == Some(value.as_str()) && !table.contains_key(other) {
        return None;
    }
    table.remove(other);
    table[key] = toml_edit::value(value.as_str());
    Some(format!("{key} -> {value}"))
}

/// Keys as an inline array, each with its window where it has one.
fn keys_value(keys: &[KeyConfig]) -> toml_edit::Array {
    let mut out = toml_edit::Array::new();
    for k in keys {
        let mut key = toml_edit::InlineTable::new();
        key.insert("public", k.public.to_string().into());
        if let Some(t) = k.not_before {
            key.insert("not_before", t.to_string().into());
        }
        if let Some(t) = k.not_after {
            key.insert("not_after", t.to_string().into());
        }
        out.push(key);
    }
    out
}

fn string_array<'a>(items: impl IntoIterator<Item = &'a str>) -> toml_edit::Value {
    toml_edit::Value::Array(items.into_iter().collect())
}

/// Appends a `[[partner]]` for `card` to the configuration `text` (read from `file`,
/// named in messages) and returns the new text, which validates. An auditor gets no
/// signing key: it never publishes.
pub fn add_partner(
    text: &str,
    file: &Path,
    card: &PartnerCard,
    new: &NewPartner,
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
    let with_key = new.role != Role::Auditor;
    check_card_keys(&cfg, card, with_key)?;

    // The text parsed as a configuration above, so it is TOML.
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|_| EditError::Layout)?;
    let mut table = toml_edit::Table::new();
    table["id"] = toml_edit::value(card.id.as_str());
    table["role"] = toml_edit::value(new.role.to_string());
    if let Some(c) = new.clearance {
        table["clearance"] = toml_edit::value(c.as_str());
    }
    if let Some(kinds) = &new.kinds {
        table["kinds"] = toml_edit::Item::Value(string_array(kinds.iter().map(|k| k.as_str())));
    }
    if !new.groups.is_empty() {
        table["groups"] =
            toml_edit::Item::Value(string_array(new.groups.iter().map(GroupName::as_str)));
    }
    if with_key {
        table["keys"] = toml_edit::value(keys_value(&card.keys()));
    }
    set_affiliation(&mut table, card);
    table["tls_fingerprint"] = toml_edit::value(card.tls_fingerprint.to_string());
    // A relay whose card gives its node's address is a peer node: this node dials it.
    if let (Role::Relay, Some(address)) = (new.role, card.address.as_deref()) {
        table["address"] = toml_edit::value(address);
    }
    let from = card
        .address
        .as_deref()
        .map(|a| format!(" (its node: {a})"))
        .unwrap_or_default();
    table.decor_mut().set_prefix(format!(
        "\n# {}: added by `renkei partner add` from its card{from}.\n",
        card.id
    ));

    append_table(&mut doc, "partner", table)?;
    let edited = ending_newline(doc.to_string());
    NodeConfig::parse(&edited, file).map_err(EditError::Result)?;
    Ok(edited)
}

/// Appends `table` to the `[[name]]` tables of `doc`.
fn append_table(
    doc: &mut toml_edit::DocumentMut,
    name: &str,
    table: toml_edit::Table,
) -> Result<(), EditError> {
    match doc.get_mut(name) {
        None => {
            let mut list = toml_edit::ArrayOfTables::new();
            list.push(table);
            doc.insert(name, toml_edit::Item::ArrayOfTables(list));
        }
        // A new table takes the position of the one before it, so it lands after the
        // last of its kind (and its sub-tables), before whatever follows.
        Some(toml_edit::Item::ArrayOfTables(list)) => list.push(table),
        Some(_) => return Err(EditError::Layout),
    }
    Ok(())
}

fn ending_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{generate_signing_key, CertFingerprint, PublicKey};

    const NODE: &str = "# The hub.\n[node]\nid = \"jp-mod\" # our id\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\
        ca_cert = \"c\"\ntls_cert = \"t\"\ntls_key = \"k\"\nsigning_key = \"s\"\n\n\
        # The US desk.\n[[partner]]\nid = \"us-dod\"\nrole = \"liaison\"   # publishes\nclearance = \"red\"\n\
        [[partner.keys]]\npublic = \"US_KEY\"\n\n\
        # Never again.\n[[revoked]]\nkey = \"OLD_KEY\"\nreason = \"lost\"\n";

    fn node(us: &PublicKey, old: &PublicKey) -> String {
        NODE.replace("US_KEY", &us.to_string())
            .replace("OLD_KEY", &old.to_string())
    }

    fn card(id: &str, key: PublicKey) -> PartnerCard {
        PartnerCard {
            id: id.parse().unwrap(),
            signing_key: key,
            tls_fingerprint: CertFingerprint::of_der(id.as_bytes()),
            address: Some("192.0.2.7:4433".into()),
            previous_keys: Vec::new(),
            country: None,
            organisation: None,
        }
    }

    fn liaison() -> NewPartner {
        NewPartner {
            role: Role::Liaison,
            clearance: Some(Tlp::AmberStrict),
            groups: vec!["nato".parse().unwrap()],
            kinds: Some(vec![Kind::Advisory, Kind::Exercise]),
        }
    }

    #[test]
    fn a_partner_is_appended_after_the_last_partner_keeping_everything_else() {
        let (us, old, fr) = (
            PublicKey::of(&generate_signing_key()),
            PublicKey::of(&generate_signing_key()),
            PublicKey::of(&generate_signing_key()),
        );
        let text = node(&us, &old);
        let new = card("mod-fr", fr);
        let edited = add_partner(&text, Path::new("n.toml"), &new, &liaison()).unwrap();

        // Everything before the revocations is kept byte for byte, comments included.
        let revoked_at = text.find("# Never again.").unwrap();
        assert!(edited.starts_with(&text[..revoked_at]), "{edited}");
        assert!(edited.ends_with(&text[revoked_at..]), "{edited}");
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        let p = cfg.partner(&new.id).unwrap();
        assert_eq!(p.role, Role::Liaison);
        assert_eq!(p.clearance, Some(Tlp::AmberStrict));
        assert_eq!(p.groups, vec!["nato".parse::<GroupName>().unwrap()]);
        assert_eq!(p.kinds, Some(vec![Kind::Advisory, Kind::Exercise]));
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys[0].public, fr);
        assert_eq!(p.tls_fingerprint, Some(new.tls_fingerprint));
        assert_eq!(cfg.revoked.len(), 1);
        assert!(
            edited.contains(
                "# mod-fr: added by `renkei partner add` from its card (its node: 192.0.2.7:4433)."
            ),
            "{edited}"
        );
        assert!(
            edited.contains(&format!("keys = [{{ public = \"{fr}\" }}]")),
            "{edited}"
        );

        // An auditor gets no key, and a file without partners gets its first.
        let first = text[..text.find("# The US desk.").unwrap()].to_string();
        let auditor = NewPartner {
            role: Role::Auditor,
            clearance: None,
            groups: vec![],
            kinds: None,
        };
        let edited =
            add_partner(&first, Path::new("n.toml"), &card("audit", us), &auditor).unwrap();
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        assert!(cfg.partners[0].keys.is_empty());
        assert!(edited.starts_with(&first));
    }

    #[test]
    fn a_relay_whose_card_gives_its_address_is_dialled() {
        // The address used to be written only in a comment.
        let (us, old) = (
            PublicKey::of(&generate_signing_key()),
            PublicKey::of(&generate_signing_key()),
        );
        let relay = NewPartner {
            role: Role::Relay,
            clearance: Some(Tlp::Amber),
            groups: vec![],
            kinds: None,
        };
        let peer = card("mod-fr", PublicKey::of(&generate_signing_key()));
        let edited = add_partner(&node(&us, &old), Path::new("n.toml"), &peer, &relay).unwrap();
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        let p = cfg.partner(&peer.id).unwrap();
        assert_eq!(
            p.peer_address().map(|a| a.to_string()),
            Some("192.0.2.7:4433".into())
        );
        // A liaison's card address is its node's, not one to dial.
        let desk = card("mod-de", PublicKey::of(&generate_signing_key()));
        let edited = add_partner(&edited, Path::new("n.toml"), &desk, &liaison()).unwrap();
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        assert!(cfg.partner(&desk.id).unwrap().address.is_none());
    }

    #[test]
    fn duplicates_and_invalid_results_are_refused() {
        let (us, old) = (
            PublicKey::of(&generate_signing_key()),
            PublicKey::of(&generate_signing_key()),
        );
        let text = node(&us, &old);
        let fresh = PublicKey::of(&generate_signing_key());
        let add = |c: &PartnerCard, n: &NewPartner| add_partner(&text, Path::new("n.toml"), c, n);
        assert!(matches!(
            add(&card("us-dod", fresh), &liaison()),
            Err(EditError::DuplicatePartner { index: 0, .. })
        ));
        let err = add(&card("mod-fr", us), &liaison()).unwrap_err();
        assert!(matches!(err, EditError::KeyInUse { .. }), "{err}");
        assert!(
            err.to_string().contains("already a key of partner us-dod"),
            "{err}"
        );
        assert!(matches!(
            add(&card("mod-fr", old), &liaison()),
            Err(EditError::KeyRevoked(_))
        ));
        assert!(matches!(
            add(&card("jp-mod", fresh), &liaison()),
            Err(EditError::OwnId(_))
        ));
        let no_clearance = NewPartner {
            clearance: None,
            ..liaison()
        };
        let err = add(&card("mod-fr", fresh), &no_clearance).unwrap_err();
        assert!(err.to_string().contains("partner[1].clearance"), "{err}");
        let err = add_partner(
            "[node]\n",
            Path::new("n.toml"),
            &card("a", fresh),
            &liaison(),
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Current(_)), "{err}");
    }

    #[test]
    fn a_cards_country_or_organisation_is_kept_and_follows_a_renewed_card() {
        let (us, old) = (
            PublicKey::of(&generate_signing_key()),
            PublicKey::of(&generate_signing_key()),
        );
        let fr = card("fr-mod", PublicKey::of(&generate_signing_key())).of(Some(
            crate::identity::Affiliation::Country("FR".parse().unwrap()),
        ));
        let edited = add_partner(&node(&us, &old), Path::new("n.toml"), &fr, &liaison()).unwrap();
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        let p = cfg.partner(&fr.id).unwrap();
        assert_eq!(p.affiliation(), fr.affiliation());
        // It turns out to be the EU's desk: the renewed card says so, and the update
        // replaces the country with the organisation.
        let eu = fr
            .clone()
            .of(Some(crate::identity::Affiliation::Organisation(
                "EU".parse().unwrap(),
            )));
        let (edited, changes) = update_partner(&edited, Path::new("n.toml"), &eu).unwrap();
        assert_eq!(changes, ["organisation -> EU"]);
        let cfg = NodeConfig::parse(&edited, Path::new("n.toml")).unwrap();
        assert_eq!(cfg.partner(&fr.id).unwrap().affiliation(), eu.affiliation());
    }
}
