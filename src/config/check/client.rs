//! `check-config` on a desk's or an auditor's configuration (`[client]`): the same
//! checks of the CA, certificate, TLS key and signing key as a node's, the certificate
//! verified as its node would verify it. Pure but for [`gather`].

use super::{files, FileRead, Finding, Holder, NodeFiles};
use crate::config::ClientConfig;
use crate::timestamp::Timestamp;

/// Whether `text` is a client's configuration: it has a `[client]` table.
pub fn is_client(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("client"))
}

/// The shell: reads the files `[client]` names.
pub(super) fn gather(cfg: &ClientConfig) -> NodeFiles {
    let c = &cfg.client;
    NodeFiles {
        ca_cert: super::read_one(&c.ca_cert),
        tls_cert: super::read_one(&c.tls_cert),
        tls_key: super::read_one(&c.tls_key),
        signing_key: c
            .signing_key
            .as_deref()
            .map_or(FileRead::Missing, super::read_one),
        data_free: None,
    }
}

/// Every check of a client's configuration against the files read for it, at `now`.
pub fn check_client(cfg: &ClientConfig, files: &NodeFiles, now: Timestamp) -> Vec<Finding> {
    let c = &cfg.client;
    let holder = Holder {
        table: "client",
        id: &c.id,
        ca_cert: &c.ca_cert,
        tls_cert: &c.tls_cert,
        tls_key: &c.tls_key,
        signing_key: c.signing_key.as_deref(),
    };
    let mut out = Vec::new();
    files::check(&holder, files, now, &mut out);
    out
}
