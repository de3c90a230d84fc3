//! Power cuts (`--phases power --cycles N`): the crash loop with the node's data
//! directory on `lazyfs` (benches/lazyfs), a FUSE file system that keeps every write not
//! yet fsynced in memory. After each SIGKILL the power is "cut": those writes are
//! dropped (all of them, a prefix with a torn page, or a random subset, in turn), as a
//! real power cut may, where a SIGKILL alone leaves them in the page cache. Then the
//! node restarts on what survived, and at the end every promise of the crash loop is
//! checked.
//!
//! It owns the lazyfs process and its control socket; the loop and the checks are the
//! crash loop's.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::crash::{outages, Outage};
use super::Setup;

/// The power-cut loop's node: its data directory (a link into the mount) and
/// configuration are named this.
const DATA: &str = "power";
/// How long lazyfs may take to mount, or to stop.
const MOUNTING: Duration = Duration::from_secs(20);

/// Runs the loop on a lazyfs mount; the crash loop's figures and what the cuts dropped.
pub(super) async fn power(
    setup: Arc<Setup>,
    cycles: usize,
    lazyfs: &Path,
) -> anyhow::Result<Value> {
    // Starting and stopping lazyfs block (a child process, its output): off the
    // async workers.
    let mut fs = tokio::task::block_in_place(|| LazyFs::mount(lazyfs, &setup.dir))?;
    let data = fs.mount.join(DATA);
    std::fs::create_dir(&data).with_context(|| format!("creating {}", data.display()))?;
    std::os::unix::fs::symlink(&data, setup.dir.join(DATA))
        .context("linking the data directory")?;
    let mut report = outages(setup, cycles, &mut fs).await?;
    report["cuts"] = fs.cuts.summary();
    tokio::task::block_in_place(|| fs.unmount())?;
    Ok(report)
}

/// A mounted lazyfs, and what its cuts dropped.
struct LazyFs {
    child: Option<Child>,
    mount: PathBuf,
    control: PathBuf,
    cuts: Cuts,
}

impl LazyFs {
    /// Starts `program` over `dir/lazyfs-backing` at `dir/lazyfs`, and waits until it
    /// says the mount is live.
    fn mount(program: &Path, dir: &Path) -> anyhow::Result<LazyFs> {
        let (backing, mount) = (dir.join("lazyfs-backing"), dir.join("lazyfs"));
        let control = dir.join("lazyfs.sock");
        for d in [&backing, &mount] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut child = Command::new(program)
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(&mount)
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it: cd benches/lazyfs && cargo build --release; it needs \
                     fusermount3, from Debian's fuse3)",
                    program.display()
                )
            })?;
        let stdout = child.stdout.take();
        // Owned from here, so that a failed mount still stops it.
        let fs = LazyFs {
            child: Some(child),
            mount,
            control,
            cuts: Cuts::default(),
        };
        wait_for_mount(stdout.context("lazyfs's stdout")?)?;
        Ok(fs)
    }

    /// Sends one control command; its answer after `ok `.
    fn ask(&self, command: &str) -> anyhow::Result<String> {
        let mut socket = UnixStream::connect(&self.control).context("lazyfs's control socket")?;
        socket.set_read_timeout(Some(MOUNTING))?;
        socket.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(socket).read_line(&mut answer)?;
        match answer.trim().strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("lazyfs answered {command:?} with {:?}", answer.trim()),
        }
    }

    /// Stops lazyfs, which unmounts.
    fn unmount(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    /// Stops lazyfs with SIGTERM (it writes back and unmounts) and checks that it
    /// exited cleanly and the mount is gone; a lazy unmount if not.
    fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + MOUNTING;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mounted = still_mounted(&self.mount);
        if mounted {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mount)
                .status();
        }
        match status {
            None => bail!("lazyfs did not stop within {MOUNTING:?}"),
            Some(s) if !s.success() => bail!("lazyfs exited with {s}"),
            Some(_) if mounted => bail!("lazyfs exited but left {} mounted", self.mount.display()),
            Some(_) => Ok(()),
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("renkei bench: power: {e}");
        }
    }
}

impl Outage for LazyFs {
    fn data(&self) -> &str {
        DATA
    }

    /// Cuts the power: drops, tears or reorders what was not fsynced, in turn.
    fn after_kill(&mut self, cycle: usize) -> anyhow::Result<()> {
        let command = match cycle % 3 {
            0 => "cut drop".to_owned(),
            1 => format!("cut torn {cycle}"),
            _ => format!("cut reorder {cycle}"),
        };
        let answer = self.ask(&command)?;
        self.cuts.add(&answer)
    }
}

/// Whether `mount` is a mount point of this process's namespace now.
fn still_mounted(mount: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let mount = mount.to_string_lossy();
    // The fifth field is the mount point (a space would be escaped; ours have none).
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mount.as_ref()))
}

/// Waits for lazyfs's line saying the mount is live (each read on its own thread, so
/// a silent lazyfs fails the run instead of hanging it).
fn wait_for_mount(stdout: std::process::ChildStdout) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(MOUNTING) {
        Ok(Ok(line)) if line.starts_with("lazyfs: mounted") => Ok(()),
        Ok(Ok(line)) => bail!("lazyfs did not mount: {:?}", line.trim()),
        Ok(Err(e)) => bail!("reading lazyfs's output: {e}"),
        Err(_) => bail!("lazyfs did not mount within {MOUNTING:?}"),
    }
}

/// What the cuts lost, summed from lazyfs's answers (`dropped=N bytes=N files=N`,
/// and `torn=N` for the cuts that tear).
#[derive(Default)]
struct Cuts {
    cuts: u64,
    writes: u64,
    torn: u64,
    bytes: u64,
    with_loss: u64,
}

impl Cuts {
    fn add(&mut self, answer: &str) -> anyhow::Result<()> {
        let field = |name: &str| {
            answer
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .map(|v| v.parse::<u64>())
        };
        let (Some(Ok(writes)), Some(Ok(bytes))) = (field("dropped"), field("bytes")) else {
            bail!("lazyfs's answer to a cut says nothing of what it lost: {answer:?}");
        };
        let torn = match field("torn") {
            Some(n) => n.with_context(|| format!("lazyfs's answer {answer:?}"))?,
            None => 0,
        };
        self.cuts += 1;
        self.writes += writes;
        self.torn += torn;
        self.bytes += bytes;
        self.with_loss += u64::from(writes + torn > 0 || bytes > 0);
        Ok(())
    }

    fn summary(&self) -> Value {
        json!({
            "cuts": self.cuts,
            "cuts_that_dropped_writes": self.with_loss,
            "writes_dropped": self.writes,
            "writes_torn": self.torn,
            "bytes_dropped": self.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_sum_what_lazyfs_says_it_lost() {
        let mut cuts = Cuts::default();
        cuts.add("dropped=3 bytes=12288 files=2")
            .expect("an answer");
        cuts.add("dropped=0 bytes=0 files=0").expect("an answer");
        cuts.add("dropped=2 bytes=100 files=1 kept=1 torn=0")
            .expect("an answer");
        cuts.add("dropped=0 bytes=2000 files=1 kept=0 torn=1")
            .expect("an answer");
        let s = cuts.summary();
        assert_eq!(s["cuts"], 4);
        assert_eq!(
            s["cuts_that_dropped_writes"], 3,
            "a torn write is a loss too"
        );
        assert_eq!(s["writes_dropped"], 5);
        assert_eq!(s["writes_torn"], 1);
        assert_eq!(s["bytes_dropped"], 14388);
        assert!(
            cuts.add("pending_writes=0").is_err(),
            "an answer without figures"
        );
    }
}
