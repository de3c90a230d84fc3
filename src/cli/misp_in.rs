//! `renkei publish --misp-event FILE`: a MISP event as a bulletin of this desk, signed
//! with its key. What the event says (`misp::inbound`: its TLP and kind tags, its
//! `info`, its sharing group) fills what the command line leaves out; the body is the
//! event as a STIX 2.1 bundle, or the MISP JSON itself.

use std::path::Path;

use anyhow::Context as _;

use super::BulletinFields;
use crate::config::ClientConfig;
use crate::misp::inbound::{self, Drafting, Form};
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
    let is_partner = |n: &str| cfg.partners.iter().any(|p| p.id.as_str() == n);
    let (known, unknown) = inbound::sharing_group_audience(&event, is_partner);
    for name in unknown {
        eprintln!("renkei publish: the sharing group's {name:?} is not a partner in this desk's configuration; left out of the audience");
    }
    let drafting = Drafting {
        origin: f.origin.as_ref().unwrap_or(&cfg.client.id).to_string(),
        created: f.created.unwrap_or(now),
        tlp: f.tlp,
        kind: f.kind,
        form: match body {
            MispBody::Stix => Form::Stix,
            MispBody::Event => Form::Event,
        },
        audience: f.audience.into_iter().chain(known).collect(),
    };
    let mut b = inbound::draft(&event, &bytes, &drafting)
        .with_context(|| format!("{} (or pass --tlp)", path.display()))?;
    // What the command line says wins over what the event says.
    if let Some(id) = f.id {
        b.id = id;
    }
    if let Some(title) = f.title {
        b.title = title;
    }
    b.summary = f.summary;
    b.tags = f.tags.into_iter().chain(b.tags).collect();
    b.references = f.references;
    Ok(b)
}
