//! What can go wrong in the store, in the words its callers act on; a full disk told
//! apart, since it ends by itself when space is freed.

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key-value engine failed (I/O, or files it cannot read).
    #[error("database error: {0}")]
    Database(#[from] fjall::Error),
    /// The batch was written but the flush to disk failed: it is visible, not durable.
    #[error("stored, but flushing to disk failed: {0}")]
    NotDurable(fjall::Error),
    /// A database of an earlier renkei (sled) could not be read to move it.
    #[error("reading the earlier database to move it: {0}")]
    Earlier(#[from] sled::Error),
    /// The audit log's latest checkpoint does not verify with the node's signing key.
    #[error("the audit log's latest checkpoint ({size} records) does not verify with this node's signing key ({why}); if node.signing_key was replaced, put the previous key back: the audit log cannot change keys yet")]
    AuditKey {
        /// Records the checkpoint covers.
        size: u64,
        /// What the check said.
        why: crate::audit::checkpoint::CheckpointError,
    },
    /// A value file could not be read or written.
    #[error("value file {path}: {source}")]
    Values {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Another process has the data directory open.
    #[error("{dir} is in use by another renkei process{}: stop it first (two processes on one database would corrupt it)", .pid.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    InUse {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The holder's PID, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// One of the database's own files could not be read, written or synced.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A stored value does not decode or contradicts another: refuse to go on.
    #[error("the database is corrupt at key {key}: {why}; restore from a backup")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What is wrong: the decoder's or the check's own error, kept typed.
        why: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether the filesystem is out of space (or over a quota): a condition that ends
    /// by itself when space is freed, unlike the other failures.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            StoreError::Values { source, .. } | StoreError::File { source, .. } => Some(source),
            StoreError::Database(fjall::Error::Io(e))
            | StoreError::NotDurable(fjall::Error::Io(e)) => Some(e),
            _ => None,
        };
        io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    }
}
