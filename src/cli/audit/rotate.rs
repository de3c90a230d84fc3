//! `renkei audit rotate-key`: a stopped node's audit log moves to a new checkpoint key,
//! the change recorded in the log and signed by both keys (`Store::rotate_audit_key`).

use std::path::Path;

use anyhow::{bail, Context as _};

use super::open_store;
use crate::audit::checkpoint;
use crate::node::audit_origin;
use crate::timestamp::Timestamp;

/// `renkei audit rotate-key`: the stopped node's log moves to `new_key`.
pub(in crate::cli) fn rotate_key(
    data_dir: &Path,
    old_key: &Path,
    new_key: &Path,
) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<ed25519_dalek::SigningKey> {
        let pem = crate::files::read_text(p)?;
        crate::identity::signing_key_from_pem(&pem).with_context(|| p.display().to_string())
    };
    let (old, new) = (read(old_key)?, read(new_key)?);
    if old.verifying_key() == new.verifying_key() {
        bail!("the new key is the old one");
    }
    let store = open_store(data_dir)?;
    let (node, _) = store
        .identity()?
        .ok_or_else(|| anyhow::anyhow!("{} was never run as a node", data_dir.display()))?;
    let origin = audit_origin(&node);
    let old = checkpoint::CheckpointSigner::new(&origin, old)?;
    let new = checkpoint::CheckpointSigner::new(&origin, new)?;
    let size = store
        .rotate_audit_key(&node, &old, &new, Timestamp::now())
        .context("the log is not signed with --old-key, or could not be written")?;
    store.flush()?;
    let public = crate::identity::PublicKey::of(new.key());
    emitln!("the audit log of {node} is signed with {public} from record {size} on; a checkpoint of {size} records carries both keys");
    emitln!(
        "next: name {} as node.signing_key and start the node; give partners its new card",
        new_key.display()
    );
    Ok(())
}
