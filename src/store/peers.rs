//! What a node keeps of and for its peers beyond their queues: how far the receipts
//! each is owed were passed back to it, how far each peer cosigned this node's log,
//! and, as a witness, the latest checkpoint of each peer's log it cosigned and any fork
//! or rollback it caught. Small values in
//! the state tree, each written durably.

use super::{be_u64, corrupt, Store, StoreError};
use crate::identity::PartnerId;

/// Per peer: the audit seq through which receipts were passed back to it.
const PASSED: &[u8] = b"m/passed/";
/// Per peer: the size of this node's log it last cosigned.
const COSIGNED: &[u8] = b"m/cosigned/";
/// Per peer whose log this node witnesses: the latest checkpoint it cosigned.
const WITNESSED: &[u8] = b"m/witnessed/";
/// Per peer: why this node stopped cosigning its log (a fork or a rollback caught).
const ALARM: &[u8] = b"m/alarm/";

impl Store {
    /// The audit record seq through which the receipts `peer` is owed were passed back
    /// to it (0 when none were).
    pub fn receipts_passed(&self, peer: &PartnerId) -> Result<u64, StoreError> {
        let key = [PASSED, peer.as_str().as_bytes()].concat();
        match self.state.get(&key)? {
            Some(v) => be_u64(&key, &v),
            None => Ok(0),
        }
    }

    /// Records, durably, that the receipts `peer` is owed through audit seq `through`
    /// were passed back to it (and taken).
    pub fn set_receipts_passed(&self, peer: &PartnerId, through: u64) -> Result<(), StoreError> {
        let key = [PASSED, peer.as_str().as_bytes()].concat();
        self.state.insert(key, through.to_be_bytes())?;
        self.flush_durably()?;
        Ok(())
    }

    /// A text value kept per peer under `prefix`.
    fn per_peer(&self, prefix: &[u8], peer: &PartnerId) -> Result<Option<String>, StoreError> {
        let key = [prefix, peer.as_str().as_bytes()].concat();
        let Some(v) = self.state.get(&key)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&v).map_err(|e| corrupt(&key, e))?;
        Ok(Some(text.to_owned()))
    }

    /// Keeps a text value per peer under `prefix`, durably.
    fn set_per_peer(&self, prefix: &[u8], peer: &PartnerId, text: &str) -> Result<(), StoreError> {
        let key = [prefix, peer.as_str().as_bytes()].concat();
        self.state.insert(key, text.as_bytes())?;
        self.flush_durably()
    }

    /// The size of this node's log that `peer` last cosigned (0: none).
    pub fn cosigned_by(&self, peer: &PartnerId) -> Result<u64, StoreError> {
        let text = self.per_peer(COSIGNED, peer)?;
        Ok(text.and_then(|t| t.parse().ok()).unwrap_or(0))
    }

    /// Records that `peer` cosigned this node's log at `size`.
    pub fn set_cosigned_by(&self, peer: &PartnerId, size: u64) -> Result<(), StoreError> {
        self.set_per_peer(COSIGNED, peer, &size.to_string())
    }

    /// The latest checkpoint of `peer`'s log this node cosigned, as `peer` signed it.
    pub fn witnessed(&self, peer: &PartnerId) -> Result<Option<String>, StoreError> {
        self.per_peer(WITNESSED, peer)
    }

    /// Keeps `checkpoint` as the latest of `peer`'s log this node cosigned.
    pub fn set_witnessed(&self, peer: &PartnerId, checkpoint: &str) -> Result<(), StoreError> {
        self.set_per_peer(WITNESSED, peer, checkpoint)
    }

    /// Why this node stopped cosigning `peer`'s log, if it did.
    pub fn witness_alarm(&self, peer: &PartnerId) -> Result<Option<String>, StoreError> {
        self.per_peer(ALARM, peer)
    }

    /// Stops cosigning `peer`'s log, for `why`.
    pub fn set_witness_alarm(&self, peer: &PartnerId, why: &str) -> Result<(), StoreError> {
        self.set_per_peer(ALARM, peer, why)
    }
}
