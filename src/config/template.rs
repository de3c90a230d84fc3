//! A new node's or desk's configuration, written for its operator to read: the fields
//! a first run needs, each with a comment, and paths relative to the file, laid out as
//! `renkei certs request --dir DIR` leaves a directory (`ca.crt`, `ID/tls.crt`, ...).
//! Pure: it returns text that parses; writing it is the caller's.

use std::path::Path;

use super::{ClientConfig, ConfigError, NodeConfig};
use crate::identity::{Affiliation, PartnerId};

/// A node's configuration: its own files under `ID/`, its data in `ID-data/`, the
/// admin listener when given. No partners yet: `renkei partner add` brings them.
pub fn node(
    id: &PartnerId,
    listen: &str,
    admin: Option<&str>,
    who: Option<Affiliation>,
) -> Result<String, ConfigError> {
    let who = match who {
        Some(Affiliation::Country(c)) => format!(
            "# Its country: partners of the same country are domestic in the figures.\n\
             country = \"{c}\"\n"
        ),
        Some(Affiliation::Organisation(o)) => format!(
            "# Its organisation: partners of the same one are its own in the figures.\n\
             organisation = \"{o}\"\n"
        ),
        None => String::new(),
    };
    let admin = admin
        .map(|a| {
            format!(
                "\n# /metrics, /healthz and /readyz over plain HTTP: keep it on loopback.\n\
                 [admin]\nlisten = \"{a}\"\n"
            )
        })
        .unwrap_or_default();
    let text = format!(
        "# renkei node {id}, written by `renkei config node`. Paths are relative to this\n\
         # file. Partners come with `renkei partner add --card …`; deploy/README.md says\n\
         # what every other table does.\n\n\
         [node]\n\
         id = \"{id}\"\n\
         # The UDP address partners reach (open it for UDP).\n\
         listen = \"{listen}\"\n\
         # The node's database: the only directory it writes to.\n\
         data_dir = \"{id}-data\"\n\
         # The federation CA, this node's certificate and key, and its signing key.\n\
         ca_cert = \"ca.crt\"\n\
         tls_cert = \"{id}/tls.crt\"\n\
         tls_key = \"{id}/tls.key\"\n\
         signing_key = \"{id}/signing.key\"\n{who}{admin}"
    );
    NodeConfig::parse(&text, Path::new("new.toml"))?;
    Ok(text)
}

/// A desk's (`signing = true`) or an auditor's configuration for the node `node_id`
/// at `server`. No origins yet: `renkei partner add --card …` on this file adds them.
pub fn client(
    id: &PartnerId,
    node_id: &PartnerId,
    server: &str,
    signing: bool,
) -> Result<String, ConfigError> {
    let (what, key) = match signing {
        true => (
            "desk",
            format!("# The key this desk signs its bulletins with.\nsigning_key = \"{id}/signing.key\"\n"),
        ),
        false => ("auditor", String::new()),
    };
    let text = format!(
        "# renkei {what} {id} of node {node_id}, written by `renkei config {what}`. Paths are\n\
         # relative to this file. The node must list {id} as a partner.\n\n\
         [client]\n\
         id = \"{id}\"\n\
         # The node's UDP address and its partner id (checked against its certificate).\n\
         server = \"{server}\"\n\
         server_name = \"{node_id}\"\n\
         ca_cert = \"ca.crt\"\n\
         tls_cert = \"{id}/tls.crt\"\n\
         tls_key = \"{id}/tls.key\"\n{key}"
    );
    ClientConfig::parse(&text, Path::new("new.toml"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PartnerId {
        s.parse().unwrap()
    }

    #[test]
    fn new_configurations_parse_and_name_the_files_certs_request_writes() {
        let jp = Some(Affiliation::Country("JP".parse().unwrap()));
        let text = node(&pid("jp-mod"), "127.0.0.1:4501", Some("127.0.0.1:9464"), jp).unwrap();
        let cfg = NodeConfig::parse_at(&text, Path::new("tokyo/jp-mod.toml")).unwrap();
        assert_eq!(cfg.node.tls_cert, Path::new("tokyo/jp-mod/tls.crt"));
        assert!(cfg.partners.is_empty());
        assert_eq!(cfg.node.country.map(|c| c.to_string()), Some("JP".into()));
        assert!(text.contains("[admin]"), "{text}");

        let desk = client(&pid("jp-cdc"), &pid("jp-mod"), "127.0.0.1:4501", true).unwrap();
        let cfg = ClientConfig::parse(&desk, Path::new("tokyo/jp-cdc.toml")).unwrap();
        assert_eq!(cfg.client.server_name, pid("jp-mod"));
        assert!(cfg.client.signing_key.is_some());
        let auditor = client(&pid("jp-audit"), &pid("jp-mod"), "127.0.0.1:4501", false).unwrap();
        assert!(!auditor.contains("signing_key"), "{auditor}");
        assert!(node(&pid("jp-mod"), "not an address", None, None).is_err());
    }
}
