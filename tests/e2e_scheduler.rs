//! 10,000 organizations on one agent: every request to the API goes through one scheduler, so the
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
    let orgs: Vec<OrgRef> = (0..10_000)
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
        slow: Some(Duration::from_millis(2)),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<&OrgRef> = orgs.iter().collect();
    let text = config_text(&server.base_url, dir.path(), &refs, &[("a", "json")], "")
        .replace(
            "max_attempts = 8",
            "max_attempts = 8\nmax_concurrent_requests = 3\nmax_requests_per_second = 100000",
        )
        .replace("initial_lookback = \"7d\"", "initial_lookback = \"2h\"");
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
    // Every organization's events exactly: delivered ids per organization, in one pass over the
    // file (10,000 organizations).
    let mut delivered: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, usize>,
    > = std::collections::BTreeMap::new();
    for l in read_ndjson(&dir.path().join("a.ndjson")) {
        let org = format!(
            "{}/{}",
            l["provider"].as_str().unwrap(),
            l["organization"].as_str().unwrap()
        );
        *delivered
            .entry(org)
            .or_default()
            .entry(l["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(delivered.len(), orgs.len());
    for org in &orgs {
        assert_eq!(
            delivered.remove(&org.key()).unwrap_or_default(),
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
    // The rate limit lifted: a first pass walks a week in a few slices (a request each), and at
    // the default 10 requests/s forty organizations' first passes alone take 12-16 s, which is
    // the token bucket's doing, not the start's spread that this test is about.
    let text = config_text(&server.base_url, dir.path(), &refs, &[("a", "json")], "")
        .replace("poll_interval = \"1s\"", "poll_interval = \"8s\"")
        .replace(
            "max_attempts = 8",
            "max_attempts = 8\nmax_requests_per_second = 1000",
        );
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

/// Fair: a big backfill of one organization does not hold back another's poll. With a single
/// request slot, the small organization's request is served within a request or two of its
/// arrival, not after the big one's hundred pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_backfill_does_not_hold_back_another_organizations_poll() {
    let sim = Simulator::new(TOKEN);
    let big = OrgRef::new(Provider::Gh, "big");
    let small = OrgRef::new(Provider::Gh, "small");
    let now = clock::system().now_ms();
    sim.push_events(
        &big,
        generate_events(
            1,
            5_000,
            now - 3 * 86_400_000,
            now - 60_000,
            &GenOptions::default(),
        ),
    );
    sim.push_events(
        &small,
        generate_events(2, 3, now - 3_600_000, now - 60_000, &GenOptions::default()),
    );
    sim.set_quirks(Quirks {
        slow: Some(Duration::from_millis(5)),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &server.base_url,
        dir.path(),
        &[&big, &small],
        &[("a", "json")],
        "",
    )
    .replace(
        "max_attempts = 8",
        "max_attempts = 8\nmax_concurrent_requests = 1\nmax_requests_per_second = 1000",
    );
    let reports = agent::once(config(&text), Arc::new(Metrics::new()), clock::system())
        .await
        .unwrap();
    assert!(reports.iter().all(|(_, r)| r.ok()));
    let requests = sim.requests();
    let big_pages = requests.iter().filter(|r| r.org == "gh/big").count();
    let small_done = requests.iter().rposition(|r| r.org == "gh/small").unwrap();
    assert!(
        big_pages >= 100,
        "{big_pages} pages: the backfill is not big enough to tell"
    );
    assert!(
        small_done < 10,
        "the small organization's last request was number {} of {}",
        small_done + 1,
        requests.len()
    );
}

/// `agent.max_poll_interval`: a quiet organization is polled less and less often, up to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_organization_is_polled_less_often() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "quiet");
    sim.add_org(&org);
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &server.base_url,
        dir.path(),
        &[&org],
        &[("a", "json")],
        "max_poll_interval = \"4s\"",
    );
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let daemon = spawn_run(&cfg, None);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let quiet_polls = sim.request_count();
    // Every second (poll_interval = 1s) would be ~12; doubling 1, 2, 4, 4 s gives about 5.
    assert!(
        (3..=7).contains(&quiet_polls),
        "{quiet_polls} polls in 12 s of a quiet organization"
    );
    // Its first new event brings it back to poll_interval.
    let t = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(9, 1, t - 500, t - 100, &GenOptions::default()),
    );
    wait_until("the new event", Duration::from_secs(10), || {
        read_ndjson(&dir.path().join("a.ndjson")).len() == 1
    })
    .await;
    let after_event = sim.request_count();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        sim.request_count() > after_event,
        "not polled again within 2.5 s of a new event"
    );
    stop(daemon);
    server.shutdown().await;
}
