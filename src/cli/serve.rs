//! `renkei serve`: run a node until SIGINT or SIGTERM, then shut down cleanly; SIGHUP
//! reloads its configuration.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::NodeConfig;
use crate::node;

/// How long in-flight work may take to finish after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

pub(super) async fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    super::check::preflight(&cfg)?;
    let running = node::start(cfg).await.context("starting the node")?;
    // Signal handlers first: whoever reads the next line may signal at once.
    let mut signals = Signals::install()?;
    println!("renkei node listening on {}", running.local_addr());
    while let Signal::Reload = signals.next().await {
        // A refusal is logged and recorded by the node; the running config stays.
        let _ = running.reload("SIGHUP").await;
    }
    tracing::info!("stopping: finishing in-flight work");
    running.shutdown(GRACE).await?;
    tracing::info!("stopped");
    Ok(())
}

/// What a signal asks of the node.
enum Signal {
    Stop,
    Reload,
}

/// The signals `serve` answers: SIGINT and SIGTERM stop, SIGHUP reloads.
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}
