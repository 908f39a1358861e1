//! Many organizations on one agent: every request to the API goes through one scheduler, so the
//! server never sees more than `codacy.max_concurrent_requests` at once, and every organization's
//! events still arrive exactly.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::agent;
use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Quirks, Simulator};
use codacy_audit_forwarder::telemetry::Metrics;
use e2e::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_organizations_never_exceed_the_concurrency_limit() {
    let sim = Simulator::new(TOKEN);
    let now = clock::system().now_ms();
    let orgs: Vec<OrgRef> = (0..300)
        .map(|i| OrgRef::new(Provider::Gh, format!("org-{i}")))
        .collect();
    for (i, org) in orgs.iter().enumerate() {
        sim.push_events(
            org,
            generate_events(
                i as u64,
                4,
                now - 3_600_000,
                now - 60_000,
                &GenOptions::default(),
            ),
        );
    }
    // Slow answers, so that requests would pile up without a limit.
    sim.set_quirks(Quirks {
        slow: Some(Duration::from_millis(5)),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<&OrgRef> = orgs.iter().collect();
    let text = config_text(&server.base_url, dir.path(), &refs, &[("a", "json")], "").replace(
        "max_attempts = 8",
        "max_attempts = 8\nmax_concurrent_requests = 3\nmax_requests_per_second = 1000",
    );
    let reports = agent::once(config(&text), Arc::new(Metrics::new()), clock::system())
        .await
        .unwrap();
    assert!(reports.iter().all(|(_, r)| r.ok()));
    assert!(
        sim.max_in_flight() <= 3,
        "{} requests at once",
        sim.max_in_flight()
    );
    assert!(
        sim.max_in_flight() >= 2,
        "the limit was never reached: the test proves nothing"
    );
    let lines = read_ndjson(&dir.path().join("a.ndjson"));
    for org in &orgs {
        assert_eq!(
            delivered_ids(&lines, org),
            expected_ids(org, &sim.events(org), i64::MIN),
            "{org}"
        );
    }
    // One pass of a quiet organization is a handful of requests, not a storm.
    let per_org = sim.request_count() as f64 / orgs.len() as f64;
    assert!(per_org <= 4.0, "{per_org} requests per organization");
}

/// A (re)start with many organizations is no stampede: first polls are spread over the first
/// poll interval, so after a quarter of it only about a quarter of the organizations were asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_polls_after_a_start_are_spread_over_the_poll_interval() {
    let sim = Simulator::new(TOKEN);
    let orgs: Vec<OrgRef> = (0..40)
        .map(|i| OrgRef::new(Provider::Gh, format!("org-{i}")))
        .collect();
    for org in &orgs {
        sim.add_org(org);
    }
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<&OrgRef> = orgs.iter().collect();
    let text = config_text(&server.base_url, dir.path(), &refs, &[("a", "json")], "")
        .replace("poll_interval = \"1s\"", "poll_interval = \"8s\"");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let daemon = spawn_run(&cfg, None);
    let asked = || {
        let mut o: Vec<String> = sim.requests().into_iter().map(|r| r.org).collect();
        o.sort();
        o.dedup();
        o.len()
    };
    wait_until("the first polls", Duration::from_secs(10), || asked() > 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = asked();
    assert!(
        early <= 20,
        "{early} of 40 organizations polled within ~2 s of an 8 s interval: a stampede"
    );
    wait_until(
        "every organization's first poll",
        Duration::from_secs(15),
        || asked() == 40,
    )
    .await;
    stop(daemon);
    server.shutdown().await;
}
