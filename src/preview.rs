//! `preview`: encode Codacy events from a file or stdin the way the agent would, without sending
//! anything. Useful to check a SIEM parser against real output before going live.
//!
//! Accepted input (detected from the content, codacy-api.md "Response shapes"):
//! - a JSON array of events (`[...]`);
//! - a v3 page `{"data": [...], "pagination": {...}}`;
//! - NDJSON: one event per line (pretty-printed objects one after another work too).
//!
//! All events are identified together with [`crate::event::identify`], exactly as the agent does
//! for one fetch: they come out sorted by (timestamp, canonical JSON) and byte-identical events get
//! occurrence numbers 0, 1, ...

use crate::event::{identify, AuditEvent, EventParseError, OrgRef};
use crate::format::Encoder;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, Write};
use std::sync::Arc;

/// Where in the input an event starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// 0-based byte offset.
    pub offset: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {} (byte offset {})",
            self.line, self.column, self.offset
        )
    }
}

/// The input shape that was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    Array,
    Envelope,
    Ndjson,
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputShape::Array => "JSON array",
            InputShape::Envelope => "`data` array of the page",
            InputShape::Ndjson => "NDJSON input",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("could not read the input: {0}")]
    Read(#[source] std::io::Error),
    #[error("the input is not UTF-8 (first bad byte at offset {offset}); save it as UTF-8 JSON")]
    NotUtf8 { offset: usize },
    #[error(
        "invalid JSON at line {line}, column {column}: {message}; expected a JSON array of \
         events, a {{\"data\": [...]}} page, or one event per line (NDJSON)"
    )]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("event {index} of the {shape} at {position}: {source}")]
    Event {
        /// 1-based index of the event in the input.
        index: usize,
        shape: InputShape,
        position: Position,
        #[source]
        source: EventParseError,
    },
    #[error("could not write the output: {0}")]
    Write(#[source] std::io::Error),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// Reads events from `input`, encodes each with `encoder` and writes one record per line to `out`.
/// Returns how many records were written. Nothing is written when any event is bad.
pub fn preview(
    encoder: &Encoder,
    org: &OrgRef,
    mut input: impl BufRead,
    mut out: impl Write,
    fetched_at_ms: i64,
) -> Result<usize, PreviewError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(PreviewError::Read)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| PreviewError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    // A byte-order mark is not JSON; skip it but keep offsets relative to the real input.
    let body_start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let events = parse_events(text, body_start)?;
    let org = Arc::new(org.clone());
    let identified = identify(&org, events, fetched_at_ms);
    let mut buf = Vec::with_capacity(1024);
    for event in &identified {
        buf.clear();
        encoder.encode(event, &mut buf);
        buf.push(b'\n');
        out.write_all(&buf).map_err(PreviewError::Write)?;
    }
    out.flush().map_err(PreviewError::Write)?;
    Ok(identified.len())
}

/// Detects the input shape and parses every event, naming the position of the first bad one.
fn parse_events(text: &str, body_start: usize) -> Result<Vec<AuditEvent>, PreviewError> {
    let body = &text[body_start..];
    let first = body.trim_start().as_bytes().first().copied();
    // serde_json counts from the start of `body`; a skipped BOM is one character on line 1.
    let bom_columns = usize::from(body_start > 0);
    let json_err = |e: serde_json::Error| PreviewError::Json {
        line: e.line(),
        column: e.column() + if e.line() == 1 { bom_columns } else { 0 },
        message: strip_position(&e),
    };
    // Element positions are computed from where each raw value sits in `text`.
    let at = |raw: &str| position(text, raw.as_ptr() as usize - text.as_ptr() as usize);
    let from_raw = |shape, items: Vec<&RawValue>| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let value: Value = serde_json::from_str(raw.get()).map_err(json_err)?;
                AuditEvent::from_value(value).map_err(|source| PreviewError::Event {
                    index: i + 1,
                    shape,
                    position: at(raw.get()),
                    source,
                })
            })
            .collect()
    };
    match first {
        None => Ok(Vec::new()),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(body).map_err(json_err)?;
            from_raw(InputShape::Array, items)
        }
        Some(b'{') if is_envelope(body) => {
            let env: Envelope = serde_json::from_str(body).map_err(json_err)?;
            from_raw(InputShape::Envelope, env.data)
        }
        Some(_) => {
            let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Value>();
            let mut events = Vec::new();
            let mut end = 0;
            loop {
                // The next value starts after the whitespace that follows the previous one.
                let start = end + (body[end..].len() - body[end..].trim_start().len());
                match stream.next() {
                    None => break,
                    Some(Err(e)) => return Err(json_err(e)),
                    Some(Ok(value)) => {
                        end = stream.byte_offset();
                        let event = AuditEvent::from_value(value).map_err(|source| {
                            PreviewError::Event {
                                index: events.len() + 1,
                                shape: InputShape::Ndjson,
                                position: position(text, body_start + start),
                                source,
                            }
                        })?;
                        events.push(event);
                    }
                }
            }
            Ok(events)
        }
    }
}

/// Whether the first JSON value of `body` is a v3 page (an object with a `data` array and no
/// `action`) rather than an event. An unparsable first value is not a page: NDJSON parsing then
/// reports the error.
fn is_envelope(body: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
        #[serde(borrow)]
        action: Option<&'a RawValue>,
    }
    let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Probe>();
    matches!(
        stream.next(),
        Some(Ok(Probe { data: Some(d), action: None })) if d.get().starts_with('[')
    )
}

/// serde_json appends " at line L column C" to its messages; we report the position ourselves.
fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Line and column (1-based, column in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> Position {
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provider;
    use crate::format::{Format, FormatOptions};

    fn enc(format: Format) -> Encoder {
        Encoder::new(
            format,
            FormatOptions {
                ecs_namespace: "default".into(),
                include_original: false,
                hostname: "fwd01".into(),
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

    const E1: &str =
        r#"{"timestamp":"2024-07-01T09:45:30.656Z","action":"user.login","result":"succeed"}"#;
    const E2: &str = r#"{"timestamp":"2024-07-01T09:45:31.000Z","action":"user.tokens.create"}"#;

    #[test]
    fn all_three_shapes_give_the_same_records() {
        let array = format!("[{E2},\n {E1}]");
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
            // Sorted by timestamp, whatever the input order.
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

        let err = run(Format::Cef, &format!("{E1}\n{{\"timestamp\": 1,\n")).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, PreviewError::Json { line: 3, .. }),
            "{msg} / {err:?}"
        );
        assert!(msg.contains("EOF"), "{msg}");

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
                    source: EventParseError::BadTimestamp(_)
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
            } => {
                assert_eq!((index, shape), (2, InputShape::Envelope));
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
        let mut out = Vec::new();
        let err = preview(
            &enc(Format::Json),
            &OrgRef::new(Provider::Gh, "acme"),
            &b"[\xff]"[..],
            &mut out,
            0,
        )
        .unwrap_err();
        assert!(matches!(err, PreviewError::NotUtf8 { offset: 1 }));
        assert!(out.is_empty());
    }

    #[test]
    fn position_counts_characters() {
        let p = position("é\nab", 4);
        assert_eq!((p.line, p.column, p.offset), (2, 2, 4));
        let p = position("éx", 2);
        assert_eq!((p.line, p.column), (1, 2));
    }
}
