//! Configuration fixtures built by code: a desk's or auditor's client configuration and a
//! node's `[node]` section, each with the paths `certs init` writes, so that a test names
//! only what differs from the usual file.

use std::fmt::{self, Display};
use std::path::Path;

/// A client configuration (`[client]` table, then any partner tables or raw text), as
/// [`client_toml`] starts it.
#[derive(Clone, Debug)]
pub struct ClientToml {
    id: String,
    server: String,
    node: String,
    signing: bool,
    rest: String,
}

/// The client configuration of `id` connecting to `node` at `server`, with its TLS
/// certificate and key under `certs/{id}/`.
pub fn client_toml(id: &str, server: impl Display, node: &str) -> ClientToml {
    ClientToml {
        id: id.to_string(),
        server: server.to_string(),
        node: node.to_string(),
        signing: false,
        rest: String::new(),
    }
}

impl ClientToml {
    /// Adds `signing_key = "certs/{id}/signing.key"` to the `[client]` table.
    pub fn signing(mut self) -> Self {
        self.signing = true;
        self
    }

    /// Adds a `[[partner]]` table trusting `origin`'s signing key `public_key`.
    pub fn trusting(self, origin: &str, public_key: &str) -> Self {
        self.with(&format!(
            "\n[[partner]]\nid = \"{origin}\"\nkeys = [{{ public = \"{public_key}\" }}]\n"
        ))
    }

    /// Appends `text` as it is (keys of the table it follows, or whole tables).
    pub fn with(mut self, text: &str) -> Self {
        self.rest += text;
        self
    }

    /// Writes the configuration to `dir/file`.
    pub fn write(&self, dir: &Path, file: &str) {
        std::fs::write(dir.join(file), self.to_string()).expect("the client configuration");
    }
}

impl Display for ClientToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            id, server, node, ..
        } = self;
        write!(
            f,
            "[client]\nid = \"{id}\"\nserver = \"{server}\"\nserver_name = \"{node}\"\n\
             ca_cert = \"certs/ca.crt\"\ntls_cert = \"certs/{id}/tls.crt\"\n\
             tls_key = \"certs/{id}/tls.key\"\n"
        )?;
        if self.signing {
            writeln!(f, "signing_key = \"certs/{id}/signing.key\"")?;
        }
        f.write_str(&self.rest)
    }
}

/// A node's configuration (`[node]` table, then any raw text), as [`node_toml`] starts it.
#[derive(Clone, Debug)]
pub struct NodeToml {
    id: String,
    listen: String,
    data_dir: String,
    rest: String,
}

/// The `[node]` section of `id`, listening on `127.0.0.1:0` with its data in `data` and
/// its certificates and keys under `certs/{id}/`.
pub fn node_toml(id: &str) -> NodeToml {
    NodeToml {
        id: id.to_string(),
        listen: "127.0.0.1:0".to_string(),
        data_dir: "data".to_string(),
        rest: String::new(),
    }
}

impl NodeToml {
    /// Puts the node's data in `dir` rather than `data`.
    pub fn data_dir(mut self, dir: impl Display) -> Self {
        self.data_dir = dir.to_string();
        self
    }

    /// Has the node listen on `addr` rather than `127.0.0.1:0`.
    pub fn listen(mut self, addr: impl Display) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Appends `text` as it is: more `[node]` keys, `[taxii]` sections, partner tables.
    pub fn with(mut self, text: &str) -> Self {
        self.rest += text;
        self
    }

    /// Writes the configuration to `dir/file`.
    pub fn write(&self, dir: &Path, file: &str) {
        std::fs::write(dir.join(file), self.to_string()).expect("the node configuration");
    }
}

impl Display for NodeToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            id,
            listen,
            data_dir,
            rest,
        } = self;
        write!(
            f,
            "[node]\nid = \"{id}\"\nlisten = \"{listen}\"\ndata_dir = \"{data_dir}\"\n\
             ca_cert = \"certs/ca.crt\"\ntls_cert = \"certs/{id}/tls.crt\"\n\
             tls_key = \"certs/{id}/tls.key\"\nsigning_key = \"certs/{id}/signing.key\"\n{rest}"
        )
    }
}
