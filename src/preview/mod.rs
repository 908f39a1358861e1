//! `preview`: encode Codacy events from a file or stdin the way the agent would, without sending
//! anything. Useful to check a SIEM parser against real output before going live.
//!
//! Accepted input (detected from the content; the shapes Codacy's audit endpoint has returned):
//! - a JSON array of events (`[...]`);
//! - a v3 page `{"data": [...], "pagination": {...}}`;
//! - NDJSON: one event per line (pretty-printed objects one after another work too).
//!
//! Records come out in input order. Ids are the agent's: byte-identical events get occurrence
//! numbers 0, 1, ... in the order they appear ([`StreamIdentifier`]), which gives the same ids
//! [`crate::event::identify`] gives one fetch.
//!
//! Every shape streams with bounded memory: NDJSON is read in batches of lines; a JSON array or
//! a page's `data` array is cut into batches of whole elements as it is read (a byte scan for
//! the commas and brackets outside strings, [`Splitter`]), so a page straight from the API, one
//! line of any size, is never held whole. Batches are parsed and encoded by [`WORKERS`] threads
//! and written in order; only the duplicate counter grows (a few dozen bytes per distinct
//! event). Only a sequence of pretty-printed events (an object spread over lines, then another)
//! is read whole. Events are checked as they stream: at a bad event, the records of the events
//! before it have been written and the error names the bad one.
//!
//! CSV output starts with its header line.

mod batch;
mod parse;
mod splitter;
mod stream;
mod whole;

use crate::event::{EventKey, EventParseError, IdSeed, IdentifiedEvent, OrgRef};
use crate::format::Encoder;
use batch::{read_batch, read_more};
use serde::Deserialize;
use serde_json::value::RawValue;
use splitter::{envelope_data_start, stream_elements};
use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, Write};
use std::sync::Arc;
use stream::stream_ndjson;
use whole::encode_whole;

/// Threads that parse and encode NDJSON batches while the caller's thread reads and writes.
pub const WORKERS: usize = 2;
/// Batches queued per worker: enough to keep it busy while the writer catches up, few enough to
/// keep memory at a few MB.
const DEPTH: usize = 2;
/// A batch holds whole lines, at least this many bytes (about 500 typical events).
const BATCH_BYTES: usize = 512 * 1024;
const READ_CHUNK: usize = 128 * 1024;
/// Output is handed to the writer in pieces of about this size on the in-memory path.
const WRITE_CHUNK: usize = 64 * 1024;

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

/// What was written before an error, for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written(pub usize);

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("nothing was written"),
            1 => f.write_str("the record of the 1 event before it was written"),
            n => write!(f, "the records of the {n} events before it were written"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("could not read the input: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "the input is not UTF-8 (first bad byte at offset {offset}); save it as UTF-8 JSON; \
         {written}"
    )]
    NotUtf8 { offset: usize, written: Written },
    #[error(
        "invalid JSON at line {line}, column {column}: {message}; expected a JSON array of \
         events, a {{\"data\": [...]}} page, or one event per line (NDJSON); {written}"
    )]
    Json {
        line: usize,
        column: usize,
        message: String,
        written: Written,
    },
    #[error("event {index} of the {shape} at {position}: {source}; {written}")]
    Event {
        /// 1-based index of the event in the input.
        index: usize,
        shape: InputShape,
        position: Position,
        #[source]
        source: EventParseError,
        written: Written,
    },
    #[error("could not write the output: {0}")]
    Write(#[source] std::io::Error),
}

/// What encoding needs besides the event; shared by the workers.
struct Ctx<'a> {
    encoder: &'a Encoder,
    org: Arc<OrgRef>,
    fetched_at_ms: i64,
    /// The canonical JSON of the event being identified: one buffer for all (per worker).
    canonical: Cell<Vec<u8>>,
}

/// Why one event could not be encoded.
enum Bad {
    Json(serde_json::Error),
    Event(EventParseError),
}

impl<'a> Ctx<'a> {
    /// A copy for one worker thread, with its own `org`: every record clones and drops it, and
    /// threads sharing one reference count would contend for it.
    fn for_worker(&self) -> Ctx<'a> {
        Ctx {
            encoder: self.encoder,
            org: Arc::new(OrgRef::clone(&self.org)),
            fetched_at_ms: self.fetched_at_ms,
            canonical: Cell::default(),
        }
    }

    /// Parses, checks, identifies and encodes the event in `text`, appending its record and a line
    /// feed to `out`. `occurrence` gets the event's key and returns its occurrence number.
    fn encode(
        &self,
        text: &str,
        occurrence: impl FnOnce(EventKey) -> u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Bad> {
        let event = parse::event(text)?;
        let mut canonical = self.canonical.take();
        canonical.clear();
        event.write_canonical_json(&mut canonical);
        let seed = IdSeed::new(&self.org, &canonical);
        self.canonical.set(canonical);
        let (first, key) = seed.first();
        let occurrence = occurrence(key);
        let id = if occurrence == 0 {
            first
        } else {
            seed.id(occurrence)
        };
        let event = IdentifiedEvent {
            org: self.org.clone(),
            id,
            occurrence,
            fetched_at_ms: self.fetched_at_ms,
            event,
        };
        self.encoder.encode(&event, out);
        out.push(b'\n');
        Ok(())
    }
}

/// Reads events from `input`, encodes each with `encoder` and writes one record per line to `out`,
/// in input order. Returns how many records were written. Stops at the first bad event; the
/// records of the events before it have then been written (the error says how many).
pub fn preview(
    encoder: &Encoder,
    org: &OrgRef,
    mut input: impl BufRead,
    mut out: impl Write,
    fetched_at_ms: i64,
) -> Result<usize, PreviewError> {
    let ctx = Ctx {
        encoder,
        org: Arc::new(org.clone()),
        fetched_at_ms,
        canonical: Cell::default(),
    };
    if let Some(header) = encoder.format.header() {
        out.write_all(header.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(PreviewError::Write)?;
    }
    // A byte-order mark is not JSON; skip it but keep offsets relative to the real input.
    const BOM: &[u8] = "\u{feff}".as_bytes();
    // Arrays and pages are seen from their first bytes, before any whole line is read (a page
    // straight from the API is one line of any size).
    let mut head = Vec::new();
    let mut at = 0;
    let first_byte = loop {
        let body = head.strip_prefix(BOM).unwrap_or(&head);
        // (A byte-order mark cut by a short read is read on.)
        let partial_bom = head.len() < BOM.len() && BOM.starts_with(&head);
        if let Some(&b) = body.iter().find(|b| !b.is_ascii_whitespace()) {
            if !partial_bom {
                break Some(b);
            }
        }
        if read_more(&mut input, &mut head).map_err(PreviewError::Read)? == 0 {
            break None;
        }
    };
    let body_start = if head.starts_with(BOM) { 3 } else { 0 };
    if let Some(b) = first_byte {
        at = body_start + head[body_start..].iter().position(|&c| c == b).unwrap_or(0);
    }
    let elements = match first_byte {
        Some(b'[') => Some((InputShape::Array, at + 1)),
        Some(b'{') => envelope_data_start(&mut input, &mut head, at)
            .map_err(PreviewError::Read)?
            .map(|start| (InputShape::Envelope, start)),
        _ => None,
    };
    if let Some((shape, start)) = elements {
        return stream_elements(&ctx, input, out, head, body_start, shape, start);
    }
    let mut first = Vec::new();
    let mut carry = head;
    let mut eof = read_batch(&mut input, &mut first, &mut carry).map_err(PreviewError::Read)?;
    // The shape shows at the first non-blank byte; a blank first batch is extended until it does.
    let blank = |b: &[u8]| {
        b.strip_prefix(BOM)
            .unwrap_or(b)
            .trim_ascii_start()
            .is_empty()
    };
    while !eof && blank(&first) {
        let mut more = Vec::new();
        eof = read_batch(&mut input, &mut more, &mut carry).map_err(PreviewError::Read)?;
        first.extend_from_slice(&more);
    }
    let bom = first.starts_with(BOM);
    let body_start = if bom { 3 } else { 0 };
    let body = &first[body_start..];
    let lead = body.len() - body.trim_ascii_start().len();
    let streamable = match body.get(lead) {
        None => true,
        Some(b'[') => false,
        Some(b'{') => {
            // One object per line is NDJSON, unless that object is a page; an object spread over
            // lines (pretty-printed) needs the whole-input parser.
            let line_end = body[lead..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(body.len(), |i| lead + i);
            std::str::from_utf8(&body[lead..line_end]).is_ok_and(|line| {
                serde_json::from_str::<&RawValue>(line).is_ok() && !is_envelope(line)
            })
        }
        Some(_) => true,
    };
    if streamable {
        return stream_ndjson(&ctx, input, out, first, carry, eof, body_start);
    }
    first.append(&mut carry);
    input.read_to_end(&mut first).map_err(PreviewError::Read)?;
    let text = std::str::from_utf8(&first).map_err(|e| PreviewError::NotUtf8 {
        offset: e.valid_up_to(),
        written: Written(0),
    })?;
    encode_whole(&ctx, text, body_start, &mut out)
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
mod tests;
