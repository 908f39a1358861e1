//! Batches through the worker threads and back to the writer, in input order.

use super::batch::{encode_batch, read_batch, Batch, Failure, Problem};
use super::{strip_position, Ctx, InputShape, Position, PreviewError, Written, DEPTH, WORKERS};
use crate::event::StreamIdentifier;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

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

fn worker_gone() -> PreviewError {
    PreviewError::Read(std::io::Error::other("an encoding thread stopped"))
}

/// NDJSON, one event per line: batches go round-robin to the workers and come back in the same
/// order, so no reordering buffer is needed; at most `WORKERS * DEPTH` batches are in flight.
pub(super) fn stream_ndjson(
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
pub(super) fn stream(
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
            let ctx = ctx.for_worker();
            scope.spawn(move || {
                for mut batch in job_rx {
                    encode_batch(&ctx, &mut batch);
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
