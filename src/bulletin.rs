//! Bulletins: signing, decoding, validating and verifying them.
//!
//! The signature is Ed25519 over `renkei/bulletin/v1\0` followed by the exact encoded
//! `Bulletin` bytes carried in `SignedBulletin.bulletin`; those bytes are never
//! re-encoded. A [`VerifiedBulletin`] can only be made by [`UnverifiedBulletin::verify`],
//! which checks the signature against a key that the keyring holds for the origin,
//! valid at the creation time and not revoked.
//!
//! Pure: no I/O and no clock reads (`now` is passed in). Sharing decisions belong to
//! `policy`, storage to `store`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::identity::{AudienceEntry, IdentityError, KeyId, KeyLookupError, PartnerId, PublicKey};
use crate::proto;
use crate::text::excerpt;
use crate::timestamp::Timestamp;

/// The domain tag prepended to the bulletin bytes before signing, so a bulletin
/// signature can never be confused with any other use of the same key.
pub const SIGNATURE_DOMAIN: &[u8] = b"renkei/bulletin/v1\0";

/// The content type of STIX 2.1 bundles, a first-class body format.
pub const STIX_CONTENT_TYPE: &str = "application/stix+json;version=2.1";

/// Everything that can be wrong with a bulletin, one variant per cause.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BulletinError {
    /// The outer `SignedBulletin` does not decode.
    #[error("not a SignedBulletin protobuf message: {0}")]
    DecodeEnvelope(prost::DecodeError),
    /// `SignedBulletin.bulletin` does not decode as a `Bulletin`.
    #[error("SignedBulletin.bulletin is not a Bulletin protobuf message: {0}")]
    DecodeBulletin(prost::DecodeError),
    /// The bulletin bytes are not the one canonical encoding of their fields.
    #[error("the bulletin is not canonically encoded (fields out of order, repeated, unknown, defaults written or over-long varints); signed bytes must have exactly one reading")]
    NonCanonical,
    /// The encoded bulletin is over the size limit.
    #[error("the encoded bulletin is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit in force.
        limit: usize,
    },
    /// The body is over the size limit.
    #[error("the body is {size} bytes, over the limit of {limit}")]
    BodyTooLarge {
        /// Body size.
        size: usize,
        /// Limit in force.
        limit: usize,
    },
    /// `key_id` is not 8 bytes.
    #[error("key_id must be 8 bytes, this one has {0}")]
    KeyIdLength(usize),
    /// `signature` is not 64 bytes.
    #[error("signature must be 64 bytes, this one has {0}")]
    SignatureLength(usize),
    /// A required field is empty or unset.
    #[error("required field `{0}` is empty")]
    MissingField(&'static str),
    /// `id` is not a canonical UUID.
    #[error("id {0} is not a UUID in canonical form (lowercase, hyphenated, not nil)")]
    BadId(String),
    /// A reference is not a canonical UUID.
    #[error("reference {0} is not a UUID in canonical form (lowercase, hyphenated, not nil)")]
    BadReference(String),
    /// `origin` is not a partner id.
    #[error("origin: {0}")]
    BadOrigin(IdentityError),
    /// An audience entry is neither a partner id nor `group:NAME`.
    #[error("audience: {0}")]
    BadAudience(IdentityError),
    /// `tlp` holds a number that is not a TLP level.
    #[error("tlp {0} is not a TLP level (1 clear, 2 green, 3 amber, 4 amber+strict, 5 red)")]
    UnknownTlp(i32),
    /// `kind` holds a number that is not a kind.
    #[error("kind {0} is not a known bulletin kind")]
    UnknownKind(i32),
    /// A text field is too long.
    #[error("{field} is {len} bytes, over the limit of {limit}")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Limit in force.
        limit: usize,
    },
    /// A repeated field has too many entries.
    #[error("{field} has {count} entries, over the limit of {limit}")]
    TooManyEntries {
        /// Field name.
        field: &'static str,
        /// Entries present.
        count: usize,
        /// Limit in force.
        limit: usize,
    },
    /// A tag is empty or has control or invisible characters.
    #[error("tag {tag} {problem}")]
    BadTag {
        /// The tag, escaped and cut to the tag length limit.
        tag: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The signing key is unknown, revoked or outside its validity window.
    #[error(transparent)]
    Key(#[from] KeyLookupError),
    /// The signature does not verify with the origin's key.
    #[error("the signature does not verify with key {key_id} of origin {origin}: the bulletin was altered or not signed by that key")]
    BadSignature {
        /// Claimed origin.
        origin: PartnerId,
        /// Id of the key it was checked against.
        key_id: KeyId,
    },
    /// Created longer ago than the node accepts (replay protection).
    #[error("created at {created}, {age:?} before this node's clock ({now}); bulletins older than {allowed:?} are refused so that captured ones cannot be replayed: publish a new bulletin that references this one")]
    TooOld {
        /// Claimed creation time.
        created: Timestamp,
        /// Receiver's clock.
        now: Timestamp,
        /// How old it is.
        age: Duration,
        /// The largest age accepted.
        allowed: Duration,
    },
    /// Created further in the future than the allowed clock skew.
    #[error("created at {created}, which is {ahead:?} ahead of this node's clock ({now}); at most {allowed:?} is allowed")]
    FromTheFuture {
        /// Claimed creation time.
        created: Timestamp,
        /// Verifier's clock.
        now: Timestamp,
        /// How far ahead.
        ahead: Duration,
        /// Allowed skew.
        allowed: Duration,
    },
}

impl BulletinError {
    /// The wire error code for this failure.
    pub fn code(&self) -> proto::ErrorCode {
        use proto::ErrorCode as C;
        match self {
            BulletinError::DecodeEnvelope(_) | BulletinError::DecodeBulletin(_) => {
                C::MalformedFrame
            }
            BulletinError::TooLarge { .. } | BulletinError::BodyTooLarge { .. } => {
                C::BulletinTooLarge
            }
            BulletinError::KeyIdLength(_)
            | BulletinError::SignatureLength(_)
            | BulletinError::NonCanonical
            | BulletinError::MissingField(_)
            | BulletinError::BadId(_)
            | BulletinError::BadReference(_)
            | BulletinError::BadOrigin(_)
            | BulletinError::BadAudience(_)
            | BulletinError::UnknownTlp(_)
            | BulletinError::UnknownKind(_)
            | BulletinError::FieldTooLong { .. }
            | BulletinError::TooManyEntries { .. }
            | BulletinError::BadTag { .. } => C::InvalidBulletin,
            BulletinError::Key(KeyLookupError::Unknown { .. }) => C::UnknownKey,
            BulletinError::Key(KeyLookupError::Revoked { .. }) => C::KeyRevoked,
            BulletinError::Key(
                KeyLookupError::NotValidAt { .. } | KeyLookupError::ExpiredOnReceipt { .. },
            ) => C::KeyNotValid,
            BulletinError::BadSignature { .. } => C::BadSignature,
            BulletinError::FromTheFuture { .. } => C::ClockSkew,
            BulletinError::TooOld { .. } => C::TooOld,
        }
    }
}

/// A bulletin id: a UUID in canonical text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BulletinId(Uuid);

impl BulletinId {
    /// A fresh UUID v7 for `now` (time-ordered, random low bits).
    pub fn new_v7(now: Timestamp) -> Self {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.unix_ms() / 1000,
            u32::try_from((now.unix_ms() % 1000) * 1_000_000).unwrap_or(0),
        );
        BulletinId(Uuid::new_v7(ts))
    }

    /// Parses the canonical lowercase hyphenated form only, so that one bulletin has
    /// one id text and deduplication by (origin, id) cannot be evaded.
    pub fn parse_canonical(text: &str) -> Option<Self> {
        let uuid = Uuid::try_parse(text).ok()?;
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let canonical = uuid.hyphenated().encode_lower(&mut buf);
        (canonical == text && !uuid.is_nil()).then_some(BulletinId(uuid))
    }

    /// The canonical text, as [`Display`](fmt::Display) writes it, without the
    /// formatter: ids are copied into records and answers for every bulletin.
    pub fn to_text(&self) -> String {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.0.hyphenated().encode_lower(&mut buf).to_owned()
    }

    /// The 16 bytes, for storage keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for BulletinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for BulletinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BulletinId({self})")
    }
}

/// SHA-256 of the encoded bulletin bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bulletin_bytes`.
    pub fn of(bulletin_bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bulletin_bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The checked, typed fields of a bulletin that routing and policy work from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The originator's id for the bulletin.
    pub id: BulletinId,
    /// The originating partner.
    pub origin: PartnerId,
    /// When the originator created it.
    pub created: Timestamp,
    /// Its TLP level.
    pub tlp: Tlp,
    /// What it is about.
    pub kind: Kind,
    /// Tags, as written by the originator.
    pub tags: Vec<String>,
    /// Named recipients.
    pub audience: Vec<AudienceEntry>,
}

fn check_len(field: &'static str, len: usize, limit: usize) -> Result<(), BulletinError> {
    if len > limit {
        Err(BulletinError::FieldTooLong { field, len, limit })
    } else {
        Ok(())
    }
}

fn check_count(field: &'static str, count: usize, limit: usize) -> Result<(), BulletinError> {
    if count > limit {
        Err(BulletinError::TooManyEntries {
            field,
            count,
            limit,
        })
    } else {
        Ok(())
    }
}

/// Checks every field rule that does not need a key or a clock.
fn check_fields(b: &proto::Bulletin, limits: &Limits) -> Result<Header, BulletinError> {
    use field_limits as L;
    if b.id.is_empty() {
        return Err(BulletinError::MissingField("id"));
    }
    let id =
        BulletinId::parse_canonical(&b.id).ok_or_else(|| BulletinError::BadId(excerpt(&b.id)))?;
    if b.origin.is_empty() {
        return Err(BulletinError::MissingField("origin"));
    }
    let origin: PartnerId = b.origin.parse().map_err(BulletinError::BadOrigin)?;
    if b.created_unix_ms == 0 {
        return Err(BulletinError::MissingField("created_unix_ms"));
    }
    if b.tlp == 0 {
        return Err(BulletinError::MissingField("tlp"));
    }
    let tlp = Tlp::from_proto(b.tlp).ok_or(BulletinError::UnknownTlp(b.tlp))?;
    if b.kind == 0 {
        return Err(BulletinError::MissingField("kind"));
    }
    let kind = Kind::from_proto(b.kind).ok_or(BulletinError::UnknownKind(b.kind))?;
    if b.title.trim().is_empty() {
        return Err(BulletinError::MissingField("title"));
    }
    check_len("title", b.title.len(), L::TITLE)?;
    check_len("summary", b.summary.len(), L::SUMMARY)?;
    check_len("content_type", b.content_type.len(), L::CONTENT_TYPE)?;
    if !b.body.is_empty() && b.content_type.trim().is_empty() {
        return Err(BulletinError::MissingField("content_type"));
    }
    if b.body.len() > limits.max_body_bytes {
        return Err(BulletinError::BodyTooLarge {
            size: b.body.len(),
            limit: limits.max_body_bytes,
        });
    }
    check_count("tags", b.tags.len(), L::TAGS)?;
    for tag in &b.tags {
        if let Some(problem) = tag::problem(tag) {
            return Err(BulletinError::BadTag {
                tag: excerpt(tag),
                problem,
            });
        }
        check_len("tag", tag.len(), L::TAG)?;
    }
    check_count("audience", b.audience.len(), L::AUDIENCE)?;
    let audience = b
        .audience
        .iter()
        .map(|a| a.parse())
        .collect::<Result<Vec<AudienceEntry>, _>>()
        .map_err(BulletinError::BadAudience)?;
    check_count("references", b.references.len(), L::REFERENCES)?;
    if let Some(bad) = b
        .references
        .iter()
        .find(|r| BulletinId::parse_canonical(r).is_none())
    {
        return Err(BulletinError::BadReference(excerpt(bad)));
    }
    Ok(Header {
        id,
        origin,
        created: Timestamp::from_unix_ms(b.created_unix_ms),
        tlp,
        kind,
        tags: b.tags.clone(),
        audience,
    })
}

/// Whether `bulletin` encodes to exactly `bytes`. Encodes into a buffer kept per
/// thread: this runs for every bulletin received, and would otherwise allocate one.
fn encodes_as(bulletin: &proto::Bulletin, bytes: &[u8]) -> bool {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let _ = bulletin.encode(&mut *buf);
            let same = buf[..] == *bytes;
            // Keep the buffer at the size of ordinary bulletins, not the largest seen.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
            same
        }
        // Not reachable (nothing here re-enters), but never worth a panic.
        Err(_) => bulletin.encode_to_vec() == bytes,
    })
}

fn signed_message(bulletin_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_DOMAIN.len() + bulletin_bytes.len());
    append_signed_message(&mut msg, bulletin_bytes);
    msg
}

/// Appends the signed message of `bulletin_bytes` to `buf` (a batch's messages share
/// one buffer); returns where it lies in `buf`.
fn append_signed_message(buf: &mut Vec<u8>, bulletin_bytes: &[u8]) -> std::ops::Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(SIGNATURE_DOMAIN);
    buf.extend_from_slice(bulletin_bytes);
    start..buf.len()
}

/// Checks `bulletin` against every field rule, encodes it once and signs those bytes.
pub fn sign(
    bulletin: &proto::Bulletin,
    key: &SigningKey,
    limits: &Limits,
) -> Result<proto::SignedBulletin, BulletinError> {
    check_fields(bulletin, limits)?;
    let bytes = bulletin.encode_to_vec();
    if bytes.len() > limits.max_bulletin_bytes {
        return Err(BulletinError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bulletin_bytes,
        });
    }
    let signature = key.sign(&signed_message(&bytes));
    Ok(proto::SignedBulletin {
        bulletin: Bytes::from(bytes),
        signature: Bytes::copy_from_slice(&signature.to_bytes()),
        key_id: Bytes::copy_from_slice(KeyId::of_signing(key).as_bytes()),
    })
}

/// A decoded bulletin whose fields are well formed but whose signature has not been
/// checked. Its fields may be reported (e.g. in an audit record of a rejection) but
/// must not be trusted.
#[derive(Clone, Debug)]
pub struct UnverifiedBulletin {
    signed: proto::SignedBulletin,
    bulletin: proto::Bulletin,
    header: Header,
    /// Hashed on first use: a subscriber that never asks for it does not pay for it.
    digest: std::sync::OnceLock<Digest>,
    key_id: KeyId,
    signature: Signature,
}

impl UnverifiedBulletin {
    /// Decodes an encoded `SignedBulletin` (not length-prefixed) and checks its fields.
    pub fn decode(encoded: Bytes, limits: &Limits) -> Result<Self, BulletinError> {
        let signed =
            proto::SignedBulletin::decode(encoded).map_err(BulletinError::DecodeEnvelope)?;
        Self::from_signed(signed, limits)
    }

    /// Checks the fields of a `SignedBulletin` already decoded from a frame.
    pub fn from_signed(
        signed: proto::SignedBulletin,
        limits: &Limits,
    ) -> Result<Self, BulletinError> {
        if signed.bulletin.is_empty() {
            return Err(BulletinError::MissingField("bulletin"));
        }
        if signed.bulletin.len() > limits.max_bulletin_bytes {
            return Err(BulletinError::TooLarge {
                size: signed.bulletin.len(),
                limit: limits.max_bulletin_bytes,
            });
        }
        let key_id = KeyId(
            signed.key_id[..]
                .try_into()
                .map_err(|_| BulletinError::KeyIdLength(signed.key_id.len()))?,
        );
        let signature = Signature::from_slice(&signed.signature)
            .map_err(|_| BulletinError::SignatureLength(signed.signature.len()))?;
        let bulletin = proto::Bulletin::decode(signed.bulletin.clone())
            .map_err(BulletinError::DecodeBulletin)?;
        // Decoders differ on duplicate, unknown and mistyped fields; accepting only the
        // canonical encoding gives signed bytes one meaning in every implementation.
        if bulletin.encoded_len() != signed.bulletin.len()
            || !encodes_as(&bulletin, &signed.bulletin)
        {
            return Err(BulletinError::NonCanonical);
        }
        let header = check_fields(&bulletin, limits)?;
        Ok(UnverifiedBulletin {
            signed,
            bulletin,
            header,
            digest: std::sync::OnceLock::new(),
            key_id,
            signature,
        })
    }

    /// The claimed header (unauthenticated).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// SHA-256 of the bulletin bytes.
    pub fn digest(&self) -> Digest {
        *self
            .digest
            .get_or_init(|| Digest::of(&self.signed.bulletin))
    }

    /// The key id the signer named.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

/// A bulletin whose origin signature verified with a key the keyring holds for that
/// origin, valid at its creation time and not revoked. Only verification
/// ([`UnverifiedBulletin::verify`], [`UnverifiedBulletin::verify_all`]) makes one.
#[derive(Clone, Debug)]
pub struct VerifiedBulletin {
    inner: UnverifiedBulletin,
    key: PublicKey,
}

impl VerifiedBulletin {
    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.inner.header
    }

    /// The full decoded bulletin (title, body, ...).
    pub fn bulletin(&self) -> &proto::Bulletin {
        &self.inner.bulletin
    }

    /// The signed envelope exactly as received, for storing and forwarding.
    pub fn signed(&self) -> &proto::SignedBulletin {
        &self.inner.signed
    }

    /// SHA-256 of the bulletin bytes.
    pub fn digest(&self) -> Digest {
        self.inner.digest()
    }

    /// The key that verified the signature.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

mod labels;
mod limits;
pub mod signature;
pub mod tag;
mod verify;
pub mod view;
pub use labels::{Kind, Tlp, UnknownLabel};
pub use limits::{field_limits, Limits, DEFAULT_MAX_AGE};

#[cfg(test)]
mod tests;
