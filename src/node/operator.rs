//! The operator socket: a Unix socket in the data directory (mode 0600) through which
//! whoever runs the node — the same user, or root — reloads its configuration or takes
//! a backup. It is not on the network, so whoever reaches the admin listener's
//! `/metrics` has no way to change the node; and every operation is recorded in the
//! audit log, refused ones included.
//!
//! One JSON request per connection, one JSON reply. This module moves them and checks
//! who is asking; the work is `reload` and the storage thread's backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::link::Reporting;
pub use super::link::{LinkReport, NodeStatus, QueueReport};
use super::reload::Reloading;
use super::shared::Shared;
use super::shared::StorageHandle;
use super::writer;
use crate::audit::record::Event;

/// The socket's file name inside the data directory.
pub const SOCKET: &str = "operator.sock";
/// Largest request accepted.
const MAX_REQUEST: u64 = 64 << 10;
/// How long a client may take to send its request.
const READ_PATIENCE: Duration = Duration::from_secs(10);
/// Longest socket path the kernel accepts (sockaddr_un holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The socket of the node whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// An operation on the running node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorRequest {
    /// Read the configuration file again and put its sharing policy in force.
    Reload,
    /// Copy the database into `out`, a new directory the node can write (absolute).
    Backup {
        /// Where the copy goes.
        out: PathBuf,
    },
    /// Report the node's peer links (read-only, so not recorded, like a scrape).
    Status,
}

/// The node's answer to an [`OperatorRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorReply {
    /// Whether the operation was done.
    pub ok: bool,
    /// What was done, or why not.
    pub message: String,
    /// The answer to [`OperatorRequest::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// The operator socket could not be used from the client side.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Nothing listens on the socket.
    #[error("cannot reach the operator socket {path}: {source}; is the node running with this data directory, as the same user?")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The exchange broke off or the answer made no sense.
    #[error("operator socket {path}: {why}")]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Sends `request` to the node whose data directory is `data_dir` and waits up to
/// `patience` for its answer.
pub async fn request(
    data_dir: &Path,
    request: &OperatorRequest,
    patience: Duration,
) -> Result<OperatorReply, OperatorError> {
    let path = socket_path(data_dir);
    let exchange = |why: String| OperatorError::Exchange {
        path: path.clone(),
        why,
    };
    let mut stream = UnixStream::connect(&path)
        .await
        .map_err(|source| OperatorError::Connect {
            path: path.clone(),
            source,
        })?;
    let mut line = serde_json::to_vec(request).map_err(|e| exchange(e.to_string()))?;
    line.push(b'\n');
    let talk = async {
        stream.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(&mut stream)
            .take(MAX_REQUEST)
            .read_line(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(patience, talk)
        .await
        .map_err(|_| exchange(format!("no answer within {patience:?}")))?
        .map_err(|e| exchange(e.to_string()))?;
    serde_json::from_str(&answer).map_err(|e| exchange(format!("unreadable answer: {e}")))
}

/// Binds the socket in `data_dir`, replacing one a killed node left behind (the
/// database lock, taken first, proves no other node uses this directory).
pub(super) fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let path = socket_path(data_dir);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(std::io::Error::other(format!(
            "{} is {len} bytes long; a Unix socket path may have at most {MAX_SOCKET_PATH}: use a shorter node.data_dir",
            path.display()
        )));
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(&path)?;
        }
    }
    let listener = UnixListener::bind(&path)?;
    // Between bind and chmod another user could connect; the peer check in `answer`
    // refuses them anyway.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What an operator's requests use of the node: a reload's parts (the storage
/// thread among them, which takes backups), and the link report's.
pub(super) struct Operating {
    reloading: Reloading,
    reporting: Reporting,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Operating {
    /// The running node's.
    pub(super) fn of(shared: &Shared) -> Operating {
        Operating {
            reloading: Reloading::of(shared),
            reporting: Reporting::of(shared),
            shutdown: shared.shutdown.clone(),
        }
    }
}

/// Answers operators, one at a time, until the node stops; then removes the socket.
pub(super) async fn serve(listener: UnixListener, node: Operating, path: PathBuf) {
    use std::os::unix::fs::MetadataExt as _;
    // The node's own user is the socket file's owner.
    let owner = std::fs::metadata(&path).map(|m| m.uid()).ok();
    let mut stop = node.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // One operation at a time; a stop abandons the one in progress.
                Ok((stream, _)) => tokio::select! {
                    _ = answer(stream, &node, owner) => {}
                    _ = stop.changed() => break,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "operator socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(mut stream: UnixStream, node: &Operating, owner: Option<u32>) {
    let reloading = &node.reloading;
    let who = match stream.peer_cred() {
        Ok(c) => {
            let who = format!(
                "uid {} (pid {}) on the operator socket",
                c.uid(),
                c.pid().map_or("?".into(), |p| p.to_string())
            );
            if c.uid() != 0 && Some(c.uid()) != owner {
                let why = format!("{who} refused: only the node's own user or root may operate it");
                tracing::warn!("{why}");
                let event = Event::operator(&reloading.id, &why);
                reloading.trail.record(event).await;
                return reply(&mut stream, false, why).await;
            }
            who
        }
        Err(e) => {
            tracing::warn!(error = %e, "operator socket: cannot tell who is asking");
            return;
        }
    };
    let mut line = String::new();
    let mut limited = BufReader::new(&mut stream).take(MAX_REQUEST);
    let read = limited.read_line(&mut line);
    let request = match tokio::time::timeout(READ_PATIENCE, read).await {
        Ok(Ok(_)) => serde_json::from_str::<OperatorRequest>(&line),
        _ => return,
    };
    let (ok, message) = match request {
        Err(e) => (false, format!("not an operator request: {e}")),
        Ok(OperatorRequest::Reload) => match super::reload::reload(&node.reloading, &who).await {
            Ok(change) => (
                true,
                format!("configuration reloaded: {}", change.summary()),
            ),
            Err(e) => (false, e.to_string()),
        },
        Ok(OperatorRequest::Status) => {
            let status = super::link::report(&node.reporting).await;
            return reply_with(&mut stream, true, String::new(), Some(status)).await;
        }
        Ok(OperatorRequest::Backup { out }) => {
            let (ok, message) = backup(&reloading.storage, out.clone()).await;
            let what = format!("backup to {} requested by {who}: {message}", out.display());
            let event = Event::operator(&reloading.id, &what);
            reloading.trail.record(event).await;
            (ok, message)
        }
    };
    reply(&mut stream, ok, message).await;
}

async fn backup(storage: &StorageHandle, out: PathBuf) -> (bool, String) {
    if !out.is_absolute() {
        return (false, format!("{} is not an absolute path", out.display()));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = writer::Request::Backup {
        out,
        taken_at: crate::timestamp::Timestamp::now().to_string(),
        reply: tx,
    };
    if storage.commits.send(request).await.is_err() {
        return (false, "the node is stopping".into());
    }
    match rx.await {
        Ok(Ok(m)) => (
            true,
            format!(
                "backup taken: {} bulletins, {} audit records (signed up to {}), {} keys",
                m.bulletins, m.audit_records, m.checkpointed, m.keys
            ),
        ),
        Ok(Err(e)) => (false, format!("backup failed: {e}")),
        Err(_) => (false, "the storage thread stopped during the backup".into()),
    }
}

async fn reply(stream: &mut UnixStream, ok: bool, message: String) {
    reply_with(stream, ok, message, None).await
}

async fn reply_with(
    stream: &mut UnixStream,
    ok: bool,
    message: String,
    status: Option<NodeStatus>,
) {
    let answer = OperatorReply {
        ok,
        message,
        status,
    };
    let mut line = match serde_json::to_vec(&answer) {
        Ok(l) => l,
        Err(_) => return,
    };
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() -> Result<(), serde_json::Error> {
        let backup = OperatorRequest::Backup {
            out: "/var/backups/renkei/2026-11-26".into(),
        };
        assert_eq!(
            serde_json::to_string(&backup)?,
            r#"{"op":"backup","out":"/var/backups/renkei/2026-11-26"}"#
        );
        assert_eq!(
            serde_json::from_str::<OperatorRequest>(r#"{"op":"reload"}"#)?,
            OperatorRequest::Reload
        );
        assert!(serde_json::from_str::<OperatorRequest>(r#"{"op":"delete_everything"}"#).is_err());
        Ok(())
    }
}
