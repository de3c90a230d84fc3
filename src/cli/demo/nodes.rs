//! The demo's nodes as processes: each `renkei serve` started from this same binary on
//! its config, its log in `DIR/ID.log`, stopped with SIGTERM as an operator would.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a node may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(30);

/// The nodes running now, by id. Dropping it kills what still runs.
#[derive(Default)]
pub(super) struct Nodes {
    /// Each with its stdout, kept open so the node never writes to a closed pipe.
    running: BTreeMap<String, (Child, BufReader<ChildStdout>)>,
}

impl Nodes {
    /// Starts `renkei serve --config ID.toml` in `dir` and waits for it to listen.
    pub(super) async fn start(&mut self, dir: &Path, id: &str) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("finding the renkei binary")?;
        let log = std::fs::File::create(dir.join(format!("{id}.log")))
            .with_context(|| format!("creating {id}.log"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--config", &format!("{id}.toml")])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("the node's stdout")?);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        match tokio::time::timeout(PATIENCE, read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => bail!(
                "node {id} did not start; see {}",
                dir.join(format!("{id}.log")).display()
            ),
        }
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        self.running.insert(id.to_string(), (child, stdout));
        Ok(addr)
    }

    /// Stops node `id` with SIGTERM (it finishes what is in flight) and waits for it.
    pub(super) async fn stop(&mut self, id: &str) -> anyhow::Result<()> {
        let Some((mut child, _stdout)) = self.running.remove(id) else {
            return Ok(());
        };
        let pid = child.id().context("the node already exited")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .with_context(|| format!("node {id} did not stop within {PATIENCE:?}"))??;
        if !status.success() {
            bail!("node {id} stopped with {status}");
        }
        Ok(())
    }

    /// Stops every node.
    pub(super) async fn stop_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            self.stop(&id).await?;
        }
        Ok(())
    }
}
