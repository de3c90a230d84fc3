//! Signing the audit log: checkpoints (by one key, or by the old and the new at a key
//! rotation), the witnesses' cosignatures added to them, and the rotation itself.

use super::{audit, corrupt, Entry, Store, StoreError};
use crate::audit::checkpoint::CheckpointSigner;
use crate::identity::PartnerId;
use crate::store::kv;

impl Store {
    /// Signs a checkpoint of the audit log if it grew since the last one, and flushes.
    /// Returns the size it covers, or `None` if there was nothing new to sign.
    pub fn sign_checkpoint(&self, signer: &CheckpointSigner) -> Result<Option<u64>, StoreError> {
        self.sign_checkpoint_by(&[signer])
    }

    /// [`Store::sign_checkpoint`] with every one of `signers` (a key rotation's old and
    /// new keys).
    fn sign_checkpoint_by(&self, signers: &[&CheckpointSigner]) -> Result<Option<u64>, StoreError> {
        let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let mut writes = kv::Batch::default();
        let Some((size, root)) = log.checkpoint(&self.state, &self.values, signers, &mut writes)?
        else {
            return Ok(None);
        };
        self.state.apply_batch(writes)?;
        // Only once durable: a commit saving counters after it writes only those moved
        // since, so it must never outlive a checkpoint that a crash took back.
        self.flush_durably()?;
        log.signed(size, root);
        Ok(Some(size))
    }

    /// Rotates the audit log's checkpoint key from `old` to `new` (a stopped node's
    /// store): records the statement signed by both, signs a checkpoint covering it
    /// with both, and names `new` as the log's key. The log's latest checkpoint must be
    /// `old`'s. Returns the size of that checkpoint.
    pub fn rotate_audit_key(
        &self,
        node: &PartnerId,
        old: &CheckpointSigner,
        new: &CheckpointSigner,
        now: crate::timestamp::Timestamp,
    ) -> Result<u64, StoreError> {
        let origin = crate::audit::checkpoint::log_origin(node.as_str());
        self.audit()
            .check_checkpoint(&origin, &old.verifying_key())?;
        let at = self.audit_progress().0;
        let rotation = crate::audit::rotation::rotate(&origin, at, old.key(), new.key());
        let event = crate::audit::record::Event::audit_key_rotated(node, rotation);
        self.commit(vec![Entry::Event(Some(event), None)], now)?;
        let size = self
            .sign_checkpoint_by(&[old, new])?
            .ok_or_else(|| corrupt(b"p/", "the rotation was not recorded"))?;
        self.set_identity(node, &new.verifying_key())?;
        Ok(size)
    }

    /// Adds a witness's cosignature line to this node's checkpoint of size `size`,
    /// durably; false if there is no checkpoint at that size.
    pub fn add_cosignature(&self, size: u64, line: &str) -> Result<bool, StoreError> {
        let _log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let added = audit::add_cosignature(&self.state, size, line)?;
        self.flush_durably()?;
        Ok(added)
    }
}
