//! `renkei publish --misp-event FILE`: a MISP event as a bulletin of this desk, signed
//! with its key. What the event says (`misp::inbound`: its TLP and kind tags, its
//! `info`, its sharing group) fills what the command line leaves out; the body is the
//! event as a STIX 2.1 bundle, or the MISP JSON itself.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;

use super::BulletinFields;
use crate::bulletin::{BulletinId, STIX_CONTENT_TYPE};
use crate::config::ClientConfig;
use crate::misp::inbound::{self, Inbound};
use crate::misp::MISP_CONTENT_TYPE;
use crate::proto;
use crate::timestamp::Timestamp;

/// How the event travels in the bulletin.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MispBody {
    /// As a STIX 2.1 bundle, which every desk and TAXII client reads.
    #[default]
    Stix,
    /// As the MISP event JSON itself.
    Event,
}

/// The unsigned bulletin the event at `path` makes for the desk of `cfg`.
pub(super) fn draft(
    path: &Path,
    f: BulletinFields,
    cfg: &ClientConfig,
    body: MispBody,
    now: Timestamp,
) -> anyhow::Result<proto::Bulletin> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let event = inbound::read(&bytes).with_context(|| path.display().to_string())?;
    let tlp = f.tlp.or(event.tlp).context(
        "the MISP event has no tlp: tag (renkei shares nothing unlabelled): tag it in MISP, or pass --tlp",
    )?;
    let created = f.created.unwrap_or(now);
    let bundle = inbound::to_stix(&event, tlp, &created.rfc3339_ms()).to_string();
    let objects = crate::stix::bundle_objects(bundle.as_bytes())?;
    let kind = f
        .kind
        .or(event.kind)
        .unwrap_or_else(|| crate::stix::kind_of(&objects));
    let (content_type, body) = match body {
        MispBody::Stix => (STIX_CONTENT_TYPE, Bytes::from(bundle)),
        MispBody::Event => (MISP_CONTENT_TYPE, Bytes::from(bytes)),
    };
    // The event's uuid names the bulletin, so the event comes back under its own uuid.
    let event_uuid = event.event.get("uuid").and_then(|u| u.as_str());
    let id =
        f.id.or_else(|| {
            event_uuid
                .and_then(BulletinId::parse_canonical)
                .map(|i| i.to_string())
        })
        .unwrap_or_else(|| BulletinId::new_v7(created).to_string());
    Ok(proto::Bulletin {
        id,
        origin: f.origin.as_ref().unwrap_or(&cfg.client.id).to_string(),
        created_unix_ms: created.unix_ms(),
        tlp: tlp.to_proto() as i32,
        kind: kind.to_proto() as i32,
        title: f.title.unwrap_or_else(|| title(&event)),
        summary: f.summary,
        tags: f
            .tags
            .into_iter()
            .chain(event.tags.iter().cloned())
            .collect(),
        audience: audience(f.audience, &event, cfg),
        content_type: content_type.to_owned(),
        body,
        references: f.references,
    })
}

fn title(event: &Inbound) -> String {
    match event.title.is_empty() {
        true => "MISP event".to_owned(),
        false => event.title.clone(),
    }
}

/// The audience given, and the sharing group's organisations that are partners of the
/// desk's configuration (others are named and left out: the node would not know them).
fn audience(given: Vec<String>, event: &Inbound, cfg: &ClientConfig) -> Vec<String> {
    let mut audience = given;
    for name in &event.sharing_group {
        if cfg.partners.iter().any(|p| p.id.as_str() == name) {
            audience.push(name.clone());
        } else {
            eprintln!("renkei publish: the sharing group's {name:?} is not a partner in this desk's configuration; left out of the audience");
        }
    }
    audience
}
