//! The agent: builds sinks, hands every organization's pipeline to the poll loop, handles signals
//! (SIGTERM and SIGINT stop after the batch in flight; SIGHUP reloads the configuration and reopens
//! files).

use crate::clock::SharedClock;
use crate::codacy::Client;
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::event::OrgRef;
use crate::format::Encoder;
use crate::pipeline::{
    log_pass, OrgPipeline, PassReport, PollCommand, Polls, RetryPolicy, Shared, Shutdown,
    ShutdownTrigger, SinkHandle,
};
use crate::sink::{Payload, SinkContext, SinkSpec};
use crate::telemetry::Metrics;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown waits for batches in flight before giving up on them (uncommitted batches
/// are simply delivered again after restart).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);

/// Start-up failures: each carries its remedy.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("sink {name:?}: {message}")]
    Sink { name: String, message: String },
    #[error("state directory {path}: {message}")]
    State { path: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// Exit code: 2 for configuration problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) | StartError::Sink { .. } => 2,
            _ => 1,
        }
    }
}

/// Creates the state directory (and checks that it is writable).
pub fn prepare_state_dir(config: &Config) -> Result<(), StartError> {
    let dir = &config.agent.state_dir;
    let err = |message: String| StartError::State {
        path: dir.display().to_string(),
        message,
    };
    crate::private::create_dir_all(dir).map_err(|e| {
        err(format!(
            "cannot create it: {e}; create it and let the service user write to it, or change agent.state_dir"
        ))
    })?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            err(format!(
                "not writable: {e}; the agent keeps its checkpoints there"
            ))
        })?;
    Ok(())
}

pub fn sink_context(
    config: &Config,
    spec: &SinkSpec,
    metrics: &Arc<Metrics>,
    clock: &SharedClock,
) -> SinkContext {
    SinkContext {
        name: spec.name.clone(),
        dead_letter: DeadLetter::in_state_dir(&config.agent.state_dir, &spec.name),
        metrics: metrics.clone(),
        clock: clock.clone(),
        payload: Payload::of(spec.format),
        format_label: spec.format.as_str(),
    }
}

/// Opens one sink.
pub async fn build_sink(
    config: &Config,
    spec: &SinkSpec,
    metrics: &Arc<Metrics>,
    clock: &SharedClock,
) -> Result<Arc<SinkHandle>, StartError> {
    let ctx = sink_context(config, spec, metrics, clock);
    let sink = spec.build(ctx).await.map_err(|e| StartError::Sink {
        name: spec.name.clone(),
        message: e.message,
    })?;
    Ok(Arc::new(SinkHandle {
        spec: spec.clone(),
        sink,
        encoder: Encoder::new(spec.format, spec.format_options.clone()),
    }))
}

pub fn shared(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> Result<Shared, StartError> {
    let client = Client::new(&config.codacy, metrics.clone()).map_err(StartError::Other)?;
    // Events from the API could carry a secret echoed by a proxy too.
    let invalid_events = DeadLetter::in_state_dir(&config.agent.state_dir, "invalid-events")
        .redacting(&config.redactor());
    Ok(Shared {
        config,
        source: Arc::new(client),
        clock,
        metrics,
        invalid_events,
    })
}

/// `once`: one full pass for every organization and sink. Returns the per-organization reports.
pub async fn once(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> Result<Vec<(OrgRef, PassReport)>, StartError> {
    prepare_state_dir(&config)?;
    // Two overlapping runs (cron, or once next to the daemon) would deliver twice and race on
    // the checkpoints: the state directory has one user at a time.
    let state_dir = &config.agent.state_dir;
    let _lock = crate::lock::StateLock::acquire(state_dir).map_err(|e| StartError::State {
        path: state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut sinks = Vec::new();
    for spec in &config.sinks {
        sinks.push(build_sink(&config, spec, &metrics, &clock).await?);
    }
    let shared = shared(config.clone(), metrics, clock)?;
    let (_trigger, shutdown) = Shutdown::new();
    let retry = RetryPolicy {
        attempts_per_batch: 3,
        ..RetryPolicy::default()
    };
    // On a terminal, one bar per organization on stderr (nothing when stderr is not a TTY).
    let bars = crate::progress::Bars::stderr();
    let passes = config.organizations.iter().map(|org| {
        let mut p =
            OrgPipeline::new(org.clone(), &sinks, shared.clone(), retry).waiting_for_every_lane();
        if !bars.is_hidden() {
            p = p.with_progress_bar(bars.bar(&org.key()));
        }
        let shutdown = shutdown.clone();
        async move {
            let report = p.run_pass(&shutdown).await;
            p.write_pending_checkpoints().await;
            log_pass(&org.key(), &report);
            (org.clone(), report)
        }
    });
    let in_parallel = passes_in_parallel(&config);
    let reports: Vec<_> = futures::stream::iter(passes)
        .buffered(in_parallel)
        .collect()
        .await;
    for s in &sinks {
        s.sink.shutdown(SHUTDOWN_DEADLINE).await;
    }
    Ok(reports)
}

/// Passes beyond the scheduler's request slots would only wait, each holding its walk's memory:
/// a few per slot keep the slots busy (10,000 organizations at once peaked at 232 MB).
fn passes_in_parallel(config: &Config) -> usize {
    config
        .codacy
        .max_concurrent_requests
        .saturating_mul(4)
        .max(1)
}

/// The daemon's moving parts; `reload` swaps them while untouched pipelines keep running.
pub struct Agent {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    clock: SharedClock,
    /// One Codacy client (and so one request scheduler) for every organization.
    shared: Shared,
    sinks: BTreeMap<String, Arc<SinkHandle>>,
    /// The organizations handed to the polls.
    orgs: BTreeSet<OrgRef>,
    polls: Polls,
    trigger: ShutdownTrigger,
}

impl Agent {
    pub async fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Agent, StartError> {
        prepare_state_dir(&config)?;
        let mut sinks = BTreeMap::new();
        for spec in &config.sinks {
            sinks.insert(
                spec.name.clone(),
                build_sink(&config, spec, &metrics, &clock).await?,
            );
        }
        let shared = shared(config.clone(), metrics.clone(), clock.clone())?;
        let (trigger, shutdown) = Shutdown::new();
        let polls = Polls::start(shutdown, passes_in_parallel(&config));
        let mut agent = Agent {
            config,
            metrics,
            clock,
            shared,
            sinks,
            orgs: BTreeSet::new(),
            polls,
            trigger,
        };
        if let Some(shard) = agent.config.agent.shard {
            tracing::info!(shard = %shard, organizations = agent.config.organizations.len(),
                "serving the organizations of this shard only");
        }
        let orgs = agent.config.organizations.clone();
        let n = orgs.len();
        for (i, org) in orgs.into_iter().enumerate() {
            agent.start_org(org, start_offset(&agent.config, i, n))?;
        }
        Ok(agent)
    }

    fn start_org(&mut self, org: OrgRef, first_poll_after: Duration) -> Result<(), StartError> {
        let shared = self.shared.clone();
        let sinks: Vec<Arc<SinkHandle>> = self
            .config
            .sinks
            .iter()
            .filter_map(|s| self.sinks.get(&s.name).cloned())
            .collect();
        let pipeline = OrgPipeline::new(org.clone(), &sinks, shared, RetryPolicy::default());
        let start = PollCommand::Start {
            pipeline: Box::new(pipeline),
            first_poll_after,
        };
        self.polls.commands.send(start).map_err(|_| {
            StartError::Other("the polls stopped (a bug); restart the agent".into())
        })?;
        self.orgs.insert(org);
        Ok(())
    }

    /// Stops organizations after their batch in flight, all together, up to the deadline; past
    /// it their passes are aborted (an uncommitted batch is delivered again after restart).
    async fn stop_orgs(&mut self, orgs: Vec<OrgRef>) {
        let mut waits = Vec::new();
        for org in orgs {
            self.orgs.remove(&org);
            let (done, wait) = tokio::sync::oneshot::channel();
            let stop = PollCommand::Stop {
                org: org.clone(),
                done,
            };
            if self.polls.commands.send(stop).is_ok() {
                waits.push((org, wait));
            }
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        for (org, mut wait) in waits {
            if tokio::time::timeout_at(deadline, &mut wait).await.is_err() {
                tracing::warn!(organization = %org, "pipeline did not stop in time; its last batch will be delivered again after restart");
                let _ = self.polls.commands.send(PollCommand::Abort { org });
                let _ = wait.await;
            }
        }
    }

    /// Whether the polls run and no organization was lost to a bug.
    pub fn tasks_alive(&self) -> bool {
        !self.polls.task.is_finished()
            && self.polls.lost.load(std::sync::atomic::Ordering::Relaxed) == 0
    }

    /// SIGHUP: re-read the configuration. Added organizations/sinks start, removed ones stop,
    /// changed ones restart; untouched pipelines keep running. An invalid configuration is
    /// rejected and the old one keeps running.
    pub async fn reload(&mut self, new: Config) -> Result<(), StartError> {
        let old = self.config.clone();
        let agent_changed = old.codacy != new.codacy || old.agent != new.agent;
        // Build new or changed sinks first, so a sink that cannot open leaves everything as it was.
        let mut new_sinks = BTreeMap::new();
        let mut sinks_changed = false;
        for spec in &new.sinks {
            match self.sinks.get(&spec.name) {
                Some(h) if h.spec == *spec => {
                    new_sinks.insert(spec.name.clone(), h.clone());
                }
                _ => {
                    sinks_changed = true;
                    new_sinks.insert(
                        spec.name.clone(),
                        build_sink(&new, spec, &self.metrics, &self.clock).await?,
                    );
                }
            }
        }
        if old.sinks.len() != new.sinks.len()
            || old
                .sinks
                .iter()
                .zip(&new.sinks)
                .any(|(a, b)| a.name != b.name)
        {
            sinks_changed = true;
        }
        let new = Arc::new(new);
        if old.codacy != new.codacy {
            self.shared = shared(new.clone(), self.metrics.clone(), self.clock.clone())?;
            let _ = (self.polls.commands).send(PollCommand::InParallel(passes_in_parallel(&new)));
        } else {
            self.shared.config = new.clone();
        }
        let kept: BTreeSet<&OrgRef> = new.organizations.iter().collect();
        let to_stop: Vec<OrgRef> = self
            .orgs
            .iter()
            .filter(|org| !kept.contains(org) || agent_changed || sinks_changed)
            .cloned()
            .collect();
        self.stop_orgs(to_stop).await;
        // Removed pipelines leave /health and the gauges.
        for org in &old.organizations {
            for name in self.sinks.keys() {
                if !new_sinks.contains_key(name) || !new.organizations.contains(org) {
                    self.metrics.forget(&org.key(), name);
                }
            }
            if !new.organizations.contains(org) {
                self.metrics.forget(&org.key(), "");
            }
        }
        let removed: Vec<Arc<SinkHandle>> = self
            .sinks
            .iter()
            .filter(|(n, h)| new_sinks.get(*n).is_none_or(|nh| !Arc::ptr_eq(nh, h)))
            .map(|(_, h)| h.clone())
            .collect();
        self.sinks = new_sinks;
        self.config = new.clone();
        let n = new.organizations.len();
        for (i, org) in new.organizations.iter().enumerate() {
            if !self.orgs.contains(org) {
                self.start_org(org.clone(), start_offset(&new, i, n))?;
            }
        }
        for h in removed {
            h.sink.shutdown(SHUTDOWN_DEADLINE).await;
        }
        for h in self.sinks.values() {
            h.sink.reopen().await;
        }
        tracing::info!(
            organizations = new.organizations.len(),
            sinks = new.sinks.len(),
            restarted_pipelines = agent_changed || sinks_changed,
            "configuration reloaded"
        );
        Ok(())
    }

    /// Stops every pipeline after its batch in flight and flushes the sinks.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        // One deadline for all pipelines together, so shutdown stays within seconds; past it the
        // passes still running are aborted with the polls.
        let abort = self.polls.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_DEADLINE, self.polls.task)
            .await
            .is_err()
        {
            tracing::warn!("pipelines did not stop in time; their last batches will be delivered again after restart");
            abort.abort();
        }
        let flushes = self
            .sinks
            .values()
            .map(|h| h.sink.shutdown(Duration::from_secs(3)));
        futures::future::join_all(flushes).await;
    }
}

/// Spreads the first polls of `n` organizations over the first poll interval, so a restart with
/// thousands of organizations is no stampede (the scheduler would queue them anyway).
fn start_offset(config: &Config, i: usize, n: usize) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    config.agent.poll_interval.mul_f64(i as f64 / n as f64)
}
