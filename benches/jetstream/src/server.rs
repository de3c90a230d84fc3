//! The server under benchmark: `nats-server -js` in its own process, on a fresh store
//! in a temporary directory, killed when dropped; and what /proc says about it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long nats-server may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(15);

/// A running `nats-server -js`; killed (and waited for) when dropped, before its
/// store is removed.
pub struct NatsServer {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Holds the store and the log; dropped after the child is gone.
    dir: tempfile::TempDir,
}

/// The `nats-server` program on PATH, if there is one.
pub fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// The version `nats-server --version` reports ("2.9.10"), or "unknown".
pub fn version(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| {
            Some(
                s.trim()
                    .rsplit(' ')
                    .next()?
                    .trim_start_matches('v')
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A free loopback port (bound, then released: nats-server binds it a moment later;
/// a benchmark can live with that window).
fn free_port() -> anyhow::Result<u16> {
    let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?.port())
}

impl NatsServer {
    /// Starts `nats-server -js` on a fresh store and waits until it accepts
    /// connections. Its output goes to a file: a pipe nobody reads would stall it.
    pub fn start(program: &Path) -> anyhow::Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("jetstream-bench-")
            .tempdir()
            .context("making the server's directory")?;
        let port = free_port()?;
        let log = File::create(dir.path().join("nats-server.log")).context("the server's log")?;
        let child = Command::new(program)
            .arg("-js")
            .arg("-sd")
            .arg(dir.path().join("store"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("the server's log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut server = NatsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        server.wait_until_listening()?;
        Ok(server)
    }

    /// Polls the port until it takes a connection, the server exits, or the patience
    /// runs out.
    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().context("watching nats-server")? {
                bail!("nats-server exited ({status}): {}", self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server did not listen on {} within {START_PATIENCE:?}: {}",
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's log, for an error message.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The size of the store on disk, in bytes.
    pub fn store_bytes(&self) -> u64 {
        dir_size(&self.dir.path().join("store"))
    }

    /// CPU seconds the server has used so far (user and system, every thread).
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The server's peak resident memory (VmHWM), in bytes; 0 where unknown.
    pub fn peak_rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SIGKILL: the store is thrown away with the directory anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (utime + stime) of the process whose stat file is at `path`.
pub fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`), asked once; 100 (Linux's USER_HZ
/// everywhere in practice) if getconf cannot say.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The bytes in the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
