//! What the gateway's answers are made of, shared by its reading routes and its inbox:
//! the TAXII and STIX media types, a TAXII response and error message, and a partner's
//! collections with their stable ids. No handler lives here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::{Caller, Gateway};
use crate::identity::{PartnerId, Role};

/// The media type of every TAXII 2.1 response.
pub(crate) const TAXII: &str = "application/taxii+json;version=2.1";
/// The media type of the objects served.
pub(super) const STIX: &str = "application/stix+json;version=2.1";

/// A TAXII response.
pub(super) fn taxii(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TAXII));
    r
}

/// A TAXII error message.
pub(super) fn error(status: StatusCode, title: &str, description: &str) -> Response {
    let body = json!({
        "title": title,
        "description": description,
        "http_status": status.as_u16().to_string(),
    });
    taxii(status, &body)
}

/// Marks a response whose refusal its handler has recorded itself.
#[derive(Clone, Copy, Debug)]
pub(super) struct Recorded;

/// A partner's two collections: what is shared with it, and its inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    Shared,
    Inbox,
}

/// The id of `partner`'s collection `which` on `node`: stable across restarts, so
/// clients can keep it; a UUID, as TAXII asks.
fn collection_id(node: &PartnerId, partner: &PartnerId, which: Which) -> String {
    let label = match which {
        Which::Shared => "shared-with",
        Which::Inbox => "inbox-of",
    };
    let digest = sha2::Sha256::digest(format!("renkei taxii {label} {node} {partner}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The caller's collections (none for an auditor, who receives no bulletins).
pub(super) fn collections_of(g: &Gateway, caller: &Caller) -> Vec<(Which, Value)> {
    if caller.who.role == Role::Auditor {
        return Vec::new();
    }
    let (node, partner) = (&g.own.id, &caller.who.id);
    let mut list = vec![
        (
            Which::Shared,
            json!({
                "id": collection_id(node, partner, Which::Shared),
                "title": format!("Shared with {partner}"),
                "description": format!("Bulletins node {node} shares with {partner}, as STIX 2.1 objects"),
                "can_read": true,
                "can_write": false,
                "media_types": [STIX],
            }),
        ),
        (
            Which::Inbox,
            json!({
                "id": collection_id(node, partner, Which::Inbox),
                "title": format!("From {partner} to node {node}"),
                "description": format!("Objects added here become bulletins of node {node}, signed with its key, TLP from their TLP 2.0 markings, shared by its policy as if {partner} had published them"),
                "can_read": false,
                "can_write": true,
                "media_types": [STIX],
            }),
        ),
    ];
    // A peer node forwards; only a desk writes bulletins the node signs for it.
    if caller.who.role != Role::Liaison {
        list.pop();
    }
    list
}

/// The caller's collection `id`, if it has one by that id.
pub(super) fn own(g: &Gateway, c: &Caller, id: &str) -> Option<(Which, Value)> {
    collections_of(g, c)
        .into_iter()
        .find(|(_, col)| col["id"] == id)
}

/// The TAXII 404 for a collection the caller does not have.
pub(super) fn no_collection() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Collection not found",
        "no collection with this id is shared with you",
    )
}
