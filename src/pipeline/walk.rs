//! The walk shared by a group of lanes: fetch `[from, to)` oldest-first in slices (the next one
//! while this one is delivered, a slice too large for the memory cap halved), and hand each slice
//! to every lane of the group at once, detaching a lane much slower than the others.

use super::lane::{deliver_to_sink, track, LaneGuard, LaneTasks, SinkOutcome, SinkState};
use super::slice::{Encoded, InvalidSeen, Slice, Wanted};
use super::{PassReport, RetryPolicy, Shared, Shutdown, INITIAL_SLICE_MS, MAX_SLICE_MS};
use crate::checkpoint::Cursor;
use crate::codacy::{FetchedWindow, WindowError};
use crate::event::{identify, IdentifiedEvent, OrgRef};
use crate::format::Encoder;
use std::sync::Arc;
use std::time::Duration;

/// How far the organization's events have been read, whichever lane's walk read them: the
/// furthest lane's cursor with the ids of its overlap, moved by every walk. An event it `wants`
/// is new; any other was read before (the overlap, a catch-up behind the others, a replay), so
/// `events_fetched_total` counts each event once and `events_reread_total` the rest.
pub(super) type Seen = Arc<std::sync::Mutex<Cursor>>;

#[derive(Debug)]
pub(super) enum WalkError {
    Fetch(WindowError),
    /// An invalid event could not be dead-lettered: no cursor may move past it.
    DeadLetter(String),
}

/// Walks `[from, to)` in slices for a group of lanes: fetch, identify and encode each slice once,
/// and hand it to every lane in the group. Used by the organization's shared walk and, with a
/// group of one, by a lane's catch-up.
#[derive(Clone)]
pub(super) struct Walker {
    pub(super) org: Arc<OrgRef>,
    pub(super) shared: Shared,
    pub(super) retry: RetryPolicy,
    pub(super) invalid_seen: InvalidSeen,
    pub(super) seen: Seen,
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) detach_slow_lanes: bool,
    pub(super) tasks: LaneTasks,
}

impl Walker {
    pub(super) fn overlap_ms(&self) -> i64 {
        self.shared.config.agent.overlap.as_millis() as i64
    }

    /// Walks `[from, to)` for the group: each slice is fetched (the next one while this one is
    /// delivered), its invalid events dead-lettered, and handed to the lanes that took the
    /// previous one without failing. Stops at the first fetch error, or when no lane is left.
    pub(super) async fn walk(
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
                _ => self.prefetch(cur, end, max_events, Vec::new()),
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
            let (window, events, encoded) = match fetched {
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
                // Every lane of the group will be at `end` when the next slice arrives, so it
                // wants every event of it: encode them there, beside this slice's delivery.
                let formats = super::slice::formats(&group);
                next = Some(self.prefetch(end, (end + slice).min(to), max_events, formats));
            }
            let (slice, lanes) = self.encode(events, end, group, encoded);
            let n = slice.events.len() as u64;
            group = self
                .deliver_slice(Arc::new(slice), lanes, shutdown, report)
                .await;
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

    /// Starts fetching and identifying `[from, to)` on its own task, and encoding its events in
    /// `formats`.
    fn prefetch(&self, from: i64, to: i64, max_events: usize, formats: Vec<Encoder>) -> Prefetch {
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
            let encoded = super::slice::encode_all(&events, formats);
            Ok((window, events, encoded))
        });
        Prefetch {
            from,
            to,
            task: Some(task),
        }
    }

    /// Hands the slice to every lane of the group, each on its own task, and returns the lanes
    /// that took it without failing. In daemon mode the walk does not wait for a lane much slower
    /// than the fastest: past `1 s + 2 x` the fastest lane's time, the slow one is detached. It
    /// finishes its batch alone (its lock held meanwhile), and a later pass finds it behind and
    /// lets it catch up on its own.
    async fn deliver_slice(
        &self,
        slice: Arc<Slice>,
        lanes: Vec<(LaneGuard, Wanted)>,
        shutdown: &Shutdown,
        report: &mut PassReport,
    ) -> Vec<LaneGuard> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let started = tokio::time::Instant::now();
        let mut tasks: FuturesUnordered<_> = lanes
            .into_iter()
            .map(|(lane, wanted)| {
                let name = lane.handle.spec.name.clone();
                let walker = self.clone();
                let slice = slice.clone();
                let shutdown = shutdown.clone();
                let task = tokio::spawn(async move {
                    let mut lane = lane;
                    let outcome = walker
                        .deliver_to_lane(&mut lane, &slice, &wanted, &shutdown)
                        .await;
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
        wanted: &Wanted,
        shutdown: &Shutdown,
    ) -> SinkOutcome {
        deliver_to_sink(
            &self.shared,
            &self.org,
            lane,
            slice,
            wanted,
            self.overlap_ms(),
            self.retry,
            shutdown,
        )
        .await
    }
}

type PrefetchResult = Result<(FetchedWindow, Vec<IdentifiedEvent>, Vec<Encoded>), WindowError>;

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
