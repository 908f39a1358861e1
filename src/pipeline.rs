//! An organization's pipeline: walk -> identify -> encode -> lanes -> commit.
//!
//! - **The walk** fetches the organization's window oldest-first in bounded slices (through the
//!   one request scheduler in `codacy`), identifies each slice's events from a consistent read, and
//!   encodes it once per format in use.
//! - **A lane** is one (organization, sink) pair: its own cursor, batching, retries, backoff and
//!   checkpoint, driven on its own task under its own lock. A checkpoint moves only after the sink
//!   acknowledged the batch (at-least-once; stable event ids make redelivery idempotent downstream).
//! - **No lane waits for another.** A poll's shared walk takes the lanes that are free and due, and
//!   hands each slice to all of them at once; a lane much slower than the fastest (1 s + 2x its
//!   time) is left to finish its batch alone, sits out while it is busy, and a lane far behind the
//!   others (back from an outage) catches up alone from its own cursor, then rejoins. `once` runs
//!   the same walk but waits for every lane, so its report is complete.
//! - **Counting.** An event is *new* when no walk of the organization had read it (the furthest
//!   lane's cursor and overlap ids, moved by every walk); the overlap and catch-ups over what
//!   others had are *re-read*. Deliveries are counted per sink. A walk still going after 10 s logs
//!   its position and ETA (`crate::progress`), and drives `once`'s bar on a terminal.

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
pub(crate) const INITIAL_SLICE_MS: i64 = 24 * 3600 * 1000;
pub(crate) const MAX_SLICE_MS: i64 = 30 * 24 * 3600 * 1000;
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
    /// Events read for the first time: no lane of the organization had them (see [`Seen`]).
    pub fetched: usize,
    /// Events read again: the overlap re-read at every poll, a lane catching up over what the
    /// others had, a replay after `state reset`.
    pub reread: usize,
    pub invalid: usize,
    /// Records each sink acknowledged (one entry per sink that took part).
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

/// A lane: one (organization, sink) pair. Its state is locked by whoever drives it (the
/// organization's shared walk, its own catch-up, or a delivery that outlived a walk), so a lane
/// that is busy is simply not in the next walk: no lane ever waits for another.
#[derive(Debug)]
struct Lane {
    state: Arc<tokio::sync::Mutex<SinkState>>,
}

type LaneGuard = tokio::sync::OwnedMutexGuard<SinkState>;

pub struct OrgPipeline {
    org: Arc<OrgRef>,
    shared: Shared,
    lanes: Vec<Lane>,
    retry: RetryPolicy,
    invalid_seen: InvalidSeen,
    seen: Seen,
    /// A progress bar (`once` on a terminal).
    bar: Option<indicatif::ProgressBar>,
    fetch_failures: u32,
    fetch_retry_at_ms: i64,
    /// Daemon mode: a slow lane is detached from the shared walk, and a lane far behind the
    /// others catches up alone. Off for `once`, which waits for every lane.
    independent_lanes: bool,
    catch_ups: Vec<tokio::task::JoinHandle<PassReport>>,
    /// Every task this pipeline started that may outlive a pass (catch-ups, detached
    /// deliveries): aborted when the pipeline goes, as a process exit would end them, so that a
    /// stopped pipeline never delivers or commits behind its successor's back.
    tasks: LaneTasks,
}

type LaneTasks = Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>;

fn track(tasks: &LaneTasks, task: tokio::task::AbortHandle) {
    let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

impl Drop for OrgPipeline {
    fn drop(&mut self) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.iter() {
            t.abort();
        }
    }
}

/// How far the organization's events have been read, whichever lane's walk read them: the
/// furthest lane's cursor with the ids of its overlap, moved by every walk. An event it `wants`
/// is new; any other was read before (the overlap, a catch-up behind the others, a replay), so
/// `events_fetched_total` counts each event once and `events_reread_total` the rest.
type Seen = Arc<std::sync::Mutex<Cursor>>;

/// Invalid events already dead-lettered by this process (by digest), shared by the walks.
type InvalidSeen = Arc<std::sync::Mutex<HashSet<[u8; 32]>>>;

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
        let mut furthest: Option<Cursor> = None;
        let lanes = sinks
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
                if furthest
                    .as_ref()
                    .is_none_or(|f| f.cursor_ms < cursor.cursor_ms)
                {
                    furthest = Some(cursor.clone());
                }
                shared
                    .metrics
                    .checkpoint(&org.key(), &h.spec.name, cursor.cursor_ms, now);
                shared.metrics.register(&org.key(), &h.spec.name, now);
                Lane {
                    state: Arc::new(tokio::sync::Mutex::new(SinkState {
                        handle: h.clone(),
                        path,
                        broken,
                        failures: 0,
                        retry_at_ms: i64::MIN,
                        written_at_ms: i64::MIN,
                        written_cursor_ms: cursor.cursor_ms,
                        cursor,
                    })),
                }
            })
            .collect();
        shared.metrics.register(&org.key(), "", now);
        OrgPipeline {
            org,
            shared,
            lanes,
            retry,
            invalid_seen: Arc::default(),
            seen: Arc::new(std::sync::Mutex::new(
                furthest.unwrap_or_else(|| Cursor::starting_at(start)),
            )),
            bar: None,
            fetch_failures: 0,
            fetch_retry_at_ms: i64::MIN,
            independent_lanes: true,
            catch_ups: Vec::new(),
            tasks: Arc::default(),
        }
    }

    /// For `once`: every lane takes part in the one walk and the walk waits for each of them,
    /// so the report is complete when the pass returns.
    pub fn waiting_for_every_lane(mut self) -> Self {
        self.independent_lanes = false;
        self
    }

    /// Shows the walks' progress on `bar`.
    pub fn with_progress_bar(mut self, bar: indicatif::ProgressBar) -> Self {
        self.bar = Some(bar);
        self
    }

    pub fn org(&self) -> &OrgRef {
        &self.org
    }

    /// Whether a catch-up or a detached delivery of this pipeline is still running.
    pub fn lanes_busy(&self) -> bool {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter().any(|t| !t.is_finished())
    }

    fn overlap_ms(&self) -> i64 {
        self.shared.config.agent.overlap.as_millis() as i64
    }

    fn walker(&self) -> Walker {
        Walker {
            org: self.org.clone(),
            shared: self.shared.clone(),
            retry: self.retry,
            invalid_seen: self.invalid_seen.clone(),
            seen: self.seen.clone(),
            bar: self.bar.clone(),
            detach_slow_lanes: self.independent_lanes,
            tasks: self.tasks.clone(),
        }
    }

    /// When the next pass is worth running: the earliest sink retry or fetch retry.
    pub fn next_retry_at_ms(&self) -> i64 {
        let sink = self
            .lanes
            .iter()
            .filter_map(|l| l.state.try_lock().ok())
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

    /// One pass: fetch everything new for the lanes that are free and due, and deliver it. In
    /// daemon mode a lane far behind the others catches up on its own task (its report joins a
    /// later pass's), and a lane much slower than its siblings is left to finish alone.
    pub async fn run_pass(&mut self, shutdown: &Shutdown) -> PassReport {
        let mut report = PassReport::default();
        self.collect_catch_ups(&mut report).await;
        let now = self.shared.clock.now_ms();
        let org_key = self.org.key();
        for lane in &self.lanes {
            if let Ok(s) = lane.state.try_lock() {
                if let Some(b) = &s.broken {
                    report
                        .sink_errors
                        .push((s.handle.spec.name.clone(), b.clone()));
                }
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
        self.apply_reset_requests(now, &mut report).await;
        self.refuse_cursors_ahead_of_clock(now, &mut report);
        // Lanes busy elsewhere (a catch-up, a delivery that outlived its walk) sit this one out.
        let mut group: Vec<LaneGuard> = self
            .lanes
            .iter()
            .filter_map(|l| l.state.clone().try_lock_owned().ok())
            .filter(|s| s.broken.is_none() && s.retry_at_ms <= now)
            .collect();
        if group.is_empty() {
            return report;
        }
        let to = now;
        if self.independent_lanes && group.len() > 1 {
            // Far behind the leader (back from an outage, or detached earlier): catch up alone, so
            // the lanes that are caught up are not held by a long walk of the past.
            let leader = group
                .iter()
                .map(|s| s.cursor.fetch_from(overlap))
                .max()
                .unwrap_or(to);
            let margin = 2 * self.shared.config.agent.poll_interval.as_millis() as i64;
            let (behind, near): (Vec<LaneGuard>, Vec<LaneGuard>) = group
                .into_iter()
                .partition(|s| s.cursor.fetch_from(overlap) < leader - margin);
            group = near;
            for lane in behind {
                tracing::info!(organization = %org_key, sink = %lane.handle.spec.name,
                    behind_ms = leader - lane.cursor.fetch_from(overlap), "sink is behind the others; it catches up on its own");
                let walker = self.walker();
                let shutdown = shutdown.clone();
                let task =
                    tokio::spawn(async move { walker.catch_up(lane, to, floor, shutdown).await });
                track(&self.tasks, task.abort_handle());
                self.catch_ups.push(task);
            }
        }
        let from = group
            .iter()
            .map(|s| s.cursor.fetch_from(overlap))
            .min()
            .unwrap_or(to)
            .max(floor);
        match self
            .walker()
            .walk(group, from, to, shutdown, &mut report)
            .await
        {
            Ok(()) => {}
            Err(WalkError::Fetch(e)) => self.fetch_failed(e, &mut report),
            Err(WalkError::DeadLetter(msg)) => {
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
            }
        }
        if report.fetch_error.is_none() && !report.interrupted {
            self.fetch_failures = 0;
            self.shared.metrics.poll_succeeded(&org_key, now);
        }
        report
    }

    /// Merges the reports of catch-ups that have finished.
    async fn collect_catch_ups(&mut self, report: &mut PassReport) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.catch_ups)
            .into_iter()
            .partition(|t| t.is_finished());
        self.catch_ups = running;
        for task in done {
            match task.await {
                Ok(r) => report.merge(r),
                Err(e) => report
                    .sink_errors
                    .push(("(catch-up)".into(), format!("catch-up task failed: {e}"))),
            }
        }
    }

    fn fetch_failed(&mut self, e: WindowError, report: &mut PassReport) {
        let org_key = self.org.key();
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
            self.shared.metrics.fatal_failure(&org_key, "", &msg);
        } else {
            tracing::warn!(organization = %org_key, error = %msg, "fetch failed; will retry");
            self.shared.metrics.failure(&org_key, "", &msg);
        }
        report.fetch_error = Some(msg);
    }

    /// `state reset` run while this daemon holds the state directory leaves a request; the lane
    /// applies it here (also to a lane stopped by a checkpoint it refused) and removes it.
    async fn apply_reset_requests(&mut self, now: i64, report: &mut PassReport) {
        let state_dir = &self.shared.config.agent.state_dir;
        for lane in &self.lanes {
            let Ok(mut state) = lane.state.clone().try_lock_owned() else {
                continue;
            };
            let name = state.handle.spec.name.clone();
            let request = checkpoint::reset_request_path(state_dir, &self.org, &name);
            let to_ms = match checkpoint::pending_reset(&request, &self.org, &name) {
                Ok(Some(to_ms)) => to_ms,
                Ok(None) => continue,
                Err(msg) => {
                    tracing::error!(organization = %self.org, sink = %name, error = %msg, "cannot apply a state reset request");
                    report.sink_errors.push((name, msg));
                    continue;
                }
            };
            state.cursor = Cursor::starting_at(to_ms);
            state.broken = None;
            state.failures = 0;
            state.retry_at_ms = i64::MIN;
            match commit(&self.shared, &self.org, &mut state).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&request);
                    self.shared.metrics.success(&self.org.key(), &name, now);
                    tracing::info!(organization = %self.org, sink = %name, cursor_ms = to_ms,
                        "checkpoint moved by `state reset`; delivering from there");
                }
                Err(e) => {
                    tracing::error!(organization = %self.org, sink = %name, error = %e, "cannot apply a state reset request; it stays pending");
                    report.sink_errors.push((name, e.to_string()));
                }
            }
        }
    }

    /// A cursor ahead of the clock (the clock was set back while the agent ran) would skip every
    /// event until the clock catches up: that sink stops, as it does for such a checkpoint at start.
    fn refuse_cursors_ahead_of_clock(&mut self, now: i64, report: &mut PassReport) {
        for lane in &self.lanes {
            let Ok(mut state) = lane.state.try_lock() else {
                continue;
            };
            if state.broken.is_some() {
                continue;
            }
            let name = state.handle.spec.name.clone();
            if let Err(e) =
                checkpoint::check_not_ahead(&state.path, &self.org, &name, &state.cursor, now)
            {
                let msg = e.to_string();
                tracing::error!(organization = %self.org, sink = %name, error = %msg, "this organization/sink pipeline is stopped");
                self.shared
                    .metrics
                    .fatal_failure(&self.org.key(), &name, &msg);
                report.sink_errors.push((name, msg.clone()));
                state.broken = Some(msg);
            }
        }
    }

    /// Writes the cursors that moved since their checkpoint was last written (a quiet window's
    /// end is written only now and then): on shutdown and at the end of `once`. Waits a little
    /// for lanes still delivering (they stop after their batch in flight).
    pub async fn write_pending_checkpoints(&mut self) {
        let mut report = PassReport::default();
        for mut task in std::mem::take(&mut self.catch_ups) {
            match tokio::time::timeout(LANE_STOP_WAIT, &mut task).await {
                Ok(Ok(r)) => report.merge(r),
                Ok(Err(_)) => {}
                // Still going: it stops after its batch in flight, or with the pipeline.
                Err(_) => self.catch_ups.push(task),
            }
        }
        for lane in &self.lanes {
            let Ok(mut state) =
                tokio::time::timeout(LANE_STOP_WAIT, lane.state.clone().lock_owned()).await
            else {
                continue;
            };
            if state.broken.is_some() || state.written_cursor_ms == state.cursor.cursor_ms {
                continue;
            }
            if let Err(e) = commit(&self.shared, &self.org, &mut state).await {
                tracing::warn!(organization = %self.org, sink = %state.handle.spec.name, error = %e,
                    "cannot write the checkpoint; the next start refetches from the previous one");
            }
        }
    }
}

/// How long stopping waits for a lane still delivering its batch in flight.
const LANE_STOP_WAIT: Duration = Duration::from_secs(5);

impl PassReport {
    fn merge(&mut self, other: PassReport) {
        self.fetched += other.fetched;
        self.reread += other.reread;
        self.invalid += other.invalid;
        for (k, v) in other.delivered {
            *self.delivered.entry(k).or_default() += v;
        }
        self.sink_errors.extend(other.sink_errors);
        self.interrupted |= other.interrupted;
    }
}

#[derive(Debug)]
enum WalkError {
    Fetch(WindowError),
    /// An invalid event could not be dead-lettered: no cursor may move past it.
    DeadLetter(String),
}

/// Walks `[from, to)` in slices for a group of lanes: fetch, identify and encode each slice once,
/// and hand it to every lane in the group. Used by the organization's shared walk and, with a
/// group of one, by a lane's catch-up.
#[derive(Clone)]
struct Walker {
    org: Arc<OrgRef>,
    shared: Shared,
    retry: RetryPolicy,
    invalid_seen: InvalidSeen,
    seen: Seen,
    bar: Option<indicatif::ProgressBar>,
    detach_slow_lanes: bool,
    tasks: LaneTasks,
}

/// The records of a slice in one format: `None` for events no lane of the walk wanted.
type Encoded = Vec<Option<Arc<[u8]>>>;

/// One fetched slice, identified and encoded once per format in use, shared by the lanes.
struct Slice {
    events: Vec<IdentifiedEvent>,
    payloads: Vec<(Encoder, Encoded)>,
    meta: Vec<(Arc<str>, u8)>,
    end: i64,
}

impl Walker {
    fn overlap_ms(&self) -> i64 {
        self.shared.config.agent.overlap.as_millis() as i64
    }

    /// A lane's catch-up, alone from its own cursor to `to`.
    async fn catch_up(
        self,
        lane: LaneGuard,
        to: i64,
        floor: i64,
        shutdown: Shutdown,
    ) -> PassReport {
        let mut report = PassReport::default();
        let from = lane.cursor.fetch_from(self.overlap_ms()).max(floor);
        let name = lane.handle.spec.name.clone();
        let org_key = self.org.key();
        self.shared.metrics.catching_up(&org_key, &name, true);
        let walked = self
            .walk(vec![lane], from, to, &shutdown, &mut report)
            .await;
        self.shared.metrics.catching_up(&org_key, &name, false);
        if let Err(e) = walked {
            let msg = match e {
                WalkError::Fetch(e) => e.to_string(),
                WalkError::DeadLetter(m) => m,
            };
            tracing::warn!(organization = %self.org, sink = %name, error = %msg, "catch-up stopped; it resumes at the next poll");
            report
                .sink_errors
                .push((name, format!("catching up: {msg}")));
        }
        report
    }

    async fn walk(
        &self,
        mut group: Vec<LaneGuard>,
        from: i64,
        to: i64,
        shutdown: &Shutdown,
        report: &mut PassReport,
    ) -> Result<(), WalkError> {
        let org_key = self.org.key();
        // The slice being delivered and the next one, fetched meanwhile, share the budget.
        let max_events = (self.shared.config.agent.max_events_in_memory / 2).max(1);
        let mut cur = from;
        let mut slice = INITIAL_SLICE_MS.min((to - from).max(1));
        // The next slice, fetched and identified on another worker while this one is delivered.
        let mut next: Option<Prefetch> = None;
        let mut progress =
            crate::progress::WalkProgress::new(org_key.clone(), from, to, self.bar.clone());
        while cur < to && !group.is_empty() {
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
                Err(e) => return Err(WalkError::Fetch(e)),
            };
            if events.len().saturating_mul(4) <= max_events {
                slice = (slice * 2).min(MAX_SLICE_MS);
            }
            let new = self.count_new(&events, end);
            let reread = events.len() - new;
            report.fetched += new;
            report.reread += reread;
            self.shared.metrics.events_fetched(&org_key, new as u64);
            self.shared.metrics.events_reread(&org_key, reread as u64);
            report.invalid += self
                .dead_letter_invalid(window.invalid)
                .await
                .map_err(WalkError::DeadLetter)?;
            if end < to {
                next = Some(self.prefetch(end, (end + slice).min(to), max_events));
            }
            let slice = Arc::new(self.encode(events, end, &group));
            let n = slice.events.len() as u64;
            group = self.deliver_slice(group, slice, shutdown, report).await;
            cur = end;
            progress.advance(end, n);
        }
        Ok(())
    }

    /// How many of a slice's events no walk of the organization had read before; the slice,
    /// `[.., end)`, is read now.
    fn count_new(&self, events: &[IdentifiedEvent], end: i64) -> usize {
        let overlap = self.overlap_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let new = events
            .iter()
            .filter(|e| seen.wants(&e.id, e.event.timestamp_ms, overlap))
            .count();
        seen.advance(
            events.iter().map(|e| (&e.id, e.event.timestamp_ms)),
            end,
            overlap,
        );
        new
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

    /// Dead-letters events that could not be used (each once per process) and counts them.
    /// Fails when the dead-letter file cannot be written: then no cursor may move, or the event
    /// would be lost.
    async fn dead_letter_invalid(
        &self,
        invalid: Vec<crate::codacy::InvalidEvent>,
    ) -> Result<usize, String> {
        let org_key = self.org.key();
        let mut n = 0;
        for inv in invalid {
            let mut canon = Vec::new();
            crate::event::write_canonical(&inv.raw, &mut canon);
            let digest: [u8; 32] = Sha256::digest(&canon).into();
            if self.seen(&digest) {
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
            let mut seen = self
                .invalid_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.len() >= MAX_REMEMBERED_INVALID {
                seen.clear();
            }
            seen.insert(digest);
            drop(seen);
            self.shared.metrics.events_invalid(&org_key, 1);
            n += 1;
        }
        Ok(n)
    }

    fn seen(&self, digest: &[u8; 32]) -> bool {
        self.invalid_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(digest)
    }

    /// Encodes the events some lane of the group still wants, once per distinct encoder.
    fn encode(&self, events: Vec<IdentifiedEvent>, end: i64, group: &[LaneGuard]) -> Slice {
        let overlap = self.overlap_ms();
        let mut encoders: Vec<Encoder> = Vec::new();
        for s in group {
            if !encoders.contains(&s.handle.encoder) {
                encoders.push(s.handle.encoder.clone());
            }
        }
        let wanted_by_any: Vec<bool> = events
            .iter()
            .map(|e| {
                group
                    .iter()
                    .any(|s| s.cursor.wants(&e.id, e.event.timestamp_ms, overlap))
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
        let payloads = encoders
            .into_iter()
            .map(|enc| {
                let mut buf = Vec::with_capacity(1024);
                let encoded = events
                    .iter()
                    .zip(&wanted_by_any)
                    .map(|(e, &w)| {
                        w.then(|| {
                            buf.clear();
                            enc.encode(e, &mut buf);
                            Arc::from(buf.as_slice())
                        })
                    })
                    .collect();
                (enc, encoded)
            })
            .collect();
        Slice {
            events,
            payloads,
            meta,
            end,
        }
    }

    /// Hands the slice to every lane of the group, each on its own task, and returns the lanes
    /// that took it without failing. In daemon mode the walk does not wait for a lane much slower
    /// than the fastest: past `1 s + 2 x` the fastest lane's time, the slow one is detached. It
    /// finishes its batch alone (its lock held meanwhile), and a later pass finds it behind and
    /// lets it catch up on its own.
    async fn deliver_slice(
        &self,
        group: Vec<LaneGuard>,
        slice: Arc<Slice>,
        shutdown: &Shutdown,
        report: &mut PassReport,
    ) -> Vec<LaneGuard> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let started = tokio::time::Instant::now();
        let mut tasks: FuturesUnordered<_> = group
            .into_iter()
            .map(|lane| {
                let name = lane.handle.spec.name.clone();
                let walker = self.clone();
                let slice = slice.clone();
                let shutdown = shutdown.clone();
                let task = tokio::spawn(async move {
                    let mut lane = lane;
                    let outcome = walker.deliver_to_lane(&mut lane, &slice, &shutdown).await;
                    (lane, outcome)
                });
                track(&self.tasks, task.abort_handle());
                async move { (name, task.await) }
            })
            .collect();
        let mut still = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let (name, joined) = tokio::select! {
                next = tasks.next() => match next {
                    Some(done) => done,
                    None => break,
                },
                // Dropping `tasks` leaves the spawned deliveries running alone.
                _ = sleep => {
                    tracing::info!(organization = %self.org, slow_sinks = tasks.len(),
                        "a sink is much slower than the others; the others go on and it catches up alone");
                    break;
                }
            };
            if self.detach_slow_lanes && deadline.is_none() {
                let fastest = started.elapsed();
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1) + fastest * 2);
            }
            match joined {
                Ok((lane, SinkOutcome::Done(n))) => {
                    *report.delivered.entry(name).or_default() += n;
                    still.push(lane);
                }
                Ok((_, SinkOutcome::Interrupted(n))) => {
                    *report.delivered.entry(name).or_default() += n;
                    report.interrupted = true;
                }
                Ok((_, SinkOutcome::Failed(n, e))) => {
                    *report.delivered.entry(name.clone()).or_default() += n;
                    report.sink_errors.push((name, e));
                }
                // The sink panicked: only its lane fails (its lock was released by the unwind,
                // its cursor not moved); it is retried at the next poll.
                Err(e) => {
                    let msg = format!("delivery task failed: {e}; this is a bug, please report it");
                    tracing::error!(organization = %self.org, sink = %name, error = %msg, "sink failed unexpectedly; the other sinks go on");
                    self.shared.metrics.failure(&self.org.key(), &name, &msg);
                    report.sink_errors.push((name, msg));
                }
            }
        }
        still
    }

    async fn deliver_to_lane(
        &self,
        lane: &mut SinkState,
        slice: &Slice,
        shutdown: &Shutdown,
    ) -> SinkOutcome {
        let payloads = slice
            .payloads
            .iter()
            .find(|(enc, _)| *enc == lane.handle.encoder)
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[]);
        deliver_to_sink(
            &self.shared,
            &self.org,
            lane,
            &slice.events,
            payloads,
            &slice.meta,
            slice.end,
            self.overlap_ms(),
            self.retry,
            shutdown,
        )
        .await
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
        let records: Option<Vec<Record>> = chunk
            .iter()
            .map(|&i| {
                Some(Record {
                    event_id: events[i].id.clone(),
                    org: org.clone(),
                    timestamp_ms: events[i].event.timestamp_ms,
                    action: meta[i].0.clone(),
                    severity: meta[i].1,
                    payload: payloads.get(i).cloned().flatten()?,
                })
            })
            .collect();
        // Every event this lane wants was encoded for its format when the slice was built; a gap
        // would be a bug, and skipping the record while the cursor passes it would lose it.
        let Some(records) = records else {
            let msg = "an event of this slice was not encoded for this sink's format; this is a bug, please report it (the cursor did not move)".to_string();
            return fail(
                shared,
                org,
                state,
                msg,
                SinkErrorKind::Fatal,
                None,
                retry,
                delivered,
            );
        };
        let mut attempt = 0;
        let result = loop {
            shared
                .metrics
                .delivering(&org_key, &name, Some(shared.clock.now_ms()));
            let answer = state.handle.sink.deliver(&records).await;
            shared.metrics.delivering(&org_key, &name, None);
            match answer {
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
pub async fn run_org(
    mut pipeline: OrgPipeline,
    mut shutdown: Shutdown,
    first_poll_after: Duration,
) {
    let agent = &pipeline.shared.config.agent;
    let (min_poll, max_poll) = (agent.poll_interval, agent.max_poll_interval);
    let org_key = pipeline.org.key();
    tokio::select! {
        _ = tokio::time::sleep(first_poll_after) => {}
        _ = shutdown.wait() => return,
    }
    let mut poll = min_poll;
    loop {
        let started = pipeline.shared.clock.now_ms();
        // Boxed: between polls an organization's task then holds only this loop's few words, not
        // the pass's whole state machine (10,000 idle organizations, one task each).
        let report = Box::pin(pipeline.run_pass(&shutdown)).await;
        log_pass(&org_key, &report);
        if shutdown.is_triggered() {
            break;
        }
        // A quiet organization is polled less and less often (up to max_poll_interval); its
        // first new event brings it back to poll_interval.
        let quiet = report.ok() && report.delivered.values().all(|&n| n == 0);
        poll = if quiet {
            (poll * 2).min(max_poll)
        } else {
            min_poll
        };
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

/// One info line per poll per organization: new events, events re-read, and the records each
/// sink acknowledged (`delivered="archive:12 siem:12"`; never a sum over sinks).
pub fn log_pass(org_key: &str, report: &PassReport) {
    let delivered = report
        .delivered
        .iter()
        .map(|(sink, n)| format!("{sink}:{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    if report.waiting_to_retry {
        tracing::debug!(organization = %org_key, "waiting to retry the Codacy API after an error");
    } else if report.ok() {
        tracing::info!(organization = %org_key, new = report.fetched, reread = report.reread,
            delivered = %delivered, invalid = report.invalid, interrupted = report.interrupted, "poll complete");
    } else {
        let failed: Vec<&str> = report.sink_errors.iter().map(|(s, _)| s.as_str()).collect();
        // `fetch_error` only when there is one.
        tracing::warn!(organization = %org_key, new = report.fetched, reread = report.reread,
            delivered = %delivered, invalid = report.invalid,
            fetch_error = report.fetch_error.as_deref(), failed_sinks = ?failed, "poll incomplete");
    }
}
