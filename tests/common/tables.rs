//! `[[partner]]` tables written by code, so a test says what differs about a partner
//! and not the same lines again. `KEY(id)` is the placeholder the federation helpers
//! replace with id's public signing key.

use std::fmt;
use std::path::Path;

/// One `[[partner]]` table being written.
pub struct Partner {
    id: String,
    role: &'static str,
    clearance: Option<String>,
    keyed: bool,
    lines: Vec<String>,
    other_keys: Vec<String>,
}

/// A liaison desk cleared to `clearance`, publishing with its own key.
pub fn liaison(id: &str, clearance: &str) -> Partner {
    Partner {
        id: id.to_owned(),
        role: "liaison",
        clearance: Some(clearance.to_owned()),
        keyed: true,
        lines: Vec::new(),
        other_keys: Vec::new(),
    }
}

/// An auditor: it reads the log and receives no bulletins.
pub fn auditor(id: &str) -> Partner {
    Partner {
        id: id.to_owned(),
        role: "auditor",
        clearance: None,
        keyed: false,
        lines: Vec::new(),
        other_keys: Vec::new(),
    }
}

/// A peer node (relay) cleared to `clearance`.
pub fn relay(id: &str, clearance: &str) -> Partner {
    Partner {
        role: "relay",
        keyed: false,
        ..liaison(id, clearance)
    }
}

impl Partner {
    /// With `line` (`groups = ["nato"]`, `kinds = [...]`) in the table.
    pub fn with(mut self, line: &str) -> Partner {
        self.lines.push(line.to_owned());
        self
    }

    /// With its own signing key (`KEY(id)`).
    pub fn keyed(mut self) -> Partner {
        self.keyed = true;
        self
    }

    /// Without a signing key: it receives, but nothing it signs is accepted.
    pub fn unkeyed(mut self) -> Partner {
        self.keyed = false;
        self
    }

    /// With one more key after its own, as the inline table `entry` (a lost laptop's
    /// key, or one with a `not_after`).
    pub fn other_key(mut self, entry: &str) -> Partner {
        self.other_keys.push(entry.to_owned());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for Partner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[[partner]]\nid = \"{}\"\nrole = \"{}\"",
            self.id, self.role
        )?;
        if let Some(c) = &self.clearance {
            writeln!(f, "clearance = \"{c}\"")?;
        }
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        let own = format!("{{ public = \"KEY({})\" }}", self.id);
        let keys: Vec<&str> = (self.keyed.then_some(own.as_str()).into_iter())
            .chain(self.other_keys.iter().map(String::as_str))
            .collect();
        if !keys.is_empty() {
            writeln!(f, "keys = [{}]", keys.join(", "))?;
        }
        Ok(())
    }
}

/// The tables, one after another.
pub fn tables(partners: &[Partner]) -> String {
    partners.iter().map(|p| format!("\n{p}")).collect()
}

/// The tables with the keys `certs init` wrote under `dir/certs`, for a node that runs
/// as its own process (a [`super::federation::Federation`] puts them in itself).
pub fn keyed_in(dir: &Path, partners: &[Partner]) -> String {
    partners.iter().fold(tables(partners), |text, p| {
        let key = format!("KEY({})", p.id);
        match text.contains(&key) {
            true => text.replace(&key, &super::public_key(dir, &p.id)),
            false => text,
        }
    })
}
