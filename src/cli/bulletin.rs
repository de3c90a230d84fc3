//! `renkei bulletin new|verify|show`.

use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use super::BulletinFields;
use crate::bulletin::{self, BulletinId, Digest, Limits, UnverifiedBulletin};
use crate::config::NodeConfig;
use crate::files::{self, Access};
use crate::identity::{self, Keyring, PartnerId, Validity};
use crate::proto;
use crate::timestamp::Timestamp;

/// Guesses a content type: STIX for a STIX bundle, JSON, UTF-8 text, or opaque bytes.
fn guess_content_type(body: &[u8]) -> &'static str {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let is_bundle = v.get("type").and_then(Value::as_str) == Some("bundle")
            && v.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with("bundle--"));
        return if is_bundle {
            bulletin::STIX_CONTENT_TYPE
        } else {
            "application/json"
        };
    }
    if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Builds the unsigned bulletin from command-line fields; `origin` stands in for a
/// missing `--origin`.
pub(crate) fn from_fields(
    f: BulletinFields,
    origin: Option<&PartnerId>,
    now: Timestamp,
) -> anyhow::Result<proto::Bulletin> {
    let origin = f
        .origin
        .as_ref()
        .or(origin)
        .context("--origin is required")?;
    let tlp = f.tlp.context("--tlp is required")?;
    let kind = f.kind.context("--kind is required")?;
    let title = f.title.context("--title is required")?;
    let body = match &f.body_file {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("reading the body from {}", path.display()))?,
        None => Vec::new(),
    };
    let content_type = match (&f.content_type, body.is_empty()) {
        (Some(ct), _) => ct.clone(),
        (None, false) => guess_content_type(&body).to_owned(),
        (None, true) => String::new(),
    };
    let created = f.created.unwrap_or(now);
    let id =
        f.id.unwrap_or_else(|| BulletinId::new_v7(created).to_string());
    Ok(proto::Bulletin {
        id,
        origin: origin.to_string(),
        created_unix_ms: created.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title,
        summary: f.summary,
        tags: f.tags,
        audience: f.audience,
        content_type,
        body: Bytes::from(body),
        references: f.references,
    })
}

pub(super) fn new(key_path: &Path, fields: BulletinFields, out: &Path) -> anyhow::Result<()> {
    let pem = files::read_text(key_path)?;
    let key =
        identity::signing_key_from_pem(&pem).with_context(|| key_path.display().to_string())?;
    let draft = from_fields(fields, None, Timestamp::now())?;
    let signed =
        bulletin::sign(&draft, &key, &Limits::default()).context("the bulletin is not valid")?;
    files::write(out, &signed.encode_to_vec(), Access::Public, true)?;
    let summary = json!({
        "file": out.display().to_string(),
        "id": draft.id,
        "origin": draft.origin,
        "digest": Digest::of(&signed.bulletin).to_string(),
        "key_id": hex::encode(&signed.key_id),
        "bytes": signed.encoded_len(),
    });
    println!("{summary}");
    Ok(())
}

fn read_signed(file: &Path) -> anyhow::Result<Bytes> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Bytes::from(bytes))
}

/// Reads a public key given as text or as a file holding the text.
pub(super) fn verify(
    pubkey: Option<&str>,
    config: Option<&Path>,
    file: &Path,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let encoded = read_signed(file)?;
    let unverified =
        UnverifiedBulletin::decode(encoded, &limits).with_context(|| file.display().to_string())?;
    let (keys, limits) = match (pubkey, config) {
        (Some(text), _) => {
            let key = super::public_key_arg("--pubkey", text)?;
            if key.key_id() != unverified.key_id() {
                bail!(
                    "{}: not valid: signed with key id {}, but the given key {key} has key id {}: it was not signed by that key",
                    file.display(),
                    unverified.key_id(),
                    key.key_id()
                );
            }
            let mut ring = Keyring::new();
            // The key is trusted for whatever origin the bulletin names: the caller vouches.
            ring.insert(unverified.header().origin.clone(), key, Validity::default());
            // Checking a signature offline is not receiving it: any age will do.
            let offline = Limits {
                max_age: None,
                ..limits
            };
            (ring, offline)
        }
        (None, Some(path)) => {
            let cfg = NodeConfig::load(path)?;
            (cfg.keyring(), cfg.limits.bulletin_limits())
        }
        (None, None) => bail!("give --pubkey or --config"),
    };
    let verified = unverified
        .verify(&keys, Timestamp::now(), &limits)
        .with_context(|| format!("{}: not valid", file.display()))?;
    let mut view = bulletin::view::to_json(verified.bulletin(), verified.signed());
    view["verified"] = json!(true);
    view["signed_by"] = json!(verified.key().to_string());
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

pub(super) fn show(file: &Path) -> anyhow::Result<()> {
    let encoded = read_signed(file)?;
    let signed = proto::SignedBulletin::decode(encoded.clone())
        .with_context(|| format!("{}: not a SignedBulletin", file.display()))?;
    let b = proto::Bulletin::decode(signed.bulletin.clone()).with_context(|| {
        format!(
            "{}: SignedBulletin.bulletin is not a Bulletin",
            file.display()
        )
    })?;
    let mut view = bulletin::view::to_json(&b, &signed);
    // No key was given, so nothing is claimed either way about the signature.
    view["verification"] = json!(
        "not verified (no key given): check it with `renkei bulletin verify --pubkey KEY` or `--config NODE.toml`"
    );
    // Report the first field problem, if any, without failing: show is for inspection.
    if let Err(e) = UnverifiedBulletin::decode(encoded, &Limits::default()) {
        view["problem"] = json!(e.to_string());
    }
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_guesses() {
        let stix = br#"{"type":"bundle","id":"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d","objects":[]}"#;
        assert_eq!(guess_content_type(stix), bulletin::STIX_CONTENT_TYPE);
        assert_eq!(guess_content_type(br#"{"a":1}"#), "application/json");
        assert_eq!(guess_content_type(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(
            guess_content_type(&[0xff, 0xfe, 0x00]),
            "application/octet-stream"
        );
    }
}
