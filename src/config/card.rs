//! A partner card: the public facts one operator gives another to be onboarded (id,
//! Ed25519 signing key, TLS certificate fingerprint, optional address), as TOML.
//!
//! Pure: it builds a card from file contents the caller read and parses card text.
//! It must never hold or print private key material; a signing key read to derive the
//! public half is dropped at once.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::{syntax_error, ConfigError};
use crate::identity::partner_from_cert;
use crate::identity::{self, CertFingerprint, PartnerId, PublicKey};

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
        })
    }

    /// Reads card text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<PartnerCard, CardError> {
        let card: PartnerCard = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        if let Some(a) = &card.address {
            check_address(a)?;
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
        assert_eq!(from_pub.signing_key, public);
        assert_eq!(
            Some(from_pub.tls_fingerprint.to_string().replace("sha256:", "")),
            crate::pki::fingerprint(&tls.cert_pem).map(|f| f.replace(':', ""))
        );

        let text = from_pub.to_toml();
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
}
