//! The MISP feed's listing: the stored bulletins some partner may read, in acceptance
//! order, each by its event uuid (the bulletin id), with its manifest entry and value
//! hashes once they have been made. Pure: stored bulletins and made events go in,
//! listed bulletins come out; who may see which is a predicate the caller passes, and
//! the events themselves are made (from verified bulletins) by the shell.
//!
//! Kept in memory for the same reason as the TAXII index: a feed's manifest names every
//! event at once. It holds the newest [`MAX_EVENTS`] at most; an entry costs its
//! bulletin's place, and once made its manifest entry and 16 bytes a value.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::identity::PartnerId;

/// Events a feed lists at most: the newest this many bulletins shared with someone.
pub(crate) const MAX_EVENTS: usize = 100_000;

/// What a feed says of one event once it is made: its manifest entry and the MD5 of
/// each of its values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Made {
    pub entry: Value,
    pub hashes: Vec<[u8; 16]>,
}

impl Made {
    /// What the feed says of `event` (a MISP event as `misp::event` makes it).
    pub fn of(event: &Value) -> Option<Made> {
        let (_, entry) = crate::misp::manifest_entry(event)?;
        let hashes = crate::misp::hash_lines(event)
            .iter()
            .filter_map(|line| {
                let hex = line.split(',').next()?;
                <[u8; 16]>::try_from(hex::decode(hex).ok()?).ok()
            })
            .collect();
        Some(Made { entry, hashes })
    }

    /// Its lines in `hashes.csv`, for the event `uuid`.
    pub fn hash_lines<'a>(&'a self, uuid: &'a str) -> impl Iterator<Item = String> + 'a {
        self.hashes
            .iter()
            .map(move |h| format!("{},{uuid}", hex::encode(h)))
    }
}

/// One stored bulletin in the feed.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub seq: u64,
    /// The event's uuid: the bulletin's id.
    pub uuid: Arc<str>,
    /// Who the bulletin was shared with when it was accepted.
    pub shared_with: Arc<[PartnerId]>,
    /// Its entry and hashes, once made.
    pub made: Option<Made>,
}

/// The newest [`MAX_EVENTS`] stored bulletins shared with someone.
pub(crate) struct Listing {
    listed: VecDeque<Listed>,
    /// Event uuid → seqs listed under it (two origins may use one id).
    by_uuid: HashMap<Arc<str>, Vec<u64>>,
    through: u64,
    most: usize,
}

impl Default for Listing {
    fn default() -> Self {
        Listing::holding_at_most(MAX_EVENTS)
    }
}

impl Listing {
    /// An empty listing of `most` events at most.
    pub fn holding_at_most(most: usize) -> Listing {
        Listing {
            listed: VecDeque::new(),
            by_uuid: HashMap::new(),
            through: 0,
            most: most.max(1),
        }
    }

    /// The last seq looked at.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// Lists the stored bulletin `seq` (seqs in ascending order) of id `uuid`, shared
    /// with `shared_with`; one shared with no one is only noted as looked at.
    pub fn add(&mut self, seq: u64, uuid: &str, shared_with: Arc<[PartnerId]>) {
        self.through = self.through.max(seq);
        if shared_with.is_empty() {
            return;
        }
        let uuid: Arc<str> = match self.by_uuid.get_key_value(uuid) {
            Some((known, _)) => known.clone(),
            None => uuid.into(),
        };
        self.by_uuid.entry(uuid.clone()).or_default().push(seq);
        self.listed.push_back(Listed {
            seq,
            uuid,
            shared_with,
            made: None,
        });
        while self.listed.len() > self.most {
            let Some(old) = self.listed.pop_front() else {
                break;
            };
            if let Some(seqs) = self.by_uuid.get_mut(&old.uuid) {
                seqs.retain(|s| *s != old.seq);
                if seqs.is_empty() {
                    self.by_uuid.remove(&old.uuid);
                }
            }
        }
    }

    /// Notes that `seq` was looked at and holds nothing to list.
    pub fn reached(&mut self, seq: u64) {
        self.through = self.through.max(seq);
    }

    /// The listed bulletins `visible` admits, oldest first.
    pub fn visible<'a>(
        &'a self,
        visible: &'a dyn Fn(&Listed) -> bool,
    ) -> impl Iterator<Item = &'a Listed> + 'a {
        self.listed.iter().filter(move |l| visible(l))
    }

    /// The newest listed bulletin of event `uuid` that `visible` admits.
    pub fn find(&self, uuid: &str, visible: &dyn Fn(&Listed) -> bool) -> Option<&Listed> {
        let seqs = self.by_uuid.get(uuid)?;
        seqs.iter()
            .rev()
            .filter_map(|seq| self.get(*seq))
            .find(|l| visible(l))
    }

    /// Keeps what was made of the listed bulletin `seq`.
    pub fn made(&mut self, seq: u64, made: Made) {
        if let Some(at) = self.position(seq) {
            self.listed[at].made = Some(made);
        }
    }

    /// The listed bulletin `seq`, if it is listed.
    pub fn get(&self, seq: u64) -> Option<&Listed> {
        self.position(seq).map(|at| &self.listed[at])
    }

    fn position(&self, seq: u64) -> Option<usize> {
        self.listed.binary_search_by_key(&seq, |l| l.seq).ok()
    }
}

/// The MD5 a feed gives `value`.
#[cfg(test)]
fn md5_of(value: &str) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Arc<[PartnerId]> {
        names.iter().map(|n| n.parse().expect("an id")).collect()
    }

    #[test]
    fn it_lists_what_is_shared_and_finds_the_newest_visible_by_uuid() {
        let mut l = Listing::holding_at_most(10);
        l.add(1, "a", ids(&["au-dod"]));
        l.add(2, "b", ids(&[]));
        l.add(3, "a", ids(&["jp-cdc"]));
        l.reached(4);
        assert_eq!(l.through(), 4);
        let all = |_: &Listed| true;
        let seqs: Vec<u64> = l.visible(&all).map(|x| x.seq).collect();
        assert_eq!(seqs, [1, 3], "shared with no one: not listed");
        assert_eq!(l.find("a", &all).map(|x| x.seq), Some(3));
        let au: PartnerId = "au-dod".parse().expect("an id");
        let for_au = |x: &Listed| x.shared_with.contains(&au);
        assert_eq!(l.find("a", &for_au).map(|x| x.seq), Some(1));
        assert!(l.find("b", &all).is_none());
    }

    #[test]
    fn the_oldest_leave_and_what_was_made_is_kept() {
        let mut l = Listing::holding_at_most(2);
        for seq in 1..=3 {
            l.add(seq, &format!("e{seq}"), ids(&["au-dod"]));
        }
        let all = |_: &Listed| true;
        assert!(l.find("e1", &all).is_none(), "evicted");
        let event = serde_json::json!({"Event": {"uuid": "e3", "info": "x",
            "Attribute": [{"type": "domain", "value": "x.example"}]}});
        let made = Made::of(&event).expect("made");
        assert_eq!(made.hashes, [md5_of("x.example")]);
        l.made(3, made.clone());
        l.made(1, made.clone());
        assert_eq!(l.find("e3", &all).and_then(|x| x.made.clone()), Some(made));
        let lines: Vec<String> = Made::of(&event).expect("made").hash_lines("e3").collect();
        assert_eq!(lines, crate::misp::hash_lines(&event));
    }
}
