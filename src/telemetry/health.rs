//! What `/health` answers:
//! - A pipeline is **unhealthy** (HTTP 503) when it made no progress for `health_stale_intervals`
//!   poll intervals, counted from its last success or, if it never succeeded, from when it was
//!   registered; or at once when its last error is fatal (bad credentials, permission denied:
//!   retrying will not fix it, a human must).
//! - A pipeline whose last attempt failed with a transient error but which is not yet stale is
//!   **degraded**: still HTTP 200 (a SIEM restart or a 429 must not page anyone or make an
//!   orchestrator kill the agent, which retries by itself), with the error in the body.
//! - The body is JSON in both cases: overall status, one entry per pipeline, and `reasons`.

use super::{Metrics, PipelineStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

impl Metrics {
    /// `/health` as of `now_ms`; see this module's docs for the policy.
    pub fn health(&self, now_ms: i64, policy: &HealthPolicy) -> Health {
        let inner = self.lock();
        let mut h = health(
            &inner.named(&inner.status),
            &inner.named(&inner.registered),
            now_ms,
            policy,
        );
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
