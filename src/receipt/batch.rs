//! Batch receipts (proto/README.md §4.7): one signature over the root of an RFC 6962
//! tree whose leaves are the bulletins a receiver acknowledges at once. Each bulletin's
//! receipt carries the signed root, its own leaf and the leaf's inclusion proof, so it
//! verifies alone and, passed back along the path, shows that bulletin and nothing of
//! the others beside it.
//!
//! Pure: bytes, keys and receipts in; no clock is read.

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message as _;

use super::{Receipt, ReceiptError};
use crate::audit::merkle::{self, MemoryTree, TreeHash};
use crate::identity::KeyId;
use crate::proto;

/// The domain tag a batch receipt's signed message starts with: 18 ASCII bytes and a
/// zero, unlike a single receipt's, so neither body can pass for the other.
pub const BATCH_DOMAIN: &[u8] = b"renkei/receipts/v1\0";

/// Signs `receipts` with one signature when there are two or more and they are one
/// receiver's at one node at one time (a batch), and each alone otherwise.
pub(super) fn sign_all(receipts: &[Receipt], key: &SigningKey) -> Vec<proto::SignedReceipt> {
    let one_batch = receipts.windows(2).all(|w| same_statement(&w[0], &w[1]));
    match (receipts.first(), one_batch && receipts.len() > 1) {
        (Some(first), true) => sign_batch(first, receipts, key)
            .unwrap_or_else(|_| receipts.iter().map(|r| r.sign(key)).collect()),
        _ => receipts.iter().map(|r| r.sign(key)).collect(),
    }
}

fn same_statement(a: &Receipt, b: &Receipt) -> bool {
    a.receiver == b.receiver && a.node == b.node && a.received == b.received
}

fn sign_batch(
    first: &Receipt,
    receipts: &[Receipt],
    key: &SigningKey,
) -> Result<Vec<proto::SignedReceipt>, merkle::MerkleError> {
    let items: Vec<Vec<u8>> = receipts.iter().map(item_bytes).collect();
    let mut tree = MemoryTree::new();
    for item in &items {
        tree.push(item)?;
    }
    let size = tree.size();
    let root = tree.root(size)?;
    let body = proto::BatchReceiptBody {
        receiver: first.receiver.to_string(),
        node: first.node.to_string(),
        received_unix_ms: first.received.unix_ms(),
        root: Bytes::copy_from_slice(&root.0),
        size,
    }
    .encode_to_vec();
    let signature = key.sign(&[BATCH_DOMAIN, &body].concat());
    let (body, signature) = (
        Bytes::from(body),
        Bytes::copy_from_slice(&signature.to_bytes()),
    );
    let key_id = Bytes::copy_from_slice(KeyId::of_signing(key).as_bytes());
    (0..size)
        .zip(items)
        .map(|(index, item)| {
            let path = merkle::prove_inclusion(size, index, &tree)?;
            Ok(proto::SignedReceipt {
                body: body.clone(),
                signature: signature.clone(),
                key_id: key_id.clone(),
                proof: Some(proto::ReceiptProof {
                    item: Bytes::from(item),
                    index,
                    path: path.iter().map(|h| Bytes::copy_from_slice(&h.0)).collect(),
                }),
            })
        })
        .collect()
}

/// A receipt's leaf: its bulletin's ReceiptItem, canonically encoded.
fn item_bytes(r: &Receipt) -> Vec<u8> {
    proto::ReceiptItem {
        origin: r.origin.to_string(),
        bulletin_id: r.bulletin_id.to_string(),
        digest: Bytes::copy_from_slice(&r.digest.0),
    }
    .encode_to_vec()
}

/// What a batch receipt states of its one bulletin, once its body and item are
/// canonical and its proof puts the item under the signed root (the signature is
/// checked by the caller, over [`BATCH_DOMAIN`] and the body).
pub(super) fn read(
    signed: &proto::SignedReceipt,
    proof: &proto::ReceiptProof,
) -> Result<Receipt, ReceiptError> {
    let (body, item) = decoded(signed, proof)?;
    let root = hash(&body.root, "the root")?;
    let path = proof
        .path
        .iter()
        .map(|h| hash(h, "a proof hash"))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = merkle::leaf_hash(&proof.item);
    merkle::check_inclusion(&path, body.size, root, proof.index, leaf)
        .map_err(|e| ReceiptError::Malformed(format!("the bulletin is not in the batch: {e}")))?;
    Receipt::from_proto(&as_single(body, item))
}

/// The batch body and the item, each in its canonical encoding.
fn decoded(
    signed: &proto::SignedReceipt,
    proof: &proto::ReceiptProof,
) -> Result<(proto::BatchReceiptBody, proto::ReceiptItem), ReceiptError> {
    let malformed = |e: prost::DecodeError| ReceiptError::Malformed(e.to_string());
    let body = proto::BatchReceiptBody::decode(signed.body.clone()).map_err(malformed)?;
    let item = proto::ReceiptItem::decode(proof.item.clone()).map_err(malformed)?;
    if body.encode_to_vec() != signed.body || item.encode_to_vec() != proof.item {
        return Err(ReceiptError::NotCanonical);
    }
    Ok((body, item))
}

fn hash(bytes: &[u8], what: &str) -> Result<TreeHash, ReceiptError> {
    <[u8; 32]>::try_from(bytes)
        .map(TreeHash)
        .map_err(|_| ReceiptError::Malformed(format!("{what} is not 32 bytes")))
}

/// What a batch receipt says of its bulletin, read as a single receipt's body would be,
/// without checking anything: for showing and indexing what a record keeps.
pub(super) fn stated(
    signed: &proto::SignedReceipt,
    proof: &proto::ReceiptProof,
) -> Option<proto::ReceiptBody> {
    let body = proto::BatchReceiptBody::decode(signed.body.clone()).ok()?;
    let item = proto::ReceiptItem::decode(proof.item.clone()).ok()?;
    Some(as_single(body, item))
}

/// The single receipt's body that states what `body` does of `item`.
fn as_single(body: proto::BatchReceiptBody, item: proto::ReceiptItem) -> proto::ReceiptBody {
    proto::ReceiptBody {
        receiver: body.receiver,
        node: body.node,
        origin: item.origin,
        bulletin_id: item.bulletin_id,
        digest: item.digest,
        received_unix_ms: body.received_unix_ms,
    }
}
