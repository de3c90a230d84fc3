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
    /// Its admin listener, for `/metrics`.
    admin: SocketAddr,
}

/// A free loopback port for the node's admin listener (bound, then released: the
/// node binds it a moment later; a benchmark can live with that window).
pub(super) fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

impl NodeProcess {
    /// Starts `renkei serve --config CONFIG` and waits for its listening line.
    pub fn start(config: &Path, admin: SocketAddr) -> anyhow::Result<NodeProcess> {
        let exe = std::env::current_exe().context("finding the renkei binary")?;
        // A profiler to run the node under (`heaptrack`, `valgrind --tool=massif`): the
        // node is a child process, so this is the only way to reach it.
        let wrapper = std::env::var("RENKEI_BENCH_NODE_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // Its log, kept beside its configuration, says why when it does not start.
        let log_path = config.with_extension("log");
        let log = std::fs::File::create(&log_path).context("creating the node's log")?;
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting renkei serve")?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        // A wrapper may print a few lines of its own first.
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let mut addr = None;
        for _ in 0..20 {
            line.clear();
            if stdout
                .read_line(&mut line)
                .context("reading the node's output")?
                == 0
            {
                break;
            }
            if let Some(a) = line.trim().strip_prefix("renkei node listening on ") {
                addr = Some(a.to_owned());
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let exit = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            bail!(
                "the node did not start ({exit}; its last output {:?}): {}",
                line.trim(),
                last_words(&log_path)
            );
        };
        let addr = addr.parse().context("the node's address")?;
        Ok(NodeProcess {
            child: Some(child),
            addr,
            admin,
        })
    }

    /// The node's `/metrics` text, fetched over HTTP/1.1 with hyper; `None` if the
    /// node did not answer within five seconds.
    async fn metrics_text(&self) -> Option<String> {
        use http_body_util::BodyExt as _;
        let fetch = async {
            let tcp = tokio::net::TcpStream::connect(self.admin).await.ok()?;
            let io = hyper_util::rt::TokioIo::new(tcp);
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
            tokio::spawn(conn);
            let request = hyper::Request::get("/metrics")
                .header("host", "127.0.0.1")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .ok()?;
            let response = send.send_request(request).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            String::from_utf8(body.to_vec()).ok()
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .ok()
            .flatten()
    }

    /// Group-commit durations so far from the node's `/metrics` histogram: the count,
    /// the upper bounds (ms) of the buckets holding the median and the 99th percentile,
    /// and how many took over 25 ms. `None` if the node did not answer.
    pub async fn commit_latency(&self) -> Option<(u64, f64, f64, u64)> {
        let text = self.metrics_text().await?;
        let mut buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("renkei_commit_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le * 1000.0, count.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        let at = |q: f64| {
            let rank = (total as f64 * q).ceil() as u64;
            buckets
                .iter()
                .find(|(_, c)| *c >= rank)
                .map_or(f64::INFINITY, |(le, _)| *le)
        };
        let within_25ms = buckets
            .iter()
            .find(|(le, _)| *le >= 25.0)
            .map_or(total, |(_, c)| *c);
        Some((total, at(0.5), at(0.99), total - within_25ms))
    }

    /// The node's peak resident memory so far (VmHWM), in bytes; 0 where unknown.
    pub fn peak_rss(&self) -> u64 {
        self.memory("VmHWM:")
    }

    /// The node's resident memory now (VmRSS), in bytes; 0 where unknown.
    pub fn rss(&self) -> u64 {
        self.memory("VmRSS:")
    }

    fn memory(&self, field: &str) -> u64 {
        let Some(child) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with(field))?;
                let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(0)
    }

    /// CPU time the node has used so far (user and system, every thread); `None` where
    /// unknown. Under a profiler wrapper this is the wrapper's, not the node's.
    /// The node's open file descriptors, if its /proc entry can be read.
    pub fn open_files(&self) -> Option<usize> {
        let child = self.child.as_ref()?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).ok()?;
        Some(fds.count())
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        let child = self.child.as_ref()?;
        cpu_seconds(&format!("/proc/{}/stat", child.id()))
    }

    /// Kills it with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing the node")?;
            child.wait().context("waiting for the killed node")?;
        }
        Ok(())
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

/// User plus system CPU seconds of the process whose `/proc/…/stat` is at `path`.
/// `/proc` counts in USER_HZ ticks, 100 per second on x86 and ARM (the architectures
/// this benchmark runs on; a few others differ).
pub(super) fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The last lines of a node's log that say something (a backtrace's frames left out).
fn last_words(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let frame = |l: &&str| {
        let t = l.trim_start();
        t.starts_with("at ")
            || t.split(':')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let said: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
    said[said.len().saturating_sub(5)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_from_proc() {
        // Spin until this process has used at least one tick, so the figure cannot be
        // the zero of a failed parse.
        let mut x = 0u64;
        let seconds = loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_add(std::hint::black_box(i));
            }
            match super::cpu_seconds("/proc/self/stat") {
                Some(s) if s > 0.0 => break s,
                Some(_) => continue,
                None => panic!("no CPU time in /proc/self/stat"),
            }
        };
        assert!(seconds < 1e6, "{seconds} {x}");
    }
}
