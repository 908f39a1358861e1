//! Batches of input on their way through a worker: reading them, and encoding their events.

use super::{Bad, Ctx, BATCH_BYTES, READ_CHUNK};
use crate::event::{EventKey, EventParseError};
use std::io::Read;
use std::ops::Range;

/// Appends one read of the input to `buf`; 0 at the end.
pub(super) fn read_more(input: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
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

/// Reads into `batch` (which first takes the partial line left in `carry`) until it holds at
/// least [`BATCH_BYTES`] ending with a line feed, or the input ends (returns true). A partial last
/// line goes back to `carry`.
pub(super) fn read_batch(
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

/// Whole lines of NDJSON (or whole elements of an array), handed to a worker and back.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) text: Vec<u8>,
    /// Records, each ending with a line feed.
    pub(super) out: Vec<u8>,
    pub(super) events: Vec<Encoded>,
    /// Line feeds in `text`.
    pub(super) lines: usize,
    pub(super) failure: Option<Failure>,
    /// Arrays and pages: where each element is in `text` (NDJSON batches are split by lines).
    pub(super) items: Option<Vec<Range<usize>>>,
    /// A syntax error the splitter found after the last item.
    pub(super) syntax: Option<Failure>,
}

/// One encoded event of a batch.
pub(super) struct Encoded {
    pub(super) key: EventKey,
    /// Where its text is in `Batch::text`.
    pub(super) value: Range<usize>,
    /// Where its record ends in `Batch::out`.
    pub(super) out_end: usize,
}

/// The first problem in a batch; events before it are encoded.
pub(super) struct Failure {
    /// 0-based line in the batch.
    pub(super) line: usize,
    /// Byte offset in the batch where the event (or the bad byte) starts.
    pub(super) offset: usize,
    /// 1-based column of that offset on its line.
    pub(super) column: usize,
    pub(super) problem: Problem,
}

pub(super) enum Problem {
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

/// The worker's job: encode every event of `batch` up to the first problem, as if every event
/// were the first of its kind; the writer fixes up the rare repeated ones.
pub(super) fn encode_batch(ctx: &Ctx, batch: &mut Batch) {
    batch.out.clear();
    batch.events.clear();
    batch.lines = 0;
    batch.failure = None;
    if batch.items.is_some() {
        encode_elements(ctx, batch);
    } else {
        encode_lines(ctx, batch);
    }
}

/// Encodes the event `value`, which is `range` of the batch's text, as the first of its kind,
/// and records where its record ends.
fn encode_first(
    ctx: &Ctx,
    value: &str,
    range: Range<usize>,
    out: &mut Vec<u8>,
    events: &mut Vec<Encoded>,
) -> Result<(), Bad> {
    let mut key = EventKey::default();
    ctx.encode(
        value,
        |k| {
            key = k;
            0
        },
        out,
    )?;
    events.push(Encoded {
        key,
        value: range,
        out_end: out.len(),
    });
    Ok(())
}

impl Failure {
    /// Why the event starting at `offset` (0-based `line` of the batch, 1-based `column`) failed.
    fn of_event(bad: Bad, line: usize, column: usize, offset: usize) -> Failure {
        let (line, column, problem) = match bad {
            // serde_json counts from the event's start.
            Bad::Json(e) if e.line() > 1 => (line + e.line() - 1, e.column(), Problem::Json(e)),
            Bad::Json(e) => (
                line,
                column + e.column().saturating_sub(1),
                Problem::Json(e),
            ),
            Bad::Event(e) => (line, column, Problem::Event(e)),
        };
        Failure {
            line,
            offset,
            column,
            problem,
        }
    }
}

/// 0-based line and 1-based column (in characters) of byte `offset` of `text`.
pub(super) fn place(text: &[u8], offset: usize) -> (usize, usize) {
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
}

/// NDJSON: one event per non-blank line.
fn encode_lines(ctx: &Ctx, batch: &mut Batch) {
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
        let end = memchr::memchr(b'\n', &valid.as_bytes()[pos..]).map_or(valid.len(), |i| pos + i);
        let line = &valid[pos..end];
        let value = line.trim_start_matches(is_json_space);
        if !value.trim_end_matches(is_json_space).is_empty() {
            let start = end - value.len();
            let encoded = encode_first(ctx, value, start..end, &mut batch.out, &mut batch.events);
            if let Err(bad) = encoded {
                let failure = Failure::of_event(bad, batch.lines, start - pos + 1, start);
                batch.failure = Some(failure);
                return;
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

/// An array's batch: each element the splitter found.
fn encode_elements(ctx: &Ctx, batch: &mut Batch) {
    let items = batch.items.take().unwrap_or_default();
    let text = &batch.text;
    for r in &items {
        let failure = match std::str::from_utf8(&text[r.clone()]) {
            Err(e) => {
                let offset = r.start + e.valid_up_to();
                let (line, column) = place(text, offset);
                Some(Failure {
                    line,
                    offset,
                    column,
                    problem: Problem::NotUtf8,
                })
            }
            Ok(value) => encode_first(ctx, value, r.clone(), &mut batch.out, &mut batch.events)
                .err()
                .map(|bad| {
                    let (line, column) = place(text, r.start);
                    Failure::of_event(bad, line, column, r.start)
                }),
        };
        if failure.is_some() {
            batch.failure = failure;
            batch.items = Some(items);
            return;
        }
    }
    // An array is often one long line: memchr finds the few line feeds far faster than a byte loop.
    batch.lines = memchr::memchr_iter(b'\n', text).count();
    batch.failure = batch.syntax.take();
    batch.items = Some(items);
}
