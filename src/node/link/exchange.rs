//! One request to a peer over its link, on a stream of its own, and its one answer: how
//! a node passes receipts back (`receipts`) and asks to be witnessed (`witness`). Its
//! error says which step failed, in the operator's words.

use std::time::Duration;

use crate::audit::merkle::MerkleError;
use crate::identity::PartnerId;
use crate::proto::{self, client_frame, server_frame};
use crate::store::StoreError;
use crate::transport::{self, FrameError, FrameReader};

/// How long a peer may take to answer one request.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How often a link's side task looks for work, and at most how long it waits after
/// the peer could not take it.
const EVERY: Duration = Duration::from_secs(2);
const BACKOFF_AT_MOST: Duration = Duration::from_secs(300);

/// Why an exchange with a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// No stream could be opened on the link.
    #[error("opening a stream to the peer: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// A frame could not be written or read.
    #[error("a frame to or from the peer: {0}")]
    Frame(#[from] FrameError),
    /// The peer took too long.
    #[error("the peer did not answer within {0:?}")]
    NoAnswer(Duration),
    /// The peer answered with an error, or refused in words.
    #[error("the peer refused: {0}")]
    Refused(String),
    /// The peer answered something else than the request calls for.
    #[error("the peer answered {0} to a {1}")]
    Unexpected(String, &'static str),
    /// This node's store failed.
    #[error("this node's store: {0}")]
    Store(#[from] StoreError),
    /// This node could not prove its log's growth.
    #[error("a consistency proof: {0}")]
    Proof(#[from] MerkleError),
    /// A witness's cosignature did not verify with any key of the peer.
    #[error("the peer's cosignature does not verify with its key")]
    BadCosignature,
    /// The witness named another size than the one it was asked from, twice.
    #[error("the peer named another size it last cosigned twice")]
    Conflicts,
    /// A blocking step did not finish.
    #[error("a blocking step failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// When a link's side task takes its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Again {
    /// At once: more is waiting.
    Now,
    /// After this long, so that what comes meanwhile goes in one exchange.
    After(Duration),
    /// In a few seconds: there was nothing to do.
    Idle,
}

/// Runs `step` while the link `conn` lasts and the node runs, as soon as each step says
/// ([`Again`]), and after a failure (a peer that refused, or does not speak the
/// request) twice as long each time, saying so as `what`.
pub(crate) async fn repeat<F>(
    (conn, peer): (&quinn::Connection, &PartnerId),
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &str,
    mut step: impl FnMut() -> F,
) where
    F: std::future::Future<Output = Result<Again, ExchangeError>>,
{
    let mut backoff = EVERY;
    loop {
        let outcome = step().await.inspect_err(|why| {
            tracing::warn!(%peer, %why, "{what}");
        });
        let wait;
        (wait, backoff) = pause(outcome.ok(), backoff);
        let Some(wait) = wait else { continue };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
            _ = conn.closed() => return,
        }
    }
}

/// After a step that said `outcome` (`None`: it failed), how long to wait before the
/// next (`None`: at once), and the wait to double after the next failure.
fn pause(outcome: Option<Again>, backoff: Duration) -> (Option<Duration>, Duration) {
    match outcome {
        Some(Again::Now) => (None, backoff),
        Some(Again::After(wait)) => (Some(wait), EVERY),
        Some(Again::Idle) => (Some(EVERY), EVERY),
        None => {
            let longer = (backoff * 2).min(BACKOFF_AT_MOST);
            (Some(longer), longer)
        }
    }
}

/// Sends `frame` to the peer on a new stream of `conn` and reads its one answer.
pub(crate) async fn request(
    conn: &quinn::Connection,
    wire: super::Wire<'_>,
    frame: client_frame::Frame,
    what: &'static str,
) -> Result<server_frame::Frame, ExchangeError> {
    let frames = wire.frames;
    let (mut out, recv) = conn.open_bi().await?;
    let frame = proto::ClientFrame { frame: Some(frame) };
    transport::write_frame(&mut out, &frame, frames).await?;
    let _ = out.finish();
    let mut recv = FrameReader::new(recv, wire.max_frame, frames.clone());
    let answer = tokio::time::timeout(ANSWER_WITHIN, recv.next::<proto::ServerFrame>())
        .await
        .map_err(|_| ExchangeError::NoAnswer(ANSWER_WITHIN))??;
    match answer.and_then(|a| a.frame) {
        Some(server_frame::Frame::Error(e)) => {
            let code = proto::ErrorCode::try_from(e.code)
                .map_or_else(|_| e.code.to_string(), |c| c.as_str_name().to_owned());
            Err(ExchangeError::Refused(format!("{code}: {}", e.message)))
        }
        Some(f) => Ok(f),
        None => Err(ExchangeError::Unexpected("nothing".into(), what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_taken_again_when_it_says_and_failures_wait_longer_each_time() {
        let gather = Duration::from_millis(100);
        assert_eq!(pause(Some(Again::Now), EVERY * 4), (None, EVERY * 4));
        assert_eq!(
            pause(Some(Again::After(gather)), EVERY * 4),
            (Some(gather), EVERY)
        );
        assert_eq!(pause(Some(Again::Idle), EVERY * 4), (Some(EVERY), EVERY));
        let (mut waits, mut backoff) = (Vec::new(), EVERY);
        for _ in 0..9 {
            let wait;
            (wait, backoff) = pause(None, backoff);
            waits.extend(wait);
        }
        assert_eq!(waits[..3], [EVERY * 2, EVERY * 4, EVERY * 8]);
        assert_eq!(waits[8], BACKOFF_AT_MOST, "at most {BACKOFF_AT_MOST:?}");
    }
}
