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
    let running = node::start(cfg).await.context("starting the node")?;
    println!("renkei node listening on {}", running.local_addr());
    wait_for_stop().await?;
    tracing::info!("stopping: finishing in-flight work");
    running.shutdown(GRACE).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_stop() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}
