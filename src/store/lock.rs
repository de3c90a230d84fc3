//! The data directory's lock: one process at a time opens a database, and another is
//! told at once which process holds it. It owns the lock file; the engine's own lock stays
//! the engine's.

use std::path::Path;

use super::StoreError;

/// How long to wait for a previous handle's file lock to go.
pub(super) const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The lock file in the data directory, holding the PID of the process that has it open.
const LOCK_FILE: &str = "renkei.lock";

/// Takes the data directory's lock, or says who holds it. Only a handle of this very
/// process (one being dropped as a node restarts in place) is waited for.
pub(super) fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| StoreError::Values {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let _ = file.rewind();
                let pid = text.trim().parse::<u32>().ok();
                if pid != Some(std::process::id()) || std::time::Instant::now() > deadline {
                    return Err(StoreError::InUse {
                        dir: dir.to_owned(),
                        pid,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    file.set_len(0).map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}
