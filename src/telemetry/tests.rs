use super::*;
use std::sync::Arc;
use std::time::Duration;

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
fn one_bad_pipeline_makes_the_whole_answer_unhealthy_and_forgetting_it_drops_it() {
    let m = Metrics::new();
    m.register("gh/a", "s1", 0);
    m.register("gh/b", "s1", 0);
    m.success("gh/a", "s1", 10 * MIN);
    let h = m.health(10 * MIN, &policy());
    assert_eq!(h.status, HealthState::Unhealthy);
    assert_eq!(h.reasons.len(), 1);
    assert!(h.reasons[0].contains("gh/b"));
    m.forget("gh/b", "s1");
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
