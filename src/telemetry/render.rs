//! The Prometheus text exposition: every metric's name, type and help text in one place, and the
//! series that follow live state (a lane's lag and state) computed at scrape time.

use super::{Labels, Metrics, PipelineStatus, MAX_LABELS, NO_LABEL};

pub(super) const CHECKPOINT_TIMESTAMP: &str = "codacy_forwarder_checkpoint_timestamp_seconds";
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

impl Metrics {
    /// Prometheus text exposition format 0.0.4, with the gauges that follow live state (lag,
    /// lane state) computed as of `now_ms`.
    pub fn render(&self, now_ms: i64) -> String {
        let inner = self.lock();
        // Series that follow live state are computed here, never stored: a lane's lag grows
        // while it is stuck, and 10,000 organizations do not keep four more series each.
        let mut out = String::new();
        for (name, kind, help) in METRICS {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            let pool = &inner.pool;
            let write = |out: &mut String, l: &Labels, extra: Option<(&str, &str)>, v: &str| {
                out.push_str(name);
                let pairs = l
                    .iter()
                    .filter(|&&id| id != NO_LABEL)
                    .map(|&id| pool.pair(id));
                let mut pairs = pairs.chain(extra).peekable();
                if pairs.peek().is_some() {
                    out.push('{');
                    for (i, (k, val)) in pairs.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&format!("{k}=\"{}\"", escape_label(val)));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(v);
                out.push('\n');
            };
            let series = |map_name: &'static str| (map_name, [0; MAX_LABELS])..;
            if *name == CHECKPOINT_LAG {
                let stamps = inner.gauges.range(series(CHECKPOINT_TIMESTAMP));
                for ((_, l), ts) in stamps.take_while(|((n, _), _)| *n == CHECKPOINT_TIMESTAMP) {
                    let lag = format_float((now_ms as f64 / 1000.0 - ts).max(0.0));
                    write(&mut out, l, None, &lag);
                }
                continue;
            }
            if *name == LANE_STATE {
                let lanes = inner
                    .status
                    .iter()
                    .filter(|((_, s), _)| !pool.value(*s).is_empty());
                for (&(org, sink), st) in lanes {
                    let current = lane_state(st);
                    let mut l = [NO_LABEL; MAX_LABELS];
                    (l[0], l[1]) = (org, sink);
                    for state in ["caught_up", "catching_up", "failing"] {
                        let v = if state == current { "1" } else { "0" };
                        write(&mut out, &l, Some(("state", state)), v);
                    }
                }
                continue;
            }
            let counters = inner.counters.range(series(name));
            for ((_, l), v) in counters.take_while(|((n, _), _)| n == name) {
                write(&mut out, l, None, &v.to_string());
            }
            let gauges = inner.gauges.range(series(name));
            for ((_, l), v) in gauges.take_while(|((n, _), _)| n == name) {
                write(&mut out, l, None, &format_float(*v));
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
