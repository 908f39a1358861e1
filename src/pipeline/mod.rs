//! An organization's pipeline: walk -> identify -> encode -> lanes -> commit.
//!
//! - **The walk** fetches the organization's window oldest-first in bounded slices (through the
//!   one request scheduler in `codacy`), identifies each slice's events from a consistent read, and
//!   encodes each event once per format some lane of that format wants it in.
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
//!
//! Where each part lives:
//! - `org`: [`OrgPipeline`], an organization's lanes and one pass over them (reset requests,
//!   cursors ahead of the clock, fetch failures, the checkpoints written on shutdown).
//! - `walk`: the walk shared by a group of lanes (fetch ahead, halve a slice too large, hand each
//!   slice to every lane of the group and detach the slow ones).
//! - `slice`: what a walk makes of one fetched slice: invalid events dead-lettered once, and for
//!   each lane the events it wants with their records in its format.
//! - `lane`: a lane's state and its delivery: batches, retries within a pass, backoff between
//!   passes, the checkpoint written after each acknowledged batch.
//! - `catch_up`: a lane far behind the others walking alone from its own cursor.
//! - `run`: the daemon's polls (organizations as data, passes in the order they fall due, at
//!   most a few per request slot at once), and the log line per pass.

mod catch_up;
mod lane;
mod org;
mod run;
mod slice;
mod walk;

pub use org::OrgPipeline;
pub use run::{log_pass, PollCommand, Polls};

use crate::clock::{Backoff, SharedClock};
use crate::codacy::EventSource;
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::format::Encoder;
use crate::sink::{Sink, SinkSpec};
use crate::telemetry::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The first slice of a window walk; it doubles while slices stay small.
pub(crate) const INITIAL_SLICE_MS: i64 = 24 * 3600 * 1000;
pub(crate) const MAX_SLICE_MS: i64 = 30 * 24 * 3600 * 1000;

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

/// A shutdown signal: set once, seen by every task. A cancellation token rather than a watch
/// channel: an organization's own signal (a child of the daemon's, so that a reload can stop one
/// organization) then costs about a hundred bytes instead of several hundred, 10,000 times over,
/// and dropping the trigger never reads as a shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

#[derive(Debug)]
pub struct ShutdownTrigger(CancellationToken);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.cancel();
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let token = CancellationToken::new();
        (ShutdownTrigger(token.clone()), Shutdown(token))
    }

    /// A signal of its own that is also set when this one is.
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let token = self.0.child_token();
        (ShutdownTrigger(token.clone()), Shutdown(token))
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    pub async fn wait(&mut self) {
        self.0.cancelled().await
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

/// The outcome of one pass over an organization.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    /// Events read for the first time: no lane of the organization had them (see
    /// Counting in the module docs).
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

    /// Adds a catch-up's report to this pass's.
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
