//! The book of peer links: each peer's status as the operator sees it, and the one
//! connection in use, offered and replaced by the rule in `link_rules`. Holds state only:
//! dialling and serving a link are `link`'s.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::link_rules::{self as rules, Dialler};
use crate::config::PeerAddress;
use crate::identity::PartnerId;
use crate::proto;
use crate::timestamp::Timestamp;

/// One peer link as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// The peer node.
    pub peer: PartnerId,
    /// Where it is dialled.
    pub address: String,
    /// Whether a connection is up.
    pub up: bool,
    /// When it last came up or went down (or this node started watching it).
    pub since: Timestamp,
    /// Who dialled the connection that is up.
    pub dialled_by: Option<String>,
    /// Why the last dial or connection failed, if one did.
    pub last_error: Option<String>,
    /// Dials that failed, or links that ended within a minute of coming up, since the
    /// link last stayed up.
    pub failures: u32,
    /// Bulletins the peer forwarded that this node had stored already (acknowledged,
    /// not recorded: in a mesh most bulletins arrive more than once).
    pub copies: u64,
    /// Deliveries the peer took but refused, and the last refusal's code and words.
    pub refused_by_peer: (u64, Option<String>),
    /// The peer's queue towards this node as it last said (bulletins, and the age of
    /// the oldest in milliseconds), while the link is up.
    pub from_peer: Option<(u64, u64)>,
    /// The largest frame the peer said it reads (`Welcome.max_frame_bytes`), once it
    /// answered a Hello.
    pub max_frame: Option<usize>,
    /// Whether the peer said, on the connection that is the link, that it takes batch
    /// receipts (`Welcome.takes_batch_receipts`).
    pub batch_receipts: bool,
}

/// The connection that is a peer's link, and what it was offered as.
struct Current {
    id: usize,
    dialler: Dialler,
    conn: quinn::Connection,
}

struct Link {
    status: LinkStatus,
    current: Option<Current>,
    /// Bumped whenever the link goes down, so its dialler wakes.
    down: watch::Sender<u64>,
    /// The rules in force name the peer; when not, its entry goes with its link.
    configured: bool,
    /// Deliveries taken in from the peer and acknowledged, in all.
    acked: u64,
}

/// Every peer's link: its status and the connection in use.
#[derive(Default)]
pub(crate) struct LinkBook {
    links: Mutex<HashMap<PartnerId, Link>>,
}

/// What became of a connection offered as a peer's link.
pub(crate) enum Adoption {
    /// It is the link now; the audit line says how it came up.
    Adopted(String),
    /// The rule keeps the current connection, this one: if it still answers
    /// ([`answers`]), close the new one; if not, the peer lost it (it restarted, or
    /// the path broke): offer the new one again, replacing that one (`replacing`).
    Contested(quinn::Connection),
}

impl LinkBook {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<PartnerId, Link>) -> T) -> T {
        f(&mut self.links.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn entry<'a>(
        links: &'a mut HashMap<PartnerId, Link>,
        peer: &PartnerId,
        address: &str,
        now: Timestamp,
    ) -> &'a mut Link {
        links.entry(peer.clone()).or_insert_with(|| Link {
            status: LinkStatus {
                peer: peer.clone(),
                address: address.to_owned(),
                up: false,
                since: now,
                dialled_by: None,
                last_error: None,
                failures: 0,
                copies: 0,
                refused_by_peer: (0, None),
                from_peer: None,
                max_frame: None,
                batch_receipts: false,
            },
            current: None,
            down: watch::channel(0).0,
            configured: true,
            acked: 0,
        })
    }

    /// Starts watching `peer` at `address` (a reload may change the address).
    pub(crate) fn watch(&self, peer: &PartnerId, address: &PeerAddress, now: Timestamp) {
        let address = address.to_string();
        self.with(|links| {
            let link = Self::entry(links, peer, &address, now);
            link.status.address = address.clone();
            link.configured = true;
        });
    }

    /// Offers `conn`, opened by `dialler`, as `peer`'s link; `replacing` (a connection's
    /// stable id) replaces that connection even if the rule would keep it, but not
    /// another that became current meanwhile.
    pub(crate) fn adopt(
        &self,
        us: &PartnerId,
        peer: &PartnerId,
        (conn, dialler): (&quinn::Connection, Dialler),
        replacing: Option<usize>,
        now: Timestamp,
    ) -> Adoption {
        self.with(|links| {
            let link = Self::entry(links, peer, "", now);
            let mut how = dialler.describe(us, peer);
            if let Some(cur) = &link.current {
                let replace = replacing == Some(cur.id);
                if !replace && !rules::keeps_new(us, peer, cur.dialler, dialler) {
                    return Adoption::Contested(cur.conn.clone());
                }
                let code = quinn::VarInt::from_u32(proto::CloseCode::DuplicateLink as u32);
                cur.conn.close(code, b"replaced by a newer connection");
                how = format!(
                    "{how}, replacing the connection {}",
                    cur.dialler.describe(us, peer)
                );
            }
            link.current = Some(Current {
                id: conn.stable_id(),
                dialler,
                conn: conn.clone(),
            });
            let s = &mut link.status;
            if !s.up {
                s.since = now;
            }
            s.up = true;
            s.dialled_by = Some(dialler.describe(us, peer));
            // Another connection may be another version of the peer: it says again.
            s.batch_receipts = false;
            Adoption::Adopted(how)
        })
    }

    /// `conn` ended for the reason `why`: true if it was `peer`'s link (now down).
    pub(crate) fn ended(
        &self,
        peer: &PartnerId,
        conn: &quinn::Connection,
        why: &str,
        now: Timestamp,
    ) -> bool {
        self.with(|links| {
            let Some(link) = links.get_mut(peer) else {
                return false;
            };
            if link.current.as_ref().map(|c| c.id) != Some(conn.stable_id()) {
                return false;
            }
            link.current = None;
            if !link.configured {
                link.down.send_modify(|n| *n += 1);
                links.remove(peer);
                return true;
            }
            let s = &mut link.status;
            s.up = false;
            s.since = now;
            s.dialled_by = None;
            s.from_peer = None;
            s.last_error = Some(why.to_owned());
            link.down.send_modify(|n| *n += 1);
            true
        })
    }

    /// A dial of `peer` failed for the reason `why` (or, with none, a link ended soon
    /// after it came up); returns the failures in a row.
    pub(crate) fn failed(&self, peer: &PartnerId, why: Option<&str>) -> u32 {
        self.with(|links| match links.get_mut(peer) {
            Some(link) => {
                if let Some(why) = why {
                    link.status.last_error = Some(why.to_owned());
                }
                link.status.failures += 1;
                link.status.failures
            }
            None => 1,
        })
    }

    /// `peer`'s link stayed up long enough to count as working: no failures in a row.
    pub(crate) fn stable(&self, peer: &PartnerId) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.failures = 0;
            }
        })
    }

    /// What the peer said of its queue towards this node over `conn`, if that is the link.
    pub(crate) fn heard(&self, peer: &PartnerId, conn: &quinn::Connection, w: &proto::Welcome) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                let current = link.current.as_ref().map(|c| c.id) == Some(conn.stable_id());
                if current && w.max_frame_bytes > 0 {
                    link.status.max_frame = usize::try_from(w.max_frame_bytes).ok();
                }
                if current {
                    link.status.batch_receipts = w.takes_batch_receipts;
                }
                if let (true, Some(depth), Some(oldest)) =
                    (current, w.queued_for_you, w.oldest_queued_ms)
                {
                    link.status.from_peer = Some((depth, oldest));
                }
            }
        })
    }

    /// The largest frame `peer` reads, if it is a peer that said so.
    pub(crate) fn max_frame(&self, peer: &PartnerId) -> Option<usize> {
        self.with(|links| links.get(peer).and_then(|l| l.status.max_frame))
    }

    /// Whether `peer` said it takes batch receipts on the connection that is its link.
    pub(crate) fn takes_batch_receipts(&self, peer: &PartnerId) -> bool {
        self.with(|links| links.get(peer).is_some_and(|l| l.status.batch_receipts))
    }

    /// The connections that are links now.
    pub(crate) fn connections(&self) -> Vec<(PartnerId, quinn::Connection)> {
        self.with(|links| {
            links
                .iter()
                .filter_map(|(p, l)| l.current.as_ref().map(|c| (p.clone(), c.conn.clone())))
                .collect()
        })
    }

    /// `n` deliveries from `peer` were taken in and acknowledged.
    pub(crate) fn count_acked(&self, peer: &PartnerId, n: u64) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.acked += n;
            }
        })
    }

    /// Deliveries taken in from `peer` so far.
    pub(crate) fn acked(&self, peer: &PartnerId) -> u64 {
        self.with(|links| links.get(peer).map_or(0, |l| l.acked))
    }

    /// The peer forwarded `n` bulletins this node had stored already.
    pub(crate) fn count_copies(&self, peer: &PartnerId, n: u64) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.copies += n;
            }
        })
    }

    /// The peer took deliveries but refused `n` of them, the last for `why`.
    pub(crate) fn count_refused(&self, peer: &PartnerId, n: u64, why: String) {
        self.with(|links| {
            if let Some(link) = links.get_mut(peer) {
                link.status.refused_by_peer.0 += n;
                link.status.refused_by_peer.1 = Some(why);
            }
        })
    }

    /// Whether `peer`'s link is up, and a receiver that changes when it goes down.
    pub(super) fn state(&self, peer: &PartnerId) -> (bool, Option<watch::Receiver<u64>>) {
        self.with(|links| match links.get(peer) {
            Some(l) => (l.current.is_some(), Some(l.down.subscribe())),
            None => (false, None),
        })
    }

    /// Stops watching the peers not in `keep` whose link is down (a link still up is
    /// closed by the reload that removed its peer, and recorded as it goes down).
    pub(crate) fn retain(&self, keep: &[PartnerId]) {
        self.with(|links| {
            for (p, l) in links.iter_mut() {
                l.configured = keep.contains(p);
            }
            links.retain(|_, l| l.configured || l.current.is_some())
        });
    }

    /// Every peer link's status, by peer id.
    pub fn statuses(&self) -> Vec<LinkStatus> {
        let mut all: Vec<LinkStatus> =
            self.with(|l| l.values().map(|l| l.status.clone()).collect());
        all.sort_by(|a, b| a.peer.cmp(&b.peer));
        all
    }
}
