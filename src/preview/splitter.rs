//! Arrays and pages as they are read: finding where a page's `data` array starts, and cutting an
//! array into batches of whole elements.

use super::batch::{place, read_more, Batch, Failure, Problem};
use super::stream::stream;
use super::{Ctx, InputShape, PreviewError, BATCH_BYTES};
use std::io::{Read, Write};
use std::ops::Range;

/// Where a byte scan stands with respect to JSON strings.
#[derive(Default)]
struct Strings {
    inside: bool,
    /// After a backslash inside a string.
    escaped: bool,
}

impl Strings {
    /// Inside a string, `b` only moves the string state (escapes, the closing quote): true when
    /// it was consumed that way.
    fn step(&mut self, b: u8) -> bool {
        if !self.inside {
            return false;
        }
        match b {
            _ if self.escaped => self.escaped = false,
            b'\\' => self.escaped = true,
            b'"' => self.inside = false,
            _ => {}
        }
        true
    }
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
        let mut depth = 0u32;
        let mut strings = Strings::default();
        loop {
            let Some(b) = self.at(i)? else {
                return Ok(None);
            };
            if strings.step(b) {
                if !strings.inside && depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else {
                match b {
                    b'"' => strings.inside = true,
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
/// when it is a v3 page (a `data` array met before any `action` key, as [`super::is_envelope`] says),
/// reading only up to there. `None` for an event (or anything else), with what was read in
/// `head` for the other parsers.
pub(super) fn envelope_data_start(
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
    strings: Strings,
    /// Start of the element being scanned, and whether a comma came before it.
    elem_start: usize,
    after_comma: bool,
    /// Items of the batch being built, and where it may be cut (after an element's comma).
    items: Vec<Range<usize>>,
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
    /// Moves the string and nesting state over `b`; true when that is all `b` does (it is inside
    /// a string, or a bracket of a nested value).
    fn nest(&mut self, b: u8) -> bool {
        if self.strings.step(b) {
            return true;
        }
        match b {
            b'"' => self.strings.inside = true,
            b'[' | b'{' => self.depth += 1,
            b']' | b'}' if self.depth > 0 => self.depth -= 1,
            _ => return false,
        }
        true
    }

    /// Scans what is buffered. Returns a syntax error's offset in `buf` and message, if any.
    fn scan(&mut self) -> Option<(usize, String)> {
        while self.scan < self.buf.len() {
            if self.strings.inside && !self.strings.escaped {
                // Inside a string only a quote or a backslash matters: jump to the next one.
                match memchr::memchr2(b'"', b'\\', &self.buf[self.scan..]) {
                    Some(skip) => self.scan += skip,
                    None => {
                        self.scan = self.buf.len();
                        break;
                    }
                }
            }
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
                    if !self.nest(b) && self.depth == 0 && matches!(b, b',' | b']') {
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
                }
                Scan::RestOfPage => {
                    if !self.nest(b) && b == b'}' {
                        self.state = Scan::Trailing;
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
        items: Vec<Range<usize>>,
        end: usize,
        problem: Option<String>,
    ) -> bool {
        // Items after a syntax error's place cannot exist: the scan stops at the error.
        self.cut_items = self.items.len();
        self.take(batch, items, end);
        batch.syntax = problem.map(|message| {
            let (line, column) = place(&batch.text, end);
            Failure {
                line,
                offset: end,
                column,
                problem: Problem::Syntax(message),
            }
        });
        true
    }

    /// Moves `buf[..cut]` and its items into `batch`.
    fn take(&mut self, batch: &mut Batch, mut items: Vec<Range<usize>>, cut: usize) {
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
pub(super) fn stream_elements(
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
        strings: Strings::default(),
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
