//! Moving frames: QUIC endpoints with mutual TLS 1.3 (rustls, ring), the partner id
//! read from a peer's certificate, and length-delimited protobuf frames on streams.
//!
//! It decides nothing: which partner may do what is the node's business, what a
//! bulletin means is `bulletin`'s and `policy`'s.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::identity::{CertFingerprint, PartnerId};
use crate::proto;

mod reader;
pub use reader::{take_frame, FrameReader};

/// The ALPN protocol id of renkei protocol version 1.
pub const ALPN: &[u8] = b"renkei/1";

/// Transport set-up and connection failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. an empty CA file).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The crypto provider offers no QUIC initial cipher suite.
    #[error("QUIC crypto: {0}")]
    Quic(String),
    /// Binding or using the UDP socket failed.
    #[error("UDP endpoint: {0}")]
    Io(#[from] std::io::Error),
    /// Connecting failed before the handshake.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake or the connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer presented no certificate naming a partner id.
    #[error("the peer's certificate names no partner id: {0}")]
    NoPartnerId(String),
}

/// A stream could not carry a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit; the body was not read.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// The length prefix is not a varint of at most 10 bytes.
    #[error("malformed length prefix")]
    BadLength,
    /// The body is not the expected protobuf message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The stream ended inside a frame.
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    /// A frame's bytes stopped short: it did not arrive whole in time once its length
    /// had (a peer trickling bytes to hold the room it was given).
    #[error("a frame of {len} bytes did not arrive whole within {within:?} of its length prefix")]
    TooSlow {
        /// Announced length.
        len: usize,
        /// The deadline in force.
        within: std::time::Duration,
    },
    /// Reading failed (connection lost, stream reset).
    #[error("read: {}", read_words(.0))]
    Read(#[from] quinn::ReadError),
    /// Writing failed.
    #[error("write: {}", write_words(.0))]
    Write(#[from] quinn::WriteError),
}

/// A failed read in words, with why the connection was lost when it was: quinn's own
/// words stop at "connection lost", and the reason (a certificate the peer refused, a
/// close with a reason) is what the user needs.
fn read_words(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(why) => format!("connection lost: {why}"),
        other => other.to_string(),
    }
}

/// A failed write in words, with why the connection was lost (as [`read_words`]).
fn write_words(e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::ConnectionLost(why) => format!("connection lost: {why}"),
        other => other.to_string(),
    }
}

impl FrameError {
    /// The wire error code to answer with, when the peer is still there to hear it.
    pub fn code(&self) -> Option<proto::ErrorCode> {
        match self {
            FrameError::TooLarge { .. } => Some(proto::ErrorCode::FrameTooLarge),
            FrameError::BadLength | FrameError::Malformed(_) | FrameError::Truncated => {
                Some(proto::ErrorCode::MalformedFrame)
            }
            FrameError::TooSlow { .. } => Some(proto::ErrorCode::FrameTooSlow),
            FrameError::Read(_) | FrameError::Write(_) => None,
        }
    }
}

/// A TLS identity: our certificate chain and key, and the federation CA we trust.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

fn file_err(path: &Path, why: impl ToString) -> TransportError {
    TransportError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

impl TlsIdentity {
    /// Loads the CA certificate, our certificate (chain) and our private key, all PEM.
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(ca_cert).map_err(|e| file_err(ca_cert, e))? {
            roots
                .add(der.map_err(|e| file_err(ca_cert, e))?)
                .map_err(|e| file_err(ca_cert, e))?;
        }
        if roots.is_empty() {
            return Err(file_err(ca_cert, "no CA certificate in the file"));
        }
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_err(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(cert, e))?;
        if chain.is_empty() {
            return Err(file_err(cert, "no certificate in the file"));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
        Ok(TlsIdentity {
            chain,
            key: key_der,
            roots: Arc::new(roots),
        })
    }

    /// The partner id our own certificate names.
    pub fn partner_id(&self) -> Result<PartnerId, TransportError> {
        partner_from_cert(&self.chain[0])
    }
}

/// QUIC timers.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// Keep-alive ping interval.
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
}

/// Streams a peer may have open at once: a session, publish and subscribe stream or
/// a few of each. Bounds what one connection can make the node hold.
const MAX_STREAMS: u32 = 32;

/// Bytes a peer may send on one stream beyond what the node has read.
const STREAM_WINDOW: u32 = 2 << 20;

/// Bytes a peer may send on one connection beyond what the node has read.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// Largest UDP payload sent or accepted. quinn's MTU discovery otherwise stops at
/// 1,452 bytes; with this bound it climbs as far as the path carries: to about 6,000 on
/// loopback or jumbo-frame links, to 1,472 on an ordinary IPv4 Ethernet path, at the
/// cost of a few lost probes. On loopback a delivery (about 1.3 KiB with a 1 KiB body)
/// then no longer takes a packet of its own. quinn sizes each endpoint's receive buffer
/// by it (about 12 MiB reserved instead of 3, touched only as large datagrams arrive).
/// Not the 8,952 of a 9,000-byte jumbo frame: quinn sends up to ten packets in one GSO
/// batch, and a batch over 64 KiB is refused by the kernel and silently lost
/// (quinn-rs/quinn#2201).
pub const MAX_UDP_PAYLOAD: u16 = 6_000;

/// The host part of an HTTP Host header, without its port (`[::1]` stays bracketed).
pub fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

/// Whether an HTTP Host header names an address (an IP literal, or `localhost`), as a
/// scraper or a probe that reached a listener by its address sends. A web page that
/// had a name of its own resolve to the listener's address (DNS rebinding) sends that
/// name, so a plain-HTTP listener refuses it.
pub fn host_is_an_address(host: &str) -> bool {
    let name = host_name(host.trim());
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok()
}

/// An endpoint on `addr`: a node's (with `server`) or a client's.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, TransportError> {
    let mut cfg = quinn::EndpointConfig::default();
    cfg.max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let socket = udp_socket(addr, server.is_none())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| TransportError::Quic("no async runtime to run QUIC on".into()))?;
    Ok(quinn::Endpoint::new(cfg, server, socket, runtime)?)
}

/// Socket buffer asked for in each direction. The kernel's default (about 200 KiB)
/// overflows under bursts of deliveries, and every datagram it drops costs QUIC a loss
/// recovery. The kernel caps the request at `net.core.rmem_max` / `wmem_max`; a smaller
/// buffer still works, so a refusal is not an error.
const UDP_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr`; a client's IPv6 socket also reaches IPv4 (mapped)
/// addresses whatever the platform's default, as `quinn::Endpoint::client` makes it.
fn udp_socket(
    addr: std::net::SocketAddr,
    client: bool,
) -> Result<std::net::UdpSocket, TransportError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if client && addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn transport_config(t: Timers) -> Result<quinn::TransportConfig, TransportError> {
    let mut cfg = quinn::TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    cfg.mtu_discovery_config(Some(mtu));
    cfg.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
    cfg.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    // What a peer may send that nobody has read yet: per stream, and per connection
    // (quinn's default lets a connection's streams together buffer without limit).
    // Far above what one round trip needs here, and what bounds a peer that sends
    // while the node is not reading (a publish stream over its budget, node::budget).
    cfg.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    cfg.receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW));
    cfg.keep_alive_interval(Some(t.keep_alive));
    cfg.max_idle_timeout(Some(
        t.idle_timeout
            .try_into()
            .map_err(|_| TransportError::Quic("idle timeout too large".into()))?,
    ));
    Ok(cfg)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 as a node serves it, over QUIC or HTTPS: our certificate, client
/// certificates required and chained to the federation CA, and `alpn`.
fn tls_server(id: &TlsIdentity, alpn: &[u8]) -> Result<rustls::ServerConfig, TransportError> {
    let provider = provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        id.roots.clone(),
        provider.clone(),
    )
    .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// TLS 1.3 as a client of a node speaks it: presents our certificate, trusts only the
/// federation CA, and `alpn`.
fn tls_client(id: &TlsIdentity, alpn: &[u8]) -> Result<rustls::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(id.roots.clone())
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// A node's QUIC server configuration: TLS 1.3 only, client certificates required and
/// chained to the federation CA, ALPN `renkei/1`, no 0-RTT.
pub fn server_config(
    id: &TlsIdentity,
    timers: Timers,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut tls = tls_server(id, ALPN)?;
    // 0-RTT data could be replayed; rustls's default of 0 keeps it off. Stated anyway.
    tls.max_early_data_size = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport_config(timers)?));
    Ok(cfg)
}

/// The TLS configuration of a node's HTTPS listeners (the TAXII gateway): the same
/// certificate and client-certificate rule as QUIC, ALPN `http/1.1`.
pub fn https_server_config(id: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    Ok(Arc::new(tls_server(id, b"http/1.1")?))
}

/// The TLS configuration of an HTTPS client of a node's gateway (the benchmark's TAXII
/// client): presents our certificate, trusts only the federation CA, ALPN `http/1.1`.
pub fn https_client_config(id: &TlsIdentity) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    Ok(Arc::new(tls_client(id, b"http/1.1")?))
}

/// A client's QUIC configuration: presents our certificate, trusts only the federation CA.
pub fn client_config(
    id: &TlsIdentity,
    timers: Timers,
) -> Result<quinn::ClientConfig, TransportError> {
    let tls = tls_client(id, ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport_config(timers)?));
    Ok(cfg)
}

/// The partner id named by a certificate ([`crate::identity::partner_from_cert`]).
pub fn partner_from_cert(der: &CertificateDer<'_>) -> Result<PartnerId, TransportError> {
    crate::identity::partner_from_cert(der.as_ref()).map_err(|e| match e {
        crate::identity::IdentityError::NoPartnerId(why) => TransportError::NoPartnerId(why),
        other => TransportError::NoPartnerId(other.to_string()),
    })
}

/// The partner id of the peer on an established connection, and the SHA-256
/// fingerprint of the certificate that names it (for partners pinned to one).
pub fn peer_partner(
    conn: &quinn::Connection,
) -> Result<(PartnerId, CertFingerprint), TransportError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TransportError::NoPartnerId("no certificate presented".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TransportError::NoPartnerId("empty certificate chain".into()))?;
    Ok((partner_from_cert(leaf)?, CertFingerprint::of_der(leaf)))
}

/// Frames a node (or a client) has moved, for monitoring.
#[derive(Debug, Default)]
pub struct FrameCounts {
    /// Frames read and decoded.
    pub read: AtomicU64,
    /// Frames written.
    pub written: AtomicU64,
    /// Frames refused as oversize, malformed or undecodable.
    pub refused: AtomicU64,
}

/// Writes one length-delimited frame.
pub async fn write_frame<M: Message>(
    send: &mut quinn::SendStream,
    msg: &M,
    counts: &FrameCounts,
) -> Result<(), FrameError> {
    let frame = Bytes::from(msg.encode_length_delimited_to_vec());
    // Handing quinn owned bytes spares it a copy of the frame.
    send.write_chunk(frame).await?;
    counts.written.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Frames encoded one after another into one buffer, to be written together: one
/// write (and one chunk in quinn's send buffer, which it scans per packet) for what is
/// ready at once, instead of one per frame.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    frames: u64,
}

impl Outbox {
    /// An empty outbox with room for `bytes` without growing.
    pub fn with_capacity(bytes: usize) -> Outbox {
        Outbox {
            buf: Vec::with_capacity(bytes),
            frames: 0,
        }
    }

    /// Appends a `Delivery` frame for `seq` whose bulletin is `envelope`, an encoded
    /// `SignedBulletin` as the store keeps it: the envelope is copied in as it is,
    /// not decoded and encoded again. The bytes are those of encoding the frame with
    /// the envelope decoded.
    pub fn push_delivery(&mut self, seq: u64, envelope: &[u8], path: &[String], node: &str) {
        crate::wire::delivery_frame(&mut self.buf, seq, envelope, path, node);
        self.frames += 1;
    }

    /// Appends a `PublishResult` frame: `result`'s fields followed by `tail`, fields
    /// already encoded that come after every field `result` sets (an accepted answer's
    /// partner lists). The bytes are prost's for the result with the tail decoded into it.
    pub fn push_result(&mut self, result: &proto::PublishResult, tail: &[u8]) {
        crate::wire::publish_result_frame(&mut self.buf, result, tail);
        self.frames += 1;
    }

    /// The bytes waiting to be written.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Frames waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything waiting as one write, and empties the outbox.
    pub async fn write_to(
        &mut self,
        send: &mut quinn::SendStream,
        counts: &FrameCounts,
    ) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Owned bytes: quinn keeps them as they are instead of copying.
        send.write_chunk(Bytes::from(std::mem::take(&mut self.buf)))
            .await?;
        counts
            .written
            .fetch_add(std::mem::take(&mut self.frames), Ordering::Relaxed);
        Ok(())
    }
}

/// Writes an `Error` frame and finishes the stream; failures are ignored because the
/// peer may already be gone, and there is nothing more to tell it.
pub async fn send_error(
    send: &mut quinn::SendStream,
    code: proto::ErrorCode,
    message: impl Into<String>,
    counts: &FrameCounts,
) {
    let frame = proto::ServerFrame {
        frame: Some(proto::server_frame::Frame::Error(proto::Error {
            code: code as i32,
            message: message.into(),
        })),
    };
    let _ = write_frame(send, &frame, counts).await;
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;
    use crate::timestamp::Timestamp;

    #[test]
    fn a_lost_connection_says_why_it_was_lost() {
        let lost = || quinn::ConnectionError::TimedOut;
        let write = FrameError::Write(quinn::WriteError::ConnectionLost(lost()));
        assert_eq!(write.to_string(), "write: connection lost: timed out");
        let read = FrameError::Read(quinn::ReadError::ConnectionLost(lost()));
        assert_eq!(read.to_string(), "read: connection lost: timed out");
        let stopped = FrameError::Write(quinn::WriteError::ClosedStream);
        assert_eq!(stopped.to_string(), "write: closed stream");
    }

    #[test]
    fn a_host_header_names_an_address_or_a_name() {
        for ok in [
            "127.0.0.1:9464",
            "localhost",
            "LOCALHOST:80",
            "[::1]:9464",
            "10.1.2.3",
            "[fe80::1]",
        ] {
            assert!(host_is_an_address(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9464",
            "127.0.0.1.nip.io",
            "",
            "x",
        ] {
            assert!(!host_is_an_address(refused), "{refused}");
        }
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn a_node_certificate_names_its_partner_id() {
        let now = Timestamp::from_unix_ms(1_790_000_000_000);
        let ca = Ca::generate(now).unwrap();
        let tls = ca.issue(&"nato-ccdcoe".parse().unwrap(), now).unwrap();
        let der = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap();
        assert_eq!(partner_from_cert(&der).unwrap().as_str(), "nato-ccdcoe");
        // The CA certificate has no SAN: it names no partner.
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert!(partner_from_cert(&ca_der).is_err());
    }
}
