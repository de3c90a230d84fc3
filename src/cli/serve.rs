//! `renkei serve`: run a node until SIGINT or SIGTERM, then shut down cleanly.

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
    let stop = stop_signals()?;
    println!("renkei node listening on {}", running.local_addr());
    stop.await?;
    tracing::info!("stopping: finishing in-flight work");
    running.shutdown(GRACE).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the stop signals' handlers now; the future ends at SIGINT or SIGTERM.
#[cfg(unix)]
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // SIGHUP would otherwise end the process; a reload is not implemented yet, so the
    // node says so and keeps its configuration in force.
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = int.recv() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = hangup.recv() => {
                    tracing::warn!("SIGHUP: reloading the configuration is not supported yet; the running configuration stays in force (restart to apply changes)");
                }
            }
        }
    })
}

#[cfg(not(unix))]
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    Ok(async { tokio::signal::ctrl_c().await.context("waiting for Ctrl-C") })
}
