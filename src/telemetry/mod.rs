//! Metrics and status: counters and gauges the pipeline updates, rendered as Prometheus text,
//! plus the per-(organization, sink) status that `/health` and logs report, and the small HTTP
//! server (`[telemetry] listen`) that exposes both.
//!
//! Health policy (what `/health` answers):
//! - A pipeline is **unhealthy** (HTTP 503) when it made no progress for `health_stale_intervals`
//!   poll intervals, counted from its last success or, if it never succeeded, from when it was
//!   registered; or at once when its last error is fatal (bad credentials, permission denied:
//!   retrying will not fix it, a human must).
//! - A pipeline whose last attempt failed with a transient error but which is not yet stale is
//!   **degraded**: still HTTP 200 (a SIEM restart or a 429 must not page anyone or make an
//!   orchestrator kill the agent, which retries by itself), with the error in the body.
//! - The body is JSON in both cases: overall status, one entry per pipeline, and `reasons`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::clock::SharedClock;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    status: BTreeMap<(String, String), PipelineStatus>,
    /// Pipelines that are running, with when they started (epoch ms): the staleness baseline
    /// until their first success.
    registered: BTreeMap<(String, String), i64>,
    /// What a destination says is wrong with it (sink -> (condition, since ms)), e.g. Kafka's
    /// "all brokers are down": named next to its lanes on /health.
    conditions: BTreeMap<String, (String, i64)>,
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

const CHECKPOINT_TIMESTAMP: &str = "codacy_forwarder_checkpoint_timestamp_seconds";
const CHECKPOINT_LAG: &str = "codacy_forwarder_checkpoint_lag_seconds";
const LANE_STATE: &str = "codacy_forwarder_lane_state";

/// `failing` (its last attempt failed), `catching_up` (alone, from its own cursor), else
/// `caught_up`.
fn lane_state(st: &PipelineStatus) -> &'static str {
    if st.last_error.is_some() {
        "failing"
    } else if st.catching_up {
        "catching_up"
    } else {
        "caught_up"
    }
}

/// All metric names in one place, with their help text.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "codacy_forwarder_events_fetched_total",
        "counter",
        "New events read from the Codacy API: each event counted once, when no lane of its organization had read it before.",
    ),
    (
        "codacy_forwarder_events_reread_total",
        "counter",
        "Events read again from the Codacy API: the overlap re-read at every poll, a lane catching up over what the others had read, a replay after state reset.",
    ),
    (
        "codacy_forwarder_events_delivered_total",
        "counter",
        "Events acknowledged by a sink.",
    ),
    (
        "codacy_forwarder_events_dead_lettered_total",
        "counter",
        "Records a sink rejected for good, written to its dead-letter file.",
    ),
    (
        "codacy_forwarder_events_invalid_total",
        "counter",
        "Events from the API that could not be parsed or whose time lies outside the window the API returned them for (dead-lettered).",
    ),
    (
        "codacy_forwarder_api_queue_length",
        "gauge",
        "Requests to the Codacy API waiting for the scheduler (codacy.max_concurrent_requests, codacy.max_requests_per_second).",
    ),
    (
        "codacy_forwarder_api_requests_in_flight",
        "gauge",
        "Requests to the Codacy API in flight, all organizations together.",
    ),
    (
        "codacy_forwarder_api_slowdowns_total",
        "counter",
        "429 answers that paused and slowed down every organization's requests.",
    ),
    (
        "codacy_forwarder_checkpoint_write_failures_total",
        "counter",
        "Checkpoint writes that failed after the sink acknowledged the batch (full disk, read-only state directory); the lane is unhealthy until one succeeds.",
    ),
    (
        "codacy_forwarder_api_requests_total",
        "counter",
        "Requests to the Codacy API by HTTP status (or 'error' for transport failures).",
    ),
    (
        "codacy_forwarder_retries_total",
        "counter",
        "Retries after a transient failure, by component.",
    ),
    (
        "codacy_forwarder_checkpoint_lag_seconds",
        "gauge",
        "Now (at scrape time) minus the lane's live position, per organization and sink: it grows while a lane is stuck.",
    ),
    (
        "codacy_forwarder_lane_state",
        "gauge",
        "1 for the state each (organization, sink) lane is in: caught_up, catching_up (alone, from its own cursor) or failing.",
    ),
    (
        "codacy_forwarder_checkpoint_timestamp_seconds",
        "gauge",
        "Checkpoint cursor (epoch seconds) per organization and sink.",
    ),
    (
        "codacy_forwarder_last_successful_poll_timestamp_seconds",
        "gauge",
        "When the last poll of an organization completed (epoch seconds).",
    ),
    (
        "codacy_forwarder_pipeline_last_success_timestamp_seconds",
        "gauge",
        "When a pipeline (organization and sink; sink=\"\" is the fetch) last made progress (epoch seconds).",
    ),
    (
        "codacy_forwarder_build_info",
        "gauge",
        "Build information; always 1.",
    ),
];

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
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
        *self
            .lock()
            .counters
            .entry((name, labels(pairs)))
            .or_default() += n;
    }

    pub fn set_gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        self.lock().gauges.insert((name, labels(pairs)), v);
    }

    pub fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> u64 {
        self.lock()
            .counters
            .get(&(name, labels(pairs)))
            .copied()
            .unwrap_or(0)
    }

    pub fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Option<f64> {
        self.lock().gauges.get(&(name, labels(pairs))).copied()
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
        let v = inner.gauges.entry((name, labels(&[]))).or_insert(0.0);
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
        change(
            inner
                .status
                .entry((org.to_string(), sink.to_string()))
                .or_default(),
        );
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
        let mut inner = self.lock();
        let s = inner
            .status
            .entry((org.to_string(), sink.to_string()))
            .or_default();
        s.last_success_ms = Some(now_ms);
        s.last_error = None;
        s.fatal = false;
    }

    /// Records a failure of a pipeline (`sink` = "" for the organization's fetch).
    pub fn failure(&self, org: &str, sink: &str, error: &str) {
        let mut inner = self.lock();
        let s = inner
            .status
            .entry((org.to_string(), sink.to_string()))
            .or_default();
        s.last_error = Some(error.to_string());
        s.fatal = false;
    }

    /// Records a failure that retrying will not fix (bad token, permission denied): `/health`
    /// reports the pipeline unhealthy at once instead of waiting for it to go stale.
    pub fn fatal_failure(&self, org: &str, sink: &str, error: &str) {
        let mut inner = self.lock();
        let s = inner
            .status
            .entry((org.to_string(), sink.to_string()))
            .or_default();
        s.last_error = Some(error.to_string());
        s.fatal = true;
    }

    /// A pipeline started (`sink` = "" for the organization's fetch). Until its first success,
    /// `/health` measures staleness from `now_ms`. Registering again keeps the first time.
    pub fn register(&self, org: &str, sink: &str, now_ms: i64) {
        self.lock()
            .registered
            .entry((org.to_string(), sink.to_string()))
            .or_insert(now_ms);
    }

    /// A pipeline stopped for good (organization or sink removed): forget its status and gauges.
    pub fn unregister(&self, org: &str, sink: &str) {
        self.forget(org, sink);
    }

    /// Registered pipelines and when they started (epoch ms).
    pub fn registered(&self) -> BTreeMap<(String, String), i64> {
        self.lock().registered.clone()
    }

    /// `/health` as of `now_ms`; see the module docs for the policy.
    pub fn health(&self, now_ms: i64, policy: &HealthPolicy) -> Health {
        let inner = self.lock();
        let mut h = health(&inner.status, &inner.registered, now_ms, policy);
        // A lane in trouble whose destination said why: name the cause with it.
        for reason in h.reasons.iter_mut() {
            for (sink, (condition, since)) in &inner.conditions {
                if reason.contains(&format!("-> sink {sink}:")) {
                    *reason = reason.replacen(
                        &format!("-> sink {sink}:"),
                        &format!("-> sink {sink} ({condition} since {}):", rfc3339_s(*since)),
                        1,
                    );
                }
            }
        }
        h
    }

    /// Status of every pipeline seen so far, keyed by (organization, sink).
    pub fn statuses(&self) -> BTreeMap<(String, String), PipelineStatus> {
        self.lock().status.clone()
    }

    /// Forgets a pipeline's status and gauges (a removed organization or sink).
    pub fn forget(&self, org: &str, sink: &str) {
        let mut inner = self.lock();
        inner.status.remove(&(org.to_string(), sink.to_string()));
        inner
            .registered
            .remove(&(org.to_string(), sink.to_string()));
        // A removed pipeline's series disappear from /metrics (gauges and counters alike).
        let matches = |l: &Labels| {
            l.iter().any(|(k, v)| *k == "organization" && v == org)
                && (sink.is_empty() || l.iter().any(|(k, v)| *k == "sink" && v == sink))
        };
        inner.gauges.retain(|(_, l), _| !matches(l));
        inner.counters.retain(|(_, l), _| !matches(l));
    }

    /// Prometheus text exposition format 0.0.4, with the gauges that follow live state (lag,
    /// lane state) computed as of `now_ms`.
    pub fn render(&self, now_ms: i64) -> String {
        let inner = self.lock();
        // Series that follow live state are computed here, never stored: a lane's lag grows
        // while it is stuck, and 10,000 organizations do not keep four more series each.
        let mut out = String::new();
        for (name, kind, help) in METRICS {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            let write = |out: &mut String, l: &Labels, v: String| {
                out.push_str(name);
                if !l.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in l.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&format!("{k}=\"{}\"", escape_label(val)));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&v);
                out.push('\n');
            };
            let series = |map_name: &'static str| (map_name, Labels::new())..;
            if *name == CHECKPOINT_LAG {
                let stamps = inner.gauges.range(series(CHECKPOINT_TIMESTAMP));
                for ((_, l), ts) in stamps.take_while(|((n, _), _)| *n == CHECKPOINT_TIMESTAMP) {
                    write(
                        &mut out,
                        l,
                        format_float((now_ms as f64 / 1000.0 - ts).max(0.0)),
                    );
                }
                continue;
            }
            if *name == LANE_STATE {
                for ((org, sink), st) in inner.status.iter().filter(|((_, s), _)| !s.is_empty()) {
                    let current = lane_state(st);
                    for state in ["caught_up", "catching_up", "failing"] {
                        let l = labels(&[("organization", org), ("sink", sink), ("state", state)]);
                        write(
                            &mut out,
                            &l,
                            if state == current { "1" } else { "0" }.into(),
                        );
                    }
                }
                continue;
            }
            let counters = inner.counters.range(series(name));
            for ((_, l), v) in counters.take_while(|((n, _), _)| n == name) {
                write(&mut out, l, v.to_string());
            }
            let gauges = inner.gauges.range(series(name));
            for ((_, l), v) in gauges.take_while(|((n, _), _)| n == name) {
                write(&mut out, l, format_float(*v));
            }
        }
        out
    }
}

/// When `/health` turns a pipeline unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub poll_interval: Duration,
    /// `[telemetry] health_stale_intervals`.
    pub stale_intervals: u32,
}

impl HealthPolicy {
    /// No progress for longer than this makes a pipeline unhealthy.
    pub fn stale_after(&self) -> Duration {
        self.poll_interval * self.stale_intervals.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Every pipeline progressed recently and its last attempt succeeded.
    Ok,
    /// Every pipeline progressed recently, but some last attempt failed (retrying).
    Degraded,
    /// Some pipeline is stale or has a fatal error.
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineHealth {
    pub organization: String,
    /// `None` for the organization's fetch from the Codacy API.
    pub sink: Option<String>,
    pub healthy: bool,
    /// Epoch ms of the last success, if any.
    pub last_success_ms: Option<i64>,
    /// Seconds since the last success (or since registration when it never succeeded).
    pub seconds_since_progress: Option<u64>,
    pub last_error: Option<String>,
    pub fatal: bool,
}

/// The `/health` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub status: HealthState,
    pub now_ms: i64,
    pub stale_after_seconds: u64,
    /// One line per unhealthy or degraded pipeline, for people and alert messages.
    pub reasons: Vec<String>,
    pub pipelines: Vec<PipelineHealth>,
}

impl Health {
    /// 200 for ok and degraded, 503 for unhealthy.
    pub fn http_status(&self) -> u16 {
        match self.status {
            HealthState::Ok | HealthState::Degraded => 200,
            HealthState::Unhealthy => 503,
        }
    }
}

fn rfc3339_s(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Pure health evaluation over every pipeline that is registered or has a status.
pub fn health(
    statuses: &BTreeMap<(String, String), PipelineStatus>,
    registered: &BTreeMap<(String, String), i64>,
    now_ms: i64,
    policy: &HealthPolicy,
) -> Health {
    let stale_ms = i64::try_from(policy.stale_after().as_millis()).unwrap_or(i64::MAX);
    let mut keys: Vec<&(String, String)> = registered.keys().chain(statuses.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = PipelineStatus::default();
    let mut out = Health {
        status: HealthState::Ok,
        now_ms,
        stale_after_seconds: policy.stale_after().as_secs(),
        reasons: Vec::new(),
        pipelines: Vec::new(),
    };
    for key in keys {
        let (org, sink) = key;
        let st = statuses.get(key).unwrap_or(&none);
        let since = st.last_success_ms.or_else(|| registered.get(key).copied());
        let age_ms = since.map(|t| (now_ms - t).max(0));
        let stale = age_ms.is_some_and(|a| a > stale_ms);
        let healthy = !stale && !st.fatal;
        let who = if sink.is_empty() {
            format!("organization {org} (fetch from Codacy)")
        } else {
            format!("organization {org} -> sink {sink}")
        };
        let err = st
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        if st.fatal {
            out.reasons.push(format!(
                "{who}: stopped by an error that needs attention{err}"
            ));
        } else if stale {
            let age = age_ms.unwrap_or(0) / 1000;
            let what = if st.last_success_ms.is_some() {
                format!("no progress for {age}s")
            } else {
                format!("no success since it started {age}s ago")
            };
            out.reasons.push(format!(
                "{who}: {what} (limit {}s){err}",
                out.stale_after_seconds
            ));
        } else if st.last_error.is_some() {
            out.reasons.push(format!("{who}: retrying{err}"));
        }
        if let Some(since) = st.delivering_since_ms.filter(|_| stale) {
            out.reasons.push(format!(
                "{who}: one batch has been waiting for the destination's answer for {}s",
                (now_ms - since).max(0) / 1000
            ));
        }
        out.status = match (out.status, healthy, st.last_error.is_some()) {
            (_, false, _) | (HealthState::Unhealthy, _, _) => HealthState::Unhealthy,
            (_, true, true) | (HealthState::Degraded, _, _) => HealthState::Degraded,
            _ => HealthState::Ok,
        };
        out.pipelines.push(PipelineHealth {
            organization: org.clone(),
            sink: (!sink.is_empty()).then(|| sink.clone()),
            healthy,
            last_success_ms: st.last_success_ms,
            seconds_since_progress: age_ms.map(|a| (a / 1000) as u64),
            last_error: st.last_error.clone(),
            fatal: st.fatal,
        });
    }
    out
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    policy: HealthPolicy,
    clock: SharedClock,
    /// Blanks secrets quoted in last errors (a server may echo our credentials).
    redactor: crate::secret::SharedRedactor,
}

/// Prometheus text format content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` and `/health` on `listen` until `shutdown` resolves. Binds before returning,
/// so a taken port is reported at startup; returns the bound address (useful with port 0).
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    policy: HealthPolicy,
    clock: SharedClock,
    redactor: crate::secret::SharedRedactor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(tokio::task::JoinHandle<std::io::Result<()>>, SocketAddr)> {
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {listen} ([telemetry] listen): {e}; choose a free address or \
                 remove the key to turn the metrics server off"
            ),
        )
    })?;
    let local = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(ServerState {
            metrics,
            policy,
            clock,
            redactor,
        });
    tracing::info!(listen = %local, "serving /metrics and /health");
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((handle, local))
}

async fn metrics_handler(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        s.metrics.render(s.clock.now_ms()),
    )
}

async fn health_handler(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let h = s.metrics.health(s.clock.now_ms(), &s.policy);
    let code = axum::http::StatusCode::from_u16(h.http_status())
        .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let body = serde_json::to_string(&h).unwrap_or_default();
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (code, json, s.redactor.current().redact(&body).into_owned()).into_response()
}

fn format_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_in_prometheus_text() {
        let m = Metrics::new();
        m.events_delivered("gh/acme", "archive", 3);
        m.events_delivered("gh/acme", "archive", 2);
        m.api_request("gh/a\"b", "200");
        let text = m.render(0);
        assert!(text.contains(
            "codacy_forwarder_events_delivered_total{organization=\"gh/acme\",sink=\"archive\"} 5\n"
        ));
        assert!(text.contains("status=\"200\"} 1\n"));
        assert!(text.contains("organization=\"gh/a\\\"b\""));
        assert!(text.contains("# TYPE codacy_forwarder_checkpoint_lag_seconds gauge"));
        assert!(text.contains("codacy_forwarder_build_info{version="));
    }

    #[test]
    fn status_tracks_last_error_until_success() {
        let m = Metrics::new();
        m.failure("gh/acme", "siem", "connection refused");
        assert_eq!(
            m.statuses()[&("gh/acme".to_string(), "siem".to_string())]
                .last_error
                .as_deref(),
            Some("connection refused")
        );
        m.success("gh/acme", "siem", 5);
        let s = &m.statuses()[&("gh/acme".to_string(), "siem".to_string())];
        assert_eq!(s.last_error, None);
        assert_eq!(s.last_success_ms, Some(5));
    }

    const MIN: i64 = 60_000;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            poll_interval: Duration::from_secs(60),
            stale_intervals: 3,
        }
    }

    #[test]
    fn health_is_ok_with_no_pipelines_and_fresh_ones() {
        let m = Metrics::new();
        assert_eq!(m.health(0, &policy()).status, HealthState::Ok);
        m.register("gh/acme", "siem", 0);
        m.register("gh/acme", "", 0);
        let h = m.health(2 * MIN, &policy());
        assert_eq!(h.status, HealthState::Ok);
        assert_eq!(h.http_status(), 200);
        assert_eq!(h.pipelines.len(), 2);
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn a_pipeline_that_never_succeeds_goes_stale_counted_from_registration() {
        let m = Metrics::new();
        m.register("gh/acme", "siem", 10 * MIN);
        m.failure("gh/acme", "siem", "connection refused by 10.0.0.5:514");
        // Transient error, not yet stale: degraded but still 200.
        let h = m.health(12 * MIN, &policy());
        assert_eq!(h.status, HealthState::Degraded);
        assert_eq!(h.http_status(), 200);
        assert!(h.reasons[0].contains("retrying; last error: connection refused"));
        // Exactly at the limit is still fine; past it is not.
        assert_eq!(m.health(13 * MIN, &policy()).http_status(), 200);
        let h = m.health(13 * MIN + 1000, &policy());
        assert_eq!(h.status, HealthState::Unhealthy);
        assert_eq!(h.http_status(), 503);
        let r = &h.reasons[0];
        assert!(r.contains("organization gh/acme -> sink siem"), "{r}");
        assert!(
            r.contains("no success since it started 181s ago (limit 180s)"),
            "{r}"
        );
        assert!(r.contains("connection refused by 10.0.0.5:514"), "{r}");
        assert_eq!(h.pipelines[0].seconds_since_progress, Some(181));
    }

    #[test]
    fn stale_is_measured_from_the_last_success_and_success_recovers() {
        let m = Metrics::new();
        m.register("gh/acme", "", 0);
        m.poll_succeeded("gh/acme", 5 * MIN);
        let h = m.health(9 * MIN, &policy());
        assert_eq!(h.status, HealthState::Unhealthy);
        assert!(h.reasons[0].contains("(fetch from Codacy): no progress for 240s"));
        assert_eq!(h.pipelines[0].sink, None);
        m.poll_succeeded("gh/acme", 9 * MIN);
        assert_eq!(m.health(9 * MIN, &policy()).status, HealthState::Ok);
    }

    #[test]
    fn a_fatal_error_is_unhealthy_at_once_until_the_next_success() {
        let m = Metrics::new();
        m.register("gh/acme", "", 0);
        m.fatal_failure("gh/acme", "", "401 from Codacy: the token is invalid");
        let h = m.health(1000, &policy());
        assert_eq!(h.status, HealthState::Unhealthy);
        assert!(h.reasons[0].contains("needs attention; last error: 401"));
        assert!(h.pipelines[0].fatal);
        m.success("gh/acme", "", 2000);
        assert_eq!(m.health(2000, &policy()).status, HealthState::Ok);
    }

    #[test]
    fn one_bad_pipeline_makes_the_whole_answer_unhealthy_and_unregister_forgets_it() {
        let m = Metrics::new();
        m.register("gh/a", "s1", 0);
        m.register("gh/b", "s1", 0);
        m.success("gh/a", "s1", 10 * MIN);
        let h = m.health(10 * MIN, &policy());
        assert_eq!(h.status, HealthState::Unhealthy);
        assert_eq!(h.reasons.len(), 1);
        assert!(h.reasons[0].contains("gh/b"));
        m.unregister("gh/b", "s1");
        assert_eq!(m.health(10 * MIN, &policy()).status, HealthState::Ok);
        assert!(!m.render(0).contains("organization=\"gh/b\""));
    }

    #[test]
    fn register_keeps_the_first_start_time() {
        let m = Metrics::new();
        m.register("gh/a", "s", 0);
        m.register("gh/a", "s", 50 * MIN);
        assert_eq!(m.registered()[&("gh/a".to_string(), "s".to_string())], 0);
    }

    #[derive(Debug, Default)]
    struct ManualClock(std::sync::atomic::AtomicI64);
    impl crate::clock::Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn server_serves_metrics_and_health_that_follow_pipeline_state() {
        use std::sync::atomic::Ordering::SeqCst;
        let metrics = Arc::new(Metrics::new());
        let clock = Arc::new(ManualClock::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (handle, addr) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            policy(),
            clock.clone(),
            crate::secret::SharedRedactor::default(),
            async {
                let _ = stop_rx.await;
            },
        )
        .await
        .unwrap();
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();

        metrics.register("gh/acme", "siem", 0);
        metrics.events_delivered("gh/acme", "siem", 7);
        metrics.events_delivered("gh/acme", "siem", 5);
        let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(
            "codacy_forwarder_events_delivered_total{organization=\"gh/acme\",sink=\"siem\"} 12\n"
        ));

        let get_health = || async {
            let r = http.get(format!("{base}/health")).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.unwrap())
        };
        let (code, body) = get_health().await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "ok");

        // The sink fails and stays down past 3 poll intervals: 503 naming the sink and the error.
        metrics.failure("gh/acme", "siem", "HEC returned 503");
        clock.0.store(4 * MIN, SeqCst);
        let (code, body) = get_health().await;
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["pipelines"][0]["sink"], "siem");
        assert_eq!(body["pipelines"][0]["last_error"], "HEC returned 503");
        assert!(body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("HEC returned 503"));

        // It recovers: back to 200, and the success gauge is exported.
        metrics.success("gh/acme", "siem", 4 * MIN);
        let (code, body) = get_health().await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "ok");
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(
            "codacy_forwarder_pipeline_last_success_timestamp_seconds{organization=\"gh/acme\",sink=\"siem\"} 240\n"
        ));

        let missing = http.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(missing.status(), 404);

        stop_tx.send(()).unwrap();
        handle.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(
            addr,
            Arc::new(Metrics::new()),
            policy(),
            Arc::new(ManualClock::default()),
            crate::secret::SharedRedactor::default(),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(err.to_string().contains("[telemetry] listen"), "{err}");
    }
}
