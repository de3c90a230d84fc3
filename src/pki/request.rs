//! Certificates for keys the CA never sees: a partner makes its TLS key and a
//! certificate signing request (PKCS#10) where the key stays, and the federation CA's
//! operator signs the request. The CA takes only the request's public key and the one
//! partner id it names; everything else in the certificate is the CA's choice, as in
//! [`Ca::issue`].

use rcgen::{CertificateSigningRequestParams, KeyPair, SanType};

use super::{leaf_params, Ca, PkiError, BACKDATE, NODE_VALIDITY};
use crate::identity::PartnerId;
use crate::timestamp::Timestamp;

/// A new TLS key and the request for its certificate, both PEM.
pub struct Request {
    /// The certificate signing request, for the CA's operator.
    pub csr_pem: String,
    /// The private key: it stays with its owner.
    pub key_pem: String,
}

/// Makes a TLS key and a signed request for a certificate naming `id`.
pub fn request(id: &PartnerId) -> Result<Request, PkiError> {
    let key = KeyPair::generate()?;
    // The name alone: usages, window and the rest are the CA's to choose.
    let mut params = rcgen::CertificateParams::new(vec![id.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id.as_str());
    let csr = params.serialize_request(&key)?;
    Ok(Request {
        csr_pem: csr.pem()?,
        key_pem: key.serialize_pem(),
    })
}

impl Ca {
    /// Signs the request `csr_pem` (its own signature checked) with a certificate for
    /// the one partner id its DNS name gives, valid from `now` as [`Ca::issue`] makes
    /// them. `expect`, when given, must be that id.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        expect: Option<&PartnerId>,
        now: Timestamp,
    ) -> Result<(PartnerId, String), PkiError> {
        let bad = PkiError::BadRequest;
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| bad(e.to_string()))?;
        let names: Vec<&str> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|n| match n {
                SanType::DnsName(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let [name] = names[..] else {
            return Err(bad(format!(
                "it must name exactly one partner id as its DNS name, not {}",
                names.len()
            )));
        };
        let id: PartnerId = name
            .parse()
            .map_err(|e| bad(format!("{name:?} is not a partner id: {e}")))?;
        if let Some(expected) = expect {
            if &id != expected {
                return Err(bad(format!("it names {id}, not {expected}")));
            }
        }
        let start =
            Timestamp::from_unix_ms(now.unix_ms().saturating_sub(BACKDATE.as_millis() as u64));
        let params = leaf_params(&id, start, now.saturating_add(NODE_VALIDITY))?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok((id, cert.pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::partner_from_cert;
    use rcgen::PublicKeyData as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn a_request_is_signed_for_the_id_it_names_and_no_other() {
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let ca = Ca::generate(now).unwrap();
        let req = request(&pid("us-dod")).unwrap();
        assert!(req.csr_pem.contains("CERTIFICATE REQUEST"));
        let (id, cert) = ca.sign_request(&req.csr_pem, None, now).unwrap();
        assert_eq!(id, pid("us-dod"));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(partner_from_cert(der.as_ref()).unwrap(), pid("us-dod"));
        // The certificate carries the requester's key, not one the CA made.
        let key = KeyPair::from_pem(&req.key_pem).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(parsed.public_key().raw, key.subject_public_key_info());

        let err = ca
            .sign_request(&req.csr_pem, Some(&pid("jp-mod")), now)
            .unwrap_err();
        assert!(
            err.to_string().contains("names us-dod, not jp-mod"),
            "{err}"
        );
        // One base64 character of the body changed: the request no longer verifies.
        let mut lines: Vec<String> = req.csr_pem.lines().map(str::to_owned).collect();
        let flipped = if lines[2].starts_with('A') { "B" } else { "A" };
        lines[2].replace_range(0..1, flipped);
        let err = ca.sign_request(&lines.join("\n"), None, now).unwrap_err();
        assert!(matches!(err, PkiError::BadRequest(_)), "{err}");
        assert!(ca.sign_request("not a request", None, now).is_err());
    }
}
