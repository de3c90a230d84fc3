//! A partner card: the public facts one operator gives another to be onboarded (id,
//! Ed25519 signing key, TLS certificate fingerprint, optional address), as TOML. During
//! a key rotation it also carries the keys being retired, each until a time.
//!
//! Pure: it builds a card from file contents the caller read and parses card text.
//! It must never hold or print private key material; a signing key read to derive the
//! public half is dropped at once.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::{syntax_error, ConfigError, KeyConfig};
use crate::identity::partner_from_cert;
use crate::identity::{
    self, Affiliation, CertFingerprint, Country, Organisation, PartnerId, PublicKey,
};
use crate::timestamp::Timestamp;

/// A card could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The TLS certificate is missing its partner id or is not PEM.
    #[error("tls.crt: {0}")]
    Certificate(String),
    /// Neither `signing.pub` nor `signing.key` gave a public key.
    #[error("{0}")]
    SigningKey(String),
    /// The card's `address` is not `HOST:PORT`.
    #[error("address {0:?} must be HOST:PORT, e.g. 192.0.2.10:4433")]
    Address(String),
    /// The card names both a country and an organisation.
    #[error("a card names its country or its organisation, not both")]
    Affiliation,
    /// The card file is not a valid card.
    #[error(transparent)]
    Parse(#[from] ConfigError),
}

/// One node's public card.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerCard {
    /// The partner id its certificate names.
    pub id: PartnerId,
    /// The key its bulletins are signed with.
    pub signing_key: PublicKey,
    /// SHA-256 of its TLS certificate.
    pub tls_fingerprint: CertFingerprint,
    /// Where its node listens, when it runs one (`HOST:PORT`).
    pub address: Option<String>,
    /// Keys it signed with before `signing_key`, each still valid until its time, so
    /// that bulletins signed before a rotation still verify on their way.
    #[serde(default)]
    pub previous_keys: Vec<PreviousKey>,
    /// Its country (ISO 3166-1 alpha-2), for the other side's cooperation figures.
    pub country: Option<Country>,
    /// Or its international organisation.
    pub organisation: Option<Organisation>,
}

/// A key being retired by a rotation, and when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    /// The old key.
    pub public: PublicKey,
    /// First instant it may no longer sign.
    pub not_after: Timestamp,
}

fn check_address(address: &str) -> Result<(), CardError> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(CardError::Address(address.to_owned())),
    }
}

impl PartnerCard {
    /// The card of the node whose files `certs init` wrote: `tls.crt`, and `signing.pub`
    /// or, failing that, `signing.key` to derive the public key from.
    pub fn from_node_files(
        tls_crt: &str,
        signing_pub: Option<&str>,
        signing_key: Option<&str>,
        address: Option<&str>,
    ) -> Result<PartnerCard, CardError> {
        let der = CertificateDer::from_pem_slice(tls_crt.as_bytes())
            .map_err(|e| CardError::Certificate(format!("not a PEM certificate: {e}")))?;
        let id =
            partner_from_cert(der.as_ref()).map_err(|e| CardError::Certificate(e.to_string()))?;
        let signing_key = match (signing_pub, signing_key) {
            (Some(text), _) => text
                .parse::<PublicKey>()
                .map_err(|e| CardError::SigningKey(format!("signing.pub: {e}")))?,
            (None, Some(pem)) => identity::signing_key_from_pem(pem)
                .map(|k| PublicKey::of(&k))
                .map_err(|e| CardError::SigningKey(format!("signing.key: {e}")))?,
            (None, None) => {
                return Err(CardError::SigningKey(
                    "neither signing.pub nor signing.key is there".into(),
                ))
            }
        };
        if let Some(a) = address {
            check_address(a)?;
        }
        Ok(PartnerCard {
            id,
            signing_key,
            tls_fingerprint: CertFingerprint::of_der(der.as_ref()),
            address: address.map(str::to_owned),
            previous_keys: Vec::new(),
            country: None,
            organisation: None,
        })
    }

    /// The card naming whose it is: a country or an organisation (not both).
    pub fn of(mut self, affiliation: Option<Affiliation>) -> PartnerCard {
        (self.country, self.organisation) = match affiliation {
            Some(Affiliation::Country(c)) => (Some(c), None),
            Some(Affiliation::Organisation(o)) => (None, Some(o)),
            None => (None, None),
        };
        self
    }

    /// Whose it is, when the card says.
    pub fn affiliation(&self) -> Option<Affiliation> {
        Affiliation::of(self.country, self.organisation.as_ref())
    }

    /// The card announcing `new` as the signing key from now on, with the key it
    /// replaces valid until `until`. Refuses a rotation to the same key.
    pub fn rotated(mut self, new: PublicKey, until: Timestamp) -> Result<PartnerCard, CardError> {
        if new == self.signing_key {
            return Err(CardError::SigningKey(format!(
                "{new} is already the signing key on the card: make a new key with `renkei keygen`"
            )));
        }
        let old = std::mem::replace(&mut self.signing_key, new);
        self.previous_keys.retain(|k| k.public != new);
        self.previous_keys.push(PreviousKey {
            public: old,
            not_after: until,
        });
        Ok(self)
    }

    /// The keys a configuration gives this partner: the signing key, and each
    /// previous key with its end.
    pub fn keys(&self) -> Vec<KeyConfig> {
        let mut keys = vec![KeyConfig {
            public: self.signing_key,
            not_before: None,
            not_after: None,
        }];
        keys.extend(self.previous_keys.iter().map(|k| KeyConfig {
            public: k.public,
            not_before: None,
            not_after: Some(k.not_after),
        }));
        keys
    }

    /// Reads card text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<PartnerCard, CardError> {
        let card: PartnerCard = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        if let Some(a) = &card.address {
            check_address(a)?;
        }
        if card.country.is_some() && card.organisation.is_some() {
            return Err(CardError::Affiliation);
        }
        Ok(card)
    }

    /// The card as TOML, with a comment saying what it is.
    pub fn to_toml(&self) -> String {
        let mut doc = toml_edit::DocumentMut::new();
        doc["id"] = toml_edit::value(self.id.as_str());
        doc["signing_key"] = toml_edit::value(self.signing_key.to_string());
        doc["tls_fingerprint"] = toml_edit::value(self.tls_fingerprint.to_string());
        if let Some(a) = &self.address {
            doc["address"] = toml_edit::value(a.as_str());
        }
        if let Some(c) = self.country {
            doc["country"] = toml_edit::value(c.as_str());
        }
        if let Some(o) = &self.organisation {
            doc["organisation"] = toml_edit::value(o.as_str());
        }
        if !self.previous_keys.is_empty() {
            let mut keys = toml_edit::Array::new();
            for k in &self.previous_keys {
                let mut key = toml_edit::InlineTable::new();
                key.insert("public", k.public.to_string().into());
                key.insert("not_after", k.not_after.to_string().into());
                keys.push(key);
            }
            doc["previous_keys"] = toml_edit::value(keys);
        }
        format!(
            "# renkei partner card of {}: public keys only, no secret.\n\
             # Give it to the operator of each node this partner exchanges with; they run\n\
             # `renkei partner add --card FILE …`. Check the fingerprint with them out of band.\n{doc}",
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;
    use crate::timestamp::Timestamp;

    #[test]
    fn a_card_from_node_files_round_trips_and_holds_no_secret() {
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let tls = Ca::generate(now)
            .unwrap()
            .issue(&"mod-fr".parse().unwrap(), now)
            .unwrap();
        let key = identity::generate_signing_key();
        let pem = identity::signing_key_to_pem(&key).unwrap();
        let public = PublicKey::of(&key);

        let from_pub = PartnerCard::from_node_files(
            &tls.cert_pem,
            Some(&format!("{public}\n")),
            None,
            Some("192.0.2.7:4433"),
        )
        .unwrap();
        let from_key =
            PartnerCard::from_node_files(&tls.cert_pem, None, Some(&pem), Some("192.0.2.7:4433"))
                .unwrap();
        assert_eq!(from_pub, from_key);
        assert_eq!(from_pub.id.as_str(), "mod-fr");
        assert_eq!(from_pub.affiliation(), None);
        assert_eq!(from_pub.signing_key, public);
        assert_eq!(
            Some(from_pub.tls_fingerprint.to_string()),
            crate::pki::fingerprint(&tls.cert_pem),
            "certs init prints the fingerprint as the card does"
        );

        let from_pub = from_pub.of(Some(Affiliation::Country("FR".parse().unwrap())));
        let text = from_pub.to_toml();
        assert!(text.contains("country = \"FR\""), "{text}");
        assert!(!text.contains("PRIVATE"), "{text}");
        assert!(text.contains("id = \"mod-fr\""), "{text}");
        assert_eq!(
            PartnerCard::parse(&text, Path::new("c.toml")).unwrap(),
            from_pub
        );

        for bad in ["4433", ":4433", "host:port", "host:70000"] {
            assert!(matches!(
                PartnerCard::from_node_files(&tls.cert_pem, None, Some(&pem), Some(bad)),
                Err(CardError::Address(_))
            ));
        }
        assert!(PartnerCard::from_node_files(&tls.cert_pem, None, None, None).is_err());
        let err = PartnerCard::parse(&format!("{text}secret = 1\n"), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn a_rotated_card_carries_the_old_key_until_its_end() {
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let tls = Ca::generate(now)
            .unwrap()
            .issue(&"us-dod".parse().unwrap(), now)
            .unwrap();
        let (old, new) = (
            PublicKey::of(&identity::generate_signing_key()),
            PublicKey::of(&identity::generate_signing_key()),
        );
        let card = PartnerCard::from_node_files(&tls.cert_pem, Some(&old.to_string()), None, None)
            .unwrap();
        let until: Timestamp = "2026-12-13T00:00:00Z".parse().unwrap();
        let rotated = card.clone().rotated(new, until).unwrap();
        assert_eq!(rotated.signing_key, new);
        let keys = rotated.keys();
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].public, keys[0].not_after), (new, None));
        assert_eq!((keys[1].public, keys[1].not_after), (old, Some(until)));
        let text = rotated.to_toml();
        assert_eq!(
            PartnerCard::parse(&text, Path::new("c.toml")).unwrap(),
            rotated
        );
        assert!(
            card.rotated(old, until).is_err(),
            "the same key is no rotation"
        );
    }
}
