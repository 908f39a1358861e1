//! Metrics and status: counters and gauges the pipeline updates, rendered as Prometheus text,
//! plus the per-(organization, sink) status that `/health` and logs report.

use std::collections::BTreeMap;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    status: BTreeMap<(String, String), PipelineStatus>,
}

/// Health of one pipeline: an organization's fetch (`sink` = "") or one (organization, sink).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineStatus {
    /// Last time this pipeline completed a pass without error, epoch ms.
    pub last_success_ms: Option<i64>,
    /// The last error, cleared on success.
    pub last_error: Option<String>,
}

/// All metric names in one place, with their help text.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "codacy_forwarder_events_fetched_total",
        "counter",
        "Events fetched from the Codacy API (after window filtering).",
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
        "Events from the API that could not be parsed (dead-lettered).",
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
        "Now minus the checkpoint cursor, per organization and sink.",
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

    pub fn retry(&self, component: &str) {
        self.add(
            "codacy_forwarder_retries_total",
            &[("component", component)],
            1,
        );
    }

    pub fn checkpoint(&self, org: &str, sink: &str, cursor_ms: i64, now_ms: i64) {
        let pairs = [("organization", org), ("sink", sink)];
        self.set_gauge(
            "codacy_forwarder_checkpoint_timestamp_seconds",
            &pairs,
            cursor_ms as f64 / 1000.0,
        );
        self.set_gauge(
            "codacy_forwarder_checkpoint_lag_seconds",
            &pairs,
            ((now_ms - cursor_ms).max(0)) as f64 / 1000.0,
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
        let mut inner = self.lock();
        let s = inner
            .status
            .entry((org.to_string(), sink.to_string()))
            .or_default();
        s.last_success_ms = Some(now_ms);
        s.last_error = None;
    }

    /// Records a failure of a pipeline (`sink` = "" for the organization's fetch).
    pub fn failure(&self, org: &str, sink: &str, error: &str) {
        let mut inner = self.lock();
        inner
            .status
            .entry((org.to_string(), sink.to_string()))
            .or_default()
            .last_error = Some(error.to_string());
    }

    /// Status of every pipeline seen so far, keyed by (organization, sink).
    pub fn statuses(&self) -> BTreeMap<(String, String), PipelineStatus> {
        self.lock().status.clone()
    }

    /// Forgets a pipeline's status and gauges (a removed organization or sink).
    pub fn forget(&self, org: &str, sink: &str) {
        let mut inner = self.lock();
        inner.status.remove(&(org.to_string(), sink.to_string()));
        inner.gauges.retain(|(_, l), _| {
            !(l.iter().any(|(k, v)| *k == "organization" && v == org)
                && (sink.is_empty() || l.iter().any(|(k, v)| *k == "sink" && v == sink)))
        });
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let inner = self.lock();
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
            for ((n, l), v) in inner.counters.iter().filter(|((n, _), _)| n == name) {
                let _ = n;
                write(&mut out, l, v.to_string());
            }
            for ((n, l), v) in inner.gauges.iter().filter(|((n, _), _)| n == name) {
                let _ = n;
                write(&mut out, l, format_float(*v));
            }
        }
        out
    }
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
        let text = m.render();
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
}
