//! `renkei certs init`, `certs request`, `certs sign` and `renkei keygen`.

use std::path::Path;

use anyhow::Context as _;

use crate::files::{self, Access};
use crate::identity::{self, PartnerId, PublicKey};
use crate::pki;
use crate::timestamp::Timestamp;

pub(super) fn init(dir: &Path, nodes: &[PartnerId], replace: pki::Replace) -> anyhow::Result<()> {
    let report = pki::init(dir, nodes, replace, Timestamp::now())?;
    let verb = if report.reused_ca {
        "reused"
    } else {
        "created"
    };
    println!("federation CA {verb}: {}", dir.join("ca.crt").display());
    println!("  fingerprint    {}", report.ca_fingerprint);
    for (id, outcome, fp, public) in &report.nodes {
        let what = match outcome {
            pki::NodeOutcome::Created => "created",
            pki::NodeOutcome::Replaced => "issued anew",
            pki::NodeOutcome::Kept => "exists, kept",
        };
        println!("node {id} ({what}): {}", dir.join(id.as_str()).display());
        println!("  tls.crt        {fp}");
        if let Some(public) = public {
            println!("  signing key    {public}");
        }
    }
    println!(
        "Give partners, out of band: ca.crt, each node's signing.pub and certificate fingerprint. \
         Keep ca.key and every *.key private; never commit them."
    );
    Ok(())
}

/// Writes a new signing key to `out` and its public half beside it (`out` with the
/// extension `.pub`), so a card or a partner's configuration can name it.
pub(super) fn keygen(out: &Path, force: bool) -> anyhow::Result<()> {
    let key = identity::generate_signing_key();
    let pem = identity::signing_key_to_pem(&key)?;
    let public = PublicKey::of(&key);
    let public_path = out.with_extension("pub");
    anyhow::ensure!(
        public_path != out,
        "{} ends in .pub: name the private key otherwise (e.g. signing-2.key)",
        out.display()
    );
    anyhow::ensure!(
        force || !public_path.exists(),
        "{} exists; pass --force to replace it with the new key's",
        public_path.display()
    );
    files::write(out, pem.as_bytes(), Access::Private, force).context("writing the signing key")?;
    files::write(
        &public_path,
        format!("{public}\n").as_bytes(),
        Access::Public,
        force,
    )
    .context("writing the public key")?;
    println!("{public}");
    eprintln!(
        "wrote {} (private, 0600) and {} (its public key, for cards and partners)",
        out.display(),
        public_path.display()
    );
    Ok(())
}

/// `renkei certs request`: a TLS key and its certificate request, and (unless a
/// renewal) a signing key, made where they stay.
pub(super) fn request(id: &PartnerId, dir: &Path, renew: bool) -> anyhow::Result<()> {
    let home = dir.join(id.as_str());
    let [_, tls_key, signing_key, _] = pki::node_files(dir, id);
    // A renewal goes beside the key and certificate in use, which keep working until
    // the new certificate is signed and both are moved over them.
    let (tls_key, csr_path) = match renew {
        true => (home.join("tls-renew.key"), home.join("tls-renew.csr")),
        false => (tls_key, home.join("tls.csr")),
    };
    if !renew {
        anyhow::ensure!(
            !signing_key.exists(),
            "{} exists: pass --renew to make a new TLS key and request and keep it",
            signing_key.display()
        );
    }
    let req = pki::request(id)?;
    files::write(&tls_key, req.key_pem.as_bytes(), Access::Private, renew)?;
    files::write(&csr_path, req.csr_pem.as_bytes(), Access::Public, renew)?;
    println!(
        "wrote {} (private) and {}",
        tls_key.display(),
        csr_path.display()
    );
    if !renew {
        keygen(&signing_key, false)?;
    }
    let crt = csr_path.with_extension("crt");
    println!(
        "Send {} to the federation CA's operator (`renkei certs sign --csr …`) and put the \
         {} they return beside it{}. Keep every .key here.",
        csr_path.display(),
        crt.display(),
        match renew {
            true => "; then move tls-renew.crt and tls-renew.key over tls.crt and tls.key",
            false => ", with their ca.crt",
        }
    );
    Ok(())
}

/// `renkei certs sign`: signs a request with the CA in `dir`.
pub(super) fn sign(
    dir: &Path,
    csr: &Path,
    expect: Option<&PartnerId>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let ca = pki::Ca::from_pem(
        &files::read_text(&dir.join("ca.crt"))?,
        &files::read_text(&dir.join("ca.key"))?,
    )
    .map_err(|why| anyhow::anyhow!("the CA in {} cannot be used: {why}", dir.display()))?;
    let text = files::read_text(csr)?;
    let (id, cert) = ca
        .sign_request(&text, expect, Timestamp::now())
        .with_context(|| format!("signing {}", csr.display()))?;
    let out = out.map_or_else(|| csr.with_extension("crt"), Path::to_path_buf);
    files::write(&out, cert.as_bytes(), Access::Public, true)?;
    println!("signed a certificate for {id}: {}", out.display());
    println!(
        "  tls.crt        {}",
        pki::fingerprint(&cert).unwrap_or_default()
    );
    println!(
        "Send it back with {}; the partner's card will carry this fingerprint.",
        dir.join("ca.crt").display()
    );
    Ok(())
}
