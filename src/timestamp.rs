//! Points in time as renkei records them: milliseconds since the Unix epoch, UTC.
//!
//! The pure core never reads the clock; the shell calls [`Timestamp::now`] and passes
//! the result in. This module owns the conversion to and from RFC 3339 text.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

/// A time that is not RFC 3339 with an offset, or lies before 1970.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not an RFC 3339 time at or after 1970 (e.g. 2026-04-01T00:00:00Z)")]
pub struct TimestampError {
    text: String,
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A time from milliseconds since the epoch.
    pub const fn from_unix_ms(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_ms(self) -> u64 {
        self.0
    }

    /// The system clock now. Only the shell (CLI, node) calls this.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This time plus `d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How far `self` lies after `earlier`, or zero.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Fixed width for tables: `YYYY-MM-DD HH:MM:SS.mmm` UTC (23 characters).
    pub fn fixed(self) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        );
        match self.to_datetime().and_then(|dt| dt.format(&format).ok()) {
            Some(text) => text,
            None => format!("{}ms", self.0),
        }
    }

    /// RFC 3339 in UTC with exactly three fractional digits
    /// (`2026-11-30T09:00:00.000Z`), as TAXII and STIX write timestamps.
    pub fn rfc3339_ms(self) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.to_datetime().and_then(|dt| dt.format(&format).ok()) {
            Some(text) => text,
            None => format!("{}ms", self.0),
        }
    }

    /// As a `time` date-time, when representable.
    pub fn to_datetime(self) -> Option<OffsetDateTime> {
        let nanos = i128::from(self.0).checked_mul(1_000_000)?;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().and_then(|dt| dt.format(&Rfc3339).ok()) {
            Some(text) => f.write_str(&text),
            // Beyond year 9999 RFC 3339 has no form; fall back to the raw number.
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimestampError {
            text: text.to_owned(),
        };
        let dt = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| err())?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).map(Timestamp).map_err(|_| err())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// Accepts RFC 3339 text, or a TOML offset date-time (`2026-04-01T00:00:00Z`
    /// written without quotes), which reaches us as the same text.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Toml(toml::value::Datetime),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Toml(dt) => dt.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t: Timestamp = "2026-04-01T09:30:00.250Z".parse().unwrap();
        assert_eq!(t.unix_ms(), 1_775_035_800_250);
        assert_eq!(t.to_string(), "2026-04-01T09:30:00.25Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let jst: Timestamp = "2026-04-01T09:00:00+09:00".parse().unwrap();
        let utc: Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
        assert_eq!(jst, utc);
    }

    #[test]
    fn rejects_text_without_offset_and_before_epoch() {
        assert!("2026-04-01T00:00:00".parse::<Timestamp>().is_err());
        assert!("1969-12-31T23:59:59Z".parse::<Timestamp>().is_err());
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn toml_datetime_and_string_both_deserialize() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Timestamp,
            b: Timestamp,
        }
        let t: T =
            toml::from_str("a = 2026-04-01T00:00:00Z\nb = \"2026-04-01T00:00:00Z\"").unwrap();
        assert_eq!(t.a, t.b);
    }
}
