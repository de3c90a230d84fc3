//! Verifying bulletins, one or a batch: the origin's key valid at the creation time,
//! the signature under the rule of [`super::signature`], and the creation time against
//! the clock. Pure: the time is passed in.

use ed25519_dalek::Signature;

use super::{
    append_signed_message, signature, signed_message, BulletinError, Limits, UnverifiedBulletin,
    VerifiedBulletin, SIGNATURE_DOMAIN,
};
use crate::identity::{KeyLookupError, Keyring, PublicKey};
use crate::timestamp::Timestamp;

impl UnverifiedBulletin {
    /// Verifies the signature with the origin's key valid at the creation time, then
    /// checks the creation time against `now` plus the allowed skew. The signature rule
    /// is ZIP-215 with canonical encodings (see `bulletin/signature.rs`).
    pub fn verify(
        self,
        keys: &Keyring,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<VerifiedBulletin, BulletinError> {
        let received = limits.max_age.map(|_| now);
        let key = *keys.lookup_received(
            &self.header.origin,
            &self.key_id,
            self.header.created,
            received,
        )?;
        let valid = signature::verify_one(
            &key,
            &signed_message(&self.signed.bulletin),
            &self.signature,
        );
        self.conclude(key, valid, now, limits)
    }

    /// Verifies many bulletins, checking their signatures as one batch: each result is
    /// what [`UnverifiedBulletin::verify`] would say of it alone, at a fraction of the
    /// cost per signature.
    pub fn verify_all(
        bulletins: Vec<UnverifiedBulletin>,
        keys: &Keyring,
        now: Timestamp,
        limits: &Limits,
    ) -> Vec<Result<VerifiedBulletin, BulletinError>> {
        let received = limits.max_age.map(|_| now);
        let looked_up: Vec<Result<PublicKey, KeyLookupError>> = bulletins
            .iter()
            .map(|b| {
                keys.lookup_received(&b.header.origin, &b.key_id, b.header.created, received)
                    .copied()
            })
            .collect();
        // Only bulletins whose key was found have a signature to check; `valid` answers
        // for those, in the same order. Their signed messages share one buffer.
        let mut messages = Vec::with_capacity(
            bulletins
                .iter()
                .map(|b| SIGNATURE_DOMAIN.len() + b.signed.bulletin.len())
                .sum(),
        );
        let ranges: Vec<Option<std::ops::Range<usize>>> = bulletins
            .iter()
            .zip(&looked_up)
            .map(|(b, key)| {
                key.is_ok()
                    .then(|| append_signed_message(&mut messages, &b.signed.bulletin))
            })
            .collect();
        let items: Vec<(&PublicKey, &[u8], &Signature)> = bulletins
            .iter()
            .zip(&looked_up)
            .zip(ranges)
            .filter_map(|((b, key), range)| {
                Some((key.as_ref().ok()?, messages.get(range?)?, &b.signature))
            })
            .collect();
        let mut valid = signature::verify_many(&items).into_iter();
        bulletins
            .into_iter()
            .zip(looked_up)
            .map(|(b, key)| {
                let key = key?;
                let ok = valid.next().unwrap_or(false);
                b.conclude(key, ok, now, limits)
            })
            .collect()
    }

    /// The verdict once the signature was checked with `key`.
    fn conclude(
        self,
        key: PublicKey,
        signature_valid: bool,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<VerifiedBulletin, BulletinError> {
        let h = &self.header;
        if !signature_valid {
            return Err(BulletinError::BadSignature {
                origin: h.origin.clone(),
                key_id: self.key_id,
            });
        }
        if let Some(allowed) = limits.max_age {
            let age = now.saturating_since(h.created);
            if age > allowed {
                return Err(BulletinError::TooOld {
                    created: h.created,
                    now,
                    age,
                    allowed,
                });
            }
        }
        let latest = now.saturating_add(limits.max_future_skew);
        if h.created > latest {
            return Err(BulletinError::FromTheFuture {
                created: h.created,
                now,
                ahead: h.created.saturating_since(now),
                allowed: limits.max_future_skew,
            });
        }
        Ok(VerifiedBulletin { inner: self, key })
    }
}
