//! Metrics and status: counters and gauges the pipeline updates, rendered as Prometheus text,
//! plus the per-(organization, sink) status that `/health` and logs report, and the small HTTP
//! server (`[telemetry] listen`) that exposes both.
//!
//! - This module: the registry ([`Metrics`]) and what the pipeline records in it.
//! - `render`: every metric's name and help text ([`METRICS`]), and the Prometheus text, with the
//!   series that follow live state (a lane's lag, its state) computed at scrape time.
//! - `health`: the `/health` policy and its answer.
//! - `server`: the HTTP server for `/metrics` and `/health`.

mod health;
mod render;
mod server;

pub use health::{health, Health, HealthPolicy, HealthState, PipelineHealth};
pub use render::METRICS;
pub use server::{serve, METRICS_CONTENT_TYPE};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use render::CHECKPOINT_TIMESTAMP;

/// Most labels a stored series has (organization and sink, or organization and status).
const MAX_LABELS: usize = 3;
/// An unused label slot.
const NO_LABEL: u32 = u32::MAX;

/// A series' labels: interned (name, value) pairs in the order given, unused slots [`NO_LABEL`].
/// 12 bytes and no allocation, where a vector of strings took one allocation per label: with
/// 10,000 organizations and a dozen series each, the labels were most of the idle agent's heap.
type Labels = [u32; MAX_LABELS];

/// Label pairs stored once, however many series and statuses carry them.
#[derive(Debug, Default)]
struct LabelPool {
    ids: HashMap<&'static str, HashMap<Arc<str>, u32>>,
    pairs: Vec<(&'static str, Arc<str>)>,
}

impl LabelPool {
    fn intern(&mut self, name: &'static str, value: &str) -> u32 {
        if let Some(id) = self.find(name, value) {
            return id;
        }
        let id = u32::try_from(self.pairs.len()).unwrap_or(NO_LABEL - 1);
        let value: Arc<str> = Arc::from(value);
        self.pairs.push((name, value.clone()));
        self.ids.entry(name).or_default().insert(value, id);
        id
    }

    fn find(&self, name: &'static str, value: &str) -> Option<u32> {
        self.ids.get(name)?.get(value).copied()
    }

    fn labels(&mut self, pairs: &[(&'static str, &str)]) -> Labels {
        debug_assert!(
            pairs.len() <= MAX_LABELS,
            "a series has at most {MAX_LABELS} labels"
        );
        let mut out = [NO_LABEL; MAX_LABELS];
        for (slot, (k, v)) in out.iter_mut().zip(pairs) {
            *slot = self.intern(k, v);
        }
        out
    }

    /// The labels of a series that may not exist: `None` when a pair was never seen.
    fn find_labels(&self, pairs: &[(&'static str, &str)]) -> Option<Labels> {
        let mut out = [NO_LABEL; MAX_LABELS];
        for (slot, (k, v)) in out.iter_mut().zip(pairs) {
            *slot = self.find(k, v)?;
        }
        Some(out)
    }

    fn pair(&self, id: u32) -> (&'static str, &str) {
        let (k, v) = &self.pairs[id as usize];
        (k, v)
    }

    /// The value of an interned pair.
    fn value(&self, id: u32) -> &str {
        self.pair(id).1
    }

    /// A pipeline's key: the interned `organization` and `sink` pairs.
    fn pipeline(&mut self, org: &str, sink: &str) -> Pipeline {
        (self.intern("organization", org), self.intern("sink", sink))
    }

    fn pipeline_name(&self, key: &Pipeline) -> (String, String) {
        (self.value(key.0).to_string(), self.value(key.1).to_string())
    }
}

/// An (organization, sink) pipeline by its interned label pairs (sink "" is the fetch).
type Pipeline = (u32, u32);

#[derive(Debug, Default)]
struct Inner {
    pool: LabelPool,
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    status: BTreeMap<Pipeline, PipelineStatus>,
    /// Pipelines that are running, with when they started (epoch ms): the staleness baseline
    /// until their first success.
    registered: BTreeMap<Pipeline, i64>,
    /// What a destination says is wrong with it (sink -> (condition, since ms)), e.g. Kafka's
    /// "all brokers are down": named next to its lanes on /health.
    conditions: BTreeMap<String, (String, i64)>,
}

impl Inner {
    fn series(
        &mut self,
        name: &'static str,
        pairs: &[(&'static str, &str)],
    ) -> (&'static str, Labels) {
        (name, self.pool.labels(pairs))
    }

    /// Statuses and registrations with their names, as `/health` and the tests read them.
    fn named<T: Clone>(&self, map: &BTreeMap<Pipeline, T>) -> BTreeMap<(String, String), T> {
        map.iter()
            .map(|(k, v)| (self.pool.pipeline_name(k), v.clone()))
            .collect()
    }
}

/// Health of one pipeline: an organization's fetch (`sink` = "") or one (organization, sink).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineStatus {
    /// Last time this pipeline completed a pass without error, epoch ms.
    pub last_success_ms: Option<i64>,
    /// The last error, cleared on success.
    pub last_error: Option<String>,
    /// The last error needs a human (see [`Metrics::fatal_failure`]); cleared on success.
    pub fatal: bool,
    /// A lane: since when its batch in flight waits for the destination (epoch ms).
    pub delivering_since_ms: Option<i64>,
    /// A lane catching up alone from its own cursor.
    pub catching_up: bool,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics::default();
        m.set_gauge(
            "codacy_forwarder_build_info",
            &[("version", crate::format::AGENT_VERSION)],
            1.0,
        );
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], n: u64) {
        let mut inner = self.lock();
        let key = inner.series(name, pairs);
        *inner.counters.entry(key).or_default() += n;
    }

    pub fn set_gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        let mut inner = self.lock();
        let key = inner.series(name, pairs);
        inner.gauges.insert(key, v);
    }

    pub fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> u64 {
        let inner = self.lock();
        let Some(labels) = inner.pool.find_labels(pairs) else {
            return 0;
        };
        inner.counters.get(&(name, labels)).copied().unwrap_or(0)
    }

    pub fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Option<f64> {
        let inner = self.lock();
        let labels = inner.pool.find_labels(pairs)?;
        inner.gauges.get(&(name, labels)).copied()
    }

    pub fn events_fetched(&self, org: &str, n: u64) {
        self.add(
            "codacy_forwarder_events_fetched_total",
            &[("organization", org)],
            n,
        );
    }

    pub fn events_reread(&self, org: &str, n: u64) {
        self.add(
            "codacy_forwarder_events_reread_total",
            &[("organization", org)],
            n,
        );
    }

    pub fn events_delivered(&self, org: &str, sink: &str, n: u64) {
        self.add(
            "codacy_forwarder_events_delivered_total",
            &[("organization", org), ("sink", sink)],
            n,
        );
    }

    pub fn events_dead_lettered(&self, org: &str, sink: &str, n: u64) {
        self.add(
            "codacy_forwarder_events_dead_lettered_total",
            &[("organization", org), ("sink", sink)],
            n,
        );
    }

    pub fn events_invalid(&self, org: &str, n: u64) {
        self.add(
            "codacy_forwarder_events_invalid_total",
            &[("organization", org)],
            n,
        );
    }

    pub fn api_request(&self, org: &str, status: &str) {
        self.add(
            "codacy_forwarder_api_requests_total",
            &[("organization", org), ("status", status)],
            1,
        );
    }

    /// Requests waiting for a slot of the API scheduler (+1 / -1).
    pub fn api_queue(&self, delta: i64) {
        self.add_to_gauge("codacy_forwarder_api_queue_length", delta);
    }

    /// Requests to the Codacy API in flight (+1 / -1).
    pub fn api_in_flight(&self, delta: i64) {
        self.add_to_gauge("codacy_forwarder_api_requests_in_flight", delta);
    }

    /// A 429 slowed every organization down.
    pub fn api_slowdown(&self) {
        self.add("codacy_forwarder_api_slowdowns_total", &[], 1);
    }

    fn add_to_gauge(&self, name: &'static str, delta: i64) {
        let mut inner = self.lock();
        let v = inner
            .gauges
            .entry((name, [NO_LABEL; MAX_LABELS]))
            .or_insert(0.0);
        *v = (*v + delta as f64).max(0.0);
    }

    /// A checkpoint could not be written after the sink acknowledged a batch.
    pub fn checkpoint_write_failed(&self, org: &str, sink: &str) {
        self.add(
            "codacy_forwarder_checkpoint_write_failures_total",
            &[("organization", org), ("sink", sink)],
            1,
        );
    }

    pub fn retry(&self, component: &str) {
        self.add(
            "codacy_forwarder_retries_total",
            &[("component", component)],
            1,
        );
    }

    /// A lane's live position (delivered up to `cursor_ms`). Its lag is computed when `/metrics`
    /// is scraped, so it grows while the lane is stuck.
    pub fn checkpoint(&self, org: &str, sink: &str, cursor_ms: i64, _now_ms: i64) {
        self.set_gauge(
            CHECKPOINT_TIMESTAMP,
            &[("organization", org), ("sink", sink)],
            cursor_ms as f64 / 1000.0,
        );
    }

    /// What the destination of `sink` says is wrong (Kafka: "all brokers are down"), or that it
    /// is fine again (`None`). The first report's time is kept while the condition lasts.
    pub fn destination_condition(&self, sink: &str, condition: Option<&str>, now_ms: i64) {
        let mut inner = self.lock();
        match condition {
            None => {
                inner.conditions.remove(sink);
            }
            Some(c) => {
                let entry = inner
                    .conditions
                    .entry(sink.to_string())
                    .or_insert_with(|| (c.to_string(), now_ms));
                if entry.0 != c {
                    *entry = (c.to_string(), now_ms);
                }
            }
        }
    }

    /// A lane's batch is now waiting for its destination (`Some(since)`), or got its answer.
    pub fn delivering(&self, org: &str, sink: &str, since_ms: Option<i64>) {
        self.status_mut(org, sink, |s| s.delivering_since_ms = since_ms);
    }

    /// A lane started or finished catching up alone.
    pub fn catching_up(&self, org: &str, sink: &str, on: bool) {
        self.status_mut(org, sink, |s| s.catching_up = on);
    }

    fn status_mut(&self, org: &str, sink: &str, change: impl FnOnce(&mut PipelineStatus)) {
        let mut inner = self.lock();
        let key = inner.pool.pipeline(org, sink);
        change(inner.status.entry(key).or_default());
    }

    pub fn poll_succeeded(&self, org: &str, now_ms: i64) {
        self.set_gauge(
            "codacy_forwarder_last_successful_poll_timestamp_seconds",
            &[("organization", org)],
            now_ms as f64 / 1000.0,
        );
        self.success(org, "", now_ms);
    }

    /// Records progress of a pipeline (`sink` = "" for the organization's fetch).
    pub fn success(&self, org: &str, sink: &str, now_ms: i64) {
        self.set_gauge(
            "codacy_forwarder_pipeline_last_success_timestamp_seconds",
            &[("organization", org), ("sink", sink)],
            now_ms as f64 / 1000.0,
        );
        self.status_mut(org, sink, |s| {
            s.last_success_ms = Some(now_ms);
            s.last_error = None;
            s.fatal = false;
        });
    }

    /// Records a failure of a pipeline (`sink` = "" for the organization's fetch).
    pub fn failure(&self, org: &str, sink: &str, error: &str) {
        self.record_failure(org, sink, error, false);
    }

    /// Records a failure that retrying will not fix (bad token, permission denied): `/health`
    /// reports the pipeline unhealthy at once instead of waiting for it to go stale.
    pub fn fatal_failure(&self, org: &str, sink: &str, error: &str) {
        self.record_failure(org, sink, error, true);
    }

    fn record_failure(&self, org: &str, sink: &str, error: &str, fatal: bool) {
        self.status_mut(org, sink, |s| {
            s.last_error = Some(error.to_string());
            s.fatal = fatal;
        });
    }

    /// A pipeline started (`sink` = "" for the organization's fetch). Until its first success,
    /// `/health` measures staleness from `now_ms`. Registering again keeps the first time.
    pub fn register(&self, org: &str, sink: &str, now_ms: i64) {
        let mut inner = self.lock();
        let key = inner.pool.pipeline(org, sink);
        inner.registered.entry(key).or_insert(now_ms);
    }

    /// Registered pipelines and when they started (epoch ms).
    pub fn registered(&self) -> BTreeMap<(String, String), i64> {
        let inner = self.lock();
        inner.named(&inner.registered)
    }

    /// Status of every pipeline seen so far, keyed by (organization, sink).
    pub fn statuses(&self) -> BTreeMap<(String, String), PipelineStatus> {
        let inner = self.lock();
        inner.named(&inner.status)
    }

    /// The pipelines' last errors, keyed (organization, sink): read without copying every
    /// status (the daemon asks at every status update, with 10,000 organizations).
    pub fn last_errors(&self) -> Vec<((String, String), String)> {
        let inner = self.lock();
        inner
            .status
            .iter()
            .filter_map(|(k, s)| {
                let e = s.last_error.as_ref()?;
                Some((inner.pool.pipeline_name(k), e.clone()))
            })
            .collect()
    }

    /// For the daemon's one-line status: pipelines failing, records delivered in all.
    pub fn summary(&self) -> (usize, u64) {
        let inner = self.lock();
        let failing = inner
            .status
            .values()
            .filter(|s| s.last_error.is_some())
            .count();
        const DELIVERED: &str = "codacy_forwarder_events_delivered_total";
        let delivered = inner
            .counters
            .range((DELIVERED, [0; MAX_LABELS])..)
            .take_while(|((n, _), _)| *n == DELIVERED)
            .map(|(_, v)| v)
            .sum();
        (failing, delivered)
    }

    /// A pipeline stopped for good (organization or sink removed): forgets its status and gauges.
    pub fn forget(&self, org: &str, sink: &str) {
        let mut inner = self.lock();
        let Some(org_id) = inner.pool.find("organization", org) else {
            return;
        };
        let sink_id = inner.pool.find("sink", sink);
        if let Some(sink_id) = sink_id {
            inner.status.remove(&(org_id, sink_id));
            inner.registered.remove(&(org_id, sink_id));
        }
        // A removed pipeline's series disappear from /metrics (gauges and counters alike).
        let matches = |l: &Labels| {
            l.contains(&org_id) && (sink.is_empty() || sink_id.is_some_and(|s| l.contains(&s)))
        };
        inner.gauges.retain(|(_, l), _| !matches(l));
        inner.counters.retain(|(_, l), _| !matches(l));
    }
}

#[cfg(test)]
mod tests;
