//! Who a party is in the terms a cooperation programme reports in: a country (ISO
//! 3166-1 alpha-2, `EE`, `US`, `VN`) or an international organisation (`NATO`,
//! `NATO-CCDCOE`, `ASEAN`). A partner id names a desk or a node; its affiliation names
//! whose desk or node it is. Pure values; where they come from is the configuration's.

use std::fmt;
use std::str::FromStr;

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ISO_3166_1: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG \
    BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU \
    CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF \
    GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS \
    IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC \
    MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO \
    NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD \
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR \
    TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// A value that is neither a country code nor an organisation name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AffiliationError {
    /// Not an assigned ISO 3166-1 alpha-2 code.
    #[error(
        "{0} is not an ISO 3166-1 alpha-2 country code (two capital letters, e.g. EE, US, VN)"
    )]
    Country(String),
    /// Not a short upper-case name.
    #[error("{0:?} is not an organisation name: 2 to 32 capital letters, digits and '-', e.g. NATO-CCDCOE")]
    Organisation(String),
}

/// An ISO 3166-1 alpha-2 country code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// The code, e.g. `EE`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for Country {
    type Err = AffiliationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || match s {
            "UK" => AffiliationError::Country("UK (the United Kingdom is GB)".into()),
            _ => AffiliationError::Country(s.chars().take(40).collect()),
        };
        let bytes: [u8; 2] = s.as_bytes().try_into().map_err(|_| bad())?;
        let assigned = bytes.iter().all(u8::is_ascii_uppercase)
            && ISO_3166_1.split_whitespace().any(|c| c == s);
        assigned.then_some(Country(bytes)).ok_or_else(bad)
    }
}

/// An international organisation's name, e.g. `NATO-CCDCOE`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Organisation(String);

impl Organisation {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Organisation {
    type Err = AffiliationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (2..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
        match ok {
            true => Ok(Organisation(s.to_owned())),
            false => Err(AffiliationError::Organisation(s.chars().take(40).collect())),
        }
    }
}

/// Whose a partner, origin or node is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// A country's ministry, agency or desk.
    Country(Country),
    /// An international organisation's body.
    Organisation(Organisation),
}

impl Affiliation {
    /// The affiliation a table names with its `country` or `organisation` (at most one;
    /// the configuration refuses both).
    pub fn of(
        country: Option<Country>,
        organisation: Option<&Organisation>,
    ) -> Option<Affiliation> {
        match (country, organisation) {
            (Some(c), _) => Some(Affiliation::Country(c)),
            (None, Some(o)) => Some(Affiliation::Organisation(o.clone())),
            (None, None) => None,
        }
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Organisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Affiliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Affiliation::Country(c) => c.fmt(f),
            Affiliation::Organisation(o) => o.fmt(f),
        }
    }
}

macro_rules! serde_by_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_by_str!(Country);
serde_by_str!(Organisation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_assigned_codes_and_organisations_short_names() {
        for ok in ["EE", "US", "VN", "JP", "GB"] {
            assert_eq!(ok.parse::<Country>().unwrap().as_str(), ok);
        }
        for bad in ["ee", "UK", "EST", "", "XX", "E1"] {
            assert!(bad.parse::<Country>().is_err(), "{bad}");
        }
        for ok in ["NATO", "NATO-CCDCOE", "ASEAN", "EU"] {
            assert_eq!(ok.parse::<Organisation>().unwrap().as_str(), ok);
        }
        for bad in ["nato", "N", "-NATO", "NATO CCDCOE", &"A".repeat(33)] {
            assert!(bad.parse::<Organisation>().is_err(), "{bad}");
        }
        let a = Affiliation::Organisation("NATO".parse().unwrap());
        assert_eq!(a.to_string(), "NATO");
    }
}
