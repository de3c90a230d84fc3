//! Which checkpoint of the log witnesses cosigned, beside a metrics report: the newest,
//! its size and witnesses as it states them, and whether it covers every record the
//! report counts (`audit verify --witness` checks the cosignatures).

use serde_json::{json, Value};

use crate::proto;

/// The newest checkpoint of a stopped node's log that a witness cosigned.
pub(super) fn newest_cosigned(store: &crate::store::Store) -> anyhow::Result<Option<String>> {
    for c in store.audit().checkpoints().rev() {
        let (_, note) = c?;
        if !crate::audit::witness::cosignatures(&note).is_empty() {
            return Ok(Some(note));
        }
    }
    Ok(None)
}

/// The newest cosigned checkpoint as JSON: its size and its witnesses, as it states
/// them (`audit verify --witness` checks them).
pub(super) fn witnessed_json(note: &str) -> Value {
    let size = crate::audit::checkpoint::stated(note).map_or(0, |v| v.size);
    let by: Vec<String> = crate::audit::witness::cosignatures(note)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    json!({"size": size, "by": by})
}

/// Whether the records the report counts are covered by a checkpoint peers cosigned.
pub(super) fn witnessed_line(r: &proto::MetricsReport, note: Option<&str>) -> String {
    let Some(note) = note else {
        return "no checkpoint of this log is cosigned by a witness yet".into();
    };
    let w = witnessed_json(note);
    let size = w["size"].as_u64().unwrap_or(0);
    let by = w["by"].as_array().map_or(String::new(), |a| {
        a.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    });
    let covered = match size >= r.log_size {
        true => "covers every record counted",
        false => "does not yet cover every record counted",
    };
    format!("the newest checkpoint witnesses cosigned ({size} records, by {by}) {covered}")
}
