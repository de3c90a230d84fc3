//! Deliveries a peer node refused for a reason its configuration or this node's could
//! change (an origin or key it did not know), kept per peer so they can be offered
//! again once either configuration changes: the seq, the peer's code, and both
//! configurations' digests as they were. Written only by the storage thread, as a
//! [`RefusedChange`] in a group commit; read by delivery when a peer subscribes.

use super::{be_u64, corrupt, Store, StoreError};
use crate::identity::PartnerId;
use crate::store::kv;

/// `r/PEER\0SEQ` → the code (4 bytes), this node's digest (32), the peer's (the rest).
const REFUSED: &[u8] = b"r/";

/// One delivery a peer refused, kept for another try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The bulletin's seq.
    pub seq: u64,
    /// The peer's `ErrorCode`.
    pub code: i32,
    /// This node's policy digest when the peer refused it.
    pub own_digest: [u8; 32],
    /// The configuration digest the peer's subscription declared.
    pub peer_digest: Vec<u8>,
}

impl Refusal {
    /// Whether either configuration changed since the refusal, so that offering the
    /// bulletin again may end otherwise.
    pub fn due(&self, own_digest: &[u8; 32], peer_digest: &[u8]) -> bool {
        &self.own_digest != own_digest || self.peer_digest != peer_digest
    }

    fn encode(&self) -> Vec<u8> {
        [
            &self.code.to_be_bytes()[..],
            &self.own_digest[..],
            &self.peer_digest[..],
        ]
        .concat()
    }

    fn decode(key: &[u8], seq: u64, value: &[u8]) -> Result<Refusal, StoreError> {
        let bad = || corrupt(key, "a kept refusal is shorter than 36 bytes");
        let code = value.get(..4).ok_or_else(bad)?;
        let own = value.get(4..36).ok_or_else(bad)?;
        Ok(Refusal {
            seq,
            code: i32::from_be_bytes(code.try_into().map_err(|_| bad())?),
            own_digest: own.try_into().map_err(|_| bad())?,
            peer_digest: value.get(36..).unwrap_or_default().to_vec(),
        })
    }
}

/// A change to the kept refusals, written with the records of the same group commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusedChange {
    /// The peer refused this delivery: keep it (again, with the digests of now).
    Keep(PartnerId, Refusal),
    /// The delivery was taken at last, or will not be offered again: forget it.
    Forget(PartnerId, u64),
}

fn prefix(peer: &PartnerId) -> Vec<u8> {
    let mut k = [REFUSED, peer.as_str().as_bytes()].concat();
    k.push(0);
    k
}

fn key(peer: &PartnerId, seq: u64) -> Vec<u8> {
    let mut k = prefix(peer);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Adds `change` to a group commit's writes.
pub(super) fn plan(writes: &mut kv::Batch, change: RefusedChange) {
    match change {
        RefusedChange::Keep(peer, r) => writes.insert(key(&peer, r.seq), r.encode()),
        RefusedChange::Forget(peer, seq) => writes.remove(key(&peer, seq)),
    }
}

impl Store {
    /// The deliveries `peer` refused that are kept for another try, ascending seq.
    pub fn refused(&self, peer: &PartnerId) -> Result<Vec<Refusal>, StoreError> {
        let prefix = prefix(peer);
        let mut out = Vec::new();
        for entry in self.state.scan_prefix(&prefix) {
            let (k, v) = entry?;
            let seq = be_u64(&k, k.get(prefix.len()..).unwrap_or_default())?;
            out.push(Refusal::decode(&k, seq, &v)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(seq: u64, peer_digest: &[u8]) -> Refusal {
        Refusal {
            seq,
            code: 19,
            own_digest: [7; 32],
            peer_digest: peer_digest.to_vec(),
        }
    }

    #[test]
    fn a_refusal_is_due_when_either_configuration_changed() {
        let r = refusal(3, &[1; 32]);
        assert!(!r.due(&[7; 32], &[1; 32]), "nothing changed");
        assert!(r.due(&[8; 32], &[1; 32]), "this node's rules changed");
        assert!(r.due(&[7; 32], &[2; 32]), "the peer's changed");
    }

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn kept_refusals_are_read_back_per_peer_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let (us, au) = (pid("us-dod"), pid("au-dod"));
        let mut writes = kv::Batch::default();
        plan(
            &mut writes,
            RefusedChange::Keep(us.clone(), refusal(9, &[1; 32])),
        );
        plan(
            &mut writes,
            RefusedChange::Keep(us.clone(), refusal(4, &[])),
        );
        plan(
            &mut writes,
            RefusedChange::Keep(au.clone(), refusal(5, &[2; 32])),
        );
        store.state.apply_batch(writes).unwrap();
        assert_eq!(
            store.refused(&us).unwrap(),
            vec![refusal(4, &[]), refusal(9, &[1; 32])]
        );

        let mut writes = kv::Batch::default();
        plan(&mut writes, RefusedChange::Forget(us.clone(), 4));
        store.state.apply_batch(writes).unwrap();
        assert_eq!(store.refused(&us).unwrap(), vec![refusal(9, &[1; 32])]);
        assert_eq!(store.refused(&au).unwrap().len(), 1);
    }
}
