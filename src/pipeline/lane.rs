//! A lane's state and its delivery: batches of what it wants from a slice, retries within a
//! pass, backoff between passes, and the checkpoint written after every acknowledged batch.

use super::slice::{Slice, Wanted};
use super::{RetryPolicy, Shared, Shutdown, SinkHandle};
use crate::checkpoint::{self, CheckpointError, Cursor};
use crate::event::OrgRef;
use crate::sink::{Record, SinkError, SinkErrorKind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often a cursor that only moved because time passed (nothing delivered) is written. Writing
/// it every poll would fsync every checkpoint every minute at idle; losing such a move in a crash
/// only means refetching a few minutes that held nothing, and every delivered batch is still
/// written at once.
const IDLE_CHECKPOINT_EVERY_MS: i64 = 5 * 60 * 1000;

/// A lane's state: held under the lane's lock by whoever drives it.
#[derive(Debug)]
pub(super) struct SinkState {
    pub(super) handle: Arc<SinkHandle>,
    pub(super) path: PathBuf,
    pub(super) cursor: Cursor,
    /// Set when the checkpoint could not be read: this (organization, sink) is stopped.
    pub(super) broken: Option<String>,
    pub(super) failures: u32,
    pub(super) retry_at_ms: i64,
    /// When the checkpoint was last written (clock ms), and the cursor it holds.
    pub(super) written_at_ms: i64,
    pub(super) written_cursor_ms: i64,
}

/// A lane: one (organization, sink) pair. Its state is locked by whoever drives it (the
/// organization's shared walk, its own catch-up, or a delivery that outlived a walk), so a lane
/// that is busy is simply not in the next walk: no lane ever waits for another.
#[derive(Debug)]
pub(super) struct Lane {
    pub(super) state: Arc<tokio::sync::Mutex<SinkState>>,
}

pub(super) type LaneGuard = tokio::sync::OwnedMutexGuard<SinkState>;

/// Every task a pipeline started that may outlive a pass (catch-ups, detached deliveries).
pub(super) type LaneTasks = Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>;

/// Remembers a task so that the pipeline ends it when it goes (finished ones are forgotten).
pub(super) fn track(tasks: &LaneTasks, task: tokio::task::AbortHandle) {
    let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// How a lane's delivery of a slice ended, with the records acknowledged meanwhile.
pub(super) enum SinkOutcome {
    Done(usize),
    Interrupted(usize),
    Failed(usize, String),
}

/// Delivers what the lane wants from `slice` in batches, moving and writing its checkpoint after
/// each acknowledged batch, then moves its cursor to the slice's end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn deliver_to_sink(
    shared: &Shared,
    org: &Arc<OrgRef>,
    state: &mut SinkState,
    slice: &Slice,
    wanted: &Wanted,
    overlap: i64,
    retry: RetryPolicy,
    shutdown: &Shutdown,
) -> SinkOutcome {
    let mut delivered = 0;
    for chunk in wanted.chunks(state.handle.spec.batch_max_events.max(1)) {
        if shutdown.is_triggered() {
            return SinkOutcome::Interrupted(delivered);
        }
        let records: Vec<Record> = chunk
            .iter()
            .map(|(i, payload)| Record {
                event_id: slice.events[*i].id.clone(),
                org: org.clone(),
                timestamp_ms: slice.events[*i].event.timestamp_ms,
                action: slice.meta[*i].0.clone(),
                severity: slice.meta[*i].1,
                payload: payload.clone(),
            })
            .collect();
        if let Err(e) = send_with_retries(shared, org, state, &records, retry, shutdown).await {
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
        let last_ts = records.last().map_or(slice.end, |r| r.timestamp_ms);
        let acked = chunk.iter().map(|(i, _)| {
            let e = &slice.events[*i];
            (&e.id, e.event.timestamp_ms)
        });
        state.cursor.advance(acked, last_ts, overlap);
        if let Err(e) = commit(shared, org, &mut *state).await {
            return checkpoint_write_failed(shared, org, state, e, retry, delivered);
        }
        delivered += records.len();
        shared
            .metrics
            .events_delivered(&org.key(), &state.handle.spec.name, records.len() as u64);
    }
    finish_slice(shared, org, state, slice.end, overlap, retry, delivered).await
}

/// One batch to the sink, tried up to `attempts_per_batch` times within this pass.
async fn send_with_retries(
    shared: &Shared,
    org: &OrgRef,
    state: &SinkState,
    records: &[Record],
    retry: RetryPolicy,
    shutdown: &Shutdown,
) -> Result<(), SinkError> {
    let name = &state.handle.spec.name;
    let org_key = org.key();
    let mut attempt = 0;
    loop {
        shared
            .metrics
            .delivering(&org_key, name, Some(shared.clock.now_ms()));
        let answer = state.handle.sink.deliver(records).await;
        shared.metrics.delivering(&org_key, name, None);
        let Err(e) = answer else {
            return Ok(());
        };
        attempt += 1;
        if attempt >= retry.attempts_per_batch || shutdown.is_triggered() {
            return Err(e);
        }
        shared.metrics.retry(&format!("sink:{name}"));
        let wait = e
            .retry_after
            .unwrap_or_else(|| retry.transient.delay(attempt - 1));
        tracing::warn!(organization = %org_key, sink = %name, error = %e, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// Every batch of the slice was acknowledged: the cursor moves to the slice's end, and the lane
/// is healthy again.
async fn finish_slice(
    shared: &Shared,
    org: &OrgRef,
    state: &mut SinkState,
    slice_end: i64,
    overlap: i64,
    retry: RetryPolicy,
    delivered: usize,
) -> SinkOutcome {
    let org_key = org.key();
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
            shared.metrics.checkpoint(
                &org_key,
                &state.handle.spec.name,
                state.cursor.cursor_ms,
                now,
            );
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
        .success(&org_key, &state.handle.spec.name, shared.clock.now_ms());
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

/// Writes the lane's cursor as its checkpoint and shows it on the lag gauges.
pub(super) async fn commit(
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
