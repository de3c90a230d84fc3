//! The node under benchmark: `renkei serve` in its own process (so its memory can be
//! measured apart from the clients'), on a fresh data directory per phase.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// A running `renkei serve` child; killed if dropped without [`NodeProcess::stop`].
pub(super) struct NodeProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NodeProcess {
    /// Starts `renkei serve --config CONFIG` and waits for its listening line.
    pub fn start(config: &Path) -> anyhow::Result<NodeProcess> {
        let exe = std::env::current_exe().context("finding the renkei binary")?;
        let mut child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting renkei serve")?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the node's first line")?;
        let Some(addr) = line.trim().strip_prefix("renkei node listening on ") else {
            let _ = child.kill();
            bail!("the node did not start: {line:?}");
        };
        let addr = addr.parse().context("the node's address")?;
        Ok(NodeProcess {
            child: Some(child),
            addr,
        })
    }

    /// The node's peak resident memory so far (VmHWM), in bytes; 0 where unknown.
    pub fn peak_rss(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(0)
    }

    /// Stops it with SIGTERM (a clean stop: final flush and checkpoint) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = child.kill();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() && signalled {
                    bail!("the node exited with {status}");
                }
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("the node did not stop within a minute of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
