//! End to end through `once` into files, against the embedded simulator with each of its quirks:
//! the delivered multiset equals the simulator's, and each line is the event as the API sent it.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::agent;
use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{write_canonical, OrgRef, Provider};
use codacy_audit_forwarder::simulator::{
    generate_events, GenOptions, Keep, Order, Quirks, RetryAfter, Shape, Simulator,
};
use codacy_audit_forwarder::telemetry::Metrics;
use e2e::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn canonical_sorted(values: impl IntoIterator<Item = Value>) -> Vec<String> {
    let mut v: Vec<String> = values
        .into_iter()
        .map(|x| {
            let mut out = Vec::new();
            write_canonical(&x, &mut out);
            String::from_utf8(out).unwrap()
        })
        .collect();
    v.sort();
    v
}

struct Case {
    sim: Simulator,
    org: OrgRef,
    dir: tempfile::TempDir,
    base_url: String,
    _server: codacy_audit_forwarder::simulator::ServerHandle,
}

async fn case(quirks: Quirks, n: usize, opts: GenOptions) -> Case {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(7, n, now - 2 * 86_400_000, now - 60_000, &opts),
    );
    sim.set_quirks(quirks);
    let server = sim.serve().await.unwrap();
    Case {
        sim,
        org,
        dir: tempfile::tempdir().unwrap(),
        base_url: server.base_url.clone(),
        _server: server,
    }
}

async fn once(
    c: &Case,
    orgs: &[&OrgRef],
) -> Vec<(OrgRef, codacy_audit_forwarder::pipeline::PassReport)> {
    let cfg = config(&config_text(
        &c.base_url,
        c.dir.path(),
        orgs,
        &[("a", "json")],
        "",
    ));
    agent::once(cfg, Arc::new(Metrics::new()), clock::system())
        .await
        .unwrap()
}

/// `once` into sink `a` with its own metrics, to read the counters after.
async fn once_with_metrics(
    c: &Case,
) -> (
    Vec<(OrgRef, codacy_audit_forwarder::pipeline::PassReport)>,
    Arc<Metrics>,
) {
    let cfg = config(&config_text(
        &c.base_url,
        c.dir.path(),
        &[&c.org],
        &[("a", "json")],
        "",
    ));
    let metrics = Arc::new(Metrics::new());
    let reports = agent::once(cfg, metrics.clone(), clock::system())
        .await
        .unwrap();
    (reports, metrics)
}

fn invalid_counted(metrics: &Metrics) -> u64 {
    metrics.counter(
        "codacy_forwarder_events_invalid_total",
        &[("organization", "gh/acme")],
    )
}

fn assert_delivered_exactly(c: &Case) {
    let lines = read_ndjson(&c.dir.path().join("a.ndjson"));
    let held = c.sim.events(&c.org);
    assert_eq!(
        delivered_ids(&lines, &c.org),
        expected_ids(&c.org, &held, i64::MIN)
    );
    let valid: Vec<Value> = held
        .into_iter()
        .filter(|v| codacy_audit_forwarder::event::AuditEvent::from_value(v.clone()).is_ok())
        .collect();
    assert_eq!(
        canonical_sorted(lines.iter().map(strip_provenance)),
        canonical_sorted(valid)
    );
}

fn tricky_across_pages() -> GenOptions {
    GenOptions {
        page_boundaries: Some(50),
        ..GenOptions::tricky()
    }
}

async fn run_quirk(quirks: Quirks) {
    let c = case(quirks, 400, tricky_across_pages()).await;
    let reports = once(&c, &[&c.org]).await;
    assert!(reports[0].1.ok(), "{:?}", reports[0].1);
    assert_delivered_exactly(&c);
}

#[tokio::test]
async fn envelope_ascending() {
    run_quirk(Quirks::default()).await;
}

#[tokio::test]
async fn envelope_newest_first() {
    run_quirk(Quirks {
        order: Order::NewestFirst,
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn bare_array_cut_keeping_the_oldest() {
    run_quirk(Quirks {
        shape: Shape::Array,
        array_keeps: Keep::Oldest,
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn bare_array_newest_first_cut_keeping_the_newest() {
    run_quirk(Quirks {
        shape: Shape::Array,
        order: Order::NewestFirst,
        array_keeps: Keep::Newest,
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn shapes_alternating() {
    run_quirk(Quirks {
        shape: Shape::Alternate,
        order: Order::NewestFirst,
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn server_page_cap_below_the_limit_with_cursors() {
    run_quirk(Quirks {
        page_cap: Some(7),
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn transient_faults_429_503_truncated_and_html_bodies() {
    run_quirk(Quirks {
        rate_limit_every: Some(7),
        retry_after: RetryAfter::Seconds(1),
        unavailable_every: Some(5),
        truncate_every: Some(6),
        non_json_every: Some(11),
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn slow_responses() {
    run_quirk(Quirks {
        slow: Some(Duration::from_millis(30)),
        ..Quirks::default()
    })
    .await;
}

#[tokio::test]
async fn auth_failure_names_the_cause_and_other_organizations_go_on() {
    let c = case(Quirks::default(), 100, GenOptions::default()).await;
    let unknown = OrgRef::new(Provider::Gl, "no-such-org");
    let reports = once(&c, &[&c.org, &unknown]).await;
    let find = |o: &OrgRef| reports.iter().find(|(r, _)| r == o).unwrap().1.clone();
    assert!(find(&c.org).ok());
    let e = find(&unknown).fetch_error.unwrap();
    assert!(e.contains("404") && e.contains("gl/no-such-org"), "{e}");
    assert_delivered_exactly(&c);

    c.sim.set_quirks(Quirks {
        auth_failure: true,
        ..Quirks::default()
    });
    let reports = once(&c, &[&c.org]).await;
    let e = reports[0].1.fetch_error.clone().unwrap();
    assert!(
        e.contains("401") && e.contains("token") && e.contains("Business"),
        "{e}"
    );
    assert!(!e.contains(TOKEN));
}

#[tokio::test]
async fn invalid_events_are_dead_lettered_and_counted_never_dropped() {
    let c = case(
        Quirks::default(),
        200,
        GenOptions {
            invalid: 4,
            ..GenOptions::default()
        },
    )
    .await;
    let (reports, metrics) = once_with_metrics(&c).await;
    assert_eq!(reports[0].1.invalid, 4, "{:?}", reports[0].1);
    assert_eq!(invalid_counted(&metrics), 4);
    let dead = read_ndjson(&c.dir.path().join("state/dead-letter/invalid-events.ndjson"));
    assert_eq!(dead.len(), 4);
    assert!(dead
        .iter()
        .all(|d| d["reason"].is_string() && d["position"].is_string() && !d["event"].is_null()));
    assert_delivered_exactly(&c);
}

#[tokio::test]
async fn a_second_pass_fetches_only_what_is_new_including_late_arrivals() {
    let c = case(Quirks::default(), 300, tricky_across_pages()).await;
    assert!(once(&c, &[&c.org]).await[0].1.ok());
    let now = clock::system().now_ms();
    let before = c.sim.request_count();
    // New events, and late ones stamped minutes in the past (inside the 10m overlap).
    c.sim.push_events(
        &c.org,
        generate_events(99, 20, now - 5 * 60_000, now - 1_000, &GenOptions::tricky()),
    );
    let r = once(&c, &[&c.org]).await;
    assert!(r[0].1.ok());
    assert_eq!(r[0].1.delivered["a"], 20);
    // The second pass asked only for the recent window, not the whole backlog.
    let requests = c.sim.requests();
    let later: Vec<_> = requests.iter().skip(before as usize).collect();
    assert!(!later.is_empty());
    assert!(
        later
            .iter()
            .all(|q| q.from.unwrap_or(0) >= now - 11 * 60_000),
        "{later:?}"
    );
    assert_delivered_exactly(&c);
    // And a third pass with nothing new delivers nothing.
    let r = once(&c, &[&c.org]).await;
    assert_eq!(r[0].1.delivered.get("a").copied().unwrap_or(0), 0);
    assert_delivered_exactly(&c);
}

#[tokio::test]
async fn a_redirect_is_refused_and_the_token_never_leaves_for_another_host() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let other = axum::Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async { "[]" }
    });
    let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(other_listener, other).await });
    let location = format!("http://{other_addr}/elsewhere");
    let redirector = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, location)],
                "",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, redirector).await });
    let dir = tempfile::tempdir().unwrap();
    let org = OrgRef::new(Provider::Gh, "acme");
    let cfg = config(&config_text(
        &format!("http://{addr}"),
        dir.path(),
        &[&org],
        &[("a", "json")],
        "",
    ));
    let reports = agent::once(cfg, Arc::new(Metrics::new()), clock::system())
        .await
        .unwrap();
    let e = reports[0].1.fetch_error.clone().unwrap();
    assert!(
        e.contains("302") && e.contains("redirected") && e.contains("codacy.base_url"),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test]
async fn events_filed_under_another_time_are_dead_lettered_with_the_reason_never_dropped() {
    let c = case(Quirks::default(), 50, GenOptions::default()).await;
    let now = clock::system().now_ms();
    // The server files these inside the polled window, but their own `timestamp` says otherwise:
    // no query by that time would ever return them.
    let odd = [
        serde_json::json!({"timestamp": 12345, "action": "user.login", "result": "succeed"}),
        serde_json::json!({"timestamp": "9999-12-31T23:59:59.000Z", "action": "user.login"}),
        serde_json::json!({"timestamp": "1970-01-01T00:00:01.000Z", "action": "user.login"}),
    ];
    c.sim
        .push_events_at(&c.org, odd.iter().map(|v| (now - 3_600_000, v.clone())));
    let (reports, metrics) = once_with_metrics(&c).await;
    assert_eq!(reports[0].1.invalid, 3, "{:?}", reports[0].1);
    assert_eq!(invalid_counted(&metrics), 3);
    let dead = read_ndjson(&c.dir.path().join("state/dead-letter/invalid-events.ndjson"));
    let mut got: Vec<Value> = dead.iter().map(|d| d["event"].clone()).collect();
    let mut want = odd.to_vec();
    got.sort_by_key(|v| v.to_string());
    want.sort_by_key(|v| v.to_string());
    assert_eq!(got, want);
    assert!(dead.iter().all(|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.contains("outside the window"))));
    // Every real event is delivered exactly once, and none of the odd ones.
    let lines = read_ndjson(&c.dir.path().join("a.ndjson"));
    assert_eq!(lines.len(), 50);
}
