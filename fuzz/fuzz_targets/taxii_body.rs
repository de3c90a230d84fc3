//! A TAXII add-objects body of any content, read as the gateway's inbox reads it: the
//! envelope, each object's identity, the TLP and kind they make, and each object marked
//! as it would be served. Nothing may panic; a served object always carries one TLP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use renkei::bulletin::Tlp;
use renkei::stix::{self, StixObject};

fuzz_target!(|data: &[u8]| {
    let _ = stix::bundle_objects(data);
    let Ok(envelope) = stix::envelope(data) else { return };
    let objects: Vec<StixObject> = envelope
        .objects
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| StixObject::from_json(i, o).ok())
        .collect();
    let tlp = stix::strictest_tlp(&objects).unwrap_or(Tlp::Red);
    let _ = stix::kind_of(&objects);
    for o in objects {
        let served = stix::with_tlp(o.json, tlp);
        if served.get("type").and_then(|t| t.as_str()) == Some("marking-definition") {
            continue;
        }
        let Some(refs) = served.get("object_marking_refs").and_then(|r| r.as_array()) else {
            continue; // not an object (a list or a number with a type field cannot be)
        };
        let tlps = refs
            .iter()
            .filter(|r| r.as_str().and_then(stix::tlp_of_marking).is_some())
            .count();
        assert_eq!(tlps, 1, "{served}");
    }
});
