//! renkei (連携): a secure information-sharing broker for signed cyber-threat bulletins.
//!
//! The crate is a pure core (bulletins, identities, policy, audit) wrapped in a thin
//! shell (QUIC transport, sled storage, CLI). `ARCHITECTURE.md` is the map of both,
//! `proto/README.md` the wire protocol.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod bulletin;
mod cli;
pub mod client;
pub mod config;
pub mod files;
pub mod identity;
pub mod inbox;
pub mod metrics;
pub mod misp;
pub mod node;
pub mod pki;
pub mod policy;
pub mod proto;
pub mod receipt;
pub mod stix;
pub mod store;
pub mod text;
pub mod timestamp;
pub mod transport;
mod wire;

/// The `renkei` command line, as the binary runs it: parses the arguments, runs the
/// command and says how it ended. The commands themselves are not a library API.
pub fn run_command_line() -> std::process::ExitCode {
    cli::main()
}
