//! `format = "ecs"` (skeleton; the formats work implements the full mapping).

use super::FormatOptions;
use crate::event::IdentifiedEvent;
use serde_json::json;

pub fn encode(event: &IdentifiedEvent, options: &FormatOptions, out: &mut Vec<u8>) {
    let ts = chrono::DateTime::from_timestamp_millis(event.event.timestamp_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let doc = json!({
        "@timestamp": ts,
        "event": {"action": event.event.action, "id": event.id.as_str()},
        "data_stream": {"type": "logs", "dataset": "codacy.audit", "namespace": options.ecs_namespace},
    });
    let _ = serde_json::to_writer(&mut *out, &doc);
}

/// `data_stream.namespace` rules: lowercase, no `-`, at most 100 characters, none of
/// `\ / * ? " < > | , #` or space.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 100 {
        return Err(format!("{ns:?} must be 1 to 100 characters"));
    }
    if let Some(c) = ns.chars().find(|c| {
        c.is_uppercase()
            || matches!(
                c,
                '-' | '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' '
            )
    }) {
        return Err(format!(
            "{ns:?} contains {c:?}; a data stream namespace is lowercase without - \\ / * ? \" < > | , # or spaces"
        ));
    }
    Ok(())
}
