//! `export`: one organization's audit log over `[from, to)` to a file or stdout, in event-time
//! order, in any format (CSV for a spreadsheet): the job Codacy's documented curl | jq example
//! does, with the agent's client (pagination, retries, consistent reads, the request scheduler)
//! and its event ids.
//!
//! The window is walked oldest-first in bounded slices, as the pipeline walks it (the same slice
//! sizes, and a slice that holds too many events for `agent.max_events_in_memory` is halved), so
//! memory stays flat whatever the span. Ids come from each slice's consistent read; identical
//! events share a timestamp, hence a slice, so they are the ids the agent delivers. Nothing in
//! the state directory is read or written: no checkpoint moves and no lock is taken, so an export
//! runs beside the daemon.

use crate::clock::SharedClock;
use crate::codacy::{Client, EventSource, FetchedWindow, WindowError};
use crate::config::Config;
use crate::event::{identify, OrgRef};
use crate::format::Encoder;
use crate::format::{Format, FormatOptions};
use crate::pipeline::{INITIAL_SLICE_MS, MAX_SLICE_MS};
use crate::progress::{Bars, WalkProgress};
use crate::telemetry::Metrics;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A command-line mistake (exit 2).
    #[error("usage: {0}")]
    Usage(String),
    #[error("reading the audit log of {org}: {source}; the export stopped (a file given with --output is left as it was)")]
    Fetch {
        org: String,
        #[source]
        source: WindowError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{invalid} event(s) from the API could not be exported (each is logged above with the reason); the output holds the {written} other record(s)")]
    Incomplete { invalid: usize, written: usize },
}

impl ExportError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Parses `--from` / `--to`: a date (`2026-07-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(flag: &str, value: &str) -> Result<i64, ExportError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ExportError::Usage(format!(
                "{flag} {value:?}: write a date (2026-07-01, midnight UTC) or an RFC 3339 time (2026-07-01T12:00:00Z)"
            ))
        })
}

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportSummary {
    pub written: usize,
    pub invalid: usize,
}

/// Where the records go: a file (written beside it as `FILE.partial` and renamed when complete,
/// so a failed export never leaves a file that looks whole) or stdout.
pub enum Output {
    File(PathBuf),
    Stdout,
}

impl Output {
    fn name(&self) -> String {
        match self {
            Output::File(p) => p.display().to_string(),
            Output::Stdout => "stdout".into(),
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Writes what the walk hands it on its own thread, so file and pipe writes never block the
/// async runtime; the channel is bounded, so memory is too.
struct WriterThread {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl WriterThread {
    fn start(mut out: Box<dyn Write + Send>) -> WriterThread {
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let handle = std::thread::spawn(move || {
            for buf in rx {
                out.write_all(&buf)?;
            }
            out.flush()
        });
        WriterThread {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// False when the writer stopped (its error comes from `finish`).
    fn send(&self, buf: Vec<u8>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(buf).is_ok())
    }

    fn finish(mut self) -> std::io::Result<()> {
        drop(self.tx.take());
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the writer thread panicked")),
            None => Ok(()),
        }
    }
}

/// The command line of `export`.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    pub org: String,
    pub from: String,
    /// Default: now.
    pub to: Option<String>,
    pub format: String,
    pub output: Option<PathBuf>,
}

/// `export`: the Codacy settings (URL, token, limits) come from `config`; its organizations and
/// sinks play no part.
pub async fn run(
    args: &ExportArgs,
    config: &Config,
    clock: &SharedClock,
) -> Result<ExportSummary, ExportError> {
    let usage = ExportError::Usage;
    let org: OrgRef = args.org.parse().map_err(|m| usage(format!("--org {m}")))?;
    let format: Format = args
        .format
        .parse()
        .map_err(|m| usage(format!("--format: {m}")))?;
    let now = clock.now_ms();
    let from_ms = parse_time("--from", &args.from)?;
    let to_ms = match &args.to {
        Some(t) => parse_time("--to", t)?,
        None => now,
    };
    let retention_start = now - crate::config::RETENTION.as_millis() as i64;
    if from_ms < retention_start {
        tracing::warn!(from = %crate::progress::rfc3339(from_ms),
            "--from is older than Codacy's one-year retention; the export starts with what Codacy still holds");
    }
    let client = Client::new(&config.codacy, Arc::new(Metrics::new()))
        .map_err(|m| usage(format!("codacy settings of {}: {m}", config.source)))?;
    let output = match &args.output {
        Some(p) => Output::File(p.clone()),
        None => Output::Stdout,
    };
    let encoder = Encoder::new(format, FormatOptions::default());
    let summary = export(
        Arc::new(client),
        org.clone(),
        from_ms,
        to_ms,
        config.agent.max_events_in_memory,
        &encoder,
        &output,
        &Bars::stderr(),
        now,
    )
    .await?;
    tracing::info!(organization = %org, records = summary.written, output = %output.name(), "export complete");
    Ok(summary)
}

/// Exports `[from_ms, to_ms)` of `org`. `max_events` caps the events held at once.
#[allow(clippy::too_many_arguments)]
pub async fn export(
    source: Arc<dyn EventSource>,
    org: OrgRef,
    from_ms: i64,
    to_ms: i64,
    max_events: usize,
    encoder: &Encoder,
    output: &Output,
    bars: &Bars,
    now_ms: i64,
) -> Result<ExportSummary, ExportError> {
    if from_ms >= to_ms {
        return Err(ExportError::Usage(format!(
            "--from ({}) must be before --to ({}); --to is exclusive",
            crate::progress::rfc3339(from_ms),
            crate::progress::rfc3339(to_ms)
        )));
    }
    let write_err = |source: std::io::Error| ExportError::Write {
        path: output.name(),
        source,
    };
    let out: Box<dyn Write + Send> = match output {
        Output::File(path) => Box::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            crate::private::create(&partial_path(path)).map_err(write_err)?,
        )),
        Output::Stdout => Box::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            std::io::stdout(),
        )),
    };
    let writer = WriterThread::start(out);
    let span = Span {
        source,
        org: Arc::new(org),
        from_ms,
        to_ms,
        max_events,
        now_ms,
    };
    let walked = walk(span, encoder, &writer, bars).await;
    let written = writer.finish();
    let outcome = match (walked, written) {
        (Ok(s), Ok(())) => Ok(s),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(write_err(e)),
    };
    let summary = match outcome {
        Ok(s) => s,
        Err(e) => {
            if let Output::File(path) = output {
                let _ = std::fs::remove_file(partial_path(path));
            }
            return Err(e);
        }
    };
    if let Output::File(path) = output {
        std::fs::rename(partial_path(path), path).map_err(write_err)?;
    }
    if summary.invalid > 0 {
        return Err(ExportError::Incomplete {
            invalid: summary.invalid,
            written: summary.written,
        });
    }
    Ok(summary)
}

type Fetched = Result<FetchedWindow, WindowError>;

fn spawn_fetch(
    source: &Arc<dyn EventSource>,
    org: &Arc<OrgRef>,
    from: i64,
    to: i64,
    max_events: usize,
) -> tokio::task::JoinHandle<Fetched> {
    let (source, org) = (source.clone(), org.clone());
    // A single millisecond cannot be split further: hold it whatever its size.
    let cap = if to - from <= 1 {
        usize::MAX
    } else {
        max_events
    };
    tokio::spawn(async move { source.fetch(&org, from, to, cap).await })
}

/// What [`walk`] reads: `[from_ms, to_ms)` of `org`, at most `max_events` held at once; `now_ms`
/// is the records' fetch time.
struct Span {
    source: Arc<dyn EventSource>,
    org: Arc<OrgRef>,
    from_ms: i64,
    to_ms: i64,
    max_events: usize,
    now_ms: i64,
}

async fn walk(
    span: Span,
    encoder: &Encoder,
    writer: &WriterThread,
    bars: &Bars,
) -> Result<ExportSummary, ExportError> {
    let Span {
        source,
        org,
        from_ms,
        to_ms,
        max_events,
        now_ms,
    } = span;
    let fetch_err = |source: WindowError| ExportError::Fetch {
        org: org.key(),
        source,
    };
    let stopped = || ExportError::Write {
        path: "the output".into(),
        source: std::io::Error::other("the writer stopped"),
    };
    let mut summary = ExportSummary::default();
    if let Some(header) = encoder.format.header() {
        if !writer.send(format!("{header}\n").into_bytes()) {
            return Err(stopped());
        }
    }
    let bar = (!bars.is_hidden()).then(|| bars.bar(&org.key()));
    let mut progress = WalkProgress::new(org.key(), from_ms, to_ms, bar);
    // The next slice is fetched while this one is encoded and written.
    let mut cur = from_ms;
    let mut slice = INITIAL_SLICE_MS.min(to_ms - from_ms);
    let mut end = (cur + slice).min(to_ms);
    let mut next = Some(spawn_fetch(&source, &org, cur, end, max_events));
    while let Some(task) = next.take() {
        let fetched = task
            .await
            .map_err(|e| fetch_err(WindowError::TaskFailed(e.to_string())))?;
        let window = match fetched {
            Ok(w) => w,
            Err(WindowError::TooMany(_)) if end - cur > 1 => {
                slice = ((end - cur) / 2).max(1);
                end = (cur + slice).min(to_ms);
                next = Some(spawn_fetch(&source, &org, cur, end, max_events));
                continue;
            }
            Err(e) => return Err(fetch_err(e)),
        };
        if window.events.len().saturating_mul(4) <= max_events {
            slice = (slice * 2).min(MAX_SLICE_MS);
        }
        let (slice_from, slice_end) = (cur, end);
        cur = end;
        if cur < to_ms {
            end = (cur + slice).min(to_ms);
            next = Some(spawn_fetch(&source, &org, cur, end, max_events));
        }
        for inv in &window.invalid {
            tracing::warn!(organization = %org, position = %inv.position, error = %inv.error,
                event = %inv.raw, "invalid event from the API; not exported");
        }
        summary.invalid += window.invalid.len();
        let n = window.events.len();
        let events = identify(&org, window.events, now_ms);
        let mut buf = Vec::with_capacity(n * 512);
        for e in &events {
            encoder.encode(e, &mut buf);
            buf.push(b'\n');
        }
        summary.written += n;
        if !writer.send(buf) {
            return Err(stopped());
        }
        debug_assert!(slice_from < slice_end);
        progress.advance(slice_end, n as u64);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(parse_time("--from", "1970-01-02").unwrap(), 86_400_000);
        assert_eq!(
            parse_time("--to", "1970-01-01T00:00:01.5+00:00").unwrap(),
            1500
        );
        let msg = parse_time("--from", "July").unwrap_err().to_string();
        assert!(msg.starts_with("usage: --from \"July\""), "{msg}");
        assert!(msg.contains("2026-07-01T12:00:00Z"), "{msg}");
    }
}
