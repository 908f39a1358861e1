//! [`OrgPipeline`]: an organization's lanes, and one pass over them.

use super::lane::{commit, Lane, LaneGuard, LaneTasks, SinkState};
use super::slice::InvalidSeen;
use super::walk::{Seen, WalkError, Walker};
use super::{PassReport, RetryPolicy, Shared, Shutdown, SinkHandle};
use crate::checkpoint::{self, Cursor};
use crate::codacy::WindowError;
use crate::config::RETENTION;
use crate::event::OrgRef;
use std::sync::Arc;
use std::time::Duration;

/// An organization's lanes, and what their walks share: how far the organization was read, the
/// invalid events already dead-lettered, the fetch's retry state and the tasks still running.
pub struct OrgPipeline {
    pub(super) org: Arc<OrgRef>,
    pub(super) shared: Shared,
    pub(super) lanes: Vec<Lane>,
    pub(super) retry: RetryPolicy,
    pub(super) invalid_seen: InvalidSeen,
    pub(super) seen: Seen,
    /// A progress bar (`once` on a terminal).
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) fetch_failures: u32,
    pub(super) fetch_retry_at_ms: i64,
    /// Daemon mode: a slow lane is detached from the shared walk, and a lane far behind the
    /// others catches up alone. Off for `once`, which waits for every lane.
    pub(super) independent_lanes: bool,
    pub(super) catch_ups: Vec<tokio::task::JoinHandle<PassReport>>,
    /// Every task this pipeline started that may outlive a pass (catch-ups, detached
    /// deliveries): aborted when the pipeline goes, as a process exit would end them, so that a
    /// stopped pipeline never delivers or commits behind its successor's back.
    pub(super) tasks: LaneTasks,
}

impl Drop for OrgPipeline {
    fn drop(&mut self) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.iter() {
            t.abort();
        }
    }
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

    pub(super) fn overlap_ms(&self) -> i64 {
        self.shared.config.agent.overlap.as_millis() as i64
    }

    pub(super) fn walker(&self) -> Walker {
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
            // Lanes far behind the leader catch up alone; the others walk together.
            group = self.catch_up_lanes_behind(group, to, floor, shutdown);
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
