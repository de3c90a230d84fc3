//! renkei (連携): a secure information-sharing broker for signed cyber-threat bulletins.
//!
//! The crate is a pure core (bulletins, identities, policy, audit) wrapped in a thin
//! shell (QUIC transport, storage on fjall, CLI). `ARCHITECTURE.md` is the map of both,
//! `proto/README.md` the wire protocol.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// What other programs may use: the core (bulletins, identities, policy, the audit log
// and its metrics, receipts, STIX and MISP, the wire schema), a desk's `client`, the
// `config` a node runs on, a running `node`, and the development `pki`. `store`,
// `transport` and `files` are the shell's own: public only for the scenario tests
// and the fuzz targets, which open a node's database or speak raw frames, and hidden
// from the documentation.

pub mod audit;
pub mod bulletin;
mod cli;
pub mod client;
pub mod config;
#[doc(hidden)]
pub mod files;
pub mod identity;
pub(crate) mod inbox;
pub mod metrics;
pub mod misp;
pub mod node;
pub mod pki;
pub mod policy;
pub mod proto;
pub mod receipt;
pub mod stix;
#[doc(hidden)]
pub mod store;
pub(crate) mod text;
pub mod timestamp;
#[doc(hidden)]
pub mod transport;
mod wire;

/// The `renkei` command line, as the binary runs it: parses the arguments, runs the
/// command and says how it ended. The commands themselves are not a library API.
pub fn run_command_line() -> std::process::ExitCode {
    cli::main()
}
