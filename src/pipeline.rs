//! The poll loop of one organization: fetch -> dedupe -> encode -> deliver -> commit.
//!
//! One task per organization. Each sink keeps its own cursor for that organization, so a sink
//! that is down never holds the others back: every pass fetches from the oldest cursor among the
//! sinks that are due, walks the window oldest-first in bounded slices, and every sink skips what
//! its own cursor has already seen. A checkpoint is committed only after the sink acknowledged the
//! batch (at-least-once; stable event ids make redelivery idempotent downstream).

use crate::checkpoint::{self, CheckpointError, Cursor};
use crate::clock::{Backoff, SharedClock};
use crate::codacy::{EventSource, FetchedWindow, WindowError};
use crate::config::{Config, RETENTION};
use crate::deadletter::DeadLetter;
use crate::event::{identify, IdentifiedEvent, OrgRef};
use crate::format::{catalog, Encoder};
use crate::sink::{Record, Sink, SinkErrorKind, SinkSpec};
use crate::telemetry::Metrics;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The first slice of a window walk; it doubles while slices stay small.
const INITIAL_SLICE_MS: i64 = 24 * 3600 * 1000;
const MAX_SLICE_MS: i64 = 30 * 24 * 3600 * 1000;
/// How often a cursor that only moved because time passed (nothing delivered) is written. Writing
/// it every poll would fsync every checkpoint every minute at idle; losing such a move in a crash
/// only means refetching a few minutes that held nothing, and every delivered batch is still
/// written at once.
const IDLE_CHECKPOINT_EVERY_MS: i64 = 5 * 60 * 1000;
/// Remembered invalid events (so each is dead-lettered once per process, not every poll).
const MAX_REMEMBERED_INVALID: usize = 100_000;

/// A built sink with its spec and encoder, shared by every organization's pipeline.
pub struct SinkHandle {
    pub spec: SinkSpec,
    pub sink: Arc<dyn Sink>,
    pub encoder: Encoder,
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("name", &self.spec.name)
            .finish()
    }
}

/// A shutdown signal: set once, seen by every task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

/// What the pipelines share.
#[derive(Debug, Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub source: Arc<dyn EventSource>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Events from the API that could not be parsed.
    pub invalid_events: DeadLetter,
}

#[derive(Debug)]
struct SinkState {
    handle: Arc<SinkHandle>,
    path: PathBuf,
    cursor: Cursor,
    /// Set when the checkpoint could not be read: this (organization, sink) is stopped.
    broken: Option<String>,
    failures: u32,
    retry_at_ms: i64,
    /// When the checkpoint was last written (clock ms), and the cursor it holds.
    written_at_ms: i64,
    written_cursor_ms: i64,
}

/// The outcome of one pass over an organization.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    pub fetched: usize,
    pub invalid: usize,
    pub delivered: BTreeMap<String, usize>,
    /// (sink, error) for sinks that failed or are stopped.
    pub sink_errors: Vec<(String, String)>,
    pub fetch_error: Option<String>,
    /// The pass stopped early because of shutdown.
    pub interrupted: bool,
    /// Nothing was tried: the API failed before and its retry is not due yet.
    pub waiting_to_retry: bool,
}

impl PassReport {
    pub fn ok(&self) -> bool {
        self.fetch_error.is_none() && self.sink_errors.is_empty()
    }
}

/// How hard a pass tries before giving a sink up until the next pass.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Delivery attempts per batch inside one pass.
    pub attempts_per_batch: u32,
    pub transient: Backoff,
    pub fatal: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_per_batch: 1,
            transient: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            fatal: Backoff::new(Duration::from_secs(30), Duration::from_secs(900)),
        }
    }
}

pub struct OrgPipeline {
    org: Arc<OrgRef>,
    shared: Shared,
    sinks: Vec<SinkState>,
    retry: RetryPolicy,
    invalid_seen: HashSet<[u8; 32]>,
    fetch_failures: u32,
    fetch_retry_at_ms: i64,
}

impl OrgPipeline {
    /// Loads every sink's checkpoint for `org` (new sinks start at now - initial_lookback).
    pub fn new(
        org: OrgRef,
        sinks: &[Arc<SinkHandle>],
        shared: Shared,
        retry: RetryPolicy,
    ) -> OrgPipeline {
        let now = shared.clock.now_ms();
        let cfg = &shared.config.agent;
        let start = now - (cfg.initial_lookback.as_millis() as i64);
        let org = Arc::new(org);
        let states = sinks
            .iter()
            .map(|h| {
                let path = checkpoint::path_for(&cfg.state_dir, &org, &h.spec.name);
                // The state lock is held: a temp file here can only be a crash's leftover.
                checkpoint::remove_stale_temp_files(&path);
                let (cursor, broken) = match checkpoint::load(&path, &org, &h.spec.name, now) {
                    Ok(Some(c)) => (c, None),
                    Ok(None) => (Cursor::starting_at(start), None),
                    Err(e) => {
                        tracing::error!(organization = %org, sink = %h.spec.name, error = %e,
                            "checkpoint unreadable; this organization/sink pipeline is stopped");
                        shared
                            .metrics
                            .fatal_failure(&org.key(), &h.spec.name, &e.to_string());
                        (Cursor::starting_at(start), Some(e.to_string()))
                    }
                };
                shared
                    .metrics
                    .checkpoint(&org.key(), &h.spec.name, cursor.cursor_ms, now);
                shared.metrics.register(&org.key(), &h.spec.name, now);
                SinkState {
                    handle: h.clone(),
                    path,
                    broken,
                    failures: 0,
                    retry_at_ms: i64::MIN,
                    written_at_ms: i64::MIN,
                    written_cursor_ms: cursor.cursor_ms,
                    cursor,
                }
            })
            .collect();
        shared.metrics.register(&org.key(), "", now);
        OrgPipeline {
            org,
            shared,
            sinks: states,
            retry,
            invalid_seen: HashSet::new(),
            fetch_failures: 0,
            fetch_retry_at_ms: i64::MIN,
        }
    }

    pub fn org(&self) -> &OrgRef {
        &self.org
    }

    fn overlap_ms(&self) -> i64 {
        self.shared.config.agent.overlap.as_millis() as i64
    }

    /// When the next pass is worth running: the earliest sink retry or fetch retry.
    pub fn next_retry_at_ms(&self) -> i64 {
        let sink = self
            .sinks
            .iter()
            .filter(|s| s.broken.is_none() && s.failures > 0)
            .map(|s| s.retry_at_ms)
            .min()
            .unwrap_or(i64::MAX);
        if self.fetch_failures > 0 {
            sink.min(self.fetch_retry_at_ms)
        } else {
            sink
        }
    }

    /// One pass: fetch everything new for the due sinks and deliver it.
    pub async fn run_pass(&mut self, shutdown: &Shutdown) -> PassReport {
        let mut report = PassReport::default();
        let now = self.shared.clock.now_ms();
        let org_key = self.org.key();
        for s in &self.sinks {
            if let Some(b) = &s.broken {
                report
                    .sink_errors
                    .push((s.handle.spec.name.clone(), b.clone()));
            }
        }
        let overlap = self.overlap_ms();
        let floor = now - RETENTION.as_millis() as i64;
        if self.fetch_failures > 0 && now < self.fetch_retry_at_ms {
            // The API failed recently (slowly retried for 401/403/404): not yet. The error was
            // logged when it happened and /health shows it; one line per poll would be noise.
            report.waiting_to_retry = true;
            return report;
        }
        self.refuse_cursors_ahead_of_clock(now, &mut report);
        let due: Vec<usize> = (0..self.sinks.len())
            .filter(|&i| self.sinks[i].broken.is_none() && self.sinks[i].retry_at_ms <= now)
            .collect();
        if due.is_empty() {
            return report;
        }
        let to = now;
        let from = due
            .iter()
            .map(|&i| self.sinks[i].cursor.fetch_from(overlap))
            .min()
            .unwrap_or(to)
            .max(floor);
        let mut active: Vec<usize> = due;
        // The slice being delivered and the next one, fetched meanwhile, share the budget.
        let max_events = (self.shared.config.agent.max_events_in_memory / 2).max(1);
        let mut cur = from;
        let mut slice = INITIAL_SLICE_MS.min((to - from).max(1));
        // The next slice, fetched and identified on another worker while this one is delivered.
        let mut next: Option<Prefetch> = None;
        while cur < to && !active.is_empty() {
            if shutdown.is_triggered() {
                report.interrupted = true;
                break;
            }
            let end = (cur + slice).min(to);
            let prefetch = match next.take() {
                Some(p) if p.from == cur && p.to == end => p,
                _ => self.prefetch(cur, end, max_events),
            };
            // A fetch (with its retries) holds nothing uncommitted: shutdown may cut it short.
            let mut stop = shutdown.clone();
            let fetched = tokio::select! {
                r = prefetch.result() => r,
                _ = stop.wait() => {
                    report.interrupted = true;
                    break;
                }
            };
            let (window, events) = match fetched {
                Ok(w) => w,
                Err(WindowError::TooMany(_)) if end - cur > 1 => {
                    slice = ((end - cur) / 2).max(1);
                    tracing::debug!(organization = %org_key, slice_ms = slice, "window too large for memory cap; halving");
                    continue;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.fetch_failures += 1;
                    let needs_human = matches!(&e, WindowError::Api(a) if a.needs_human());
                    let backoff = if needs_human {
                        self.retry.fatal
                    } else {
                        self.retry.transient
                    };
                    self.fetch_retry_at_ms = self.shared.clock.now_ms()
                        + backoff.ceiling(self.fetch_failures - 1).as_millis() as i64;
                    if needs_human {
                        tracing::error!(organization = %org_key, error = %msg, "cannot read the audit log; fix the cause, the agent keeps retrying slowly");
                    } else {
                        tracing::warn!(organization = %org_key, error = %msg, "fetch failed; will retry");
                    }
                    if needs_human {
                        self.shared.metrics.fatal_failure(&org_key, "", &msg);
                    } else {
                        self.shared.metrics.failure(&org_key, "", &msg);
                    }
                    report.fetch_error = Some(msg);
                    break;
                }
            };
            if events.len().saturating_mul(4) <= max_events {
                slice = (slice * 2).min(MAX_SLICE_MS);
            }
            report.fetched += events.len();
            self.shared
                .metrics
                .events_fetched(&org_key, events.len() as u64);
            match self.dead_letter_invalid(window.invalid).await {
                Ok(n) => report.invalid += n,
                Err(msg) => {
                    tracing::error!(organization = %org_key, error = %msg, "stopping this pass so that no cursor moves");
                    self.fetch_failures += 1;
                    self.fetch_retry_at_ms = self.shared.clock.now_ms()
                        + self
                            .retry
                            .transient
                            .ceiling(self.fetch_failures - 1)
                            .as_millis() as i64;
                    self.shared.metrics.failure(&org_key, "", &msg);
                    report.fetch_error = Some(msg);
                    break;
                }
            }
            if end < to {
                next = Some(self.prefetch(end, (end + slice).min(to), max_events));
            }
            active = self
                .deliver_slice(&events, end, &active, shutdown, &mut report)
                .await;
            cur = end;
        }
        if report.fetch_error.is_none() && !report.interrupted {
            self.fetch_failures = 0;
            self.shared.metrics.poll_succeeded(&org_key, now);
        }
        report
    }

    /// A cursor ahead of the clock (the clock was set back while the agent ran) would skip every
    /// event until the clock catches up: that sink stops, as it does for such a checkpoint at start.
    fn refuse_cursors_ahead_of_clock(&mut self, now: i64, report: &mut PassReport) {
        for state in self.sinks.iter_mut().filter(|s| s.broken.is_none()) {
            let name = &state.handle.spec.name;
            if let Err(e) =
                checkpoint::check_not_ahead(&state.path, &self.org, name, &state.cursor, now)
            {
                let msg = e.to_string();
                tracing::error!(organization = %self.org, sink = %name, error = %msg, "this organization/sink pipeline is stopped");
                self.shared
                    .metrics
                    .fatal_failure(&self.org.key(), name, &msg);
                report.sink_errors.push((name.clone(), msg.clone()));
                state.broken = Some(msg);
            }
        }
    }

    /// Writes the cursors that moved since their checkpoint was last written (a quiet window's
    /// end is written only now and then): on shutdown and at the end of `once`.
    pub async fn write_pending_checkpoints(&mut self) {
        for state in self.sinks.iter_mut() {
            if state.broken.is_some() || state.written_cursor_ms == state.cursor.cursor_ms {
                continue;
            }
            if let Err(e) = commit(&self.shared, &self.org, state).await {
                tracing::warn!(organization = %self.org, sink = %state.handle.spec.name, error = %e,
                    "cannot write the checkpoint; the next start refetches from the previous one");
            }
        }
    }

    /// Starts fetching and identifying `[from, to)` on its own task.
    fn prefetch(&self, from: i64, to: i64, max_events: usize) -> Prefetch {
        // A single millisecond cannot be split further: hold it whatever its size.
        let cap = if to - from <= 1 {
            usize::MAX
        } else {
            max_events
        };
        let source = self.shared.source.clone();
        let clock = self.shared.clock.clone();
        let org = self.org.clone();
        let task = tokio::spawn(async move {
            let mut window = source.fetch(&org, from, to, cap).await?;
            let events = identify(&org, std::mem::take(&mut window.events), clock.now_ms());
            Ok((window, events))
        });
        Prefetch {
            from,
            to,
            task: Some(task),
        }
    }

    /// Dead-letters events that could not be parsed (each once per process) and counts them.
    /// Fails when the dead-letter file cannot be written: then no cursor may move, or the event
    /// would be lost.
    async fn dead_letter_invalid(
        &mut self,
        invalid: Vec<crate::codacy::InvalidEvent>,
    ) -> Result<usize, String> {
        let org_key = self.org.key();
        let mut n = 0;
        for inv in invalid {
            let mut canon = Vec::new();
            crate::event::write_canonical(&inv.raw, &mut canon);
            let digest: [u8; 32] = Sha256::digest(&canon).into();
            if self.invalid_seen.contains(&digest) {
                continue;
            }
            let path = self.shared.invalid_events.path().display().to_string();
            tracing::error!(organization = %org_key, position = %inv.position, error = %inv.error,
                path = %path, "invalid event from the API; dead-lettered");
            let entry = serde_json::json!({
                "organization": org_key, "position": inv.position, "event": inv.raw,
            });
            self.shared
                .invalid_events
                .write(self.shared.clock.now_ms(), &inv.error.to_string(), entry)
                .await
                .map_err(|e| {
                    format!("cannot write the invalid-events dead-letter file {path}: {e}; check that the state directory is writable")
                })?;
            if self.invalid_seen.len() >= MAX_REMEMBERED_INVALID {
                self.invalid_seen.clear();
            }
            self.invalid_seen.insert(digest);
            self.shared.metrics.events_invalid(&org_key, 1);
            n += 1;
        }
        Ok(n)
    }

    /// Delivers one fetched slice to the active sinks concurrently; returns the sinks still
    /// active (a sink that failed sits out the rest of this pass).
    async fn deliver_slice(
        &mut self,
        events: &[IdentifiedEvent],
        slice_end: i64,
        active: &[usize],
        shutdown: &Shutdown,
        report: &mut PassReport,
    ) -> Vec<usize> {
        let overlap = self.overlap_ms();
        // Encode once per distinct encoder, only events some sink still wants.
        let mut encoders: Vec<Encoder> = Vec::new();
        for &i in active {
            let e = &self.sinks[i].handle.encoder;
            if !encoders.contains(e) {
                encoders.push(e.clone());
            }
        }
        let wanted_by_any: Vec<bool> = events
            .iter()
            .map(|e| {
                active.iter().any(|&i| {
                    self.sinks[i]
                        .cursor
                        .wants(&e.id, e.event.timestamp_ms, overlap)
                })
            })
            .collect();
        let meta: Vec<(Arc<str>, u8)> = events
            .iter()
            .map(|e| {
                (
                    Arc::from(e.event.action()),
                    catalog::classify(e.event.action(), e.event.result().as_deref()).severity,
                )
            })
            .collect();
        let payloads: Vec<Vec<Option<Arc<[u8]>>>> = encoders
            .iter()
            .map(|enc| {
                let mut buf = Vec::with_capacity(1024);
                events
                    .iter()
                    .zip(&wanted_by_any)
                    .map(|(e, &w)| {
                        w.then(|| {
                            buf.clear();
                            enc.encode(e, &mut buf);
                            Arc::from(buf.as_slice())
                        })
                    })
                    .collect()
            })
            .collect();

        let shared = &self.shared;
        let org = &self.org;
        let retry = self.retry;
        let futures = self
            .sinks
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .map(|(i, state)| {
                let enc_idx = encoders
                    .iter()
                    .position(|e| *e == state.handle.encoder)
                    .unwrap_or(0);
                let payloads = &payloads[enc_idx];
                let meta = &meta;
                async move {
                    let r = deliver_to_sink(
                        shared, org, state, events, payloads, meta, slice_end, overlap, retry,
                        shutdown,
                    )
                    .await;
                    (i, r)
                }
            });
        let results = futures::future::join_all(futures).await;
        let mut still = Vec::new();
        for (i, r) in results {
            let name = self.sinks[i].handle.spec.name.clone();
            match r {
                SinkOutcome::Done(n) => {
                    *report.delivered.entry(name).or_default() += n;
                    still.push(i);
                }
                SinkOutcome::Interrupted(n) => {
                    *report.delivered.entry(name).or_default() += n;
                    report.interrupted = true;
                }
                SinkOutcome::Failed(n, e) => {
                    *report.delivered.entry(name.clone()).or_default() += n;
                    report.sink_errors.push((name, e));
                }
            }
        }
        still
    }
}

type PrefetchResult = Result<(FetchedWindow, Vec<IdentifiedEvent>), WindowError>;

/// A slice being fetched on its own task; dropping it cancels the fetch.
struct Prefetch {
    from: i64,
    to: i64,
    task: Option<tokio::task::JoinHandle<PrefetchResult>>,
}

impl Prefetch {
    async fn result(mut self) -> PrefetchResult {
        let Some(task) = self.task.as_mut() else {
            unreachable!("a prefetch is awaited once");
        };
        let joined = task.await;
        self.task = None;
        match joined {
            Ok(r) => r,
            // The fetch task panicked: surface it as a failed fetch, retried like one.
            Err(e) => Err(WindowError::TaskFailed(e.to_string())),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum SinkOutcome {
    Done(usize),
    Interrupted(usize),
    Failed(usize, String),
}

#[allow(clippy::too_many_arguments)]
async fn deliver_to_sink(
    shared: &Shared,
    org: &Arc<OrgRef>,
    state: &mut SinkState,
    events: &[IdentifiedEvent],
    payloads: &[Option<Arc<[u8]>>],
    meta: &[(Arc<str>, u8)],
    slice_end: i64,
    overlap: i64,
    retry: RetryPolicy,
    shutdown: &Shutdown,
) -> SinkOutcome {
    let name = state.handle.spec.name.clone();
    let org_key = org.key();
    let wanted: Vec<usize> = (0..events.len())
        .filter(|&i| {
            state
                .cursor
                .wants(&events[i].id, events[i].event.timestamp_ms, overlap)
        })
        .collect();
    let mut delivered = 0;
    for chunk in wanted.chunks(state.handle.spec.batch_max_events.max(1)) {
        if shutdown.is_triggered() {
            return SinkOutcome::Interrupted(delivered);
        }
        let records: Vec<Record> = chunk
            .iter()
            .filter_map(|&i| {
                Some(Record {
                    event_id: events[i].id.clone(),
                    org: org.clone(),
                    timestamp_ms: events[i].event.timestamp_ms,
                    action: meta[i].0.clone(),
                    severity: meta[i].1,
                    format: state.handle.encoder.format,
                    payload: payloads[i].clone()?,
                })
            })
            .collect();
        let mut attempt = 0;
        let result = loop {
            match state.handle.sink.deliver(&records).await {
                Ok(()) => break Ok(()),
                Err(e) => {
                    attempt += 1;
                    if attempt >= retry.attempts_per_batch || shutdown.is_triggered() {
                        break Err(e);
                    }
                    shared.metrics.retry(&format!("sink:{name}"));
                    let wait = e
                        .retry_after
                        .unwrap_or_else(|| retry.transient.delay(attempt - 1));
                    tracing::warn!(organization = %org_key, sink = %name, error = %e, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        match result {
            Ok(()) => {
                let last_ts = records.last().map(|r| r.timestamp_ms).unwrap_or(slice_end);
                state.cursor.advance(
                    chunk
                        .iter()
                        .map(|&i| (&events[i].id, events[i].event.timestamp_ms)),
                    last_ts,
                    overlap,
                );
                if let Err(e) = commit(shared, org, &mut *state).await {
                    return checkpoint_write_failed(shared, org, state, e, retry, delivered);
                }
                delivered += records.len();
                shared
                    .metrics
                    .events_delivered(&org_key, &name, records.len() as u64);
            }
            Err(e) => {
                return fail(
                    shared,
                    org,
                    state,
                    e.message.clone(),
                    e.kind,
                    e.retry_after,
                    retry,
                    delivered,
                );
            }
        }
    }
    state.cursor.advance(std::iter::empty(), slice_end, overlap);
    // Batches were committed as they went; the window end is written when it moved the cursor
    // past the checkpoint, and with nothing delivered only now and then.
    let unwritten = state.cursor.cursor_ms != state.written_cursor_ms;
    let now = shared.clock.now_ms();
    let due = delivered > 0 || now.saturating_sub(state.written_at_ms) >= IDLE_CHECKPOINT_EVERY_MS;
    let written = if unwritten && due {
        commit(shared, org, &mut *state).await
    } else {
        if unwritten {
            // The lag gauges follow the delivered position, written or not.
            shared
                .metrics
                .checkpoint(&org_key, &name, state.cursor.cursor_ms, now);
        }
        Ok(())
    };
    if let Err(e) = written {
        return checkpoint_write_failed(shared, org, state, e, retry, delivered);
    }
    state.failures = 0;
    state.retry_at_ms = i64::MIN;
    shared
        .metrics
        .success(&org_key, &name, shared.clock.now_ms());
    SinkOutcome::Done(delivered)
}

#[allow(clippy::too_many_arguments)]
fn fail(
    shared: &Shared,
    org: &OrgRef,
    state: &mut SinkState,
    message: String,
    kind: SinkErrorKind,
    retry_after: Option<Duration>,
    retry: RetryPolicy,
    delivered: usize,
) -> SinkOutcome {
    let name = &state.handle.spec.name;
    state.failures += 1;
    let backoff = match kind {
        SinkErrorKind::Transient => retry.transient,
        SinkErrorKind::Fatal => retry.fatal,
    };
    let wait = retry_after
        .unwrap_or_else(|| backoff.delay(state.failures - 1))
        .max(Duration::from_millis(100));
    state.retry_at_ms = shared.clock.now_ms() + wait.as_millis() as i64;
    match kind {
        SinkErrorKind::Fatal => shared.metrics.fatal_failure(&org.key(), name, &message),
        SinkErrorKind::Transient => shared.metrics.failure(&org.key(), name, &message),
    }
    match kind {
        SinkErrorKind::Fatal => {
            tracing::error!(organization = %org, sink = %name, error = %message,
            retry_in_ms = wait.as_millis() as u64, "sink needs attention; its cursor is kept and it will catch up")
        }
        SinkErrorKind::Transient => {
            tracing::warn!(organization = %org, sink = %name, error = %message,
            retry_in_ms = wait.as_millis() as u64, "sink unavailable; its cursor is kept and it will catch up")
        }
    }
    SinkOutcome::Failed(delivered, message)
}

/// The sink has the batch but its checkpoint could not be written (a full disk, a read-only
/// state directory): a restart would replay everything since the last good checkpoint, so the
/// lane is unhealthy at once (/health 503 with the path and the OS error). The write is retried
/// at the next pass whether or not anything new arrives; the cursor in memory keeps the position.
fn checkpoint_write_failed(
    shared: &Shared,
    org: &OrgRef,
    state: &mut SinkState,
    error: CheckpointError,
    retry: RetryPolicy,
    delivered: usize,
) -> SinkOutcome {
    let name = state.handle.spec.name.clone();
    shared.metrics.checkpoint_write_failed(&org.key(), &name);
    state.written_at_ms = i64::MIN;
    let outcome = fail(
        shared,
        org,
        state,
        error.to_string(),
        SinkErrorKind::Transient,
        None,
        retry,
        delivered,
    );
    // Retried as soon as a transient error, but reported as needing a human.
    shared
        .metrics
        .fatal_failure(&org.key(), &name, &error.to_string());
    outcome
}

async fn commit(
    shared: &Shared,
    org: &OrgRef,
    state: &mut SinkState,
) -> Result<(), CheckpointError> {
    let now = shared.clock.now_ms();
    checkpoint::store_async(
        state.path.clone(),
        org.clone(),
        state.handle.spec.name.clone(),
        state.cursor.clone(),
        now,
    )
    .await?;
    state.written_at_ms = now;
    state.written_cursor_ms = state.cursor.cursor_ms;
    shared.metrics.checkpoint(
        &org.key(),
        &state.handle.spec.name,
        state.cursor.cursor_ms,
        now,
    );
    Ok(())
}

/// Runs an organization's pipeline until shutdown: a pass, then wait for the next poll (or an
/// earlier sink/fetch retry).
pub async fn run_org(mut pipeline: OrgPipeline, mut shutdown: Shutdown) {
    let poll = pipeline.shared.config.agent.poll_interval;
    let org_key = pipeline.org.key();
    loop {
        let started = pipeline.shared.clock.now_ms();
        let report = pipeline.run_pass(&shutdown).await;
        log_pass(&org_key, &report);
        if shutdown.is_triggered() {
            break;
        }
        let next_poll = started + poll.as_millis() as i64;
        let wake = next_poll.min(pipeline.next_retry_at_ms());
        let wait_ms = (wake - pipeline.shared.clock.now_ms()).max(50);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = shutdown.wait() => break,
        }
    }
    pipeline.write_pending_checkpoints().await;
    tracing::debug!(organization = %org_key, "pipeline stopped");
}

/// One info line per poll per organization, with counts.
pub fn log_pass(org_key: &str, report: &PassReport) {
    let delivered: usize = report.delivered.values().sum();
    if report.waiting_to_retry {
        tracing::debug!(organization = %org_key, "waiting to retry the Codacy API after an error");
    } else if report.ok() {
        tracing::info!(organization = %org_key, fetched = report.fetched, delivered, invalid = report.invalid,
            interrupted = report.interrupted, "poll complete");
    } else {
        let failed: Vec<&str> = report.sink_errors.iter().map(|(s, _)| s.as_str()).collect();
        // `fetch_error` only when there is one.
        tracing::warn!(organization = %org_key, fetched = report.fetched, delivered, invalid = report.invalid,
            fetch_error = report.fetch_error.as_deref(), failed_sinks = ?failed, "poll incomplete");
    }
}
