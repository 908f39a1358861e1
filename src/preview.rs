//! `preview`: encode Codacy events from a file or stdin the way the agent would, without sending
//! anything. Useful to check a SIEM parser against real output before going live.
//!
//! Accepted input (detected from the content, codacy-api.md "Response shapes"):
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

use crate::event::StreamIdentifier;
use crate::event::{AuditEvent, EventKey, EventParseError, IdSeed, IdentifiedEvent, OrgRef};
use crate::format::Encoder;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

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

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// What encoding needs besides the event; shared by the workers.
struct Ctx<'a> {
    encoder: &'a Encoder,
    org: Arc<OrgRef>,
    fetched_at_ms: i64,
}

/// Why one event could not be encoded.
enum Bad {
    Json(serde_json::Error),
    Event(EventParseError),
}

impl Ctx<'_> {
    /// Parses, checks, identifies and encodes the event in `text`, appending its record and a line
    /// feed to `out`. `occurrence` gets the event's key and returns its occurrence number.
    fn encode(
        &self,
        text: &str,
        occurrence: impl FnOnce(EventKey) -> u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Bad> {
        let value: Value = serde_json::from_str(text).map_err(Bad::Json)?;
        let event = AuditEvent::from_value(value).map_err(Bad::Event)?;
        let seed = IdSeed::new(&self.org, &event.canonical_json());
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

/// Reads into `batch` (which first takes the partial line left in `carry`) until it holds at
/// least [`BATCH_BYTES`] ending with a line feed, or the input ends (returns true). A partial last
/// line goes back to `carry`.
fn read_batch(
    input: &mut impl Read,
    batch: &mut Vec<u8>,
    carry: &mut Vec<u8>,
) -> std::io::Result<bool> {
    batch.clear();
    batch.append(carry);
    loop {
        let start = batch.len();
        let n = read_more(input, batch)?;
        if n == 0 {
            return Ok(true);
        }
        if batch.len() >= BATCH_BYTES {
            // Only the new bytes are searched, so a very long line costs linear time.
            if let Some(i) = batch[start..].iter().rposition(|&b| b == b'\n') {
                carry.extend_from_slice(&batch[start + i + 1..]);
                batch.truncate(start + i + 1);
                return Ok(false);
            }
        }
    }
}

/// Whole lines of NDJSON, handed to a worker and back.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    /// Records, each ending with a line feed.
    out: Vec<u8>,
    events: Vec<Encoded>,
    /// Line feeds in `text`.
    lines: usize,
    failure: Option<Failure>,
    /// Arrays and pages: where each element is in `text` (NDJSON batches are split by lines).
    items: Option<Vec<std::ops::Range<usize>>>,
    /// A syntax error the splitter found after the last item.
    syntax: Option<Failure>,
}

/// One encoded event of a batch.
struct Encoded {
    key: EventKey,
    /// Where its text is in `Batch::text`.
    value: std::ops::Range<usize>,
    /// Where its record ends in `Batch::out`.
    out_end: usize,
}

/// The first problem in a batch; events before it are encoded.
struct Failure {
    /// 0-based line in the batch.
    line: usize,
    /// Byte offset in the batch where the event (or the bad byte) starts.
    offset: usize,
    /// 1-based column of that offset on its line.
    column: usize,
    problem: Problem,
}

enum Problem {
    NotUtf8,
    /// The structure of an array or page is broken (found while splitting it).
    Syntax(String),
    Json(serde_json::Error),
    Event(EventParseError),
}

/// JSON's whitespace (Rust's `trim` also takes Unicode spaces, which JSON rejects).
fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The worker's job: encode every line of `batch` up to the first problem, as if every event
/// were the first of its kind; the writer fixes up the rare repeated ones.
fn encode_batch(ctx: &Ctx, batch: &mut Batch) {
    batch.out.clear();
    batch.events.clear();
    batch.lines = 0;
    batch.failure = None;
    if batch.items.is_some() {
        encode_elements(ctx, batch);
        return;
    }
    // Lines before the first bad byte are encoded; the error then names the byte.
    let (valid, bad_byte) = match std::str::from_utf8(&batch.text) {
        Ok(t) => (t, None),
        Err(e) => {
            let upto = e.valid_up_to();
            // Cannot fail: the prefix up to valid_up_to is UTF-8.
            let prefix = std::str::from_utf8(&batch.text[..upto]).unwrap_or("");
            let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
            (
                &prefix[..line_start],
                Some((upto, prefix[line_start..].chars().count() + 1)),
            )
        }
    };
    let mut pos = 0;
    while pos < valid.len() {
        let end = valid[pos..].find('\n').map_or(valid.len(), |i| pos + i);
        let line = &valid[pos..end];
        let value = line.trim_start_matches(is_json_space);
        if !value.trim_end_matches(is_json_space).is_empty() {
            let start = end - value.len();
            let mut key = EventKey::default();
            let encoded = ctx.encode(
                value,
                |k| {
                    key = k;
                    0
                },
                &mut batch.out,
            );
            match encoded {
                Ok(()) => batch.events.push(Encoded {
                    key,
                    value: start..end,
                    out_end: batch.out.len(),
                }),
                Err(bad) => {
                    let (column, problem) = match bad {
                        Bad::Json(e) => (e.column() + (start - pos), Problem::Json(e)),
                        Bad::Event(e) => (start - pos + 1, Problem::Event(e)),
                    };
                    batch.failure = Some(Failure {
                        line: batch.lines,
                        offset: start,
                        column,
                        problem,
                    });
                    return;
                }
            }
        }
        if end < valid.len() {
            batch.lines += 1;
        }
        pos = end + 1;
    }
    if let Some((offset, column)) = bad_byte {
        batch.failure = Some(Failure {
            line: batch.lines,
            offset,
            column,
            problem: Problem::NotUtf8,
        });
    }
}

/// Writes finished batches in order, numbering repeated events and turning a batch's failure into
/// an error with its place in the whole input.
struct Writer<'a, 'b, W> {
    ctx: &'a Ctx<'b>,
    out: W,
    ident: StreamIdentifier,
    written: usize,
    /// Lines and bytes of the input before the next batch.
    lines: usize,
    offset: usize,
    /// A skipped byte-order mark is one character on line 1.
    bom: bool,
    scratch: Vec<u8>,
    shape: InputShape,
}

impl<W: Write> Writer<'_, '_, W> {
    fn write_batch(&mut self, b: &Batch) -> Result<(), PreviewError> {
        let mut from = 0;
        let mut prev_end = 0;
        for ev in &b.events {
            let occurrence = self.ident.occurrence(ev.key);
            if occurrence > 0 {
                // A repeat: its record carries another id, so it is encoded again.
                self.out
                    .write_all(&b.out[from..prev_end])
                    .map_err(PreviewError::Write)?;
                self.scratch.clear();
                let redone = std::str::from_utf8(&b.text[ev.value.clone()])
                    .ok()
                    .and_then(|v| self.ctx.encode(v, |_| occurrence, &mut self.scratch).ok());
                if redone.is_none() {
                    // Cannot happen: the same bytes were encoded a moment ago.
                    return Err(PreviewError::Read(std::io::Error::other(format!(
                        "event {} could not be encoded a second time",
                        self.written + 1
                    ))));
                }
                self.out
                    .write_all(&self.scratch)
                    .map_err(PreviewError::Write)?;
                from = ev.out_end;
            }
            prev_end = ev.out_end;
            self.written += 1;
        }
        self.out
            .write_all(&b.out[from..])
            .map_err(PreviewError::Write)?;
        if let Some(f) = &b.failure {
            return Err(self.error(f));
        }
        self.lines += b.lines;
        self.offset += b.text.len();
        Ok(())
    }

    fn error(&mut self, f: &Failure) -> PreviewError {
        let line = self.lines + f.line + 1;
        let column = f.column + usize::from(self.bom && line == 1);
        let written = Written(self.written);
        // What was written is no use if it does not reach its destination.
        let _ = self.out.flush();
        match &f.problem {
            Problem::NotUtf8 => PreviewError::NotUtf8 {
                offset: self.offset + f.offset,
                written,
            },
            Problem::Json(e) => PreviewError::Json {
                line,
                column,
                message: strip_position(e),
                written,
            },
            Problem::Syntax(message) => PreviewError::Json {
                line,
                column,
                message: message.clone(),
                written,
            },
            Problem::Event(source) => PreviewError::Event {
                index: self.written + 1,
                shape: self.shape,
                position: Position {
                    line,
                    column,
                    offset: self.offset + f.offset,
                },
                source: source.clone(),
                written,
            },
        }
    }
}

/// Appends one read of the input to `buf`; 0 at the end.
fn read_more(input: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let n = loop {
        match input.read(&mut buf[start..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    };
    buf.truncate(start + n);
    Ok(n)
}

/// The input read so far, extended on demand.
struct Head<'a, R> {
    input: &'a mut R,
    buf: &'a mut Vec<u8>,
}

impl<R: Read> Head<'_, R> {
    fn at(&mut self, i: usize) -> std::io::Result<Option<u8>> {
        while i >= self.buf.len() {
            if read_more(self.input, self.buf)? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[i]))
    }

    fn skip_space(&mut self, mut i: usize) -> std::io::Result<(usize, Option<u8>)> {
        loop {
            match self.at(i)? {
                Some(b) if b.is_ascii_whitespace() => i += 1,
                other => return Ok((i, other)),
            }
        }
    }

    /// The index after the JSON value starting at `i` (not validated: serde_json or the fallback
    /// parser reports what is wrong), or `None` at the end of the input.
    fn skip_value(&mut self, mut i: usize) -> std::io::Result<Option<usize>> {
        let (mut depth, mut in_str, mut esc) = (0u32, false, false);
        loop {
            let Some(b) = self.at(i)? else {
                return Ok(None);
            };
            if in_str {
                match b {
                    _ if esc => esc = false,
                    b'\\' => esc = true,
                    b'"' => {
                        in_str = false;
                        if depth == 0 {
                            return Ok(Some(i + 1));
                        }
                    }
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(Some(i + 1));
                        }
                    }
                    b',' | b']' | b'}' if depth == 0 => return Ok(Some(i)),
                    b if b.is_ascii_whitespace() && depth == 0 => return Ok(Some(i)),
                    _ => {}
                }
            }
            i += 1;
        }
    }
}

/// For input starting with an object at `open`: where the elements of its `data` array start
/// when it is a v3 page (a `data` array met before any `action` key, as [`is_envelope`] says),
/// reading only up to there. `None` for an event (or anything else), with what was read in
/// `head` for the other parsers.
fn envelope_data_start(
    input: &mut impl Read,
    head: &mut Vec<u8>,
    open: usize,
) -> std::io::Result<Option<usize>> {
    let mut h = Head { input, buf: head };
    let mut i = open + 1;
    loop {
        let (k, b) = h.skip_space(i)?;
        if b != Some(b'"') {
            return Ok(None);
        }
        let Some(key_end) = h.skip_value(k)? else {
            return Ok(None);
        };
        let key = h.buf[k..key_end].to_vec();
        let (colon, b) = h.skip_space(key_end)?;
        if b != Some(b':') {
            return Ok(None);
        }
        let (value, b) = h.skip_space(colon + 1)?;
        match (key.as_slice(), b) {
            (b"\"data\"", Some(b'[')) => return Ok(Some(value + 1)),
            (b"\"action\"", _) => return Ok(None),
            _ => {}
        }
        let Some(end) = h.skip_value(value)? else {
            return Ok(None);
        };
        match h.skip_space(end)? {
            (next, Some(b',')) => i = next + 1,
            _ => return Ok(None),
        }
    }
}

/// Cuts a JSON array (or a page's `data` array) into batches of whole elements as it is read:
/// a byte-level scan for the commas and brackets outside strings at the array's level; each
/// element is then parsed on a worker. Holds one batch and a partial element.
struct Splitter {
    shape: InputShape,
    /// Input not yet handed out; `buf[0]` is input byte `offset`.
    buf: Vec<u8>,
    /// Next byte of `buf` to scan.
    scan: usize,
    state: Scan,
    depth: u32,
    in_str: bool,
    esc: bool,
    /// Start of the element being scanned, and whether a comma came before it.
    elem_start: usize,
    after_comma: bool,
    /// Items of the batch being built, and where it may be cut (after an element's comma).
    items: Vec<std::ops::Range<usize>>,
    cut: usize,
    cut_items: usize,
    eof: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    BeforeValue,
    InValue,
    /// After the array: the rest of the page object (depth counts its nesting).
    RestOfPage,
    /// Only white space may follow.
    Trailing,
}

impl Splitter {
    /// Inside a JSON string, `b` only moves the string state (escapes, the closing quote): true
    /// when it was consumed that way.
    fn inside_string(&mut self, b: u8) -> bool {
        if !self.in_str {
            return false;
        }
        match b {
            _ if self.esc => self.esc = false,
            b'\\' => self.esc = true,
            b'"' => self.in_str = false,
            _ => {}
        }
        true
    }

    /// Scans what is buffered. Returns a syntax error's offset in `buf` and message, if any.
    fn scan(&mut self) -> Option<(usize, String)> {
        while self.scan < self.buf.len() {
            let i = self.scan;
            let b = self.buf[i];
            self.scan += 1;
            match self.state {
                Scan::BeforeValue => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b']' if !self.after_comma => self.end_array(i),
                    b']' => return Some((i, "trailing comma before `]`".into())),
                    b',' => return Some((i, "expected an event before `,`".into())),
                    _ => {
                        self.state = Scan::InValue;
                        self.elem_start = i;
                        self.depth = 0;
                        self.scan = i;
                    }
                },
                Scan::InValue => {
                    if self.inside_string(b) {
                        continue;
                    }
                    match b {
                        b'"' => self.in_str = true,
                        b'[' | b'{' => self.depth += 1,
                        b']' | b'}' if self.depth > 0 => self.depth -= 1,
                        b',' | b']' if self.depth == 0 => {
                            let text = &self.buf[self.elem_start..i];
                            let end = self.elem_start + text.trim_ascii_end().len();
                            self.items.push(self.elem_start..end);
                            if b == b',' {
                                self.state = Scan::BeforeValue;
                                self.after_comma = true;
                                self.cut = i + 1;
                                self.cut_items = self.items.len();
                            } else {
                                self.end_array(i);
                            }
                        }
                        _ => {}
                    }
                }
                Scan::RestOfPage => {
                    if self.inside_string(b) {
                        continue;
                    }
                    match b {
                        b'"' => self.in_str = true,
                        b'[' | b'{' => self.depth += 1,
                        b'}' if self.depth == 0 => self.state = Scan::Trailing,
                        b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                }
                Scan::Trailing => {
                    if !b.is_ascii_whitespace() {
                        return Some((
                            i,
                            format!(
                                "trailing characters after the {}",
                                match self.shape {
                                    InputShape::Envelope => "page",
                                    _ => "array",
                                }
                            ),
                        ));
                    }
                }
            }
        }
        None
    }

    fn end_array(&mut self, at: usize) {
        self.depth = 0;
        self.state = match self.shape {
            InputShape::Envelope => Scan::RestOfPage,
            _ => Scan::Trailing,
        };
        self.cut = at + 1;
        self.cut_items = self.items.len();
    }

    /// Fills `batch` with at least [`BATCH_BYTES`] of whole elements, or what is left; true at
    /// the end of the input (or at a syntax error, which the batch then carries).
    fn next(&mut self, input: &mut impl Read, batch: &mut Batch) -> std::io::Result<bool> {
        let mut items = batch.items.take().unwrap_or_default();
        items.clear();
        batch.syntax = None;
        loop {
            if let Some((at, message)) = self.scan() {
                return Ok(self.hand_out(batch, items, at, Some(message)));
            }
            if self.cut >= BATCH_BYTES && self.state != Scan::Trailing {
                let cut = self.cut;
                self.take(batch, items, cut);
                return Ok(false);
            }
            if self.eof {
                let end = self.buf.len();
                let problem = match self.state {
                    Scan::Trailing => None,
                    Scan::RestOfPage => {
                        Some("the input ends inside the page (cut short?)".to_string())
                    }
                    _ => Some("the input ends inside the array (cut short?)".to_string()),
                };
                return Ok(self.hand_out(batch, items, end, problem));
            }
            if read_more(input, &mut self.buf)? == 0 {
                self.eof = true;
            }
        }
    }

    /// The last batch: everything up to `end`, with a syntax error there if any.
    fn hand_out(
        &mut self,
        batch: &mut Batch,
        items: Vec<std::ops::Range<usize>>,
        end: usize,
        problem: Option<String>,
    ) -> bool {
        // Items after a syntax error's place cannot exist: the scan stops at the error.
        self.cut_items = self.items.len();
        self.take(batch, items, end);
        batch.syntax = problem.map(|message| {
            let text = &batch.text;
            let line_start = text.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
            Failure {
                line: text.iter().filter(|&&c| c == b'\n').count(),
                offset: end,
                column: String::from_utf8_lossy(&text[line_start..]).chars().count() + 1,
                problem: Problem::Syntax(message),
            }
        });
        true
    }

    /// Moves `buf[..cut]` and its items into `batch`.
    fn take(&mut self, batch: &mut Batch, mut items: Vec<std::ops::Range<usize>>, cut: usize) {
        items.extend(self.items.drain(..self.cut_items));
        batch.items = Some(items);
        batch.text.clear();
        batch.text.extend_from_slice(&self.buf[..cut]);
        self.buf.drain(..cut);
        for r in &mut self.items {
            *r = r.start - cut..r.end - cut;
        }
        self.scan -= cut;
        self.elem_start = self.elem_start.saturating_sub(cut);
        self.cut = 0;
        self.cut_items = 0;
    }
}

/// A JSON array or a v3 page, element by element, on the same workers as NDJSON: `head` holds
/// the input read so far, whose elements start at `start`.
fn stream_elements(
    ctx: &Ctx,
    mut input: impl Read,
    out: impl Write,
    mut head: Vec<u8>,
    body_start: usize,
    shape: InputShape,
    start: usize,
) -> Result<usize, PreviewError> {
    head.drain(..body_start);
    let mut splitter = Splitter {
        shape,
        buf: head,
        scan: start - body_start,
        state: Scan::BeforeValue,
        depth: 0,
        in_str: false,
        esc: false,
        elem_start: 0,
        after_comma: false,
        items: Vec::new(),
        cut: 0,
        cut_items: 0,
        eof: false,
    };
    let mut first = Batch::default();
    let eof = splitter
        .next(&mut input, &mut first)
        .map_err(PreviewError::Read)?;
    let next = |b: &mut Batch| splitter.next(&mut input, b);
    stream(ctx, out, shape, body_start, first, eof, next)
}

/// The worker's job for an array's batch: encode each element up to the first problem.
fn encode_elements(ctx: &Ctx, batch: &mut Batch) {
    let items = batch.items.take().unwrap_or_default();
    let text = &batch.text;
    let place = |offset: usize| {
        let before = &text[..offset];
        let line_start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        (
            before.iter().filter(|&&c| c == b'\n').count(),
            String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1,
        )
    };
    for r in &items {
        let failure = match std::str::from_utf8(&text[r.clone()]) {
            Err(e) => {
                let offset = r.start + e.valid_up_to();
                let (line, column) = place(offset);
                Some(Failure {
                    line,
                    offset,
                    column,
                    problem: Problem::NotUtf8,
                })
            }
            Ok(value) => {
                let mut key = EventKey::default();
                let encoded = ctx.encode(
                    value,
                    |k| {
                        key = k;
                        0
                    },
                    &mut batch.out,
                );
                match encoded {
                    Ok(()) => {
                        batch.events.push(Encoded {
                            key,
                            value: r.clone(),
                            out_end: batch.out.len(),
                        });
                        None
                    }
                    Err(Bad::Json(e)) => {
                        // serde_json counts from the element's start.
                        let (line, column) = place(r.start);
                        let (line, column) = if e.line() <= 1 {
                            (line, column + e.column().saturating_sub(1))
                        } else {
                            (line + e.line() - 1, e.column())
                        };
                        Some(Failure {
                            line,
                            offset: r.start,
                            column,
                            problem: Problem::Json(e),
                        })
                    }
                    Err(Bad::Event(e)) => {
                        let (line, column) = place(r.start);
                        Some(Failure {
                            line,
                            offset: r.start,
                            column,
                            problem: Problem::Event(e),
                        })
                    }
                }
            }
        };
        if failure.is_some() {
            batch.failure = failure;
            batch.items = Some(items);
            return;
        }
    }
    batch.lines = text.iter().filter(|&&c| c == b'\n').count();
    batch.failure = batch.syntax.take();
    batch.items = Some(items);
}

fn worker_gone() -> PreviewError {
    PreviewError::Read(std::io::Error::other("an encoding thread stopped"))
}

/// NDJSON, one event per line: batches go round-robin to the workers and come back in the same
/// order, so no reordering buffer is needed; at most `WORKERS * DEPTH` batches are in flight.
fn stream_ndjson(
    ctx: &Ctx,
    mut input: impl Read,
    out: impl Write,
    mut first: Vec<u8>,
    mut carry: Vec<u8>,
    eof: bool,
    body_start: usize,
) -> Result<usize, PreviewError> {
    first.drain(..body_start);
    let first = Batch {
        text: first,
        ..Batch::default()
    };
    let next = |b: &mut Batch| read_batch(&mut input, &mut b.text, &mut carry);
    stream(ctx, out, InputShape::Ndjson, body_start, first, eof, next)
}

/// Runs the workers over the batches `next` reads (it fills a spare batch's text, and its items
/// for arrays, and says whether the input ended).
fn stream(
    ctx: &Ctx,
    out: impl Write,
    shape: InputShape,
    body_start: usize,
    first: Batch,
    mut eof: bool,
    mut next_batch: impl FnMut(&mut Batch) -> std::io::Result<bool>,
) -> Result<usize, PreviewError> {
    let mut writer = Writer {
        ctx,
        out,
        ident: StreamIdentifier::default(),
        written: 0,
        lines: 0,
        offset: body_start,
        bom: body_start > 0,
        scratch: Vec::new(),
        shape,
    };
    std::thread::scope(|scope| {
        let mut jobs: Vec<SyncSender<Batch>> = Vec::with_capacity(WORKERS);
        let mut dones: Vec<Receiver<Batch>> = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (job_tx, job_rx) = sync_channel::<Batch>(DEPTH);
            let (done_tx, done_rx) = sync_channel::<Batch>(DEPTH);
            scope.spawn(move || {
                for mut batch in job_rx {
                    encode_batch(ctx, &mut batch);
                    if done_tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            jobs.push(job_tx);
            dones.push(done_rx);
        }
        let (mut sent, mut received) = (0, 0);
        let mut spare: Vec<Batch> = Vec::new();
        let mut next = Some(first);
        while let Some(batch) = next.take() {
            if sent - received == WORKERS * DEPTH {
                let done = dones[received % WORKERS]
                    .recv()
                    .map_err(|_| worker_gone())?;
                received += 1;
                writer.write_batch(&done)?;
                spare.push(done);
            }
            jobs[sent % WORKERS]
                .send(batch)
                .map_err(|_| worker_gone())?;
            sent += 1;
            if !eof {
                let mut b = spare.pop().unwrap_or_default();
                eof = next_batch(&mut b).map_err(PreviewError::Read)?;
                next = Some(b);
            }
        }
        while received < sent {
            let done = dones[received % WORKERS]
                .recv()
                .map_err(|_| worker_gone())?;
            received += 1;
            writer.write_batch(&done)?;
        }
        writer.out.flush().map_err(PreviewError::Write)?;
        Ok(writer.written)
    })
}

/// Arrays, pages and pretty-printed events: parsed whole (they are API pages, small in practice),
/// then encoded in order.
fn encode_whole(
    ctx: &Ctx,
    text: &str,
    body_start: usize,
    mut out: impl Write,
) -> Result<usize, PreviewError> {
    let body = &text[body_start..];
    let first = body.trim_start().as_bytes().first().copied();
    // serde_json counts from the start of `body`; a skipped BOM is one character on line 1.
    let bom_columns = usize::from(body_start > 0);
    let json_err = |e: serde_json::Error, written: usize| PreviewError::Json {
        line: e.line(),
        column: e.column() + if e.line() == 1 { bom_columns } else { 0 },
        message: strip_position(&e),
        written: Written(written),
    };
    let mut syntax_error = None;
    let (shape, items): (InputShape, Vec<&RawValue>) = match first {
        None => (InputShape::Ndjson, Vec::new()),
        Some(b'[') => (
            InputShape::Array,
            serde_json::from_str(body).map_err(|e| json_err(e, 0))?,
        ),
        Some(b'{') if is_envelope(body) => (
            InputShape::Envelope,
            serde_json::from_str::<Envelope>(body)
                .map_err(|e| json_err(e, 0))?
                .data,
        ),
        Some(_) => {
            // Values one after another; the events before a syntax error are still encoded.
            let mut items = Vec::new();
            for item in serde_json::Deserializer::from_str(body).into_iter::<&RawValue>() {
                match item {
                    Ok(raw) => items.push(raw),
                    Err(e) => {
                        syntax_error = Some(e);
                        break;
                    }
                }
            }
            (InputShape::Ndjson, items)
        }
    };
    let mut ident = StreamIdentifier::default();
    let mut buf = Vec::with_capacity(WRITE_CHUNK + 4096);
    let mut written = 0;
    for (i, raw) in items.iter().enumerate() {
        let encoded = ctx.encode(raw.get(), |k| ident.occurrence(k), &mut buf);
        if let Err(bad) = encoded {
            out.write_all(&buf).map_err(PreviewError::Write)?;
            let _ = out.flush();
            return Err(match bad {
                Bad::Json(e) => json_err(e, written),
                Bad::Event(source) => PreviewError::Event {
                    index: i + 1,
                    shape,
                    position: position(text, raw.get().as_ptr() as usize - text.as_ptr() as usize),
                    source,
                    written: Written(written),
                },
            });
        }
        written += 1;
        if buf.len() >= WRITE_CHUNK {
            out.write_all(&buf).map_err(PreviewError::Write)?;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(PreviewError::Write)?;
    out.flush().map_err(PreviewError::Write)?;
    match syntax_error {
        Some(e) => Err(json_err(e, written)),
        None => Ok(written),
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
    use crate::event::{identify, Provider};
    use crate::format::{Format, FormatOptions};

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
        let pretty = |e: &str| {
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(e).unwrap()).unwrap()
        };
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
}
