//! `renkei certs init` and `renkei keygen`.

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
    println!("  sha256 fingerprint {}", report.ca_fingerprint);
    for (id, outcome, fp, public) in &report.nodes {
        let what = match outcome {
            pki::NodeOutcome::Created => "created",
            pki::NodeOutcome::Replaced => "issued anew",
            pki::NodeOutcome::Kept => "exists, kept",
        };
        println!("node {id} ({what}): {}", dir.join(id.as_str()).display());
        println!("  tls.crt sha256 {fp}");
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

pub(super) fn keygen(out: &Path, force: bool) -> anyhow::Result<()> {
    let key = identity::generate_signing_key();
    let pem = identity::signing_key_to_pem(&key)?;
    files::write(out, pem.as_bytes(), Access::Private, force).context("writing the signing key")?;
    println!("{}", PublicKey::of(&key));
    Ok(())
}
