use super::*;
use crate::event::{identify, AuditEvent, Provider};
use crate::format::{Format, FormatOptions};
use serde_json::Value;
use std::io::Read;

fn enc(format: Format) -> Encoder {
    Encoder::new(
        format,
        FormatOptions {
            ecs_namespace: "default".into(),
            include_original: false,
            hostname: "fwd01".into(),
            timestamp_field: false,
        },
    )
}

fn run(format: Format, input: &str) -> Result<(usize, String), PreviewError> {
    let mut out = Vec::new();
    let n = preview(
        &enc(format),
        &OrgRef::new(Provider::Gh, "acme"),
        input.as_bytes(),
        &mut out,
        1_000,
    )?;
    Ok((n, String::from_utf8(out).unwrap()))
}

/// Runs preview on input that must fail: the error and what was written before it.
fn run_to_error(format: Format, input: &[u8]) -> (PreviewError, Vec<u8>) {
    let mut out = Vec::new();
    let err = preview(
        &enc(format),
        &OrgRef::new(Provider::Gh, "acme"),
        input,
        &mut out,
        0,
    )
    .unwrap_err();
    (err, out)
}

const E1: &str =
    r#"{"timestamp":"2024-07-01T09:45:30.656Z","action":"user.login","result":"succeed"}"#;
const E2: &str = r#"{"timestamp":"2024-07-01T09:45:31.000Z","action":"user.tokens.create"}"#;

#[test]
fn all_three_shapes_give_the_same_records() {
    let array = format!("[{E1},\n {E2}]");
    let envelope = format!(
        "{{\"data\": [{E1}, {E2}], \"pagination\": {{\"cursor\": \"MjUw\", \"limit\": 2}}}}"
    );
    let ndjson = format!("{E1}\n\n{E2}\n");
    for format in [Format::Json, Format::Ecs, Format::Cef] {
        let a = run(format, &array).unwrap();
        let b = run(format, &envelope).unwrap();
        let c = run(format, &ndjson).unwrap();
        assert_eq!(a.0, 2);
        assert_eq!(a, b, "{format}");
        assert_eq!(a, c, "{format}");
        let lines: Vec<&str> = a.1.lines().collect();
        assert_eq!(lines.len(), 2);
        // In input order.
        assert!(lines[0].contains("user.login"), "{}", lines[0]);
    }
}

#[test]
fn identical_events_get_distinct_ids_like_the_agent() {
    let (n, out) = run(Format::Json, &format!("{E1}\n{E1}\n")).unwrap();
    assert_eq!(n, 2);
    let ids: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].to_string())
        .collect();
    assert_ne!(ids[0], ids[1]);
    let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
    let expected = identify(
        &org,
        vec![
            AuditEvent::from_value(serde_json::from_str(E1).unwrap()).unwrap(),
            AuditEvent::from_value(serde_json::from_str(E1).unwrap()).unwrap(),
        ],
        0,
    );
    assert_eq!(ids[0], format!("\"{}\"", expected[0].id));
    assert_eq!(ids[1], format!("\"{}\"", expected[1].id));
}

#[test]
fn an_event_with_a_data_array_is_not_taken_for_a_page() {
    let ev = r#"{"timestamp": 1, "action": "x.y", "data": [1]}"#;
    let (n, out) = run(Format::Json, &format!("{ev}\n{ev}\n")).unwrap();
    assert_eq!(n, 2);
    assert!(out.contains(r#""data":[1]"#));
}

#[test]
fn empty_inputs_are_fine() {
    assert_eq!(run(Format::Cef, "").unwrap().0, 0);
    assert_eq!(run(Format::Cef, "  \n").unwrap().0, 0);
    assert_eq!(run(Format::Cef, "[]").unwrap().0, 0);
    assert_eq!(run(Format::Cef, r#"{"data": []}"#).unwrap().0, 0);
    assert_eq!(run(Format::Cef, &format!("\u{feff}{E1}")).unwrap().0, 1);
}

#[test]
fn ndjson_errors_name_the_line() {
    let input = format!("{E1}\n{E2}\n{{\"action\": \"user.login\"}}\n");
    let err = run(Format::Cef, &input).unwrap_err();
    assert!(matches!(
        err,
        PreviewError::Event {
            index: 3,
            shape: InputShape::Ndjson,
            source: EventParseError::MissingTimestamp,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("line 3, column 1"), "{msg}");
    assert!(msg.contains("no `timestamp`"), "{msg}");

    // One event per line: an unfinished one is reported on its own line, after the record
    // of the good one before it.
    let input = format!("{E1}\n{{\"timestamp\": 1,\n");
    let (err, out) = run_to_error(Format::Cef, input.as_bytes());
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PreviewError::Json {
                line: 2,
                column: 16,
                ..
            }
        ),
        "{msg} / {err:?}"
    );
    assert!(msg.contains("EOF"), "{msg}");
    assert!(
        msg.ends_with("the record of the 1 event before it was written"),
        "{msg}"
    );
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);

    let err = run(Format::Cef, &format!("{E1}\n{E2} garbage\n")).unwrap_err();
    assert!(matches!(err, PreviewError::Json { line: 2, .. }), "{err:?}");
}

#[test]
fn array_and_envelope_errors_name_line_and_column() {
    let input = format!("[\n  {E1},\n  {{\"timestamp\": \"yesterday\", \"action\": \"a\"}}\n]");
    let err = run(Format::Json, &input).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            PreviewError::Event {
                index: 2,
                shape: InputShape::Array,
                position: Position {
                    line: 3,
                    column: 3,
                    ..
                },
                source: EventParseError::BadTimestamp(_),
                written: Written(1),
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains("neither RFC 3339"), "{msg}");

    let input = format!("{{\"data\": [{E1}, 42, {E2}]}}");
    let err = run(Format::Json, &input).unwrap_err();
    match err {
        PreviewError::Event {
            index,
            shape,
            position,
            source,
            written,
        } => {
            assert_eq!((index, shape), (2, InputShape::Envelope));
            assert_eq!(written, Written(1));
            assert_eq!(position.offset, input.find("42").unwrap());
            assert_eq!(source, EventParseError::NotAnObject("a number"));
        }
        other => panic!("{other:?}"),
    }

    // Syntax error in an array: exact line and column from the parser.
    let err = run(Format::Json, "[\n{\"a\": 1,}\n]").unwrap_err();
    assert!(
        matches!(
            err,
            PreviewError::Json {
                line: 2,
                column: 9,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("invalid JSON at line 2, column 9"));
}

#[test]
fn not_utf8_is_reported_with_its_offset() {
    let (err, out) = run_to_error(Format::Json, &b"[\xff]"[..]);
    assert!(matches!(err, PreviewError::NotUtf8 { offset: 1, .. }));
    assert!(out.is_empty());
}

#[test]
fn a_large_ndjson_input_streams_in_order_with_the_agents_ids() {
    // Enough lines for many batches, with copies of one event far apart (other batches,
    // other workers).
    let mut input = String::new();
    let mut events = Vec::new();
    for i in 0..6000 {
        let line = if i % 1000 == 7 {
            E1.to_string()
        } else {
            format!(
                r#"{{"timestamp":{i},"action":"a.update","pad":"{:0>200}"}}"#,
                i
            )
        };
        input.push_str(&line);
        input.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
        events.push(AuditEvent::from_value(serde_json::from_str(&line).unwrap()).unwrap());
    }
    assert!(input.len() > 2 * BATCH_BYTES);
    let (n, out) = run(Format::Json, &input).unwrap();
    assert_eq!(n, 6000);
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, rec) in got.iter().enumerate() {
        if i % 1000 != 7 {
            assert_eq!(rec["timestamp"], Value::from(i), "record {i}");
        }
    }
    let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
    let mut expected: Vec<String> = identify(&org, events, 0)
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    ids.sort();
    assert_eq!(ids, expected);
}

#[test]
fn a_bad_line_in_a_later_batch_is_named_after_the_records_before_it() {
    let mut input = String::new();
    for i in 0..3000 {
        input.push_str(&format!(
            r#"{{"timestamp":{i},"action":"a.b","pad":"{:0>300}"}}"#,
            0
        ));
        input.push('\n');
    }
    let offset = input.len();
    input.push_str("  {\"action\": \"a\"}\n");
    input.push_str(E1);
    let (err, out) = run_to_error(Format::Cef, input.as_bytes());
    match &err {
        PreviewError::Event {
            index,
            position,
            written,
            ..
        } => {
            assert_eq!(*index, 3001);
            assert_eq!(
                *position,
                Position {
                    line: 3001,
                    column: 3,
                    offset: offset + 2
                }
            );
            assert_eq!(*written, Written(3000));
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .ends_with("the records of the 3000 events before it were written"));
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3000);

    // Bad UTF-8 on line 3: the two lines before it are written.
    let input = [E1.as_bytes(), b"\n", E2.as_bytes(), b"\n{\"a\xff\": 1}\n"].concat();
    let (err, out) = run_to_error(Format::Cef, &input);
    let bad = input.iter().position(|&b| b == 0xff).unwrap();
    assert!(
        matches!(err, PreviewError::NotUtf8 { offset, written: Written(2) } if offset == bad),
        "{err:?}"
    );
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
}

#[test]
fn a_byte_order_mark_counts_as_one_column_of_line_one() {
    let err = run(Format::Json, "\u{feff}{\"action\": \"a\"}\n").unwrap_err();
    assert!(
        matches!(
            &err,
            PreviewError::Event {
                index: 1,
                position: Position {
                    line: 1,
                    column: 2,
                    offset: 3
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn pretty_printed_events_one_after_another_work() {
    let pretty =
        |e: &str| serde_json::to_string_pretty(&serde_json::from_str::<Value>(e).unwrap()).unwrap();
    let input = format!("{}\n{}\n{}\n", pretty(E1), pretty(E2), pretty(E1));
    let (n, out) = run(Format::Json, &input).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        out,
        run(Format::Json, &format!("{E1}\n{E2}\n{E1}\n")).unwrap().1
    );
}

/// Many batches of awkward events (quotes, brackets, commas, backslashes and newlines in
/// strings, identical copies far apart): every shape gives the NDJSON records, in order.
#[test]
fn large_arrays_and_pages_stream_like_ndjson() {
    use crate::simulator::{generate_events, GenOptions};
    let mut events = generate_events(5, 12_000, 0, 86_400_000, &GenOptions::tricky());
    for i in [10, 5000, 11_900] {
        events.insert(i, events[3].clone());
    }
    events.push(serde_json::json!({"timestamp": 7, "action": "a.b",
            "details": {"s": "],[\"\\\"}{,\n", "n": [[], {}]}}));
    let ndjson: String = events.iter().map(|e| format!("{e}\n")).collect();
    let array = serde_json::to_string(&events).unwrap();
    assert!(array.len() > 4 * BATCH_BYTES, "{}", array.len());
    let pretty = serde_json::to_string_pretty(&events).unwrap();
    let page = format!(
            "{{\"pagination\": {{\"cursor\": \"x]\", \"total\": [1]}},\n \"data\": {array} , \"more\": {{\"a\": \"}}\"}}}}\n"
        );
    for format in [Format::Json, Format::Cef] {
        let want = run(format, &ndjson).unwrap();
        assert_eq!(want.0, events.len());
        for (name, input) in [("array", &array), ("pretty", &pretty), ("page", &page)] {
            assert!(run(format, input).unwrap() == want, "{name} {format}");
        }
    }
}

/// A reader that serves a long array, then fails.
struct FailingAfter(Vec<u8>, usize);

impl Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1 >= self.0.len() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

#[test]
fn an_array_is_encoded_as_it_is_read_not_after() {
    let mut input = String::from("[");
    for i in 0..60_000 {
        input.push_str(&format!(
            r#"{{"timestamp":{i},"action":"a.b","pad":"{:0>100}"}},"#,
            i
        ));
    }
    let mut out = Vec::new();
    let err = preview(
        &enc(Format::Json),
        &OrgRef::new(Provider::Gh, "acme"),
        std::io::BufReader::new(FailingAfter(input.into_bytes(), 0)),
        &mut out,
        0,
    )
    .unwrap_err();
    assert!(matches!(err, PreviewError::Read(_)), "{err:?}");
    // Records went out while the input was still being read.
    let lines = String::from_utf8(out).unwrap();
    assert!(lines.lines().count() > 10_000, "{}", lines.lines().count());
    assert!(lines.starts_with(r#"{"timestamp":0,"#));
}

#[test]
fn broken_arrays_and_pages_name_the_place() {
    let err = run(Format::Json, &format!("[{E1},\n{E2},]")).unwrap_err();
    assert!(
        matches!(
            err,
            PreviewError::Json {
                line: 2,
                written: Written(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("trailing comma"), "{err}");
    let err = run(Format::Json, &format!("[{E1}, {E2}")).unwrap_err();
    assert!(err.to_string().contains("ends inside the array"), "{err}");
    let err = run(Format::Json, &format!("{{\"data\": [{E1}]")).unwrap_err();
    assert!(err.to_string().contains("ends inside the page"), "{err}");
    let err = run(Format::Json, &format!("[{E1}] x")).unwrap_err();
    assert!(
        matches!(
            err,
            PreviewError::Json {
                line: 1,
                written: Written(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn position_counts_characters() {
    let p = position("é\nab", 4);
    assert_eq!((p.line, p.column, p.offset), (2, 2, 4));
    let p = position("éx", 2);
    assert_eq!((p.line, p.column), (1, 2));
}

proptest::proptest! {
    #[test]
    fn an_event_parses_to_what_serde_json_gives(v in crate::event::tests::arb_json(), cut in 0usize..200) {
        let text = serde_json::to_string(&v).unwrap();
        // (serde_json's float parsing does not round-trip every f64: compared with its parse.)
        let parsed = serde_json::from_str::<Value>(&text).unwrap();
        proptest::prop_assert_eq!(parse::event_value(&text).unwrap(), parsed);
        // Broken text fails with serde_json's error, and repeated keys keep the first place.
        let cut = &text[..text.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(text.len())];
        for text in [cut.to_string(), format!("{text} x"), text.replace(':', ": 1,\"a\":")] {
            let ours = parse::event_value(&text).map_err(|e| e.to_string());
            let theirs = serde_json::from_str::<Value>(&text).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}

#[test]
fn a_raw_value_marker_key_parses_as_serde_json_parses_it() {
    for text in [
        r#"{"$serde_json::private::RawValue": "[1, 2]"}"#,
        r#"{"$serde_json::private::RawValue": "nope"}"#,
    ] {
        let ours = parse::event_value(text).map_err(|e| e.to_string());
        let theirs = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
        assert_eq!(ours, theirs);
    }
}
