//! Property tests of the dedupe/checkpoint logic, driving the real `OrgPipeline` against an
//! in-memory event source and recording sinks: for any sequence of new and late events
//! (identical duplicates and shared milliseconds included), clock ticks, polls with failing or
//! "crashing" sinks (delivered, then killed before the commit) and restarts from disk, every event
//! the API holds is delivered to every sink, and duplicates only come from crashed batches.

use async_trait::async_trait;
use codacy_audit_forwarder::clock::{Clock, ManualClock, SharedClock};
use codacy_audit_forwarder::codacy::{EventSource, FetchedWindow, WindowError};
use codacy_audit_forwarder::config::{Config, TokenSources};
use codacy_audit_forwarder::deadletter::DeadLetter;
use codacy_audit_forwarder::event::{identify, AuditEvent, EventId, OrgRef, Provider};
use codacy_audit_forwarder::format::Encoder;
use codacy_audit_forwarder::pipeline::{OrgPipeline, RetryPolicy, Shared, Shutdown, SinkHandle};
use codacy_audit_forwarder::sink::{Record, Sink, SinkError};
use codacy_audit_forwarder::telemetry::Metrics;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const T0: i64 = 1_700_000_000_000;
const MAX_OVERLAP_MS: i64 = 10_000;

#[derive(Debug, Default)]
struct ModelSource {
    held: Mutex<Vec<Value>>,
    calls: Mutex<u64>,
}

#[async_trait]
impl EventSource for ModelSource {
    async fn fetch(
        &self,
        _org: &OrgRef,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError> {
        let held = self.held.lock().unwrap().clone();
        let mut events: Vec<AuditEvent> = held
            .into_iter()
            .map(|v| AuditEvent::from_value(v).unwrap())
            .filter(|e| e.timestamp_ms >= from && e.timestamp_ms < to)
            .collect();
        if events.len() > max_events {
            return Err(WindowError::TooMany(max_events));
        }
        // Never trust server order: rotate by a call counter.
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        if !events.is_empty() {
            let k = (*calls as usize) % events.len();
            events.rotate_left(k);
            if *calls % 2 == 0 {
                events.reverse();
            }
        }
        Ok(FetchedWindow {
            events,
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Ok,
    Fail,
    /// Delivered, then the process dies before the commit.
    Crash,
    /// Accepts the batch and answers nothing for 10 minutes, then times out.
    Hang,
    /// A bug in the sink: it panics.
    Panic,
}

#[derive(Debug, Default)]
struct RecordingSink {
    delivered: Mutex<Vec<EventId>>,
    plan: Mutex<VecDeque<Behaviour>>,
    crashed: Mutex<bool>,
    crashed_records: Mutex<usize>,
}

#[async_trait]
impl Sink for RecordingSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if *self.crashed.lock().unwrap() {
            return Err(SinkError::transient("process is dead"));
        }
        let b = self
            .plan
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Behaviour::Ok);
        match b {
            Behaviour::Ok => {
                self.delivered
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|r| r.event_id.clone()));
                Ok(())
            }
            Behaviour::Fail => Err(SinkError::transient("down")),
            Behaviour::Panic => panic!("a sink bug (expected by the test)"),
            Behaviour::Hang => {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                Err(SinkError::transient("timed out after 10 minutes"))
            }
            Behaviour::Crash => {
                self.delivered
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|r| r.event_id.clone()));
                *self.crashed.lock().unwrap() = true;
                *self.crashed_records.lock().unwrap() += batch.len();
                Err(SinkError::transient("killed"))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A new event `back_ms` before now (0 = now; up to the overlap = a late arrival).
    Add {
        back_ms: i64,
        action: u8,
        text: u8,
    },
    /// A byte-identical copy of an existing event.
    Duplicate(usize),
    Tick(i64),
    Poll(Vec<Behaviour>, Vec<Behaviour>),
    Restart,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => Just(Behaviour::Ok),
        2 => Just(Behaviour::Fail),
        1 => Just(Behaviour::Crash),
        1 => Just(Behaviour::Hang),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MAX_OVERLAP_MS, 0u8..3, 0u8..3).prop_map(|(back_ms, action, text)| Op::Add { back_ms, action, text }),
        2 => (0usize..1000).prop_map(Op::Duplicate),
        3 => prop_oneof![Just(0i64), 1i64..5, 1i64..20_000, 1i64..400_000].prop_map(Op::Tick),
        3 => (prop::collection::vec(behaviour(), 0..4), prop::collection::vec(behaviour(), 0..4))
            .prop_map(|(a, b)| Op::Poll(a, b)),
        1 => Just(Op::Restart),
    ]
}

struct World {
    _dir: tempfile::TempDir,
    config: Arc<Config>,
    clock: Arc<ManualClock>,
    source: Arc<ModelSource>,
    sinks: Vec<Arc<RecordingSink>>,
    handles: Vec<Arc<SinkHandle>>,
    org: OrgRef,
}

impl World {
    fn new(batch: [usize; 2], max_events: usize, overlap_ms: i64) -> World {
        // tmpfs when available: thousands of checkpoint fsyncs per run stay cheap.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let text = format!(
            r#"
[agent]
state_dir = "{}"
initial_lookback = "1h"
overlap = "{overlap_ms}ms"
max_events_in_memory = {max_events}
[[organizations]]
provider = "gh"
name = "acme"
[[sinks]]
name = "a"
type = "file"
path = "/dev/null"
batch_max_events = {}
[[sinks]]
name = "b"
type = "file"
path = "/dev/null"
format = "cef"
batch_max_events = {}
"#,
            dir.path().display(),
            batch[0],
            batch[1]
        );
        let tokens = TokenSources {
            env: Some("t".into()),
            credentials_directory: None,
        };
        let config = Arc::new(Config::from_toml(&text, "props.toml", &tokens, false).unwrap());
        let sinks: Vec<Arc<RecordingSink>> =
            (0..2).map(|_| Arc::new(RecordingSink::default())).collect();
        let handles = config
            .sinks
            .iter()
            .zip(&sinks)
            .map(|(spec, s)| {
                Arc::new(SinkHandle {
                    spec: spec.clone(),
                    sink: s.clone() as Arc<dyn Sink>,
                    encoder: Encoder::new(spec.format, spec.format_options.clone()),
                })
            })
            .collect();
        World {
            _dir: dir,
            config,
            clock: Arc::new(ManualClock::new(T0)),
            source: Arc::new(ModelSource::default()),
            sinks,
            handles,
            org: OrgRef::new(Provider::Gh, "acme"),
        }
    }

    fn pipeline(&self) -> OrgPipeline {
        self.pipeline_with(Arc::new(Metrics::new()))
            .waiting_for_every_lane()
    }

    /// The daemon's pipeline: lanes detach and catch up alone.
    fn daemon_pipeline(&self) -> OrgPipeline {
        self.pipeline_with(Arc::new(Metrics::new()))
    }

    /// `once`'s pipeline, or the daemon's.
    fn pipeline_for(&self, daemon: bool) -> OrgPipeline {
        if daemon {
            self.daemon_pipeline()
        } else {
            self.pipeline()
        }
    }

    fn pipeline_with(&self, metrics: Arc<Metrics>) -> OrgPipeline {
        let clock: SharedClock = self.clock.clone();
        let shared = Shared {
            config: self.config.clone(),
            source: self.source.clone(),
            clock,
            metrics,
            invalid_events: DeadLetter::in_state_dir(&self.config.agent.state_dir, "invalid"),
        };
        OrgPipeline::new(
            self.org.clone(),
            &self.handles,
            shared,
            RetryPolicy::default(),
        )
    }

    fn expected_ids(&self) -> Vec<EventId> {
        self.expected_ids_before(i64::MAX)
    }

    /// Ids of the held events older than `to_ms` (a pass's exclusive end).
    fn expected_ids_before(&self, to_ms: i64) -> Vec<EventId> {
        let events = self
            .source
            .held
            .lock()
            .unwrap()
            .iter()
            .map(|v| AuditEvent::from_value(v.clone()).unwrap())
            .filter(|e| e.timestamp_ms < to_ms)
            .collect();
        let mut ids: Vec<EventId> = identify(&Arc::new(self.org.clone()), events, 0)
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids
    }
}

/// kill -9: in-memory state is gone (the caller starts a new pipeline from the checkpoints on
/// disk, and dropping the old one ends its tasks); the sinks are reachable again.
fn restart_after_kill(w: &World) {
    for s in &w.sinks {
        *s.crashed.lock().unwrap() = false;
        s.plan.lock().unwrap().clear();
    }
}

fn run_ops(
    ops: Vec<Op>,
    batch: [usize; 2],
    max_events: usize,
    overlap_ms: i64,
) -> Result<(), TestCaseError> {
    run_ops_in(ops, batch, max_events, overlap_ms, false)
}

/// Runs `ops`; with `daemon`, in the daemon's mode, where sink `a` (always healthy) must have
/// every held event after every poll, whatever sink `b` does (fail, crash, hang for 10 minutes).
fn run_ops_in(
    ops: Vec<Op>,
    batch: [usize; 2],
    max_events: usize,
    overlap_ms: i64,
    daemon: bool,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let w = World::new(batch, max_events, overlap_ms);
        let (_t, shutdown) = Shutdown::new();
        let mut p = w.pipeline_for(daemon);
        for op in ops {
            // A crash inside a catch-up surfaces after the pass that started it: a kill -9 too.
            if w.sinks.iter().any(|s| *s.crashed.lock().unwrap()) {
                restart_after_kill(&w);
                p = w.pipeline_for(daemon);
            }
            match op {
                Op::Add {
                    back_ms,
                    action,
                    text,
                } => {
                    // Late arrivals only within the overlap: older ones are the documented limit.
                    let ts = w.clock.now_ms() - back_ms.min(overlap_ms);
                    let actions = [
                        "user.login",
                        "repositories.tokens.create",
                        "future.thing.do",
                    ];
                    let texts = ["plain", "a|b=c\\d\nline", "ünï ☃"];
                    w.source.held.lock().unwrap().push(json!({
                        "timestamp": chrono::DateTime::from_timestamp_millis(ts).unwrap()
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "action": actions[action as usize], "description": texts[text as usize],
                        "result": "succeed", "actor": {"email": "a@b.c"}
                    }));
                }
                Op::Duplicate(i) => {
                    let mut held = w.source.held.lock().unwrap();
                    if !held.is_empty() {
                        let copy = held[i % held.len()].clone();
                        // Only if still inside the overlap: older late copies are the documented limit.
                        let ts = AuditEvent::from_value(copy.clone()).unwrap().timestamp_ms;
                        if ts >= w.clock.now_ms() - overlap_ms {
                            held.push(copy);
                        }
                    }
                }
                Op::Tick(ms) => w.clock.advance(ms),
                Op::Poll(a, b) => {
                    let a_healthy = daemon && a.is_empty();
                    w.sinks[0].plan.lock().unwrap().extend(a);
                    w.sinks[1].plan.lock().unwrap().extend(b);
                    let started = tokio::time::Instant::now();
                    let _ = p.run_pass(&shutdown).await;
                    if a_healthy {
                        // Virtual time: a hanging `b` would have held the pass for 10 minutes.
                        let took = started.elapsed();
                        prop_assert!(
                            took < std::time::Duration::from_secs(5),
                            "a pass took {:?}: the healthy sink waited for the other one",
                            took
                        );
                    }
                    if a_healthy && !*w.sinks[1].crashed.lock().unwrap() {
                        let mut got = w.sinks[0].delivered.lock().unwrap().clone();
                        got.sort();
                        got.dedup();
                        prop_assert_eq!(
                            got,
                            w.expected_ids_before(w.clock.now_ms()),
                            "the healthy sink waited for the other one"
                        );
                    }
                    if w.sinks.iter().any(|s| *s.crashed.lock().unwrap()) {
                        restart_after_kill(&w);
                        p = w.pipeline_for(daemon);
                    }
                }
                Op::Restart => {
                    // A graceful restart: lanes finish what they hold (a kill is `Crash`).
                    while p.lanes_busy() {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    p.write_pending_checkpoints().await;
                    p = w.pipeline_for(daemon);
                }
            }
        }
        // Recovery: every sink healthy, hangs end, time passes beyond any backoff, poll until
        // clean (a catch-up's report joins the next pass's).
        if w.sinks.iter().any(|s| *s.crashed.lock().unwrap()) {
            restart_after_kill(&w);
            p = w.pipeline_for(daemon);
        }
        for s in &w.sinks {
            s.plan.lock().unwrap().clear();
        }
        tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
        let mut clean = false;
        for _ in 0..8 {
            w.clock.advance(3_600_000);
            let r = p.run_pass(&shutdown).await;
            // A catch-up started by this pass reports to the next one: settled only when no lane
            // is still at work and a whole pass delivered nothing.
            let busy = p.lanes_busy();
            while p.lanes_busy() {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            p.write_pending_checkpoints().await;
            if !busy && r.ok() && r.delivered.values().sum::<usize>() == 0 {
                clean = true;
                break;
            }
        }
        prop_assert!(clean, "pipeline did not settle");
        let expected = w.expected_ids();
        for (i, s) in w.sinks.iter().enumerate() {
            let mut got = s.delivered.lock().unwrap().clone();
            got.sort();
            let mut unique = got.clone();
            unique.dedup();
            prop_assert_eq!(
                &unique,
                &expected,
                "sink {} is missing events or has foreign ones",
                i
            );
            let dups = got.len() - unique.len();
            let crashed = *s.crashed_records.lock().unwrap();
            prop_assert!(
                dups <= crashed,
                "sink {}: {} duplicates but only {} records in crashed batches",
                i,
                dups,
                crashed
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn every_held_event_is_delivered_to_every_sink(
        ops in prop::collection::vec(op(), 1..40),
        batch_a in 1usize..4,
        batch_b in 1usize..6,
        max_events in 2usize..12,
        overlap_ms in prop_oneof![Just(0i64), Just(MAX_OVERLAP_MS)],
    ) {
        run_ops(ops, [batch_a, batch_b], max_events, overlap_ms)?;
    }

    /// The daemon's lanes: sink `a` never fails; sink `b` fails, crashes or hangs at random.
    /// After every poll `a` has everything and the pass did not wait for `b` (virtual time), and
    /// in the end both have every event, duplicates only from crashed batches.
    #[test]
    fn a_healthy_lane_is_never_held_back_and_every_lane_catches_up(
        ops in prop::collection::vec(op(), 1..40),
        batch_a in 1usize..4,
        batch_b in 1usize..6,
        max_events in 2usize..12,
        overlap_ms in prop_oneof![Just(0i64), Just(MAX_OVERLAP_MS)],
    ) {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                Op::Poll(_, b) => Op::Poll(vec![], b),
                other => other,
            })
            .collect();
        run_ops_in(ops, [batch_a, batch_b], max_events, overlap_ms, true)?;
    }
}

#[test]
fn failing_sink_does_not_hold_back_the_other() {
    // After the first poll, sink b has the event and sink a does not; recovery catches a up.
    let w = World::new([1, 1], 10, MAX_OVERLAP_MS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let mut p = w.pipeline();
        w.source
            .held
            .lock()
            .unwrap()
            .push(json!({"timestamp": T0 - 5, "action": "user.login"}));
        w.sinks[0].plan.lock().unwrap().push_back(Behaviour::Fail);
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.sink_errors.len(), 1);
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 0);
        assert_eq!(w.sinks[1].delivered.lock().unwrap().len(), 1);
        // Not due yet: backoff keeps it out of the next immediate pass, the other sink moves on.
        w.source
            .held
            .lock()
            .unwrap()
            .push(json!({"timestamp": T0 + 1, "action": "user.login"}));
        w.clock.advance(2);
        let _ = p.run_pass(&shutdown).await;
        assert_eq!(w.sinks[1].delivered.lock().unwrap().len(), 2);
        w.clock.advance(600_000);
        let r = p.run_pass(&shutdown).await;
        assert!(r.ok(), "{r:?}");
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 2);
        assert_eq!(w.sinks[1].delivered.lock().unwrap().len(), 2);
    });
}

#[test]
fn a_poll_with_nothing_new_delivers_nothing_and_keeps_checkpoints_small() {
    let w = World::new([10, 10], 100, MAX_OVERLAP_MS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let mut p = w.pipeline();
        for i in 0..5 {
            w.source
                .held
                .lock()
                .unwrap()
                .push(json!({"timestamp": T0 - 100 + i, "action": "user.login"}));
        }
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.delivered.values().sum::<usize>(), 10);
        w.clock.advance(1_000);
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.delivered.values().sum::<usize>(), 0);
        // After the overlap passes, remembered ids are pruned (written on shutdown at the latest).
        w.clock.advance(60_000);
        let _ = p.run_pass(&shutdown).await;
        p.write_pending_checkpoints().await;
        let path =
            codacy_audit_forwarder::checkpoint::path_for(&w.config.agent.state_dir, &w.org, "a");
        let c = codacy_audit_forwarder::checkpoint::load(&path, &w.org, "a", w.clock.now_ms())
            .unwrap()
            .unwrap();
        assert!(c.recent.is_empty(), "{:?}", c.recent);
    });
}

/// At idle, polls every minute must not rewrite (and fsync) every checkpoint every minute; the
/// cursor's move is written every few minutes and on shutdown, and nothing is redelivered.
#[test]
fn idle_polls_write_checkpoints_only_now_and_then() {
    let w = World::new([10, 10], 100, MAX_OVERLAP_MS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let path =
            codacy_audit_forwarder::checkpoint::path_for(&w.config.agent.state_dir, &w.org, "a");
        let stored = || {
            codacy_audit_forwarder::checkpoint::load(&path, &w.org, "a", w.clock.now_ms())
                .unwrap()
                .unwrap()
                .cursor_ms
        };
        let mut p = w.pipeline();
        w.source
            .held
            .lock()
            .unwrap()
            .push(json!({"timestamp": T0 - 100, "action": "user.login"}));
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.delivered.values().sum::<usize>(), 2);
        let after_delivery = stored();
        // Four idle polls a minute apart: the checkpoint file keeps the delivered position.
        for _ in 0..4 {
            w.clock.advance(60_000);
            let r = p.run_pass(&shutdown).await;
            assert!(r.ok(), "{r:?}");
            assert_eq!(stored(), after_delivery);
        }
        // Five minutes after the last write, the quiet stretch is written.
        w.clock.advance(60_000);
        let _ = p.run_pass(&shutdown).await;
        assert!(stored() > after_delivery);
        let written = stored();
        // A newer move is written on shutdown; a restart from either position delivers nothing again.
        w.clock.advance(60_000);
        let _ = p.run_pass(&shutdown).await;
        assert_eq!(stored(), written);
        p.write_pending_checkpoints().await;
        assert!(stored() > written);
        let mut restarted = w.pipeline();
        let r = restarted.run_pass(&shutdown).await;
        assert_eq!(r.delivered.values().sum::<usize>(), 0);
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 1);
    });
}

/// A source that also returns one unparseable event.
#[derive(Debug)]
struct WithInvalid(ModelSource);

#[async_trait]
impl EventSource for WithInvalid {
    async fn fetch(
        &self,
        org: &OrgRef,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError> {
        let mut w = self.0.fetch(org, from, to, max_events).await?;
        w.invalid
            .push(codacy_audit_forwarder::codacy::InvalidEvent {
                raw: json!({"action": "no.timestamp"}),
                error: codacy_audit_forwarder::event::EventParseError::MissingTimestamp.into(),
                position: "test".into(),
            });
        Ok(w)
    }
}

#[test]
fn an_invalid_event_that_cannot_be_dead_lettered_stops_the_pass_without_moving_cursors() {
    let w = World::new([10, 10], 100, MAX_OVERLAP_MS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let source = Arc::new(WithInvalid(ModelSource::default()));
        source
            .0
            .held
            .lock()
            .unwrap()
            .push(json!({"timestamp": T0 - 5, "action": "user.login"}));
        // The dead-letter file's directory is a regular file: every write fails.
        let blocker = w.config.agent.state_dir.join("blocker");
        std::fs::write(&blocker, "x").unwrap();
        let clock: SharedClock = w.clock.clone();
        let shared = |dl: DeadLetter| Shared {
            config: w.config.clone(),
            source: source.clone(),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::new()),
            invalid_events: dl,
        };
        let mut p = OrgPipeline::new(
            w.org.clone(),
            &w.handles,
            shared(DeadLetter::at(blocker.join("invalid.ndjson"))),
            RetryPolicy::default(),
        )
        .waiting_for_every_lane();
        let r = p.run_pass(&shutdown).await;
        assert!(
            r.fetch_error
                .as_deref()
                .unwrap_or("")
                .contains("dead-letter"),
            "{r:?}"
        );
        assert!(w
            .sinks
            .iter()
            .all(|s| s.delivered.lock().unwrap().is_empty()));
        // Fixed: the event is dead-lettered and everything else delivered.
        let good = w.config.agent.state_dir.join("dead-letter/invalid.ndjson");
        let mut p = OrgPipeline::new(
            w.org.clone(),
            &w.handles,
            shared(DeadLetter::at(good.clone())),
            RetryPolicy::default(),
        )
        .waiting_for_every_lane();
        let r = p.run_pass(&shutdown).await;
        assert!(r.ok() && r.invalid == 1, "{r:?}");
        assert_eq!(std::fs::read_to_string(&good).unwrap().lines().count(), 1);
        assert!(w
            .sinks
            .iter()
            .all(|s| s.delivered.lock().unwrap().len() == 1));
    });
}

/// A source that remembers where each fetch started and wakes whoever waits for one.
#[derive(Debug, Default)]
struct WatchedSource {
    inner: ModelSource,
    starts: Mutex<Vec<i64>>,
    asked: tokio::sync::Notify,
}

#[async_trait]
impl EventSource for WatchedSource {
    async fn fetch(
        &self,
        org: &OrgRef,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError> {
        self.starts.lock().unwrap().push(from);
        self.asked.notify_waiters();
        self.inner.fetch(org, from, to, max_events).await
    }
}

/// Holds its first batch until the source is asked for what comes after it.
#[derive(Debug)]
struct WaitsForNextSlice {
    source: Arc<WatchedSource>,
    first: Mutex<bool>,
    delivered: Mutex<usize>,
}

#[async_trait]
impl Sink for WaitsForNextSlice {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        let first = std::mem::replace(&mut *self.first.lock().unwrap(), false);
        if first {
            let last = batch
                .iter()
                .map(|r| r.timestamp_ms)
                .max()
                .unwrap_or(i64::MAX);
            let asked_beyond = || self.source.starts.lock().unwrap().iter().any(|&s| s > last);
            let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
                while !asked_beyond() {
                    let notified = self.source.asked.notified();
                    if asked_beyond() {
                        break;
                    }
                    notified.await;
                }
            })
            .await;
            if waited.is_err() {
                return Err(SinkError::fatal(
                    "the next slice was not fetched during delivery",
                ));
            }
        }
        *self.delivered.lock().unwrap() += batch.len();
        Ok(())
    }
}

#[test]
fn the_next_slice_is_fetched_while_the_current_one_is_delivered() {
    // max_events_in_memory 4: slices of at most 2 events, so 8 events take several slices.
    let w = World::new([100, 100], 4, MAX_OVERLAP_MS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let source = Arc::new(WatchedSource::default());
        for i in 0..8 {
            source
                .inner
                .held
                .lock()
                .unwrap()
                .push(json!({"timestamp": T0 - 3_000_000 + i * 300_000, "action": "user.login"}));
        }
        let sinks: Vec<Arc<WaitsForNextSlice>> = (0..2)
            .map(|_| {
                Arc::new(WaitsForNextSlice {
                    source: source.clone(),
                    first: Mutex::new(true),
                    delivered: Mutex::new(0),
                })
            })
            .collect();
        let handles: Vec<Arc<SinkHandle>> = w
            .config
            .sinks
            .iter()
            .zip(&sinks)
            .map(|(spec, s)| {
                Arc::new(SinkHandle {
                    spec: spec.clone(),
                    sink: s.clone() as Arc<dyn Sink>,
                    encoder: Encoder::new(spec.format, spec.format_options.clone()),
                })
            })
            .collect();
        let clock: SharedClock = w.clock.clone();
        let shared = Shared {
            config: w.config.clone(),
            source: source.clone(),
            clock,
            metrics: Arc::new(Metrics::new()),
            invalid_events: DeadLetter::in_state_dir(&w.config.agent.state_dir, "invalid"),
        };
        let mut p = OrgPipeline::new(w.org.clone(), &handles, shared, RetryPolicy::default())
            .waiting_for_every_lane();
        let r = p.run_pass(&shutdown).await;
        assert!(r.ok(), "{r:?}");
        for s in &sinks {
            assert_eq!(*s.delivered.lock().unwrap(), 8);
        }
    });
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn add_events(w: &World, n: i64, back_ms: i64) {
    let now = w.clock.now_ms();
    let mut held = w.source.held.lock().unwrap();
    for i in 0..n {
        let n = held.len();
        held.push(json!({"timestamp": now - back_ms + i, "action": "user.login", "n": n}));
    }
}

/// A full disk after the sink took the batch: the lane is unhealthy at once (naming the path and
/// the OS error), no temp file is left, the write is retried without new events, and a restart
/// then replays nothing.
#[test]
fn a_failed_checkpoint_write_is_unhealthy_at_once_and_retried() {
    let w = World::new([10, 10], 100, MAX_OVERLAP_MS);
    paused_runtime().block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let mut p = w.pipeline_with(metrics.clone());
        add_events(&w, 5, 100);
        assert!(p.run_pass(&shutdown).await.ok());
        let path =
            codacy_audit_forwarder::checkpoint::path_for(&w.config.agent.state_dir, &w.org, "a");
        // The checkpoint cannot be replaced: a non-empty directory stands in its place.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "x").unwrap();
        w.clock.advance(1_000);
        add_events(&w, 3, 10);
        let r = p.run_pass(&shutdown).await;
        let (sink, err) = &r.sink_errors[0];
        assert_eq!(sink, "a", "{r:?}");
        assert!(
            err.contains(&path.display().to_string()) && err.contains("cannot write"),
            "{err}"
        );
        assert_eq!(
            w.sinks[0].delivered.lock().unwrap().len(),
            8,
            "the sink had the batch"
        );
        let key = ("gh/acme".to_string(), "a".to_string());
        let status = metrics.statuses()[&key].clone();
        assert!(status.fatal && status.last_error.as_deref() == Some(err.as_str()));
        let policy = codacy_audit_forwarder::telemetry::HealthPolicy {
            poll_interval: std::time::Duration::from_secs(60),
            stale_intervals: 3,
        };
        assert_eq!(metrics.health(w.clock.now_ms(), &policy).http_status(), 503);
        assert_eq!(
            metrics.counter(
                "codacy_forwarder_checkpoint_write_failures_total",
                &[("organization", "gh/acme"), ("sink", "a")]
            ),
            1
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Space again: the next pass writes the checkpoint although nothing new arrived.
        std::fs::remove_dir_all(&path).unwrap();
        w.clock.advance(5_000);
        let r = p.run_pass(&shutdown).await;
        assert!(r.ok(), "{r:?}");
        assert!(!metrics.statuses()[&key].fatal);
        assert_eq!(metrics.health(w.clock.now_ms(), &policy).http_status(), 200);
        let stored = codacy_audit_forwarder::checkpoint::load(&path, &w.org, "a", w.clock.now_ms())
            .unwrap()
            .unwrap();
        assert_eq!(stored.recent.len(), 8);
        // A restart replays nothing.
        let mut restarted = w.pipeline();
        let r = restarted.run_pass(&shutdown).await;
        assert_eq!(r.delivered.values().sum::<usize>(), 0, "{r:?}");
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 8);
    });
}

/// The clock set back while the agent runs (an NTP correction after a forward jump): a cursor
/// now ahead of the clock would skip everything until then; the lanes stop, naming the remedy,
/// and so does a restart from such a checkpoint.
#[test]
fn a_cursor_ahead_of_the_clock_stops_the_lane_with_the_remedy() {
    let w = World::new([10, 10], 100, MAX_OVERLAP_MS);
    paused_runtime().block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let mut p = w.pipeline_with(metrics.clone());
        add_events(&w, 3, 100);
        assert!(p.run_pass(&shutdown).await.ok());
        w.clock.advance(-3_600_000);
        add_events(&w, 3, 100);
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.sink_errors.len(), 2, "{r:?}");
        assert!(r
            .sink_errors
            .iter()
            .all(|(_, e)| e.contains("state reset --org gh/acme")));
        assert!(metrics.statuses()[&("gh/acme".to_string(), "a".to_string())].fatal);
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 3);
        // The checkpoint on disk is ahead too: a restart refuses it the same way.
        p.write_pending_checkpoints().await;
        let r = w.pipeline().run_pass(&shutdown).await;
        assert_eq!(r.sink_errors.len(), 2, "{r:?}");
        assert!(
            r.sink_errors[0].1.contains("this host's clock says"),
            "{r:?}"
        );
    });
}

/// Shuts the agent down once `after` slices were fetched.
#[derive(Debug)]
struct StopsAfter {
    source: ModelSource,
    after: u64,
    trigger: Mutex<Option<codacy_audit_forwarder::pipeline::ShutdownTrigger>>,
    fetches: Mutex<u64>,
}

#[async_trait]
impl EventSource for StopsAfter {
    async fn fetch(
        &self,
        org: &OrgRef,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError> {
        let n = {
            let mut f = self.fetches.lock().unwrap();
            *f += 1;
            *f
        };
        if n == self.after {
            if let Some(t) = self.trigger.lock().unwrap().as_ref() {
                t.trigger();
            }
        }
        self.source.fetch(org, from, to, max_events).await
    }
}

/// SIGTERM in the middle of a backfill: the pass stops after the batch in flight and says it was
/// interrupted; what was delivered is checkpointed, and the next start delivers the rest, each
/// event once.
#[test]
fn shutdown_in_the_middle_of_a_pass_stops_it_and_the_next_start_goes_on() {
    let w = World::new([2, 2], 4, MAX_OVERLAP_MS);
    paused_runtime().block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        let source = Arc::new(StopsAfter {
            source: ModelSource::default(),
            after: 12,
            trigger: Mutex::new(Some(trigger)),
            fetches: Mutex::new(0),
        });
        {
            // Spread over the hour of lookback, so the walk takes many small slices.
            let mut held = source.source.held.lock().unwrap();
            for i in 0..40 {
                held.push(json!({"timestamp": T0 - 3_500_000 + i * 80_000, "action": "user.login", "n": i}));
            }
            w.source.held.lock().unwrap().extend(held.iter().cloned());
        }
        let clock: SharedClock = w.clock.clone();
        let shared = Shared {
            config: w.config.clone(),
            source: source.clone(),
            clock,
            metrics: Arc::new(Metrics::new()),
            invalid_events: DeadLetter::in_state_dir(&w.config.agent.state_dir, "invalid"),
        };
        let mut p = OrgPipeline::new(w.org.clone(), &w.handles, shared, RetryPolicy::default());
        let r = p.run_pass(&shutdown).await;
        assert!(r.interrupted, "{r:?}");
        let first = w.sinks[0].delivered.lock().unwrap().len();
        assert!(first > 0 && first < 40, "{first} of 40 delivered before the stop");
        p.write_pending_checkpoints().await;
        drop(p);
        // The next start: a fresh pipeline from the checkpoints delivers the rest.
        let (_t, shutdown) = Shutdown::new();
        let r = w.pipeline().run_pass(&shutdown).await;
        assert!(r.ok() && !r.interrupted, "{r:?}");
        for s in &w.sinks {
            let mut got = s.delivered.lock().unwrap().clone();
            got.sort();
            assert_eq!(got, w.expected_ids(), "every event once");
        }
    });
}

/// A sink that panics fails only its own lane: the other sink delivers, the organization's
/// pipeline goes on, /health shows the failing lane, and it catches up once the bug is gone.
#[test]
fn a_panicking_sink_fails_only_its_lane() {
    let w = World::new([5, 5], 100, MAX_OVERLAP_MS);
    paused_runtime().block_on(async {
        let (_t, shutdown) = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let mut p = w.pipeline_with(metrics.clone());
        add_events(&w, 3, 100);
        w.sinks[1].plan.lock().unwrap().push_back(Behaviour::Panic);
        let r = p.run_pass(&shutdown).await;
        assert_eq!(r.sink_errors.len(), 1, "{r:?}");
        assert!(r.sink_errors[0].1.contains("delivery task failed"), "{r:?}");
        assert_eq!(w.sinks[0].delivered.lock().unwrap().len(), 3);
        assert_eq!(w.sinks[1].delivered.lock().unwrap().len(), 0);
        let status = metrics.statuses()[&("gh/acme".to_string(), "b".to_string())].clone();
        assert!(status.last_error.is_some());
        w.clock.advance(1_000);
        let r = p.run_pass(&shutdown).await;
        assert!(r.ok(), "{r:?}");
        assert_eq!(w.sinks[1].delivered.lock().unwrap().len(), 3);
    });
}
