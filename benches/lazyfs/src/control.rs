//! The control socket: one text command a line (`cut drop`, `cut torn SEED`,
//! `cut reorder SEED`, `stats`, `sync`), one answer line each, `ok …` or `err …`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::pending::Cut;
use crate::state::{self, State};

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Cut(Cut),
    Stats,
    Sync,
}

#[derive(Debug, thiserror::Error)]
enum ParseError {
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("bad seed {0:?}: {1}")]
    Seed(String, std::num::ParseIntError),
}

fn seed(word: &str) -> Result<u64, ParseError> {
    word.parse()
        .map_err(|e| ParseError::Seed(word.to_string(), e))
}

fn parse(line: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["cut", "drop"] => Command::Cut(Cut::Drop),
        ["cut", "torn", s] => Command::Cut(Cut::Torn(seed(s)?)),
        ["cut", "reorder", s] => Command::Cut(Cut::Reorder(seed(s)?)),
        ["stats"] => Command::Stats,
        ["sync"] => Command::Sync,
        _ => return Err(ParseError::Unknown(line.trim().to_string())),
    })
}

/// Runs one command line and gives its answer line (without the newline).
pub fn execute(line: &str, state: &Mutex<State>) -> String {
    let command = match parse(line) {
        Ok(command) => command,
        Err(e) => return format!("err {e}"),
    };
    let mut state = state::lock(state);
    let errno = |e: fuser::Errno| format!("err {}", io::Error::from_raw_os_error(e.code()));
    match command {
        Command::Stats => {
            let (writes, bytes) = state.pending();
            let (syncs, cuts) = (state.syncs, state.cuts);
            format!("ok pending_writes={writes} pending_bytes={bytes} syncs={syncs} cuts={cuts}")
        }
        Command::Sync => state.sync().map_or_else(errno, |()| "ok".to_string()),
        Command::Cut(cut) => match state.cut(cut) {
            Err(e) => errno(e),
            Ok(r) => {
                let t = r.tally;
                let head = format!(
                    "ok dropped={} bytes={} files={}",
                    t.dropped, t.lost_bytes, r.files
                );
                match cut {
                    Cut::Drop => head,
                    _ => format!("{head} kept={} torn={}", t.kept, t.torn),
                }
            }
        },
    }
}

fn serve_one(stream: UnixStream, state: &Mutex<State>) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let answer = execute(&line?, state);
        writeln!(out, "{answer}")?;
    }
    Ok(())
}

/// Answers the connections to `listener`, each on a thread of its own.
pub fn serve(listener: UnixListener, state: Arc<Mutex<State>>) {
    for stream in listener.incoming() {
        let state = Arc::clone(&state);
        let served = stream.and_then(|stream| {
            thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    if let Err(e) = serve_one(stream, &state) {
                        eprintln!("lazyfs: control connection: {e}");
                    }
                })
        });
        if let Err(e) = served {
            eprintln!("lazyfs: control socket: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands_and_refuses_the_rest() {
        assert_eq!(parse(" cut  drop\n").ok(), Some(Command::Cut(Cut::Drop)));
        assert_eq!(parse("cut torn 7").ok(), Some(Command::Cut(Cut::Torn(7))));
        assert_eq!(
            parse("cut reorder 9").ok(),
            Some(Command::Cut(Cut::Reorder(9)))
        );
        assert_eq!(parse("stats").ok(), Some(Command::Stats));
        assert_eq!(parse("sync").ok(), Some(Command::Sync));
        let state = Mutex::new(State::new(std::env::temp_dir()));
        assert_eq!(
            execute("cut torn x", &state),
            "err bad seed \"x\": invalid digit found in string"
        );
        assert_eq!(execute("fly", &state), "err unknown command \"fly\"");
        assert_eq!(execute("cut drop", &state), "ok dropped=0 bytes=0 files=0");
        assert_eq!(
            execute("stats", &state),
            "ok pending_writes=0 pending_bytes=0 syncs=0 cuts=1"
        );
    }
}
