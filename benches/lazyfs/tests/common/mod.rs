//! Shared by the mount tests: starting `lazyfs` on temporary directories, waiting for
//! its ready line, talking to its control socket, and always unmounting at the end.
#![allow(dead_code)] // each test binary uses a part

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub type R = Result<(), Box<dyn std::error::Error>>;

/// A running `lazyfs`, unmounted and stopped when dropped.
pub struct Mount {
    child: Child,
    pub mount: PathBuf,
    pub backing: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

/// Says on stderr (which the test harness does not capture) why a test did not run.
fn skip(test: &str, why: &str) -> Option<Mount> {
    let _ = writeln!(io::stderr(), "SKIPPED {test}: {why}");
    None
}

/// The lines of `from`, read on a thread of their own.
pub fn lines(from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line holding `marker`; an error if the writer ends first or
/// `timeout` passes.
pub fn wait_for(
    lines: &Receiver<String>,
    marker: &str,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return Ok(line),
            Ok(_) => {}
            Err(e) => return Err(format!("no line with {marker:?}: {e}")),
        }
    }
}

/// Whether something is mounted at `path` (absolute, canonical).
pub fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path.to_string_lossy()))
}

impl Mount {
    /// Mounts a fresh `lazyfs`, or says why it cannot and gives `None`.
    pub fn start(test: &str) -> Result<Option<Mount>, Box<dyn std::error::Error>> {
        if !Path::new("/dev/fuse").exists() {
            return Ok(skip(test, "/dev/fuse is missing"));
        }
        if Command::new("fusermount3")
            .arg("-V")
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Ok(skip(test, "fusermount3 is missing (apt-get install fuse3)"));
        }
        let dir = tempfile::tempdir()?;
        let root = dir.path().canonicalize()?;
        let (mount, backing) = (root.join("mount"), root.join("backing"));
        let (socket, log) = (root.join("control.sock"), root.join("lazyfs.log"));
        std::fs::create_dir(&mount)?;
        std::fs::create_dir(&backing)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_lazyfs"))
            .args([
                "--backing".as_ref(),
                backing.as_os_str(),
                "--mount".as_ref(),
                mount.as_os_str(),
            ])
            .args(["--control".as_ref(), socket.as_os_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut m = Mount {
            child,
            mount,
            backing,
            socket,
            log,
            _dir: dir,
        };
        if let Err(e) = wait_for(&lines(stdout), "lazyfs: mounted", Duration::from_secs(20)) {
            let _ = m.child.kill();
            return Err(format!("lazyfs did not mount: {e}; its log: {}", m.log()).into());
        }
        Ok(Some(m))
    }

    /// What `lazyfs` wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mount.join(rel)
    }

    /// Sends one control command, gives the answer line.
    pub fn ctl(&self, command: &str) -> String {
        let answer = (|| -> io::Result<String> {
            let mut stream = UnixStream::connect(&self.socket)?;
            writeln!(stream, "{command}")?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line.trim_end().to_string())
        })();
        answer.unwrap_or_else(|e| format!("control socket: {e}"))
    }

    /// Sends SIGTERM and waits up to `timeout` for `lazyfs` to exit.
    pub fn terminate(
        &mut self,
        timeout: Duration,
    ) -> Result<ExitStatus, Box<dyn std::error::Error>> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err("lazyfs did not exit after SIGTERM".into());
            }
            thread::sleep(Duration::from_millis(10)); // polling the exit, with a deadline
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if mounted(&self.mount) {
            let unmount = |flags: &str| {
                Command::new("fusermount3")
                    .arg(flags)
                    .arg(&self.mount)
                    .output()
            };
            if !unmount("-u").is_ok_and(|o| o.status.success()) {
                let _ = unmount("-uz");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
