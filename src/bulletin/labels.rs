//! The labels a bulletin carries: its TLP level and its kind, with their wire numbers
//! and the text forms used in configs, CLI flags and JSON.
//!
//! Pure data; what a label means for sharing is decided by `policy`.

use std::fmt;

use crate::proto;

/// A text that names no label of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a {what}: use one of {}", known.join(", "))]
pub struct UnknownLabel {
    /// The text given.
    pub given: String,
    /// What it should have named ("TLP level", "bulletin kind").
    pub what: &'static str,
    /// Every text form that names one.
    pub known: Vec<&'static str>,
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $proto:ident, $what:literal,
     [$($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase text form used in configs, CLI flags and JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The wire enum value.
            pub fn to_proto(self) -> proto::$proto {
                match self { $($name::$variant => proto::$proto::$variant),+ }
            }

            /// From the wire enum number; `None` for unspecified or unknown values.
            pub fn from_proto(n: i32) -> Option<Self> {
                match proto::$proto::try_from(n).ok()? {
                    $(proto::$proto::$variant => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownLabel;
            fn from_str(s: &str) -> Result<Self, UnknownLabel> {
                let norm = s.trim().to_ascii_lowercase();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == norm || v.aliases().contains(&norm.as_str()))
                    .ok_or_else(|| UnknownLabel {
                        given: s.to_owned(),
                        what: $what,
                        known: $name::ALL.iter().map(|v| v.as_str()).collect(),
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum!(
    /// Traffic Light Protocol 2.0 level; ordered from least to most restricted.
    Tlp, Tlp, "TLP level",
    [
        /// No limit on disclosure.
        Clear = "clear",
        /// The community, not public channels.
        Green = "green",
        /// The recipient organisation and its clients, need-to-know.
        Amber = "amber",
        /// The recipient organisation only.
        AmberStrict = "amber+strict",
        /// Named recipients only.
        Red = "red",
    ]
);

impl Tlp {
    /// Accepted alternative spellings: `tlp:` prefixes, and TLP 1.0's WHITE for CLEAR.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Tlp::Clear => &["tlp:clear", "white", "tlp:white"],
            Tlp::Green => &["tlp:green"],
            Tlp::Amber => &["tlp:amber"],
            Tlp::AmberStrict => &["tlp:amber+strict", "amber-strict", "amber_strict"],
            Tlp::Red => &["tlp:red"],
        }
    }
}

text_enum!(
    /// What a bulletin is about.
    Kind, Kind, "bulletin kind",
    [
        /// Indicators of compromise.
        Indicator = "indicator",
        /// A security advisory.
        Advisory = "advisory",
        /// An incident notification.
        Incident = "incident",
        /// A vulnerability notice.
        Vulnerability = "vulnerability",
        /// An exercise (planning, injects, after-action).
        Exercise = "exercise",
        /// A consultation between partners.
        Consultation = "consultation",
        /// A report.
        Report = "report",
    ]
);

impl Kind {
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }
}
