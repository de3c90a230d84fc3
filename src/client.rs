//! The client side of the protocol, used by `renkei publish`, `renkei subscribe`, the
//! demo and the tests: connect with mutual TLS, publish (pipelined), subscribe and ack.
//!
//! It moves frames and reports what the node said; it does not verify deliveries (the
//! caller does, with `bulletin`, against the keys it trusts).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::identity::PartnerId;
use crate::proto::{self, client_frame::Frame as ClientFrameKind, server_frame::Frame as Server};
use crate::transport::{
    self, FrameCounts, FrameError, FrameReader, Timers, TlsIdentity, TransportError,
};

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Setting up or keeping the connection.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A stream failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The node answered with an error frame.
    #[error("the node refused: {code}: {message}")]
    Refused {
        /// The code, by name.
        code: String,
        /// The node's explanation.
        message: String,
    },
    /// The node sent something the protocol does not allow here.
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
    /// No connection could be made to the node: where, why, and what to check.
    #[error("cannot connect to {server} (node {name}): {why}; check {check}")]
    Unreachable {
        /// The address dialled.
        server: SocketAddr,
        /// The name its certificate must hold.
        name: PartnerId,
        /// What happened.
        why: String,
        /// What the user can check.
        check: String,
    },
    /// The connection ended; the node's reason, when it gave one.
    #[error("the connection is gone: {0}")]
    Connection(#[from] quinn::ConnectionError),
}

/// What to check when the handshake with a node failed this way.
fn connection_hint(e: &quinn::ConnectionError) -> &'static str {
    let text = e.to_string();
    if text.contains("not valid for name") {
        "client.server_name: it must be a name the node's certificate holds (as quoted above)"
    } else if text.contains("UnknownIssuer")
        || text.contains("unknown issuer")
        || text.contains("BadSignature")
    {
        "client.ca_cert: the node's certificate was not issued by this federation CA"
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        "the dates of the node's certificate and this machine's clock"
    } else if matches!(
        e,
        quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::ApplicationClosed(_)
    ) {
        "client.tls_cert and client.id: the node refused this client's certificate (is it a partner there, issued by the federation CA?)"
    } else {
        "client.server, client.server_name and client.ca_cert"
    }
}

fn refused(e: proto::Error) -> ClientError {
    let code = proto::ErrorCode::try_from(e.code).map_or_else(
        |_| format!("code {}", e.code),
        |c| c.as_str_name().to_owned(),
    );
    ClientError::Refused {
        code,
        message: e.message,
    }
}

/// The largest answer to an auditor request a client reads (see [`Client::ask`]).
pub const AUDIT_ANSWER_MAX: usize = 64 << 20;

/// A connection to one node.
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    max_frame: usize,
    frames: Arc<FrameCounts>,
}

impl Client {
    /// Connects as described by a client configuration file.
    pub async fn connect(cfg: &ClientConfig) -> Result<Client, ClientError> {
        let c = &cfg.client;
        let identity = TlsIdentity::load(&c.ca_cert, &c.tls_cert, &c.tls_key)?;
        let timers = Timers {
            keep_alive: Duration::from_secs(cfg.transport.keep_alive_secs),
            idle_timeout: Duration::from_secs(cfg.transport.idle_timeout_secs),
        };
        let patience = Duration::from_secs(cfg.transport.handshake_timeout_secs.max(1));
        let connecting = Self::connect_with(
            &identity,
            timers,
            c.server,
            &c.server_name,
            cfg.limits.max_frame_bytes,
        );
        let unreachable = |why: String, check: &str| ClientError::Unreachable {
            server: c.server,
            name: c.server_name.clone(),
            why,
            check: check.to_owned(),
        };
        match tokio::time::timeout(patience, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(ClientError::Transport(TransportError::Connection(e)))) => {
                Err(unreachable(e.to_string(), connection_hint(&e)))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(unreachable(
                format!("no answer within {} s", patience.as_secs()),
                "that the node is running and listens on that UDP port (client.server), and that no firewall drops UDP on the way; --connect-timeout waits longer",
            )),
        }
    }

    /// Connects as `id`, with its files where `renkei certs init` wrote them under
    /// `certs` (`ca.crt`, `ID/tls.crt`, `ID/tls.key`), to the node `node` at `addr`.
    pub async fn connect_from_pki(
        certs: &std::path::Path,
        id: &str,
        addr: SocketAddr,
        node: &PartnerId,
        timers: Timers,
    ) -> Result<Client, ClientError> {
        let identity = TlsIdentity::load(
            &certs.join("ca.crt"),
            &certs.join(id).join("tls.crt"),
            &certs.join(id).join("tls.key"),
        )?;
        Self::connect_with(&identity, timers, addr, node, 2 << 20).await
    }

    /// Connects to `server`, expecting its certificate to name `server_name`.
    pub async fn connect_with(
        identity: &TlsIdentity,
        timers: Timers,
        server: SocketAddr,
        server_name: &PartnerId,
        max_frame: usize,
    ) -> Result<Client, ClientError> {
        let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let bind = if server.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            bind
        };
        let mut endpoint = transport::endpoint(bind, None)?;
        endpoint.set_default_client_config(transport::client_config(identity, timers)?);
        let connecting = endpoint
            .connect(server, server_name.as_str())
            .map_err(TransportError::Connect)?;
        let conn = connecting.await.map_err(TransportError::Connection)?;
        Ok(Client {
            endpoint,
            conn,
            max_frame,
            frames: Arc::default(),
        })
    }

    async fn open(&self) -> Result<(quinn::SendStream, FrameReader), ClientError> {
        let (send, recv) = self.conn.open_bi().await?;
        Ok((
            send,
            FrameReader::new(recv, self.max_frame, self.frames.clone()),
        ))
    }

    async fn read(&self, recv: &mut FrameReader) -> Result<Option<Server>, ClientError> {
        read_server_frame(recv).await
    }

    /// Says hello; the node answers who it is, who we are and its limits.
    pub async fn hello(&self) -> Result<proto::Welcome, ClientError> {
        let (mut send, mut recv) = self.open().await?;
        let hello = proto::Hello {
            protocol_version: 1,
            software: concat!("renkei ", env!("CARGO_PKG_VERSION")).into(),
        };
        let hello = client_frame(ClientFrameKind::Hello(hello));
        transport::write_frame(&mut send, &hello, &self.frames).await?;
        let _ = send.finish();
        match self.read(&mut recv).await? {
            Some(Server::Welcome(w)) => Ok(w),
            other => Err(ClientError::Unexpected(format!(
                "{other:?} instead of Welcome"
            ))),
        }
    }

    /// Opens a publish stream for pipelined publishing.
    pub async fn publisher(&self) -> Result<Publisher, ClientError> {
        let (send, recv) = self.open().await?;
        Ok(Publisher {
            sink: PublishSink {
                send,
                frames: self.frames.clone(),
            },
            results: PublishResults { recv },
        })
    }

    /// Publishes one bulletin and waits for its result.
    pub async fn publish(
        &self,
        bulletin: proto::SignedBulletin,
    ) -> Result<proto::PublishResult, ClientError> {
        self.publish_frame(proto::Publish {
            request_id: 1,
            bulletin: Some(bulletin),
            allow_unknown_audience: false,
            path: Vec::new(),
        })
        .await
    }

    /// Sends one Publish as given (its options set) and waits for its result.
    pub async fn publish_frame(
        &self,
        publish: proto::Publish,
    ) -> Result<proto::PublishResult, ClientError> {
        let mut p = self.publisher().await?;
        p.sink.send_frame(publish).await?;
        p.finish();
        p.recv()
            .await?
            .ok_or_else(|| ClientError::Unexpected("the stream ended without a result".into()))
    }

    /// Subscribes to this partner's queue with at most `window` deliveries unacked (0: the node's default).
    pub async fn subscribe(&self, window: u32) -> Result<Subscription<'_>, ClientError> {
        let (mut send, recv) = self.open().await?;
        let sub = client_frame(ClientFrameKind::Subscribe(proto::Subscribe {
            window,
            ..Default::default()
        }));
        transport::write_frame(&mut send, &sub, &self.frames).await?;
        Ok(Subscription {
            client: self,
            send,
            recv,
        })
    }

    /// Sends one auditor request on its own stream and returns the node's answer. An
    /// answer may be larger than a bulletin frame: a page holds at least one record,
    /// and records written before they were bounded can be megabytes; an auditor reads
    /// its own node, so up to [`AUDIT_ANSWER_MAX`] is read.
    pub async fn ask(&self, request: ClientFrameKind) -> Result<Server, ClientError> {
        let (mut send, mut recv) = self.open().await?;
        recv.set_max(self.max_frame.max(AUDIT_ANSWER_MAX));
        transport::write_frame(&mut send, &client_frame(request), &self.frames).await?;
        let _ = send.finish();
        self.read(&mut recv)
            .await?
            .ok_or_else(|| ClientError::Unexpected("the stream ended without an answer".into()))
    }

    /// Queries the node's audit log (auditors only).
    pub async fn audit_query(
        &self,
        query: proto::AuditQuery,
    ) -> Result<proto::AuditPage, ClientError> {
        match self.ask(ClientFrameKind::AuditQuery(query)).await? {
            Server::AuditPage(p) => Ok(p),
            other => Err(unexpected(other, "AuditPage")),
        }
    }

    /// The node's latest signed checkpoint, freshly signed if the log grew (auditors only).
    pub async fn checkpoint(&self) -> Result<proto::SignedCheckpoint, ClientError> {
        self.checkpoint_of(false).await
    }

    /// The newest stored checkpoint a witness cosigned (an error if none is).
    pub async fn witnessed_checkpoint(&self) -> Result<proto::SignedCheckpoint, ClientError> {
        self.checkpoint_of(true).await
    }

    async fn checkpoint_of(&self, witnessed: bool) -> Result<proto::SignedCheckpoint, ClientError> {
        let request = ClientFrameKind::CheckpointRequest(proto::CheckpointRequest { witnessed });
        match self.ask(request).await? {
            Server::Checkpoint(c) => Ok(c),
            other => Err(unexpected(other, "SignedCheckpoint")),
        }
    }

    /// Proof that record `seq` is in the tree of `tree_size` (0: the latest checkpoint).
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<proto::InclusionProof, ClientError> {
        let request = ClientFrameKind::InclusionRequest(proto::InclusionRequest { seq, tree_size });
        match self.ask(request).await? {
            Server::InclusionProof(p) => Ok(p),
            other => Err(unexpected(other, "InclusionProof")),
        }
    }

    /// Proof that the tree of `old_size` is a prefix of `new_size` (0: the latest checkpoint).
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<proto::ConsistencyProof, ClientError> {
        let request =
            ClientFrameKind::ConsistencyRequest(proto::ConsistencyRequest { old_size, new_size });
        match self.ask(request).await? {
            Server::ConsistencyProof(p) => Ok(p),
            other => Err(unexpected(other, "ConsistencyProof")),
        }
    }

    /// A metrics report (auditors only).
    pub async fn metrics(
        &self,
        request: proto::MetricsRequest,
    ) -> Result<proto::MetricsReport, ClientError> {
        match self.ask(ClientFrameKind::MetricsRequest(request)).await? {
            Server::MetricsReport(r) => Ok(r),
            other => Err(unexpected(other, "MetricsReport")),
        }
    }

    /// A new stream with nothing written on it, for tools that write their own frames
    /// (and tests that play a hostile partner).
    pub async fn open_raw(&self) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        Ok(self.conn.open_bi().await?)
    }

    /// Sends raw bytes on a new stream and returns the first frame of the answer, for
    /// testing how a node treats malformed input.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<Option<Server>, ClientError> {
        let (mut send, mut recv) = self.open().await?;
        send.write_all(bytes).await.map_err(FrameError::from)?;
        let _ = send.finish();
        self.read(&mut recv).await
    }

    /// Closes the connection and waits until the node has been told.
    pub async fn close(self) {
        self.conn.close(
            quinn::VarInt::from_u32(proto::CloseCode::Normal as u32),
            b"bye",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    /// Why the connection closed, if it has.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }

    /// Waits until the connection is closed (by either side) and says why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.conn.closed().await
    }
}

/// Reads one frame from the node, turning an `Error` frame into [`ClientError::Refused`].
async fn read_server_frame(recv: &mut FrameReader) -> Result<Option<Server>, ClientError> {
    server_frame(recv.next::<proto::ServerFrame>().await)
}

/// What a frame read from the node says: its message, the end of the stream, or why not.
fn server_frame(
    frame: Result<Option<proto::ServerFrame>, FrameError>,
) -> Result<Option<Server>, ClientError> {
    let frame = match frame {
        Ok(f) => f,
        // Say why the node closed the connection, not just that it is gone.
        Err(FrameError::Read(quinn::ReadError::ConnectionLost(e))) => return Err(e.into()),
        Err(e) => return Err(e.into()),
    };
    match frame {
        None => Ok(None),
        Some(proto::ServerFrame {
            frame: Some(Server::Error(e)),
        }) => Err(refused(e)),
        Some(proto::ServerFrame { frame: Some(f) }) => Ok(Some(f)),
        Some(proto::ServerFrame { frame: None }) => {
            Err(ClientError::Unexpected("an empty frame".into()))
        }
    }
}

fn unexpected(got: Server, wanted: &str) -> ClientError {
    ClientError::Unexpected(format!("{got:?} instead of {wanted}"))
}

fn client_frame(kind: ClientFrameKind) -> proto::ClientFrame {
    proto::ClientFrame { frame: Some(kind) }
}

/// A publish stream: send many bulletins, read their results in the same order. Read
/// while sending (see [`Publisher::split`]): a node stops reading when its results are
/// not read.
pub struct Publisher {
    sink: PublishSink,
    results: PublishResults,
}

/// The sending half of a publish stream.
pub struct PublishSink {
    send: quinn::SendStream,
    frames: Arc<FrameCounts>,
}

/// The receiving half of a publish stream.
pub struct PublishResults {
    recv: FrameReader,
}

impl Publisher {
    /// Sends one bulletin without waiting for its result.
    pub async fn send(
        &mut self,
        request_id: u64,
        bulletin: proto::SignedBulletin,
    ) -> Result<(), ClientError> {
        self.sink.send(request_id, bulletin).await
    }

    /// Says no more bulletins will be sent on this stream.
    pub fn finish(&mut self) {
        self.sink.finish();
    }

    /// The next result, in request order; `None` when the node has answered everything.
    pub async fn recv(&mut self) -> Result<Option<proto::PublishResult>, ClientError> {
        self.results.recv().await
    }

    /// The two halves, to send and read from different tasks.
    pub fn split(self) -> (PublishSink, PublishResults) {
        (self.sink, self.results)
    }
}

impl PublishSink {
    /// Sends one bulletin without waiting for its result.
    pub async fn send(
        &mut self,
        request_id: u64,
        bulletin: proto::SignedBulletin,
    ) -> Result<(), ClientError> {
        self.send_frame(proto::Publish {
            request_id,
            bulletin: Some(bulletin),
            allow_unknown_audience: false,
            path: Vec::new(),
        })
        .await
    }

    /// Sends one Publish as given, with its options.
    pub async fn send_frame(&mut self, publish: proto::Publish) -> Result<(), ClientError> {
        let frame = client_frame(ClientFrameKind::Publish(publish));
        transport::write_frame(&mut self.send, &frame, &self.frames).await?;
        Ok(())
    }

    /// Says no more bulletins will be sent on this stream.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }
}

impl PublishResults {
    /// The next result, in request order; `None` when the node has answered everything.
    pub async fn recv(&mut self) -> Result<Option<proto::PublishResult>, ClientError> {
        match read_server_frame(&mut self.recv).await? {
            None => Ok(None),
            Some(Server::PublishResult(r)) => Ok(Some(r)),
            Some(other) => Err(ClientError::Unexpected(format!(
                "{other:?} on a publish stream"
            ))),
        }
    }
}

fn as_delivery(frame: Option<Server>) -> Result<Option<proto::Delivery>, ClientError> {
    match frame {
        None => Ok(None),
        Some(Server::Delivery(d)) => Ok(Some(d)),
        Some(other) => Err(ClientError::Unexpected(format!(
            "{other:?} on a subscribe stream"
        ))),
    }
}

/// A subscribe stream: deliveries in, acks out.
pub struct Subscription<'c> {
    client: &'c Client,
    send: quinn::SendStream,
    recv: FrameReader,
}

impl Subscription<'_> {
    /// The next delivery; `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<proto::Delivery>, ClientError> {
        as_delivery(self.client.read(&mut self.recv).await?)
    }

    /// A delivery that has already arrived, without waiting; `None` if none has. With
    /// [`Subscription::next`], lets a subscriber take what arrived together and verify
    /// it as one batch ([`crate::bulletin::UnverifiedBulletin::verify_all`]).
    pub fn buffered(&mut self) -> Result<Option<proto::Delivery>, ClientError> {
        match self.recv.buffered::<proto::ServerFrame>() {
            Ok(None) => Ok(None),
            frame => as_delivery(server_frame(frame)?),
        }
    }

    /// Ends the subscription cleanly: the node records every ack sent so far, then ends
    /// the stream. Deliveries still arriving are not acknowledged and will come again.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let _ = self.send.finish();
        while self.next().await?.is_some() {}
        Ok(())
    }

    /// Acknowledges deliveries without receipts (recorded as unsigned acks); they leave
    /// the queue.
    pub async fn ack(&mut self, seqs: Vec<u64>) -> Result<(), ClientError> {
        self.ack_with_receipts(seqs, vec![]).await
    }

    /// Acknowledges deliveries with the signed receipts of some or all of them, each
    /// with the seq it is the receipt of; the node verifies each and refuses the whole
    /// Ack if one does not verify. [`crate::receipt::Receipt::sign_for_ack`] makes
    /// them, with one signature for them all when the node takes batch receipts
    /// ([`Client::hello`]'s `takes_batch_receipts`); signed each alone, they cost the
    /// desk a signature and the node a verification per delivery.
    pub async fn ack_with_receipts(
        &mut self,
        seqs: Vec<u64>,
        receipts: Vec<proto::Receipted>,
    ) -> Result<(), ClientError> {
        let frame = client_frame(ClientFrameKind::Ack(proto::Ack {
            seq: seqs,
            refused: vec![],
            receipts,
        }));
        transport::write_frame(&mut self.send, &frame, &self.client.frames).await?;
        Ok(())
    }
}
