//! `[[partner]]` tables written by code, so a test says what differs about a partner
//! and not the same lines again. `KEY(id)` is the placeholder the federation helpers
//! replace with id's public signing key.

use std::fmt;

/// One `[[partner]]` table being written.
pub struct Partner {
    id: String,
    role: &'static str,
    clearance: Option<String>,
    keyed: bool,
    lines: Vec<String>,
}

/// A liaison desk cleared to `clearance`, publishing with its own key.
pub fn liaison(id: &str, clearance: &str) -> Partner {
    Partner {
        id: id.to_owned(),
        role: "liaison",
        clearance: Some(clearance.to_owned()),
        keyed: true,
        lines: Vec::new(),
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
        if self.keyed {
            writeln!(f, "keys = [{{ public = \"KEY({})\" }}]", self.id)?;
        }
        Ok(())
    }
}

/// The tables, one after another.
pub fn tables(partners: &[Partner]) -> String {
    partners.iter().map(|p| format!("\n{p}")).collect()
}
