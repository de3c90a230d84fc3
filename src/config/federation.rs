//! What a node's configuration says about the federation beyond its own desks: where
//! its peer nodes listen (`address` on a relay partner), the origins it hears only
//! through a peer (`[[origin]]`), and `[federation]` (the hop limit, the redial pace).
//!
//! Pure types and checks; dialling is the node's, routing decisions are `policy`'s.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::KeyConfig;
use crate::identity::{Affiliation, Country, GroupName, Organisation, PartnerId};

/// Where a peer node listens: `HOST:PORT`, the host a name resolved when dialling or an
/// IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    host: String,
    port: u16,
}

impl PeerAddress {
    /// The host part (a DNS name or an IP address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// An address that is not `HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} must be HOST:PORT, e.g. nato-node.example:4433 or 192.0.2.10:4433")]
pub struct AddressError(String);

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        // `[v6]:port` names an IPv6 host; the brackets are not part of it.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        Ok(PeerAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for PeerAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One `[[origin]]`: an organisation this node has no link with, whose bulletins (or
/// whose desks, as an audience) it reaches only through the peers in `via`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// The origin's partner id.
    pub id: PartnerId,
    /// Its signing keys; none for an organisation that only receives.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The peer nodes (relay partners) its bulletins may arrive through; the first is
    /// the way towards it, which bulletins addressed to it take.
    pub via: Vec<PartnerId>,
    /// Groups it belongs to, so a `group:NAME` audience travels towards it.
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// Its country (ISO 3166-1 alpha-2), for the cooperation figures.
    pub country: Option<Country>,
    /// Or the international organisation it belongs to (e.g. `NATO-CCDCOE`).
    pub organisation: Option<Organisation>,
}

impl OriginConfig {
    /// Whose desk it is, when the configuration says.
    pub fn affiliation(&self) -> Option<Affiliation> {
        Affiliation::of(self.country, self.organisation.as_ref())
    }
}

/// The optional `[federation]` table.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// Most nodes a bulletin's path may hold, this one included: a node at the limit
    /// passes bulletins to its desks but not to another peer.
    pub hop_limit: u32,
    /// The first pause before dialling a peer again, in milliseconds; it doubles after
    /// each failure up to `redial_max_secs`, with random jitter.
    pub redial_min_ms: u64,
    /// The longest pause between dials, in seconds.
    pub redial_max_secs: u64,
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            hop_limit: 4,
            redial_min_ms: 250,
            redial_max_secs: 30,
        }
    }
}

impl FederationSection {
    /// Most hop limit a configuration may set: a path longer than this is a loop.
    pub const MAX_HOP_LIMIT: u32 = 16;

    /// The redial pace: the first pause and the longest.
    pub fn redial(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.redial_min_ms),
            Duration::from_secs(self.redial_max_secs),
        )
    }

    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if !(1..=Self::MAX_HOP_LIMIT).contains(&self.hop_limit) {
            return Err((
                "federation.hop_limit".into(),
                format!("must be 1 to {}", Self::MAX_HOP_LIMIT),
            ));
        }
        if self.redial_min_ms == 0 || self.redial_max_secs == 0 {
            return Err((
                "federation".into(),
                "redial_min_ms and redial_max_secs must be at least 1".into(),
            ));
        }
        if self.redial_min_ms > self.redial_max_secs * 1000 {
            return Err((
                "federation.redial_min_ms".into(),
                "must not be above redial_max_secs".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        let a: PeerAddress = "nato-node.example:4433".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("nato-node.example", 4433));
        let v6: PeerAddress = "[2001:db8::1]:4433".parse().unwrap();
        assert_eq!(v6.host(), "2001:db8::1");
        assert_eq!(v6.to_string(), "[2001:db8::1]:4433");
        for bad in [
            "nato-node",
            ":4433",
            "host:0",
            "host:99999",
            "a b:1",
            "host:",
        ] {
            let e = bad.parse::<PeerAddress>().unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_hop_limit_is_bounded() {
        let mut f = FederationSection::default();
        assert!(f.check().is_ok());
        f.hop_limit = 0;
        assert!(f.check().unwrap_err().0.contains("hop_limit"));
        f.hop_limit = 17;
        assert!(f.check().is_err());
    }
}
