//! Input that cannot stream (a sequence of pretty-printed events) parsed whole, then encoded in
//! order.

use super::WRITE_CHUNK;
use super::{is_envelope, position, strip_position, Bad, Ctx, InputShape, PreviewError, Written};
use crate::event::StreamIdentifier;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::Write;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// Arrays, pages and pretty-printed events: parsed whole (they are API pages, small in practice),
/// then encoded in order.
pub(super) fn encode_whole(
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
