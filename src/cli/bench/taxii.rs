//! The TAXII phase (`--phases taxii`): a node with its TAXII 2.1 gateway and up to
//! 100,000 stored STIX bulletins (one indicator each, published over QUIC). Then, over
//! HTTPS with a partner's certificate: objects/s read by paging through the partner's
//! collection (`limit` 100 and 1,000, after a first page that builds the index), and
//! objects/s added through its inbox, one object per envelope and 100 per envelope:
//! the figures the OASIS reference server medallion was measured at. Then a second
//! node stores the same number of bulletins as versions of objects (1,000 versions
//! each) and is reloaded, so every read screens what it serves again: the first page,
//! the latest versions, every version, and the node's memory before and after its
//! index is built.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::clients::publish;
use super::node::{free_port, NodeProcess};
use super::phases::sign_all_with;
use super::{publisher_id, sign_typed, subscriber_id, Setup, HUB};
use crate::transport::{self, TlsIdentity};

/// Bulletins stored before reading, at most (the scale the benchmark is set for).
const STORED_AT_MOST: usize = 100_000;
const TAXII: &str = "application/taxii+json;version=2.1";
const GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";

/// One HTTPS connection to the gateway, as partner `id`.
struct Https {
    send: SendRequest<Full<Bytes>>,
}

impl Https {
    async fn connect(setup: &Setup, id: &str, addr: std::net::SocketAddr) -> anyhow::Result<Https> {
        let certs = setup.dir.join("certs");
        let tls = TlsIdentity::load(
            &certs.join("ca.crt"),
            &certs.join(id).join("tls.crt"),
            &certs.join(id).join("tls.key"),
        )?;
        let connector = tokio_rustls::TlsConnector::from(transport::https_client_config(&tls)?);
        let name = rustls::pki_types::ServerName::try_from(HUB.to_owned())?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream = connector.connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Its errors reach the next request; it ends when the node stops.
        tokio::spawn(conn);
        Ok(Https { send })
    }

    /// Sends a request and reads the JSON answer; fails on a status other than `want`.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", HUB)
            .header("accept", TAXII)
            .header("content-type", TAXII)
            .body(Full::new(body))?;
        self.send.ready().await?;
        let response = self.send.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        if status != want {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The id of this partner's collection that can read (`read`) or write.
    async fn collection(&mut self, read: bool) -> anyhow::Result<String> {
        let list = self.call("GET", "/api/collections/", None, 200).await?;
        let field = if read { "can_read" } else { "can_write" };
        list["collections"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c[field] == true))
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned)
            .context("no such collection")
    }
}

/// Versions of each object in the versioned collection.
const VERSIONS: usize = 1_000;

/// A bundle of one GREEN indicator numbered `n` (about 500 bytes).
fn indicator(n: usize) -> Value {
    indicator_version(n, "2026-11-30T09:00:00.000Z")
}

/// Indicator `n` as modified at `modified`.
fn indicator_version(n: usize, modified: &str) -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1",
        "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
        "created": "2026-11-30T09:00:00.000Z", "modified": modified,
        "name": format!("benchmark indicator {n}"),
        "pattern": format!("[ipv4-addr:value = '198.51.{}.{}']", n / 256 % 256, n % 256),
        "pattern_type": "stix", "valid_from": "2026-11-30T09:00:00Z",
        "object_marking_refs": [GREEN],
    })
}

/// Stores `count` STIX bulletins, reads them back through TAXII, then writes.
pub(super) async fn taxii(setup: Arc<Setup>) -> anyhow::Result<Value> {
    let count = setup.args.bulletins.min(STORED_AT_MOST);
    let port = free_port()?;
    let more = format!("\n[taxii]\nlisten = \"{port}\"\n");
    let node = setup.start_node_with("taxii", &more)?;
    fill(&setup, &node, count).await?;
    let reader = subscriber_id(0);
    let mut https = Https::connect(&setup, &reader, port).await?;
    let shared = https.collection(true).await?;
    let path = format!("/api/collections/{shared}/objects/");
    let t = Instant::now();
    https
        .call("GET", &format!("{path}?limit=1"), None, 200)
        .await?;
    let first_page_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (by_100, pages_100) = read_all(&mut https, &path, 100, count).await?;
    let (by_1000, _) = read_all(&mut https, &path, 1000, count).await?;
    let mut writer = Https::connect(&setup, &publisher_id(0), port).await?;
    let inbox = writer.collection(false).await?;
    let one = write(&mut writer, &inbox, 1, 500).await?;
    let hundred = write(&mut writer, &inbox, 100, 20).await?;
    node.stop()?;
    let versions = versioned(&setup, count).await?;
    Ok(json!({
        "versions": versions,
        "stored": count,
        "first_page_ms": first_page_ms,
        "read_per_s_limit_100": by_100.round() as u64,
        "pages_limit_100": pages_100,
        "read_per_s_limit_1000": by_1000.round() as u64,
        "write_per_s_1_per_envelope": one.round() as u64,
        "write_per_s_100_per_envelope": hundred.round() as u64,
    }))
}

/// Bulletin `n` of the versioned collection: version `n % VERSIONS` of object
/// `n / VERSIONS`, a second apart.
fn version_of(n: usize) -> Value {
    let s = n % VERSIONS;
    let modified = format!("2026-11-30T09:{:02}:{:02}.000Z", s / 60, s % 60);
    indicator_version(n / VERSIONS, &modified)
}

/// A node holding `count` bulletins as versions of `count / VERSIONS` objects, reloaded
/// before it is read: the first page (the index built, each bulletin screened again),
/// the latest versions, every version, and its memory before and after.
async fn versioned(setup: &Arc<Setup>, count: usize) -> anyhow::Result<Value> {
    let port = free_port()?;
    let more = format!("\n[taxii]\nlisten = \"{port}\"\n");
    let node = setup.start_node_with("taxii-versions", &more)?;
    fill_with(setup, &node, count, version_of).await?;
    let data = setup.dir.join("taxii-versions");
    let reload = crate::node::operator::OperatorRequest::Reload;
    crate::node::operator::request(&data, &reload, std::time::Duration::from_secs(30)).await?;
    let mut https = Https::connect(setup, &subscriber_id(0), port).await?;
    let shared = https.collection(true).await?;
    let path = format!("/api/collections/{shared}/objects/");
    let rss_before = node.rss();
    let t = Instant::now();
    https
        .call("GET", &format!("{path}?limit=1"), None, 200)
        .await?;
    let first_page_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss_after = node.rss();
    let t = Instant::now();
    let latest = https
        .call("GET", &format!("{path}?limit=1000"), None, 200)
        .await?;
    let latest_ms = t.elapsed().as_secs_f64() * 1000.0;
    let objects = count.div_ceil(VERSIONS);
    if latest["objects"].as_array().map_or(0, Vec::len) != objects {
        bail!("the latest versions of {objects} objects were not all served");
    }
    let all = format!("{path}?match%5Bversion%5D=all");
    let (every, pages) = read_all(&mut https, &all, 1000, count).await?;
    node.stop()?;
    Ok(json!({
        "objects": objects,
        "versions_each": VERSIONS,
        "first_page_ms": first_page_ms,
        "latest_page_ms": latest_ms,
        "read_all_versions_per_s": every.round() as u64,
        "pages_all_versions": pages,
        "rss_before_index_bytes": rss_before,
        "rss_after_index_bytes": rss_after,
    }))
}

/// Publishes `count` STIX bulletins over QUIC, as the publishers.
async fn fill(setup: &Arc<Setup>, node: &NodeProcess, count: usize) -> anyhow::Result<()> {
    fill_with(setup, node, count, indicator).await
}

/// Publishes `count` STIX bulletins, bulletin `n` holding the object `object(n)`.
async fn fill_with(
    setup: &Arc<Setup>,
    node: &NodeProcess,
    count: usize,
    object: fn(usize) -> Value,
) -> anyhow::Result<()> {
    eprintln!("renkei bench: taxii: signing and storing {count} STIX bulletins…");
    let batches = sign_all_with(setup, count, |key, id, n| {
        let bundle = json!({"type": "bundle", "id": format!("bundle--00000000-0000-4000-8000-{n:012}"), "objects": [object(n)]});
        sign_typed(
            key,
            id,
            n,
            &Bytes::from(bundle.to_string()),
            crate::bulletin::STIX_CONTENT_TYPE,
        )
    })?;
    let mut publishers = tokio::task::JoinSet::new();
    for (i, batch) in batches.into_iter().enumerate() {
        let client = super::connect(&setup.dir, &publisher_id(i), node.addr).await?;
        publishers.spawn(publish(client, batch, None));
    }
    while let Some(r) = publishers.join_next().await {
        r.context("a publisher task")??;
    }
    Ok(())
}

/// Pages through the whole collection `limit` at a time; objects/s and pages.
async fn read_all(
    https: &mut Https,
    path: &str,
    limit: usize,
    count: usize,
) -> anyhow::Result<(f64, usize)> {
    eprintln!("renkei bench: taxii: reading {count} objects, {limit} a page…");
    let t = Instant::now();
    let sep = if path.contains('?') { '&' } else { '?' };
    let (mut objects, mut pages, mut next) = (0, 0, None::<String>);
    loop {
        let query = match &next {
            Some(n) => format!("{path}{sep}limit={limit}&next={n}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = https.call("GET", &query, None, 200).await?;
        objects += page["objects"].as_array().map_or(0, Vec::len);
        pages += 1;
        match page["next"].as_str() {
            Some(n) if page["more"] == true => next = Some(n.to_owned()),
            _ => break,
        }
    }
    if objects < count {
        bail!("read {objects} objects through TAXII, {count} were stored");
    }
    Ok((objects as f64 / t.elapsed().as_secs_f64(), pages))
}

/// Adds `envelopes` envelopes of `per` GREEN indicators each to the inbox; objects/s.
async fn write(
    https: &mut Https,
    inbox: &str,
    per: usize,
    envelopes: usize,
) -> anyhow::Result<f64> {
    eprintln!("renkei bench: taxii: adding {envelopes} envelopes of {per}…");
    let path = format!("/api/collections/{inbox}/objects/");
    let t = Instant::now();
    for e in 0..envelopes {
        let objects: Vec<Value> = (0..per)
            .map(|i| indicator(10_000_000 + per * 1000 * e + i))
            .collect();
        let status = https
            .call("POST", &path, Some(json!({ "objects": objects })), 202)
            .await?;
        if status["success_count"] != per {
            bail!("an envelope of {per} was not all taken: {status}");
        }
    }
    Ok((per * envelopes) as f64 / t.elapsed().as_secs_f64())
}
