//! A query of the audit log, as an auditor asks it: which records (by partner,
//! bulletin, event, time, position) and how many. It decides which records match and
//! how a query travels on the wire; finding them fast is the store's job.

use crate::bulletin::BulletinId;
use crate::identity::PartnerId;
use crate::proto::{self, AuditEvent};
use crate::timestamp::Timestamp;

/// A query of the log: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Records concerning this partner.
    pub partner: Option<PartnerId>,
    /// Records about this bulletin.
    pub bulletin: Option<BulletinId>,
    /// Records of this event.
    pub event: Option<AuditEvent>,
    /// Node time at or after this.
    pub since: Option<Timestamp>,
    /// Node time at or before this.
    pub until: Option<Timestamp>,
    /// Only seqs above this (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Page size.
    pub limit: usize,
}

impl Query {
    /// Does `r` pass every filter except the time range (which selects seqs)?
    pub fn matches(&self, r: &proto::AuditRecord) -> bool {
        if let Some(p) = &self.partner {
            let p = p.as_str();
            let concerns = r.partner == p || r.decisions.iter().any(|d| d.partner == p);
            if !concerns {
                return false;
            }
        }
        if let Some(b) = &self.bulletin {
            let about =
                r.bulletin_id == b.to_string() || super::record::receipted_bulletins(r).contains(b);
            if !about {
                return false;
            }
        }
        if let Some(e) = self.event {
            if r.event != e as i32 {
                return false;
            }
        }
        true
    }
}

/// Most records one query page may hold.
pub const MAX_PAGE: usize = 1000;
/// Page size when the query names none.
pub const DEFAULT_PAGE: usize = 100;

/// Why an auditor's query cannot be taken as sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The partner named is not a partner id.
    #[error("partner: {0}")]
    Partner(crate::identity::IdentityError),
    /// The bulletin id named (quoted) is not a canonical UUID.
    #[error("bulletin_id {0} is not a canonical UUID (lowercase, hyphenated)")]
    BulletinId(String),
    /// The event number names no audit event.
    #[error("event {0} is not an audit event")]
    Event(u32),
}

impl Query {
    /// The query an auditor sent over the wire, checked.
    pub fn from_wire(q: &proto::AuditQuery) -> Result<Query, QueryError> {
        let partner = match q.partner.as_str() {
            "" => None,
            p => Some(p.parse::<PartnerId>().map_err(QueryError::Partner)?),
        };
        let bulletin = match q.bulletin_id.as_str() {
            "" => None,
            b => Some(
                BulletinId::parse_canonical(b)
                    .ok_or_else(|| QueryError::BulletinId(crate::text::excerpt(b)))?,
            ),
        };
        let event = match q.event {
            0 => None,
            n => Some(
                i32::try_from(n)
                    .ok()
                    .and_then(|n| AuditEvent::try_from(n).ok())
                    .ok_or(QueryError::Event(n))?,
            ),
        };
        let time = |ms: u64| (ms != 0).then(|| Timestamp::from_unix_ms(ms));
        let limit = match q.limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        Ok(Query {
            partner,
            bulletin,
            event,
            since: time(q.since_unix_ms),
            until: time(q.until_unix_ms),
            after: q.after,
            limit,
        })
    }

    /// The wire form of this query.
    pub fn to_wire(&self) -> proto::AuditQuery {
        proto::AuditQuery {
            partner: self
                .partner
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            bulletin_id: self.bulletin.map(|b| b.to_string()).unwrap_or_default(),
            event: self.event.map_or(0, |e| e as u32),
            since_unix_ms: self.since.map_or(0, |t| t.unix_ms()),
            until_unix_ms: self.until.map_or(0, |t| t.unix_ms()),
            after: self.after,
            limit: self.limit as u32,
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit query")?;
        if let Some(p) = &self.partner {
            write!(f, " partner={p}")?;
        }
        if let Some(b) = &self.bulletin {
            write!(f, " bulletin={b}")?;
        }
        if let Some(e) = self.event {
            write!(f, " event={}", e.as_str_name())?;
        }
        if let Some(t) = self.since {
            write!(f, " since={t}")?;
        }
        if let Some(t) = self.until {
            write!(f, " until={t}")?;
        }
        if let Some(a) = self.after {
            write!(f, " after={a}")?;
        }
        write!(f, " limit={}", self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_travels_the_wire_unchanged_and_bad_fields_are_named() {
        let q = Query {
            partner: Some("vn-mod".parse().unwrap()),
            bulletin: BulletinId::parse_canonical("019a6b2e-7c4d-7e1f-8a2b-3c4d5e6f7a8b"),
            event: Some(AuditEvent::Delivered),
            since: Some(Timestamp::from_unix_ms(5)),
            until: None,
            after: Some(7),
            limit: 20,
        };
        assert_eq!(Query::from_wire(&q.to_wire()).unwrap(), q);
        let big = proto::AuditQuery {
            limit: 50_000,
            ..Default::default()
        };
        assert_eq!(Query::from_wire(&big).unwrap().limit, MAX_PAGE);
        let bad = proto::AuditQuery {
            bulletin_id: "019A".into(),
            ..Default::default()
        };
        assert!(matches!(
            Query::from_wire(&bad),
            Err(QueryError::BulletinId(_))
        ));
    }

    #[test]
    fn a_partner_matches_its_own_records_and_every_decision_about_it() {
        let q = Query {
            partner: Some("vn-mod".parse().unwrap()),
            ..Query::default()
        };
        let decided = |shared| proto::AuditRecord {
            partner: "us-dod".into(),
            decisions: vec![proto::Decision {
                partner: "vn-mod".into(),
                shared,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(q.matches(&decided(true)));
        assert!(q.matches(&decided(false)), "withheld from it");
        assert!(q.matches(&proto::AuditRecord {
            partner: "vn-mod".into(),
            ..Default::default()
        }));
        assert!(!q.matches(&proto::AuditRecord {
            partner: "us-dod".into(),
            ..Default::default()
        }));
    }
}
