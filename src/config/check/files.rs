//! The key and certificate files a node or a client names: each readable, private keys
//! private, the CA a CA, the certificate valid, naming its holder, issued by that CA and
//! matching its key, and the signing key a PEM Ed25519 key. Pure: the bytes come read.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::{FileRead, Finding, Holder, NodeFiles, Severity, RENEW_WITHIN};
use crate::identity::{self, partner_from_cert};
use crate::timestamp::Timestamp;

/// Every check of the files `who` names, as read in `files`, at `now`.
pub(super) fn check(who: &Holder<'_>, files: &NodeFiles, now: Timestamp, out: &mut Vec<Finding>) {
    let (ca, cert, key) = (
        who.field("ca_cert"),
        who.field("tls_cert"),
        who.field("tls_key"),
    );
    let ca_text = contents(&ca, who.ca_cert, &files.ca_cert, out);
    let cert_text = contents(&cert, who.tls_cert, &files.tls_cert, out);
    let key_text = contents(&key, who.tls_key, &files.tls_key, out);
    private_mode(&key, who.tls_key, &files.tls_key, out);
    let roots = ca_text.and_then(|b| check_ca(&ca, who.ca_cert, b, now, out));
    let spki = key_text.and_then(|b| tls_key(&key, who.tls_key, b, out));
    if let Some(bytes) = cert_text {
        check_tls_cert(who, bytes, roots.as_deref(), spki.as_deref(), now, out);
    }
    if let Some(path) = who.signing_key {
        signing_key(&who.field("signing_key"), path, &files.signing_key, out);
    }
}

/// The signing key: readable, private, and a PEM Ed25519 key.
fn signing_key(field: &str, path: &Path, read: &FileRead, out: &mut Vec<Finding>) {
    private_mode(field, path, read, out);
    let Some(bytes) = contents(field, path, read, out) else {
        return;
    };
    let ok = std::str::from_utf8(bytes)
        .map_err(|_| identity::IdentityError::PrivateKeyPem("not UTF-8 text".into()))
        .and_then(identity::signing_key_from_pem);
    if let Err(e) = ok {
        out.push(Finding::error(field, format!("{}: {e}", path.display())));
    }
}

fn contents<'a>(
    field: &str,
    path: &Path,
    read: &'a FileRead,
    out: &mut Vec<Finding>,
) -> Option<&'a [u8]> {
    match read {
        FileRead::Read { bytes, .. } => Some(bytes),
        FileRead::Missing => {
            out.push(Finding::error(
                field,
                format!("{} does not exist", path.display()),
            ));
            None
        }
        FileRead::Unreadable(why) => {
            out.push(Finding::error(
                field,
                format!("{} cannot be read: {why}", path.display()),
            ));
            None
        }
    }
}

/// Private keys: anything for others or group write is an error; group read only is a
/// warning, because a Kubernetes Secret mounted with `fsGroup` is exactly that.
fn private_mode(field: &str, path: &Path, read: &FileRead, out: &mut Vec<Finding>) {
    let FileRead::Read {
        mode: Some(mode), ..
    } = read
    else {
        return;
    };
    let path = path.display();
    if mode & 0o027 != 0 {
        out.push(Finding::error(
            field,
            format!(
                "{path} is mode {mode:04o}: a private key must be 0600, readable by the service's user only (chmod 600 {path})"
            ),
        ));
    } else if mode & 0o050 != 0 {
        out.push(Finding::warning(
            field,
            format!(
                "{path} is mode {mode:04o}: 0600 is expected; group read is fine only if the group is the service's own (as with a Kubernetes Secret mounted with fsGroup)"
            ),
        ));
    }
}

/// Why a file's certificates cannot be read.
#[derive(Debug, thiserror::Error)]
enum CertsUnreadable {
    /// The file is not PEM.
    #[error("not PEM: {0}")]
    NotPem(rustls::pki_types::pem::Error),
    /// It is PEM, but holds no certificate.
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A certificate's DER does not parse.
    #[error("a certificate does not parse: {0}")]
    Unparsable(x509_parser::nom::Err<x509_parser::error::X509Error>),
}

fn pem_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertsUnreadable> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertsUnreadable::NotPem)?;
    if certs.is_empty() {
        return Err(CertsUnreadable::NoCertificate);
    }
    Ok(certs)
}

fn parse_cert<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, CertsUnreadable> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c)
        .map_err(CertsUnreadable::Unparsable)
}

fn time_text(secs: i64) -> String {
    Timestamp::from_unix_ms(u64::try_from(secs).unwrap_or(0).saturating_mul(1000)).to_string()
}

/// Not yet valid or expired: error; expiring within [`RENEW_WITHIN`]: warning.
fn validity(
    field: &str,
    what: &str,
    cert: &X509Certificate<'_>,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let now_s = i64::try_from(now.unix_ms() / 1000).unwrap_or(i64::MAX);
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now_s < not_before {
        out.push(Finding::error(
            field,
            format!(
                "{what} is not valid before {} (check this machine's clock)",
                time_text(not_before)
            ),
        ));
    } else if now_s >= not_after {
        out.push(Finding::error(
            field,
            format!("{what} expired on {}: renew it", time_text(not_after)),
        ));
    } else if not_after - now_s < RENEW_WITHIN.as_secs() as i64 {
        let days = (not_after - now_s) / 86_400;
        out.push(Finding::warning(
            field,
            format!(
                "{what} expires on {}, in {days} days: renew it before then",
                time_text(not_after)
            ),
        ));
    }
}

/// Parses the CA file and checks each certificate is a valid CA; returns them.
fn check_ca(
    field: &str,
    path: &Path,
    bytes: &[u8],
    now: Timestamp,
    out: &mut Vec<Finding>,
) -> Option<Vec<CertificateDer<'static>>> {
    let certs = match pem_certs(bytes) {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::error(field, format!("{}: {e}", path.display())));
            return None;
        }
    };
    for der in &certs {
        match parse_cert(der) {
            Err(e) => {
                out.push(Finding::error(field, format!("{}: {e}", path.display())));
                return None;
            }
            Ok(cert) => {
                if !cert.is_ca() {
                    out.push(Finding::error(
                        field,
                        format!(
                            "{}: {} is not a CA certificate",
                            path.display(),
                            cert.subject()
                        ),
                    ));
                }
                let what = format!("the CA certificate in {}", path.display());
                validity(field, &what, &cert, now, out);
            }
        }
    }
    Some(certs)
}

/// Parses the TLS key; returns its SubjectPublicKeyInfo (DER) when rustls can use it.
fn tls_key(field: &str, path: &Path, bytes: &[u8], out: &mut Vec<Finding>) -> Option<Vec<u8>> {
    let der = match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(d) => d,
        Err(e) => {
            out.push(Finding::error(
                field,
                format!(
                    "{}: not a PEM private key (PKCS#8 expected): {e}",
                    path.display()
                ),
            ));
            return None;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    match provider.key_provider.load_private_key(der) {
        Ok(key) => key.public_key().map(|spki| spki.as_ref().to_vec()),
        Err(e) => {
            out.push(Finding::error(
                field,
                format!("{}: TLS cannot use this key: {e}", path.display()),
            ));
            None
        }
    }
}

/// Is `child` signed by `parent`?
fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer() == parent.subject() && child.verify_signature(Some(parent.public_key())).is_ok()
}

/// Does `chain` (leaf first, then intermediates in any order) lead to one of `roots`?
fn chains_to(chain: &[X509Certificate<'_>], roots: &[X509Certificate<'_>]) -> bool {
    let Some(mut current) = chain.first() else {
        return false;
    };
    for _ in 0..chain.len() {
        if roots.iter().any(|r| issued_by(current, r)) {
            return true;
        }
        match chain[1..].iter().find(|c| issued_by(current, c)) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

fn check_tls_cert(
    who: &Holder<'_>,
    bytes: &[u8],
    roots: Option<&[CertificateDer<'static>]>,
    key_spki: Option<&[u8]>,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let field = who.field("tls_cert");
    let path = who.tls_cert.display();
    let ders = match pem_certs(bytes) {
        Ok(c) => c,
        Err(e) => return out.push(Finding::error(field, format!("{path}: {e}"))),
    };
    let chain = match ders.iter().map(parse_cert).collect::<Result<Vec<_>, _>>() {
        Ok(c) => c,
        Err(e) => return out.push(Finding::error(field, format!("{path}: {e}"))),
    };
    let leaf = &chain[0];
    validity(
        &field,
        &format!("the certificate in {path}"),
        leaf,
        now,
        out,
    );
    names_its_holder(who, &ders[0], out);
    if let Some(spki) = key_spki {
        if leaf.public_key().raw != spki {
            out.push(Finding::error(
                who.field("tls_key"),
                format!(
                    "{} is not the key of the certificate in {path}",
                    who.tls_key.display()
                ),
            ));
        }
    }
    let Some(root_ders) = roots else { return };
    let Ok(root_certs) = root_ders
        .iter()
        .map(parse_cert)
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    if !chains_to(&chain, &root_certs) {
        out.push(Finding::error(
            &field,
            format!(
                "{path} is not issued by the CA in {}.ca_cert ({}): it comes from another CA (issuer {}), and partners would refuse it",
                who.table,
                who.ca_cert.display(),
                leaf.issuer()
            ),
        ));
    }
    // The exact verification a partner runs, for anything the checks above missed
    // (key usage, constraints); only when they found nothing, so each cause is named once.
    let ca = who.field("ca_cert");
    let named_already = out
        .iter()
        .any(|f| f.severity == Severity::Error && (f.field == ca || f.field == field));
    if !named_already {
        if let Err(e) = verify_as_partner(who, &ders, root_ders, now) {
            out.push(Finding::error(
                field,
                format!("{path}: a partner would refuse it: {e}"),
            ));
        }
    }
}

/// Whether the certificate `leaf` names the partner id of the table that holds it.
fn names_its_holder(who: &Holder<'_>, leaf: &CertificateDer<'_>, out: &mut Vec<Finding>) {
    let (field, path) = (who.field("tls_cert"), who.tls_cert.display());
    match partner_from_cert(leaf.as_ref()) {
        Ok(id) if &id == who.id => {}
        Ok(id) => out.push(Finding::error(
            &field,
            format!(
                "{path} names {id}, not {}.id {}: {} would take it for {id}",
                who.table,
                who.id,
                if who.table == "node" {
                    "partners"
                } else {
                    "its node"
                }
            ),
        )),
        Err(e) => out.push(Finding::error(&field, format!("{path}: {e}"))),
    }
}

/// Why a partner's TLS stack would refuse a chain (or could not even be set up to
/// check it).
#[derive(Debug, thiserror::Error)]
enum ChainRefused {
    /// A CA certificate is not one rustls accepts as a root.
    #[error("the CA certificate is unusable: {0}")]
    Root(rustls::Error),
    /// No verifier can be made from the roots.
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The node's id is not a name a certificate can be checked against.
    #[error("the id is not a valid DNS name: {0}")]
    Name(#[from] rustls::pki_types::InvalidDnsNameError),
    /// The chain does not verify.
    #[error(transparent)]
    Refused(rustls::Error),
}

/// Verifies the chain as the other end would (rustls, webpki): a node's as a partner
/// dialling it does, a client's as its node does.
fn verify_as_partner(
    who: &Holder<'_>,
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    now: Timestamp,
) -> Result<(), ChainRefused> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(ChainRefused::Root)?;
    }
    let store = Arc::new(store);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let at = UnixTime::since_unix_epoch(Duration::from_millis(now.unix_ms()));
    if who.table != "node" {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(store, provider).build()?;
        return verifier
            .verify_client_cert(&chain[0], &chain[1..], at)
            .map(|_| ())
            .map_err(ChainRefused::Refused);
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(store, provider).build()?;
    let name = ServerName::try_from(who.id.as_str().to_owned())?;
    use rustls::client::danger::ServerCertVerifier as _;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
        .map(|_| ())
        .map_err(ChainRefused::Refused)
}
