//! Envelopes: a record wrapped in what a destination's protocol puts around it, next to the
//! framings ([`super::framing`]) that put records one after another.
//!
//! - Splunk HEC event: `{"time":<epoch s.ms>,"host":..,"source":..,"sourcetype":..,"index":..,
//!   "fields":{"event_id":..,"organization":..},"event":<record>}` (`index` only when set), the record as a JSON object
//!   or, for text records, as a JSON string.
//! - Elasticsearch bulk `create`: an action line naming the data stream and the `_id`, then the
//!   document line.
//!
//! JSON here is written through [`serde_json::Value`]'s `Display`, which cannot fail: these
//! values hold only strings.

use super::framing;
use crate::sink::Payload;
use serde_json::{json, Value};

/// What every HEC event of one sink carries besides the record: `host`, `source`, `sourcetype`
/// and, when set, `index`, as JSON members ready to splice into an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecMeta(String);

impl HecMeta {
    pub fn new(host: &str, source: &str, sourcetype: &str, index: Option<&str>) -> HecMeta {
        let mut meta = json!({ "host": host, "source": source, "sourcetype": sourcetype });
        if let Some(index) = index {
            meta["index"] = index.into();
        }
        let text = meta.to_string();
        // `{...}` -> `...`, spliced after "time".
        HecMeta(text[1..text.len() - 1].to_string())
    }
}

/// The identity of one event in a HEC envelope's `fields` (indexed fields, searchable as
/// `event_id::<id>`).
pub struct HecEvent<'a> {
    pub time_ms: i64,
    pub event_id: &'a str,
    pub organization: &'a str,
    pub record: &'a [u8],
    pub payload: Payload,
}

/// Epoch milliseconds as HEC `time`: seconds with a 3-digit fraction.
pub fn hec_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// One HEC event envelope, appended to `out`.
pub fn hec_event(meta: &HecMeta, event: &HecEvent, out: &mut Vec<u8>) {
    let fields = json!({ "event_id": event.event_id, "organization": event.organization });
    out.extend_from_slice(b"{\"time\":");
    out.extend_from_slice(hec_time(event.time_ms).as_bytes());
    out.push(b',');
    out.extend_from_slice(meta.0.as_bytes());
    out.extend_from_slice(b",\"fields\":");
    out.extend_from_slice(fields.to_string().as_bytes());
    out.extend_from_slice(b",\"event\":");
    match event.payload {
        Payload::JsonObject => out.extend_from_slice(event.record),
        Payload::Text => {
            let text = Value::String(String::from_utf8_lossy(event.record).into_owned());
            out.extend_from_slice(text.to_string().as_bytes());
        }
    }
    out.push(b'}');
}

/// An Elasticsearch bulk `create` of `document` into `index` with `_id` = `id`: the action line
/// and the document line, each ending in `\n`, appended to `out`.
pub fn bulk_create(index: &str, id: &str, document: &[u8], out: &mut Vec<u8>) {
    let action = json!({ "create": { "_index": index, "_id": id } });
    framing::line(action.to_string().as_bytes(), out);
    framing::line(document, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_seconds_with_millis() {
        assert_eq!(hec_time(1_719_827_130_656), "1719827130.656");
        assert_eq!(hec_time(5), "0.005");
        assert_eq!(hec_time(-1), "-1.999");
    }

    #[test]
    fn hec_events_carry_objects_and_strings() {
        let meta = HecMeta::new("fwd-1", "codacy", "codacy:audit", Some("security"));
        let mut event = HecEvent {
            time_ms: 1_500,
            event_id: "e1",
            organization: "gh/acme",
            record: br#"{"a":1}"#,
            payload: Payload::JsonObject,
        };
        let mut out = Vec::new();
        hec_event(&meta, &event, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], json!(1.5));
        assert_eq!(v["index"], "security");
        assert_eq!(
            v["fields"],
            json!({"event_id": "e1", "organization": "gh/acme"})
        );
        assert_eq!(v["event"], json!({"a": 1}));
        event.record = b"CEF:0|\"x\"";
        event.payload = Payload::Text;
        let mut out = Vec::new();
        hec_event(&meta, &event, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "CEF:0|\"x\"");
    }

    #[test]
    fn bulk_create_is_an_action_line_and_a_document_line() {
        let mut out = Vec::new();
        bulk_create("logs-codacy.audit-default", "e1", b"{}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"create\":{\"_index\":\"logs-codacy.audit-default\",\"_id\":\"e1\"}}\n{}\n"
        );
    }
}
