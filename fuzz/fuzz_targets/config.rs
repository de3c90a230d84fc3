//! A node configuration file of any content: parsed and validated as `renkei serve`
//! and `renkei check-config` do. Nothing may panic; an error names what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = renkei::config::NodeConfig::parse(text, std::path::Path::new("node.toml")) {
        assert!(!e.to_string().is_empty());
    }
});
