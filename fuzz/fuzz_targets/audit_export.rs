//! An audit export file of any content, verified offline as `renkei audit verify` does
//! with the key it names. Nothing may panic; whatever verifies must be consistent.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use renkei::audit::export;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = export::parse(Bytes::copy_from_slice(data)) else { return };
    let Ok(key) = export::header_key(&parsed.header) else { return };
    if let Ok(summary) = export::verify(&parsed, &key, None) {
        assert!(summary.covered <= summary.records);
    }
});
