//! `format = "json"`: the Codacy event's own fields exactly as received, plus provenance.
//!
//! Added keys: `event_id` (stable id, the same in every format), `provider` (gh, gl, ...) and
//! `organization` (name). Should Codacy ever send a field of one of those names, the event's own
//! value is kept and the forwarder's goes to `forwarder_event_id` / `forwarder_provider` /
//! `forwarder_organization` instead, so nothing received is ever overwritten.

use crate::event::{write_json_map, write_json_str, IdentifiedEvent};

/// Appends the JSON record for `event` to `out` (one line, no trailing newline).
/// `timestamp_field`: start with `"@timestamp"` (the event time, RFC 3339 in ms) unless the event
/// has one, as Elasticsearch data streams require.
pub fn encode(event: &IdentifiedEvent, timestamp_field: bool, out: &mut Vec<u8>) {
    let raw = &event.event.raw;
    let start = out.len();
    write_json_map(raw, out);
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if timestamp_field && !raw.contains_key("@timestamp") {
        if let Some(time) = chrono::DateTime::from_timestamp_millis(event.event.timestamp_ms) {
            let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let mut head = Vec::with_capacity(40);
            head.extend_from_slice(b"{\"@timestamp\":");
            write_json_str(&mut head, &stamp);
            if out.len() > start + 1 {
                head.push(b',');
            }
            out.splice(start..start + 1, head);
        }
    }
    let mut first = out.len() == start + 1;
    let mut field = |key: &str, value: &str, out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
        if raw.contains_key(key) {
            write_json_str(out, &format!("forwarder_{key}"));
        } else {
            write_json_str(out, key);
        }
        out.push(b':');
        write_json_str(out, value);
    };
    field("event_id", event.id.as_str(), out);
    field("provider", event.org.provider.as_str(), out);
    field("organization", &event.org.name, out);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{identify, AuditEvent, OrgRef, Provider};
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn one(v: Value) -> IdentifiedEvent {
        let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
        identify(&org, vec![AuditEvent::from_value(v).unwrap()], 0).remove(0)
    }

    #[test]
    fn keeps_fields_in_order_and_adds_provenance() {
        let ev = one(
            json!({"timestamp": "2024-07-01T09:45:30.656Z", "action": "user.login",
                            "zeta": {"k": [1, null]}, "actor": "a@b.c"}),
        );
        let mut out = Vec::new();
        encode(&ev, false, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with(
            r#"{"timestamp":"2024-07-01T09:45:30.656Z","action":"user.login","zeta""#
        ));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["event_id"], json!(ev.id.as_str()));
        assert_eq!(parsed["provider"], json!("gh"));
        assert_eq!(parsed["organization"], json!("acme"));
    }

    #[test]
    fn never_overwrites_a_received_field() {
        let ev = one(json!({"timestamp": 1, "action": "a", "organization": "theirs"}));
        let parsed: Value = serde_json::from_slice(&{
            let mut o = Vec::new();
            encode(&ev, false, &mut o);
            o
        })
        .unwrap();
        assert_eq!(parsed["organization"], json!("theirs"));
        assert_eq!(parsed["forwarder_organization"], json!("acme"));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn output_is_one_line_and_parses_back_to_the_original_fields(
            extra in prop::collection::btree_map("[a-z]{1,8}", arb_json(), 0..5),
            action in ".+",
            ts in 0i64..4_102_444_800_000,
        ) {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), json!(ts));
            obj.insert("action".into(), json!(action));
            for (k, v) in extra { obj.entry(k).or_insert(v); }
            let ev = one(Value::Object(obj.clone()));
            let mut out = Vec::new();
            encode(&ev, false, &mut out);
            prop_assert!(!out.contains(&b'\n') && !out.contains(&b'\r'));
            let parsed: serde_json::Map<String, Value> = serde_json::from_slice(&out).unwrap();
            for (k, v) in &obj {
                prop_assert_eq!(parsed.get(k), Some(v));
            }
            prop_assert_eq!(parsed.len(), obj.len() + 3);

            // For a data stream: the same record with `@timestamp` first, at the event's time.
            let mut stamped = Vec::new();
            encode(&ev, true, &mut stamped);
            let with: serde_json::Map<String, Value> = serde_json::from_slice(&stamped).unwrap();
            let want = chrono::DateTime::from_timestamp_millis(ev.event.timestamp_ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if obj.contains_key("@timestamp") {
                prop_assert_eq!(&stamped, &out);
            } else {
                let head: &[u8] = br#"{"@timestamp":"#;
                prop_assert!(stamped.starts_with(head));
                prop_assert_eq!(with.get("@timestamp"), Some(&json!(want)));
                prop_assert_eq!(with.len(), parsed.len() + 1);
            }
        }
    }
}
