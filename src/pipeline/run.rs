//! The daemon's polls. Every organization is data here (its pipeline, its signal and when its
//! next poll is due), not a task of its own: 10,000 idle organizations cost their pipelines and a
//! few words each, where a task per organization held a future, a timer and a channel each. At
//! most `in_parallel` passes run at once, each on a task of its own, in the order they fall due.

use super::{OrgPipeline, PassReport, Shutdown, ShutdownTrigger};
use crate::event::OrgRef;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, Id, JoinSet};

/// What the agent asks of the polls.
pub enum PollCommand {
    /// Poll this organization, the first time after `first_poll_after`.
    Start {
        pipeline: Box<OrgPipeline>,
        first_poll_after: Duration,
    },
    /// Stop an organization after its batch in flight (checkpoints written); `done` fires when it
    /// is gone.
    Stop {
        org: OrgRef,
        done: oneshot::Sender<()>,
    },
    /// Abort an organization's pass that did not stop in time (its batch in flight is delivered
    /// again after restart).
    Abort { org: OrgRef },
    /// How many passes may run at once from now on (`[codacy]` changed on reload).
    InParallel(usize),
}

/// The handle the agent keeps: commands in, and how many organizations were lost to a bug.
pub struct Polls {
    pub commands: mpsc::UnboundedSender<PollCommand>,
    pub task: tokio::task::JoinHandle<()>,
    /// Organizations whose pass panicked: they are no longer polled (the watchdog stops).
    pub lost: Arc<AtomicUsize>,
}

impl Polls {
    /// Starts the polls; they stop, checkpoints written, when `shutdown` is triggered.
    pub fn start(shutdown: Shutdown, in_parallel: usize) -> Polls {
        let (commands, rx) = mpsc::unbounded_channel();
        let lost = Arc::new(AtomicUsize::new(0));
        let poller = Poller {
            slots: Vec::new(),
            free: Vec::new(),
            by_org: HashMap::new(),
            due: BinaryHeap::new(),
            tasks: JoinSet::new(),
            task_slot: HashMap::new(),
            finishing: Vec::new(),
            in_parallel: in_parallel.max(1),
            lost: lost.clone(),
        };
        let task = tokio::spawn(poller.run(rx, shutdown));
        Polls {
            commands,
            task,
            lost,
        }
    }
}

/// One organization.
struct Slot {
    /// Absent while a task of its own runs its pass or its finish.
    pipeline: Option<OrgPipeline>,
    /// This organization's stop (a child of the daemon's shutdown).
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
    /// The current poll interval: doubles after an empty poll, up to `max_poll_interval`.
    poll: Duration,
    /// The poll due, epoch ms: the one entry of `due` that counts for this slot.
    due_ms: i64,
    org: Arc<OrgRef>,
    stopping: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

/// A task's result: the slot, its pipeline back, and the pass's start and report (`None` for a
/// finish: checkpoints written, the organization is done).
type Finished = (usize, OrgPipeline, Option<(i64, PassReport)>);

struct Poller {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_org: HashMap<Arc<OrgRef>, usize>,
    /// (due ms, slot): a slot's entry counts only while it equals the slot's `due_ms`.
    due: BinaryHeap<Reverse<(i64, usize)>>,
    tasks: JoinSet<Finished>,
    task_slot: HashMap<Id, (usize, AbortHandle)>,
    /// Slots waiting for a task to write their checkpoints and go.
    finishing: Vec<usize>,
    in_parallel: usize,
    lost: Arc<AtomicUsize>,
}

impl Poller {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<PollCommand>, shutdown: Shutdown) {
        let mut all_stop = shutdown.clone();
        let mut stopping_all = false;
        loop {
            self.start_tasks(&shutdown, stopping_all);
            if stopping_all && self.tasks.is_empty() && self.by_org.is_empty() {
                break;
            }
            let wait = self.next_wait(&shutdown, stopping_all);
            tokio::select! {
                _ = all_stop.wait(), if !stopping_all => stopping_all = self.stop_all(),
                cmd = commands.recv(), if !stopping_all => match cmd {
                    Some(cmd) => self.command(cmd, &shutdown),
                    // The agent is gone without a shutdown: stop as for one.
                    None => stopping_all = self.stop_all(),
                },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.joined(joined);
                }
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                // Stopping with nothing left to wait for (every slot is finished or running).
                else => break,
            }
        }
    }

    fn command(&mut self, cmd: PollCommand, shutdown: &Shutdown) {
        match cmd {
            PollCommand::Start {
                pipeline,
                first_poll_after,
            } => {
                let now = pipeline.shared.clock.now_ms();
                let org = pipeline.org.clone();
                let (trigger, own) = shutdown.child();
                let slot = Slot {
                    poll: pipeline.shared.config.agent.poll_interval,
                    pipeline: Some(*pipeline),
                    trigger,
                    shutdown: own,
                    due_ms: now + first_poll_after.as_millis() as i64,
                    org: org.clone(),
                    stopping: false,
                    waiters: Vec::new(),
                };
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                self.due.push(Reverse((slot.due_ms, i)));
                self.slots[i] = Some(slot);
                self.by_org.insert(org, i);
            }
            PollCommand::Stop { org, done } => match self.by_org.get(&org) {
                Some(&i) => {
                    if let Some(s) = self.slots[i].as_mut() {
                        s.waiters.push(done);
                    }
                    self.stop(i);
                }
                None => {
                    let _ = done.send(());
                }
            },
            PollCommand::InParallel(n) => self.in_parallel = n.max(1),
            PollCommand::Abort { org } => {
                let Some(&i) = self.by_org.get(&org) else {
                    return;
                };
                for (_, abort) in self.task_slot.values().filter(|(s, _)| *s == i) {
                    abort.abort();
                }
            }
        }
    }

    /// Asks every slot to stop; true, for the loop's `stopping_all`.
    fn stop_all(&mut self) -> bool {
        for slot in 0..self.slots.len() {
            self.stop(slot);
        }
        true
    }

    /// Asks a slot to stop: a running pass stops after its batch in flight, then it finishes.
    fn stop(&mut self, i: usize) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        slot.trigger.trigger();
        if !slot.stopping {
            slot.stopping = true;
            if slot.pipeline.is_some() {
                self.finishing.push(i);
            }
        }
    }

    /// Starts due passes and pending finishes, up to `in_parallel` tasks (finishes first).
    fn start_tasks(&mut self, shutdown: &Shutdown, stopping_all: bool) {
        while self.tasks.len() < self.in_parallel.max(64) {
            let Some(i) = self.finishing.pop() else { break };
            let Some(p) = self.slots[i].as_mut().and_then(|s| s.pipeline.take()) else {
                continue;
            };
            let handle = self.tasks.spawn(async move {
                let mut p = p;
                p.write_pending_checkpoints().await;
                (i, p, None)
            });
            self.task_slot.insert(handle.id(), (i, handle));
        }
        if stopping_all || shutdown.is_triggered() {
            return;
        }
        while self.tasks.len() < self.in_parallel {
            let Some(&Reverse((due_ms, i))) = self.due.peek() else {
                break;
            };
            let Some(slot) = self.slots[i].as_mut() else {
                self.due.pop();
                continue;
            };
            if slot.due_ms != due_ms || slot.stopping || slot.pipeline.is_none() {
                self.due.pop();
                continue;
            }
            let Some(mut p) = slot.pipeline.take() else {
                break;
            };
            if due_ms > p.shared.clock.now_ms() {
                slot.pipeline = Some(p);
                break;
            }
            self.due.pop();
            let own = slot.shutdown.clone();
            let handle = self.tasks.spawn(async move {
                let started = p.shared.clock.now_ms();
                let report = p.run_pass(&own).await;
                (i, p, Some((started, report)))
            });
            self.task_slot.insert(handle.id(), (i, handle));
        }
    }

    /// How long until the next poll falls due, when a pass could start now.
    fn next_wait(&self, shutdown: &Shutdown, stopping_all: bool) -> Option<Duration> {
        if stopping_all || shutdown.is_triggered() || self.tasks.len() >= self.in_parallel {
            return None;
        }
        let Reverse((due_ms, i)) = *self.due.peek()?;
        let now = self.slots[i]
            .as_ref()?
            .pipeline
            .as_ref()?
            .shared
            .clock
            .now_ms();
        Some(Duration::from_millis((due_ms - now).max(0) as u64))
    }

    fn joined(&mut self, joined: Result<(Id, Finished), tokio::task::JoinError>) {
        let (i, pipeline, pass) = match joined {
            Ok((id, finished)) => {
                self.task_slot.remove(&id);
                finished
            }
            Err(e) => {
                let Some((i, _)) = self.task_slot.remove(&e.id()) else {
                    return;
                };
                if e.is_panic() {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "an organization's pass panicked (a bug); this organization is no longer polled until restart");
                }
                self.remove(i);
                return;
            }
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        let Some((started, report)) = pass else {
            drop(pipeline);
            self.remove(i);
            return;
        };
        log_pass(&pipeline.org.key(), &report);
        if slot.stopping {
            slot.pipeline = Some(pipeline);
            self.finishing.push(i);
            return;
        }
        // A quiet organization is polled less and less often (up to max_poll_interval); its
        // first new event brings it back to poll_interval.
        let agent = &pipeline.shared.config.agent;
        let quiet = report.ok() && report.delivered.values().all(|&n| n == 0);
        slot.poll = if quiet {
            (slot.poll * 2).min(agent.max_poll_interval)
        } else {
            agent.poll_interval
        };
        let next_poll = started + slot.poll.as_millis() as i64;
        let now = pipeline.shared.clock.now_ms();
        slot.due_ms = next_poll.min(pipeline.next_retry_at_ms()).max(now + 50);
        self.due.push(Reverse((slot.due_ms, i)));
        slot.pipeline = Some(pipeline);
    }

    /// The organization is gone: its waiters are told, its slot is free again.
    fn remove(&mut self, i: usize) {
        let Some(slot) = self.slots[i].take() else {
            return;
        };
        self.by_org.remove(&slot.org);
        for w in slot.waiters {
            let _ = w.send(());
        }
        self.free.push(i);
        tracing::debug!(slot = i, "pipeline stopped");
    }
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
