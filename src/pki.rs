//! The development PKI: a federation CA and, per node, a TLS certificate naming its
//! partner id and an Ed25519 signing key (`renkei certs init`).
//!
//! Certificate generation is pure (time passed in); [`init`] is the thin shell that
//! writes the files. Production deployments may use their own CA instead: renkei only
//! needs certificates chained to the federation CA whose DNS SAN is the partner id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

mod request;
pub use request::{request, Request};

use crate::files::{self, Access, FileError};
use crate::identity::{self, PartnerId, PublicKey};
use crate::timestamp::Timestamp;

/// How long the federation CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node's TLS certificate is valid.
pub const NODE_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Certificates start slightly in the past so a peer with a slow clock accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors of the development PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The existing CA files could not be used.
    #[error("the existing CA in {dir} cannot be used: {why}")]
    BadCa {
        /// Directory holding ca.crt / ca.key.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The existing CA's certificate and key do not make a CA.
    #[error("the existing CA in {dir} cannot be used: {source}")]
    UnusableCa {
        /// Directory holding ca.crt / ca.key.
        dir: PathBuf,
        /// What is wrong with them.
        source: CaPemError,
    },
    /// A file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A signing key could not be encoded.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// Some of a node's files exist and some do not.
    #[error("{0} holds only some of a node's files (tls.crt, tls.key, signing.key, signing.pub); restore them, or pass --force to issue that node anew")]
    HalfMade(PathBuf),
    /// A new CA was asked for while listed nodes keep certificates of the old one.
    #[error("a new CA makes the listed nodes' certificates useless: pass --force as well to issue them anew, or list only new nodes")]
    OldNodes,
    /// A time could not be represented in a certificate.
    #[error("time {0} cannot be written into a certificate")]
    Time(Timestamp),
    /// A certificate signing request that cannot be signed.
    #[error("the certificate request cannot be signed: {0}")]
    BadRequest(String),
}

/// Why a CA certificate and key (PEM) cannot be loaded as a CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaPemError {
    /// ca.key is not a private key rcgen can read.
    #[error("ca.key: {0}")]
    Key(rcgen::Error),
    /// ca.crt is not a PEM certificate.
    #[error("ca.crt is not a PEM certificate: {0}")]
    NotPem(rustls::pki_types::pem::Error),
    /// ca.crt is PEM but not an X.509 certificate.
    #[error("ca.crt does not parse: {0}")]
    Unparsable(String),
    /// ca.crt is not marked as a CA.
    #[error("ca.crt is not a CA certificate")]
    NotCa,
    /// ca.key does not belong to ca.crt.
    #[error("ca.key is not the key of ca.crt")]
    KeyMismatch,
    /// rcgen cannot issue with them.
    #[error("ca.crt: {0}")]
    Issuer(rcgen::Error),
}

/// The federation CA: its certificate and private key, both PEM.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A TLS certificate and key for one node, both PEM.
pub struct NodeTls {
    /// The certificate, signed by the CA.
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

fn window(
    now: Timestamp,
    valid_for: Duration,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), PkiError> {
    let start = Timestamp::from_unix_ms(now.unix_ms().saturating_sub(BACKDATE.as_millis() as u64));
    let end = now.saturating_add(valid_for);
    Ok((
        start.to_datetime().ok_or(PkiError::Time(start))?,
        end.to_datetime().ok_or(PkiError::Time(end))?,
    ))
}

fn ca_params(now: Timestamp) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "renkei federation CA");
    dn.push(DnType::OrganizationName, "renkei federation");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = window(now, CA_VALIDITY)?;
    Ok(params)
}

impl Ca {
    /// Generates a new federation CA (ECDSA P-256).
    pub fn generate(now: Timestamp) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let params = ca_params(now)?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA from its certificate and key PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CaPemError> {
        let key = KeyPair::from_pem(key_pem).map_err(CaPemError::Key)?;
        let der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(CaPemError::NotPem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CaPemError::Unparsable(e.to_string()))?;
        if !cert.is_ca() {
            return Err(CaPemError::NotCa);
        }
        if cert.public_key().raw != key.subject_public_key_info() {
            return Err(CaPemError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(CaPemError::Issuer)?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a TLS certificate for `id`: end entity (not a CA), DNS SAN = the partner
    /// id, usable for both server and client authentication.
    pub fn issue(&self, id: &PartnerId, now: Timestamp) -> Result<NodeTls, PkiError> {
        let start =
            Timestamp::from_unix_ms(now.unix_ms().saturating_sub(BACKDATE.as_millis() as u64));
        self.issue_valid(id, start, now.saturating_add(NODE_VALIDITY))
    }

    /// Like [`Ca::issue`], valid from `not_before` until `not_after` exactly: for
    /// certificates with a chosen lifetime, such as already expired ones in tests.
    pub fn issue_valid(
        &self,
        id: &PartnerId,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> Result<NodeTls, PkiError> {
        let key = KeyPair::generate()?;
        let params = leaf_params(id, not_before, not_after)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A partner's TLS certificate: end entity (not a CA), DNS SAN and common name = the
/// partner id, for both server and client authentication, valid in the window given.
fn leaf_params(
    id: &PartnerId,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(vec![id.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.as_str());
    dn.push(DnType::OrganizationName, "renkei federation");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before.to_datetime().ok_or(PkiError::Time(not_before))?;
    params.not_after = not_after.to_datetime().ok_or(PkiError::Time(not_after))?;
    Ok(params)
}

/// SHA-256 fingerprint of the first certificate in `pem`, written as cards and
/// configurations write it (`sha256:` and lowercase hex).
pub fn fingerprint(pem: &str) -> Option<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(crate::identity::CertFingerprint::of_der(der.as_ref()).to_string())
}

/// What [`init`] may replace. By default nothing: an existing CA is reused and nodes
/// whose files exist are kept, so nodes can be added to a federation at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replace {
    /// Issue the listed nodes new certificates and signing keys over their old ones.
    pub nodes: bool,
    /// Make a new federation CA over the old one (every node then needs new
    /// certificates, and every partner the new ca.crt).
    pub ca: bool,
}

/// What became of one node's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Issued now.
    Created,
    /// Issued now over the old files.
    Replaced,
    /// Its files existed and were kept.
    Kept,
}

/// What [`init`] wrote, for the CLI to report.
pub struct InitReport {
    /// True when an existing CA was reused.
    pub reused_ca: bool,
    /// The CA certificate fingerprint.
    pub ca_fingerprint: String,
    /// Per node: id, what was done, TLS certificate fingerprint, signing public key.
    pub nodes: Vec<(PartnerId, NodeOutcome, String, Option<PublicKey>)>,
}

/// The files `certs init` writes for one node, relative to the PKI directory.
pub fn node_files(dir: &Path, id: &PartnerId) -> [PathBuf; 4] {
    let d = dir.join(id.as_str());
    [
        d.join("tls.crt"),
        d.join("tls.key"),
        d.join("signing.key"),
        d.join("signing.pub"),
    ]
}

/// Whether a node's files all exist (Some(true)), none do (Some(false)), or only some
/// (None: a half-made node that must not be silently kept or completed).
fn node_state(dir: &Path, id: &PartnerId) -> Option<bool> {
    let present = node_files(dir, id).iter().filter(|p| p.exists()).count();
    match present {
        0 => Some(false),
        4 => Some(true),
        _ => None,
    }
}

/// The CA to issue with: the existing one, unless `new_ca` or there is none.
fn ca_for(dir: &Path, new_ca: bool, now: Timestamp) -> Result<(Ca, bool), PkiError> {
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let bad_ca = |why: String| PkiError::BadCa {
        dir: dir.to_owned(),
        why,
    };
    match (new_ca, ca_crt.exists(), ca_key.exists()) {
        (false, true, true) => {
            let cert = files::read_text(&ca_crt)?;
            let key = files::read_text(&ca_key)?;
            let ca = Ca::from_pem(&cert, &key).map_err(|source| PkiError::UnusableCa {
                dir: dir.to_owned(),
                source,
            })?;
            Ok((ca, true))
        }
        (false, true, false) | (false, false, true) => Err(bad_ca(
            "only one of ca.crt and ca.key exists; restore the other, or pass --new-ca to start a new federation CA".into(),
        )),
        _ => {
            let ca = Ca::generate(now)?;
            files::write(&ca_crt, ca.cert_pem().as_bytes(), Access::Public, new_ca)?;
            files::write(&ca_key, ca.key_pem().as_bytes(), Access::Private, new_ca)?;
            Ok((ca, false))
        }
    }
}

/// Writes (or reuses) the federation CA in `dir` and a TLS certificate and signing key
/// per listed node. Nodes whose files exist are kept unless `replace.nodes`; the CA is
/// replaced only with `replace.ca`.
pub fn init(
    dir: &Path,
    nodes: &[PartnerId],
    replace: Replace,
    now: Timestamp,
) -> Result<InitReport, PkiError> {
    // Check everything before writing anything, so a refusal leaves no half-made PKI.
    let mut exists = Vec::with_capacity(nodes.len());
    for id in nodes {
        match node_state(dir, id) {
            Some(e) => exists.push(e),
            None if replace.nodes => exists.push(true),
            None => return Err(PkiError::HalfMade(dir.join(id.as_str()))),
        }
    }
    if replace.ca && !replace.nodes && exists.iter().any(|e| *e) {
        return Err(PkiError::OldNodes);
    }
    let (ca, reused_ca) = ca_for(dir, replace.ca, now)?;
    let mut report = InitReport {
        reused_ca,
        ca_fingerprint: fingerprint(ca.cert_pem()).unwrap_or_default(),
        nodes: Vec::new(),
    };
    for (id, existed) in nodes.iter().zip(exists) {
        let outcome = match (existed, replace.nodes) {
            (true, false) => {
                let crt = files::read_text(&node_files(dir, id)[0])?;
                let public = files::read_text(&node_files(dir, id)[3])?
                    .trim()
                    .parse()
                    .ok();
                let fp = fingerprint(&crt).unwrap_or_default();
                report
                    .nodes
                    .push((id.clone(), NodeOutcome::Kept, fp, public));
                continue;
            }
            (true, true) => NodeOutcome::Replaced,
            (false, _) => NodeOutcome::Created,
        };
        let (fp, public) = issue_node(dir, &ca, id, now)?;
        report.nodes.push((id.clone(), outcome, fp, Some(public)));
    }
    Ok(report)
}

/// Issues one node's TLS certificate and signing key into its directory.
fn issue_node(
    dir: &Path,
    ca: &Ca,
    id: &PartnerId,
    now: Timestamp,
) -> Result<(String, PublicKey), PkiError> {
    let tls = ca.issue(id, now)?;
    let signing = identity::generate_signing_key();
    let public = PublicKey::of(&signing);
    let [crt, key, skey, spub] = node_files(dir, id);
    files::write(&crt, tls.cert_pem.as_bytes(), Access::Public, true)?;
    files::write(&key, tls.key_pem.as_bytes(), Access::Private, true)?;
    let pem = identity::signing_key_to_pem(&signing)?;
    files::write(&skey, pem.as_bytes(), Access::Private, true)?;
    files::write(
        &spub,
        format!("{public}\n").as_bytes(),
        Access::Public,
        true,
    )?;
    Ok((fingerprint(&tls.cert_pem).unwrap_or_default(), public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn node_certificate_is_an_end_entity_naming_the_partner() {
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let ca = Ca::generate(now).unwrap();
        let tls = ca.issue(&pid("mod-jp"), now).unwrap();
        let der = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        let bc = cert.basic_constraints().unwrap();
        assert!(
            bc.is_none_or(|bc| !bc.value.ca),
            "an end-entity certificate must not be a CA"
        );
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("mod-jp")]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && eku.value.client_auth);
        // Signed by the CA.
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert!(ca_cert.basic_constraints().unwrap().unwrap().value.ca);
    }

    #[test]
    fn init_adds_nodes_keeps_what_exists_and_replaces_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let keep = Replace::default();
        let first = init(dir.path(), &[pid("a"), pid("b")], keep, now).unwrap();
        assert!(!first.reused_ca);
        let ca_before = std::fs::read(dir.path().join("ca.crt")).unwrap();
        let key_before = std::fs::read(dir.path().join("a/signing.key")).unwrap();

        // Listing the federation again with a new node adds it and keeps the others.
        let second = init(dir.path(), &[pid("a"), pid("b"), pid("c")], keep, now).unwrap();
        assert!(second.reused_ca);
        assert_eq!(second.ca_fingerprint, first.ca_fingerprint);
        let outcomes: Vec<_> = second.nodes.iter().map(|n| n.1).collect();
        assert_eq!(
            outcomes,
            [NodeOutcome::Kept, NodeOutcome::Kept, NodeOutcome::Created]
        );
        assert_eq!(
            second.nodes[0].2, first.nodes[0].2,
            "the kept certificate's fingerprint"
        );
        assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca_before);
        assert_eq!(
            std::fs::read(dir.path().join("a/signing.key")).unwrap(),
            key_before
        );

        // A half-made node is refused, and nothing is written.
        std::fs::remove_file(dir.path().join("b/tls.key")).unwrap();
        let err = init(dir.path(), &[pid("d"), pid("b")], keep, now)
            .err()
            .unwrap();
        assert!(matches!(err, PkiError::HalfMade(_)), "{err}");
        assert!(!dir.path().join("d").exists(), "a refusal writes nothing");

        // --force issues the listed nodes anew under the same CA.
        let nodes = Replace {
            nodes: true,
            ca: false,
        };
        let forced = init(dir.path(), &[pid("a"), pid("b")], nodes, now).unwrap();
        assert_eq!(forced.ca_fingerprint, first.ca_fingerprint, "the CA stays");
        assert_ne!(
            std::fs::read(dir.path().join("a/signing.key")).unwrap(),
            key_before
        );

        // A new CA needs its own flag, and new certificates for the nodes it lists.
        let new_ca = Replace {
            nodes: false,
            ca: true,
        };
        let err = init(dir.path(), &[pid("a")], new_ca, now).err().unwrap();
        assert!(matches!(err, PkiError::OldNodes), "{err}");
        let both = Replace {
            nodes: true,
            ca: true,
        };
        let renewed = init(dir.path(), &[pid("a")], both, now).unwrap();
        assert_ne!(renewed.ca_fingerprint, first.ca_fingerprint);
    }
}
