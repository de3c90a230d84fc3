//! A MISP feed in a directory, as `renkei subscribe --misp-feed DIR` keeps it: one
//! `UUID.json` per event, the feed's `manifest.json` and `hashes.csv`. Each file is
//! replaced whole (owner-only: the events carry what TLP restricts), the event before
//! the manifest that lists it, so a MISP instance fetching the feed never reads half a
//! file or an entry without its event.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::files::{self, Access};
use crate::misp;

/// A feed directory.
pub(super) struct Feed {
    dir: PathBuf,
}

impl Feed {
    /// The feed in `dir`, made if it does not exist.
    pub(super) fn open(dir: &Path) -> anyhow::Result<Feed> {
        std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
        Ok(Feed {
            dir: dir.to_owned(),
        })
    }

    /// Adds `event` (or replaces it, by its uuid) with its manifest entry and hashes.
    pub(super) fn add(&self, event: &Value) -> anyhow::Result<()> {
        let (uuid, entry) = misp::manifest_entry(event).context("a MISP event without a uuid")?;
        let write = |name: &str, text: String| {
            files::write(&self.dir.join(name), text.as_bytes(), Access::Private, true)
        };
        write(
            &format!("{uuid}.json"),
            serde_json::to_string_pretty(event)?,
        )?;
        let mut manifest = self.manifest()?;
        manifest.insert(uuid.clone(), entry);
        write("manifest.json", serde_json::to_string_pretty(&manifest)?)?;
        let others = self.hashes()?;
        let suffix = format!(",{uuid}");
        let mut lines: Vec<String> = others
            .into_iter()
            .filter(|l| !l.ends_with(&suffix))
            .collect();
        lines.extend(misp::hash_lines(event));
        write(
            "hashes.csv",
            lines.iter().map(|l| format!("{l}\n")).collect(),
        )?;
        Ok(())
    }

    fn manifest(&self) -> anyhow::Result<Map<String, Value>> {
        let path = self.dir.join("manifest.json");
        if !path.exists() {
            return Ok(Map::new());
        }
        let text = files::read_text(&path)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a feed manifest", path.display()))
    }

    fn hashes(&self) -> anyhow::Result<Vec<String>> {
        let path = self.dir.join("hashes.csv");
        if !path.exists() {
            return Ok(Vec::new());
        }
        Ok(files::read_text(&path)?
            .lines()
            .map(str::to_owned)
            .collect())
    }
}
