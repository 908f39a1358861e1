//! `format = "csv"`: one RFC 4180 row per event, with the columns of Codacy's documented jq export
//! (`[.actor, .action, .timestamp, .result, .source, .repositoryName, .requestDetails] | @csv`),
//! for auditors who open the audit log in a spreadsheet.
//!
//! - Each column is the event's field as received: a string as is, a number or boolean as its
//!   JSON text, an object or array (an `actor` object, `details`) as compact JSON, nothing when the
//!   field is absent or null. `details` falls back to the older `requestDetails`.
//! - RFC 4180 quoting: a field holding a comma, a double quote, CR or LF is quoted and its quotes
//!   doubled; an empty string is written `""` so that it differs from an absent field.
//! - A record may hold line breaks inside quotes (RFC 4180 allows them); it never ends with one.
//!   The header line ([`HEADER`]) is written by whoever starts a file (`export`, the file sink).

use crate::event::{write_json, IdentifiedEvent};
use serde_json::Value;

/// The column names, in order: the fields of Codacy's documented example.
pub const COLUMNS: [&str; 7] = [
    "actor",
    "action",
    "timestamp",
    "result",
    "source",
    "repositoryName",
    "details",
];

/// The header line, without its line feed.
pub const HEADER: &str = "actor,action,timestamp,result,source,repositoryName,details";

/// Appends the CSV row for `event` to `out` (no trailing line break).
pub fn encode(event: &IdentifiedEvent, out: &mut Vec<u8>) {
    // Room for a typical `actor` or `details` object, so it is written without regrowing.
    let mut scratch = Vec::with_capacity(256);
    for (i, column) in COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let value = match *column {
            "details" => event.event.details(),
            key => event.event.field(key),
        };
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => push_field(out, s.as_bytes()),
            Some(Value::Number(n)) => push_field(out, n.to_string().as_bytes()),
            Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Some(other) => {
                scratch.clear();
                write_json(other, &mut scratch);
                push_field(out, &scratch);
            }
        }
    }
}

/// Appends one field with RFC 4180 quoting (quoted only when needed, and when empty).
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs_quotes = field.is_empty()
        || field
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in field.iter().enumerate() {
        if b == b'"' {
            out.extend_from_slice(&field[start..=i]);
            out.push(b'"');
            start = i + 1;
        }
    }
    out.extend_from_slice(&field[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{identify, AuditEvent, OrgRef, Provider};
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    fn one(v: Value) -> IdentifiedEvent {
        let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
        identify(&org, vec![AuditEvent::from_value(v).unwrap()], 0).remove(0)
    }

    fn row(v: Value) -> String {
        let mut out = Vec::new();
        encode(&one(v), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Reads `text` (header and rows) with the `csv` crate, an independent RFC 4180 reader.
    fn read(text: &str) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn the_documented_columns_with_objects_as_json() {
        let line = row(json!({
            "timestamp": "2024-07-01T09:45:30.656Z", "action": "user.login",
            "actor": {"email": "a@b.c", "role": "organizationAdmin"}, "result": "succeed",
            "source": "UI", "requestDetails": {"ip": "10.0.0.1"}, "extra": 1,
        }));
        assert_eq!(
            line,
            r#""{""email"":""a@b.c"",""role"":""organizationAdmin""}",user.login,2024-07-01T09:45:30.656Z,succeed,UI,,"{""ip"":""10.0.0.1""}""#
        );
        let rows = read(&format!("{HEADER}\n{line}\n"));
        assert_eq!(rows[0], COLUMNS);
        assert_eq!(
            rows[1][0],
            r#"{"email":"a@b.c","role":"organizationAdmin"}"#
        );
        assert_eq!(rows[1][5], "");
    }

    #[test]
    fn an_empty_string_is_not_an_absent_field() {
        let line = row(json!({"timestamp": 5, "action": "a", "source": ""}));
        assert_eq!(line, r#",a,5,,"",,"#);
    }

    fn arb_field() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            any::<String>().prop_map(|s| Some(Value::from(s))),
            "[,\"\r\n a]{0,8}".prop_map(|s| Some(Value::from(s))),
            any::<i64>().prop_map(|n| Some(Value::from(n))),
            any::<bool>().prop_map(|b| Some(Value::from(b))),
            prop::collection::btree_map(any::<String>(), any::<String>(), 0..3)
                .prop_map(|m| Some(json!(m))),
        ]
    }

    proptest! {
        /// Whatever the fields hold, an RFC 4180 reader gets back each column's text exactly.
        #[test]
        fn rows_round_trip_through_an_rfc4180_reader(
            actor in arb_field(), result in arb_field(), source in arb_field(),
            repo in arb_field(), details in arb_field(),
            action in any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            ts in "2[0-9]{3}-0[1-9]-1[0-9]T0[0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}Z",
            rows in 1usize..4,
        ) {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), json!(ts));
            obj.insert("action".into(), json!(action));
            for (k, v) in [("actor", &actor), ("result", &result), ("source", &source),
                           ("repositoryName", &repo), ("details", &details)] {
                if let Some(v) = v {
                    obj.insert(k.into(), v.clone());
                }
            }
            let ev = one(Value::Object(obj));
            let mut text = format!("{HEADER}\r\n");
            for _ in 0..rows {
                let mut out = Vec::new();
                encode(&ev, &mut out);
                prop_assert!(!out.ends_with(b"\n"));
                text.push_str(std::str::from_utf8(&out).unwrap());
                text.push('\n');
            }
            let expected = |v: &Option<Value>| match v {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let want = vec![expected(&actor), action.clone(), ts.clone(), expected(&result),
                            expected(&source), expected(&repo), expected(&details)];
            let got = read(&text);
            prop_assert_eq!(got.len(), rows + 1);
            prop_assert_eq!(&got[0], &COLUMNS.map(String::from).to_vec());
            for r in &got[1..] {
                prop_assert_eq!(r, &want);
            }
        }
    }
}
