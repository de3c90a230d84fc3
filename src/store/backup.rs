//! Backups of a node's database: a consistent copy taken by the storage thread between
//! two group commits, and its restoration into a new data directory.
//!
//! A backup is a directory holding a fresh copy of the engine (`state/`) with every key
//! of the node's,
//! a copy of the committed bytes of its value files (`values/`), and a manifest
//! (`renkei-backup.toml`) written last, so a backup without a manifest is known to be
//! incomplete. It must be taken by the one writer of the store (the storage
//! thread), which is what makes the copy consistent; it does not verify the audit log
//! (the CLI runs `audit verify` on the restored database). A restore copies the
//! backup's files and opens only the copy, so a backup may sit on read-only media
//! (all but those of the sled era, which sled itself reads).

use crate::store::kv;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::ValueLog;
use super::{be_u64, Store, StoreError, VALUES_END};
use crate::audit::checkpoint::CheckpointSigner;
use crate::files::{self, Access};

/// Name of the manifest inside a backup directory.
pub const MANIFEST: &str = "renkei-backup.toml";
/// Cache of the databases opened only to copy them.
const COPY_CACHE_BYTES: u64 = 16 << 20;

/// What a backup holds, written next to it and checked on restore.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format of the backup directory.
    pub format: String,
    /// The node whose database this is, if it had started once.
    pub node: Option<String>,
    /// Accepted bulletins (the head seq).
    pub bulletins: u64,
    /// Records in the audit log.
    pub audit_records: u64,
    /// Root hash of the audit log at that size (hex).
    pub audit_root: String,
    /// Records the latest signed checkpoint covers.
    pub checkpointed: u64,
    /// Keys copied.
    pub keys: u64,
    /// When the copy was taken (RFC 3339).
    pub taken_at: String,
    /// The software that took it.
    pub software: String,
    /// The node's Ed25519 signature (base64) over the domain tag and the manifest's
    /// other fields ([`Manifest::signed_message`]), by the key that signs its audit
    /// checkpoints. Empty in backups made before manifests were signed.
    #[serde(default)]
    pub signature: String,
}

/// What the manifest signature's message starts with.
const MANIFEST_DOMAIN: &[u8] = b"renkei/backup-manifest/v1\0";

impl Manifest {
    /// What the node signs: the domain tag, then the manifest as TOML with an empty
    /// signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let unsigned = Manifest {
            signature: String::new(),
            ..self.clone()
        };
        let text = toml::to_string(&unsigned).unwrap_or_default();
        [MANIFEST_DOMAIN, text.as_bytes()].concat()
    }

    /// Checks the signature with the node's checkpoint key.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> Result<(), BackupError> {
        use base64::Engine as _;
        let bad = |why: &str| BackupError::Mismatch(format!("the manifest's signature {why}"));
        if self.signature.is_empty() {
            return Err(bad(
                "is missing (a backup made before manifests were signed, or one altered)",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| bad("is not base64"))?;
        let sig =
            ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| bad("is not 64 bytes"))?;
        key.verify_strict(&self.signed_message(), &sig)
            .map_err(|_| bad("does not verify with the node's key: the manifest was altered, or another key signed it"))
    }
}

/// The manifest's `format` value: 3 holds the engine's files (`state/`).
pub const FORMAT: &str = "renkei-backup/3";
/// The earlier format, whose copy is a sled database; still restored.
const FORMAT_SLED: &str = "renkei-backup/2";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target directory holds something already.
    #[error("{0} exists and is not empty; choose a new directory")]
    NotEmpty(PathBuf),
    /// The directory is not a complete backup.
    #[error("{dir} is not a complete renkei backup: {why}")]
    NotABackup {
        /// The directory.
        dir: PathBuf,
        /// What is missing or wrong.
        why: String,
    },
    /// The audit log has records no checkpoint covers (signing one failed).
    #[error("{0} audit records are not covered by a signed checkpoint; a backup must end on a signed log")]
    Unsigned(u64),
    /// The restored database does not hold what the manifest says.
    #[error("the restored database does not match the backup's manifest: {0}")]
    Mismatch(String),
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manifest could not be written.
    #[error(transparent)]
    File(#[from] files::FileError),
}

/// Refuses a target that exists and holds anything.
fn must_be_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::NotEmpty(dir.to_owned())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BackupError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Creates `dir` (and its parents) readable by the node's user only: a backup holds
/// every bulletin, TLP:RED included.
fn private_dir(dir: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// What an I/O error at `path` becomes.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { path, source }
}

/// Copies the directory tree `from` into the new directory `to`, each file and
/// directory synced.
pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            copy_file(&src, &dst)?;
        } else {
            return Err(BackupError::NotABackup {
                dir: from.to_owned(),
                why: format!("{} is neither a file nor a directory", src.display()),
            });
        }
    }
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(io(to))
}

/// Copies the file `from` into the new file `to`, writable by the node's user alone
/// whatever `from`'s mode (a backup may be write-protected), and syncs it.
fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut reader = std::fs::File::open(from).map_err(io(from))?;
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io(to))?;
    std::io::copy(&mut reader, &mut writer).map_err(io(to))?;
    writer.sync_all().map_err(io(to))
}

/// Copies every entry of `from` into the empty `to`; returns the keys copied.
fn copy_tree(from: &kv::Tree, to: &kv::Tree) -> Result<u64, BackupError> {
    Ok(to.insert_all(from.iter())?)
}

fn open_copy(dir: &Path) -> Result<kv::Db, BackupError> {
    Ok(kv::Db::open(
        dir,
        COPY_CACHE_BYTES,
        std::time::Duration::ZERO,
    )?)
}

impl Store {
    /// What the manifest of a copy of this store says, `keys` and `taken_at` aside.
    fn manifest(&self, keys: u64, taken_at: String) -> Result<Manifest, StoreError> {
        let (size, checkpointed) = self.audit_progress();
        Ok(Manifest {
            format: FORMAT.into(),
            node: self.identity()?.map(|(id, _)| id.to_string()),
            bulletins: self.head()?,
            audit_records: size,
            audit_root: hex::encode(self.audit().root(size)?.0),
            checkpointed,
            keys,
            taken_at,
            software: concat!("renkei ", env!("CARGO_PKG_VERSION")).into(),
            signature: String::new(),
        })
    }

    /// Copies the whole database into the new directory `out` and writes its manifest.
    /// Only the storage thread may call it: nothing may commit while it copies.
    pub fn backup_to(
        &self,
        out: &Path,
        taken_at: String,
        signer: &CheckpointSigner,
    ) -> Result<Manifest, BackupError> {
        use base64::Engine as _;
        must_be_empty(out)?;
        private_dir(out)?;
        self.flush()?;
        let copy = open_copy(out)?;
        let keys = copy_tree(&self.state, &copy.tree("state")?)?;
        copy.persist()?;
        drop(copy);
        ValueLog::copy_to(&self.dir, self.values.end(), out)?;
        let mut manifest = self.manifest(keys, taken_at)?;
        let sig = signer.sign_message(&manifest.signed_message());
        manifest.signature = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
        write_manifest(out, &manifest)?;
        Ok(manifest)
    }

    /// Restores the backup in `backup` into the new data directory `data_dir`, opens it
    /// (which checks its head and its audit tree against the last checkpoint) and
    /// checks it against the manifest. Returns the manifest; on an error `data_dir` is
    /// left empty.
    pub fn restore(
        backup: &Path,
        data_dir: &Path,
        cache_bytes: u64,
    ) -> Result<Manifest, BackupError> {
        let manifest = read_manifest(backup)?;
        must_be_empty(data_dir)?;
        // Opening the copy in place would make an empty database there if it were gone.
        let held = match manifest.format.as_str() {
            FORMAT_SLED => "db",
            _ => super::kv::DIR,
        };
        if !backup.join(held).exists() {
            return Err(BackupError::NotABackup {
                dir: backup.to_owned(),
                why: format!("its manifest is there but its database ({held}) is not"),
            });
        }
        let restored = copy_in(backup, data_dir, &manifest, held)
            .and_then(|()| check_restored(data_dir, cache_bytes, &manifest));
        if restored.is_err() {
            // It was empty before: leave it so, and the restore can simply run again.
            let _ = clear(data_dir);
        }
        restored.map(|()| manifest)
    }
}

/// Copies the engine and the committed value files of `backup` into the empty
/// `data_dir`, and checks the keys copied against `manifest`.
fn copy_in(
    backup: &Path,
    data_dir: &Path,
    manifest: &Manifest,
    held: &str,
) -> Result<(), BackupError> {
    let keys;
    let to = if manifest.format == FORMAT_SLED {
        let to = open_copy(data_dir)?;
        keys = super::earlier::copy_from_sled(backup, &to.tree("state")?)?;
        to.persist()?;
        to
    } else {
        // Files copied, never opened where they are: the backup may be read-only.
        private_dir(data_dir)?;
        copy_dir(&backup.join(held), &data_dir.join(held))?;
        let to = open_copy(data_dir)?;
        keys = to
            .tree("state")?
            .iter()
            .try_fold(0u64, |n, entry| entry.map(|_| n + 1))?;
        to
    };
    let end = match to.tree("state")?.get(VALUES_END)? {
        Some(v) => be_u64(VALUES_END, &v)?,
        None => 0,
    };
    ValueLog::copy_to(backup, end, data_dir)?;
    if keys != manifest.keys {
        return Err(BackupError::Mismatch(format!(
            "{keys} keys copied, the manifest says {}",
            manifest.keys
        )));
    }
    Ok(())
}

/// Opens the restored store in `data_dir` (which checks its head and its audit tree
/// against the last checkpoint) and checks it against `manifest`.
fn check_restored(
    data_dir: &Path,
    cache_bytes: u64,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let store = Store::open(data_dir, cache_bytes)?;
    let restored = store.manifest(manifest.keys, manifest.taken_at.clone())?;
    let restored = Manifest {
        software: manifest.software.clone(),
        signature: manifest.signature.clone(),
        ..restored
    };
    if restored != *manifest {
        return Err(BackupError::Mismatch(format!(
            "restored {} bulletins and {} audit records (root {}), the manifest says {} and {} (root {})",
            restored.bulletins,
            restored.audit_records,
            restored.audit_root,
            manifest.bulletins,
            manifest.audit_records,
            manifest.audit_root
        )));
    }
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let text = toml::to_string(manifest).map_err(|e| BackupError::NotABackup {
        dir: dir.to_owned(),
        why: format!("cannot write its manifest: {e}"),
    })?;
    files::write(&dir.join(MANIFEST), text.as_bytes(), Access::Private, false)?;
    Ok(())
}

/// Reads and checks the manifest of the backup in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let not = |why: String| BackupError::NotABackup {
        dir: dir.to_owned(),
        why,
    };
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| not(format!("{MANIFEST}: {e} (an interrupted backup has none)")))?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| not(format!("{MANIFEST}: {}", e.message())))?;
    if manifest.format != FORMAT && manifest.format != FORMAT_SLED {
        return Err(not(format!(
            "format {:?}; this renkei reads {FORMAT:?}",
            manifest.format
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `dir`: its path, length and last change.
    fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut all = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let meta = entry.metadata().ok();
                match meta {
                    Some(m) if m.is_dir() => todo.push(entry.path()),
                    Some(m) => all.push((
                        entry.path(),
                        m.len(),
                        m.modified().ok().unwrap_or(std::time::UNIX_EPOCH),
                    )),
                    None => {}
                }
            }
        }
        all.sort();
        all
    }

    /// A store of ten operator records in `dir/live`, backed up into `dir/copy` with
    /// the checkpoint key `[5; 32]`: the store, the copy and its manifest.
    fn backed_up(dir: &Path) -> Result<(Store, PathBuf, Manifest), BackupError> {
        let store = Store::open(&dir.join("live"), 1 << 20)?;
        let node: crate::identity::PartnerId = "hub"
            .parse()
            .map_err(|_| BackupError::Mismatch("test id".into()))?;
        let key = crate::identity::generate_signing_key();
        store.set_identity(&node, &key.verifying_key())?;
        let events = (0..10)
            .map(|i| {
                let event = crate::audit::record::Event::operator(&node, &format!("op {i}"));
                super::super::Entry::Event(Some(event), None)
            })
            .collect();
        store.commit(events, crate::timestamp::Timestamp::from_unix_ms(1_000))?;
        let copy = dir.join("copy");
        let taken = store.backup_to(&copy, "2026-11-26T00:00:00Z".into(), &signer()?)?;
        Ok((store, copy, taken))
    }

    fn signer() -> Result<CheckpointSigner, BackupError> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        CheckpointSigner::new("renkei/jp-mod/audit", key)
            .map_err(|e| BackupError::Mismatch(e.to_string()))
    }

    #[test]
    fn a_backup_is_signed_and_never_written_over() -> Result<(), BackupError> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        let (store, copy, taken) = backed_up(dir.path())?;
        assert_eq!(taken.audit_records, 10);
        // The manifest is signed by the node's key; any change of it breaks that.
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        taken.verify(&key)?;
        let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(taken.verify(&other).is_err());
        let altered = Manifest {
            bulletins: taken.bulletins + 1,
            ..taken.clone()
        };
        assert!(altered.verify(&key).is_err());
        assert_eq!(taken.keys, store.state.iter().count() as u64);
        assert!(matches!(
            store.backup_to(&copy, String::new(), &signer()?),
            Err(BackupError::NotEmpty(_))
        ));
        Ok(())
    }

    #[test]
    fn a_write_protected_backup_restores_into_an_equal_store_untouched() -> Result<(), BackupError>
    {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        let (_store, copy, taken) = backed_up(dir.path())?;
        for (path, _, _) in listing(&copy) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
                .map_err(io(&path))?;
        }
        let before = listing(&copy);
        let restored = dir.path().join("restored");
        let back = Store::restore(&copy, &restored, 1 << 20)?;
        assert_eq!(back, taken);
        assert_eq!(
            listing(&copy),
            before,
            "a restore writes nothing in the backup"
        );
        // The restored files are writable anyway.
        for (path, _, _) in listing(&restored.join(super::super::kv::DIR)) {
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600), "{}", path.display());
        }
        assert!(matches!(
            Store::restore(&copy, &restored, 1 << 20),
            Err(BackupError::NotEmpty(_))
        ));
        Ok(())
    }

    #[test]
    fn a_restore_that_fails_leaves_nothing_behind() -> Result<(), BackupError> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        let (_store, copy, taken) = backed_up(dir.path())?;
        // A manifest that does not match: the data directory is left empty.
        let replace = |m: &Manifest| {
            std::fs::remove_file(copy.join(MANIFEST)).map_err(io(&copy.join(MANIFEST)))?;
            write_manifest(&copy, m)
        };
        replace(&Manifest {
            keys: taken.keys + 1,
            ..taken.clone()
        })?;
        let failed = dir.path().join("failed");
        assert!(matches!(
            Store::restore(&copy, &failed, 1 << 20),
            Err(BackupError::Mismatch(_))
        ));
        let left = std::fs::read_dir(&failed).map(|d| d.count());
        assert_eq!(left.ok(), Some(0), "a failed restore left files behind");
        replace(&taken)?;
        // Without its database, it is not one either, and nothing is made in it.
        let state = copy.join(super::super::kv::DIR);
        let moved = dir.path().join("state-elsewhere");
        std::fs::rename(&state, &moved).map_err(io(&state))?;
        assert!(matches!(
            Store::restore(&copy, &dir.path().join("again"), 1 << 20),
            Err(BackupError::NotABackup { .. })
        ));
        assert!(!state.exists(), "restore made a database in the backup");
        std::fs::rename(&moved, &state).map_err(io(&state))?;
        // Without its manifest, a directory is not a backup.
        std::fs::remove_file(copy.join(MANIFEST)).map_err(io(&copy))?;
        assert!(matches!(
            Store::restore(&copy, &dir.path().join("again"), 1 << 20),
            Err(BackupError::NotABackup { .. })
        ));
        Ok(())
    }
}
