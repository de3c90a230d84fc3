//! The `lazyfs` command: mounts the file system over a backing directory, serves the
//! control socket, and unmounts cleanly on SIGTERM or SIGINT.

mod control;
mod fs;
mod pending;
mod state;

use std::io::{self, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use clap::Parser;
use fuser::{Config, MountOption, Session};
use nix::sys::signal::{SigSet, Signal};

/// A FUSE file system that holds every write not yet fsynced in memory, and drops
/// such writes on a simulated power cut.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The directory whose contents the mount shows (the "disk").
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount.
    #[arg(long)]
    mount: PathBuf,
    /// The Unix socket to listen on for control commands.
    #[arg(long)]
    control: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("backing directory {0}: {1}")]
    Backing(PathBuf, io::Error),
    #[error("control socket {0}: {1}")]
    Control(PathBuf, io::Error),
    #[error("mount at {0}: {1}")]
    Mount(PathBuf, io::Error),
    #[error("blocking SIGTERM and SIGINT: {0}")]
    Signals(nix::Error),
    #[error("starting a thread: {0}")]
    Thread(io::Error),
    #[error("serving the mount: {0}")]
    Serve(io::Error),
}

enum Event {
    Signal(Signal),
    Ended(io::Result<()>),
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(Error::Thread)
}

fn run(args: &Args) -> Result<(), Error> {
    // Blocked before any thread starts, so that only `wait` below takes them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(Error::Signals)?;

    let backing_error = |e| Error::Backing(args.backing.clone(), e);
    let backing = args.backing.canonicalize().map_err(backing_error)?;
    if !backing.is_dir() {
        return Err(backing_error(io::ErrorKind::NotADirectory.into()));
    }
    let state = Arc::new(Mutex::new(state::State::new(backing)));
    // A socket left by an earlier run would make bind fail.
    let _ = std::fs::remove_file(&args.control);
    let listener =
        UnixListener::bind(&args.control).map_err(|e| Error::Control(args.control.clone(), e))?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("lazyfs".into()),
        MountOption::Subtype("lazyfs".into()),
    ];
    let mount_error = |e| Error::Mount(args.mount.clone(), e);
    let mut session = Session::new(fs::LazyFs::new(Arc::clone(&state)), &args.mount, &config)
        .map_err(mount_error)?;
    let mut unmounter = session.unmount_callable();

    let (tx, rx) = mpsc::channel();
    let ended = tx.clone();
    spawn("fuse", move || {
        drop(ended.send(Event::Ended(session.run())))
    })?;
    spawn("signals", move || {
        if let Ok(signal) = signals.wait() {
            let _ = tx.send(Event::Signal(signal));
        }
    })?;
    spawn("control", move || control::serve(listener, state))?;

    let (b, m, c) = (
        args.backing.display(),
        args.mount.display(),
        args.control.display(),
    );
    println!("lazyfs: mounted {b} at {m}, control at {c}");
    let _ = io::stdout().flush();

    let mut result = Ok(());
    for event in rx {
        match event {
            Event::Signal(signal) => {
                eprintln!("lazyfs: {signal}, unmounting");
                unmounter.unmount().map_err(mount_error)?;
            }
            Event::Ended(ended) => {
                result = ended.map_err(Error::Serve);
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&args.control);
    result
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}
