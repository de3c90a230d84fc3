//! `renkei serve` as a child process, as an operator runs it: started on a config,
//! signalled like systemd would, and killed if a test ends without stopping it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running `renkei serve`.
pub struct Served(Option<Child>);

/// Starts `renkei serve --config CONFIG` in `dir`; returns it with the address its
/// first line announces.
pub fn serve(dir: &Path, config: &str) -> (Served, String) {
    serve_with_env(dir, config, &[])
}

/// The node's allocator (jemalloc) set to give freed memory back at once rather than
/// within a second, so that RSS shows what the node holds, not what it freed lately.
pub const RSS_IS_HELD: [(&str, &str); 1] =
    [("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")];

/// [`serve`] with extra environment variables.
pub fn serve_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["serve", "--config", config])
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("renkei serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the node's first line");
    let served = Served(Some(child));
    assert!(line.starts_with("renkei node listening on "), "{line:?}");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    (served, addr)
}

/// A process's VmRSS in KiB, if it is still there.
fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A node's resident memory sampled in the background; see [`Served::watch_rss`].
pub struct RssWatch {
    stop: std::sync::mpsc::Sender<()>,
    sampler: std::thread::JoinHandle<u64>,
}

impl RssWatch {
    /// The highest VmRSS seen, in KiB; stops watching.
    pub fn peak_kib(self) -> u64 {
        let _ = self.stop.send(());
        let peak = self.sampler.join().expect("the sampler ends");
        assert!(peak > 0, "the node's memory was never sampled");
        peak
    }
}

impl Served {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the node was already stopped")
    }

    /// The node's process id.
    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// The node's resident memory now, in KiB (VmRSS).
    pub fn rss_kib(&mut self) -> u64 {
        rss_kib_of(self.pid()).expect("the node's VmRSS in /proc")
    }

    /// Watches the node's resident memory until the watch is dropped: its peak, which
    /// samples taken between steps of a test would miss.
    pub fn watch_rss(&mut self) -> RssWatch {
        let pid = self.pid();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            // A sample now and every 5 ms until told to stop (or the node is gone).
            while let Some(kib) = rss_kib_of(pid) {
                peak = kib.max(peak);
                match stopped.recv_timeout(Duration::from_millis(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            peak
        });
        RssWatch { stop, sampler }
    }

    /// Sends a signal by name (`HUP`, `TERM`) with kill(1).
    pub fn signal(&mut self, name: &str) {
        let pid = self.child().id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// SIGKILL: the node dies on the spot, without a flush or a last checkpoint.
    pub fn kill(&mut self) {
        let child = self.child();
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        self.0 = None;
    }

    /// SIGTERM, then waits (at most `patience`) for the exit status. A node that does
    /// not stop in time is killed before the test fails, so no node outlives its test.
    pub fn stop(mut self, patience: Duration) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.0.take().expect("the node is running");
        let pid = child.id().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((status, child));
        });
        let Ok((status, _child)) = rx.recv_timeout(patience) else {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the node did not stop within {patience:?} of SIGTERM; it was killed");
        };
        status.expect("the exit status")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
