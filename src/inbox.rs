//! A desk's inbox: what becomes of each delivery `renkei subscribe` receives.
//!
//! A bulletin that verifies against the desk's own keys is handled once per
//! (origin, id): saved as received (the signed envelope, the body in a file named for
//! its content type, a JSON sidecar with every field, the verification and the seq),
//! then written to a journal, and only then acknowledged. One that does not verify is
//! never acknowledged: it is kept in quarantine with the reason and what to change,
//! and the node delivers it again on the next subscription.
//!
//! It owns the directory layout, the journal and the advice; it does not talk to the
//! node, run commands or print.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use prost::Message as _;
use serde_json::{json, Value};

use crate::bulletin::{self, BulletinError, Digest, Limits, UnverifiedBulletin, VerifiedBulletin};
use crate::files::{self, Access, FileError};
use crate::identity::{KeyLookupError, Keyring};
use crate::proto;
use crate::timestamp::Timestamp;

/// The journal of handled bulletins, one line each: origin, id, digest, seq.
const JOURNAL: &str = "received.log";
/// Where bulletins that do not verify are kept.
const QUARANTINE: &str = "quarantine";

/// The inbox directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// Reading or writing a file of the inbox.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a received file.
    #[error(transparent)]
    File(#[from] FileError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InboxError + '_ {
    move |source| InboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a delivery is to this desk.
#[derive(Debug)]
pub enum Arrival {
    /// Verified, and not handled before.
    New(Box<VerifiedBulletin>),
    /// Verified, and handled before with the same digest: acknowledge it again.
    Duplicate(Box<VerifiedBulletin>),
    /// Verified, but a different bulletin with the same origin and id was handled
    /// before (its digest is given); the first one stands.
    Conflict(Box<VerifiedBulletin>, String),
    /// It does not verify against this desk's keys and limits: never acknowledge it.
    Unverified(BulletinError),
}

/// A desk's inbox: a directory, or (without one) a memory of what this run handled.
#[derive(Debug)]
pub struct Inbox {
    dir: Option<PathBuf>,
    /// "origin id" → digest of what was handled under that name.
    handled: HashMap<String, String>,
    journal: Option<File>,
}

fn name(origin: &str, id: &str) -> String {
    format!("{origin} {id}")
}

impl Inbox {
    /// An inbox that remembers only what this run handles.
    pub fn in_memory() -> Inbox {
        Inbox {
            dir: None,
            handled: HashMap::new(),
            journal: None,
        }
    }

    /// Opens (creating it if needed) the inbox in `dir`, reading its journal.
    pub fn open(dir: &Path) -> Result<Inbox, InboxError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(JOURNAL);
        let mut handled = HashMap::new();
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(io(&path))?;
                    // A line cut short by a crash names nothing: its bulletin comes again.
                    if let [origin, id, digest, _seq] = line.split(' ').collect::<Vec<_>>()[..] {
                        handled.insert(name(origin, id), digest.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Inbox {
            dir: Some(dir.to_owned()),
            handled,
            journal: Some(journal),
        })
    }

    /// Verifies a delivery against the desk's keys and says what it is.
    pub fn classify(
        &self,
        signed: proto::SignedBulletin,
        keys: &Keyring,
        now: Timestamp,
        limits: &Limits,
    ) -> Arrival {
        let verified = match UnverifiedBulletin::from_signed(signed, limits)
            .and_then(|u| u.verify(keys, now, limits))
        {
            Ok(v) => Box::new(v),
            Err(e) => return Arrival::Unverified(e),
        };
        let h = verified.header();
        let digest = verified.digest().to_string();
        match self.handled.get(&name(h.origin.as_str(), &h.id.to_text())) {
            None => Arrival::New(verified),
            Some(first) if *first == digest => Arrival::Duplicate(verified),
            Some(first) => Arrival::Conflict(verified, first.clone()),
        }
    }

    /// Saves a verified bulletin in `DIR/ORIGIN/ID/`; returns that directory. Without
    /// a directory, saves nothing.
    pub fn save(
        &self,
        seq: u64,
        v: &VerifiedBulletin,
        received: Timestamp,
    ) -> Result<Option<PathBuf>, InboxError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let h = v.header();
        // Partner ids and canonical UUIDs hold no separator: these names stay in `dir`.
        let at = dir.join(h.origin.as_str()).join(h.id.to_text());
        files::write(
            &at.join("bulletin.bin"),
            &v.signed().encode_to_vec(),
            Access::Public,
            true,
        )?;
        let b = v.bulletin();
        if !b.body.is_empty() {
            let body = at.join(format!(
                "body.{}",
                bulletin::view::extension(&b.content_type)
            ));
            files::write(&body, &b.body, Access::Public, true)?;
        }
        let mut side = sidecar(seq, v, received);
        side["files"] = json!(saved_files(&at, b));
        let text = serde_json::to_vec_pretty(&side).unwrap_or_default();
        files::write(&at.join("bulletin.json"), &text, Access::Public, true)?;
        Ok(Some(at))
    }

    /// Records a bulletin as handled, durably, and clears any quarantine entry it had:
    /// after this it may be acknowledged, and it will not be handled again.
    pub fn handled(&mut self, seq: u64, v: &VerifiedBulletin) -> Result<(), InboxError> {
        let h = v.header();
        let (origin, id, digest) = (h.origin.as_str(), h.id.to_text(), v.digest().to_string());
        if let (Some(dir), Some(journal)) = (&self.dir, &mut self.journal) {
            let path = dir.join(JOURNAL);
            journal
                .write_all(format!("{origin} {id} {digest} {seq}\n").as_bytes())
                .and_then(|()| journal.sync_data())
                .map_err(io(&path))?;
            let held = dir.join(QUARANTINE).join(quarantine_name(v.signed()));
            if held.exists() {
                fs::remove_dir_all(&held).map_err(io(&held))?;
            }
        }
        self.handled.insert(name(origin, &id), digest);
        Ok(())
    }

    /// Keeps a delivery that did not verify in `DIR/quarantine/NAME/` with the reason
    /// and the advice; returns that directory. Without a directory, keeps nothing (the
    /// node still holds it, since it is not acknowledged).
    pub fn quarantine(
        &self,
        seq: u64,
        signed: &proto::SignedBulletin,
        reason: &QuarantineReason,
        now: Timestamp,
    ) -> Result<Option<PathBuf>, InboxError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let at = dir.join(QUARANTINE).join(quarantine_name(signed));
        files::write(
            &at.join("bulletin.bin"),
            &signed.encode_to_vec(),
            Access::Public,
            true,
        )?;
        let mut why = json!({
            "seq": seq,
            "verified": false,
            "error": reason.error,
            "advice": reason.advice,
            "last_tried": now.to_string(),
        });
        // What the envelope claims, unverified, so a person can tell what it is.
        if let Ok(b) = proto::Bulletin::decode(signed.bulletin.clone()) {
            why["claims"] = json!({"origin": b.origin, "id": b.id, "title": b.title});
        }
        let text = serde_json::to_vec_pretty(&why).unwrap_or_default();
        files::write(&at.join("reason.json"), &text, Access::Public, true)?;
        Ok(Some(at))
    }

    /// The quarantine entries now held (what the tests look at; operators list the folder).
    #[cfg(test)]
    pub fn quarantined(&self) -> Result<Vec<PathBuf>, InboxError> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let q = dir.join(QUARANTINE);
        let entries = match fs::read_dir(&q) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&q)(e)),
        };
        let mut held = Vec::new();
        for entry in entries {
            held.push(entry.map_err(io(&q))?.path());
        }
        held.sort();
        Ok(held)
    }
}

/// Names a quarantined envelope by its own digest: the same delivery lands in the same
/// place however often it comes.
fn quarantine_name(signed: &proto::SignedBulletin) -> String {
    Digest::of(&signed.encode_to_vec()).to_string()[..16].to_owned()
}

fn saved_files(at: &Path, b: &proto::Bulletin) -> Value {
    let mut files = json!({"envelope": at.join("bulletin.bin")});
    if !b.body.is_empty() {
        let ext = bulletin::view::extension(&b.content_type);
        files["body"] = json!(at.join(format!("body.{ext}")));
    }
    files
}

/// Every field of a verified bulletin, how it verified, and its delivery seq.
pub fn sidecar(seq: u64, v: &VerifiedBulletin, received: Timestamp) -> Value {
    let mut view = bulletin::view::to_json(v.bulletin(), v.signed());
    view["seq"] = json!(seq);
    view["verified"] = json!(true);
    view["signed_by"] = json!(v.key().to_string());
    view["received"] = json!(received.to_string());
    view
}

/// Why a delivery was not accepted by the desk, and what to change.
#[derive(Debug, Clone)]
pub struct QuarantineReason {
    /// The verification error.
    pub error: String,
    /// What the desk's operator can do about it.
    pub advice: String,
}

impl QuarantineReason {
    /// The reason and advice for `error`, for a desk configured by `config`.
    pub fn new(error: &BulletinError, config: &Path) -> QuarantineReason {
        QuarantineReason {
            error: error.to_string(),
            advice: advice(error, config),
        }
    }
}

/// What a desk configured by `config` can change so that a bulletin failing with
/// `error` verifies next time.
pub fn advice(error: &BulletinError, config: &Path) -> String {
    let config = config.display();
    match error {
        BulletinError::Key(KeyLookupError::Unknown { origin, key_id }) => format!(
            "add origin {origin}'s signing key (key id {key_id}) to {config}: a [[partner]] with \
             id = \"{origin}\" and keys = [{{ public = \"ed25519:...\" }}], the key as its card \
             (`renkei partner card`) gives it; the node sends the bulletin again on the next \
             subscription"
        ),
        BulletinError::Key(KeyLookupError::Revoked { origin, .. }) => format!(
            "the key of {origin} that signed it is revoked; ask {origin} to publish again with \
             its current key"
        ),
        BulletinError::Key(_) => format!(
            "check the not_before/not_after of the [[partner]] key in {config} against the \
             origin's card, and this machine's clock"
        ),
        BulletinError::BadSignature { origin, .. } => format!(
            "the key configured for {origin} in {config} does not match the one that signed it: \
             compare it with {origin}'s card; if they match, the bulletin was altered on the way \
             and the node's operator should be told"
        ),
        BulletinError::TooOld { .. } | BulletinError::FromTheFuture { .. } => {
            "check this machine's clock (and [limits] max_age_days in the desk's config)".into()
        }
        BulletinError::TooLarge { .. }
        | BulletinError::BodyTooLarge { .. }
        | BulletinError::FieldTooLong { .. }
        | BulletinError::TooManyEntries { .. } => format!(
            "it is over a limit in the [limits] of {config}; raise that limit to the node's if \
             the bulletin is expected"
        ),
        _ => {
            "the bulletin is malformed; tell the node's operator, who can find it by its seq".into()
        }
    }
}

#[cfg(test)]
mod tests;
