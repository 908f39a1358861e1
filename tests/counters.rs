//! Counters that mean what they say: `codacy_forwarder_events_fetched_total` counts each event
//! once, the overlap re-read at every poll and a new sink's backfill over what another sink had
//! count as re-read, and deliveries are counted per sink.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::agent;
use codacy_audit_forwarder::cli::once_text;
use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
use codacy_audit_forwarder::telemetry::Metrics;
use e2e::*;
use std::sync::Arc;

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_are_counted_once_and_rereads_apart() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    let opts = GenOptions::default();
    // 100 events over three days, 30 of them in the last 9 minutes (inside the 10 min overlap).
    sim.push_events(
        &org,
        generate_events(1, 70, now - 3 * 86_400_000, now - 60 * MIN, &opts),
    );
    sim.push_events(
        &org,
        generate_events(2, 30, now - 9 * MIN, now - 5_000, &opts),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let counter = |name: &'static str| metrics.counter(name, &[("organization", "gh/acme")]);
    let delivered = |sink: &str| {
        metrics.counter(
            "codacy_forwarder_events_delivered_total",
            &[("organization", "gh/acme"), ("sink", sink)],
        )
    };

    let one_sink = config(&config_text(
        &server.base_url,
        dir.path(),
        &[&org],
        &[("a", "json")],
        "",
    ));
    let reports = agent::once(one_sink, metrics.clone(), clock::system())
        .await
        .unwrap();
    assert_eq!((reports[0].1.fetched, reports[0].1.reread), (100, 0));
    assert_eq!(counter("codacy_forwarder_events_fetched_total"), 100);

    // 13 events arrive (late ones among them, inside the overlap); a second sink is added, which
    // backfills from initial_lookback over what sink a already had.
    sim.push_events(
        &org,
        generate_events(3, 13, now - 2 * MIN, now - 1_000, &opts),
    );
    let two_sinks = config(&config_text(
        &server.base_url,
        dir.path(),
        &[&org],
        &[("a", "json"), ("b", "json")],
        "",
    ));
    let reports = agent::once(two_sinks, metrics.clone(), clock::system())
        .await
        .unwrap();
    let report = &reports[0].1;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.fetched, report.reread), (13, 100));
    assert_eq!(counter("codacy_forwarder_events_fetched_total"), 113);
    assert_eq!(counter("codacy_forwarder_events_reread_total"), 100);
    assert_eq!((delivered("a"), delivered("b")), (100 + 13, 113));

    let text = once_text(&reports, &["a".into(), "b".into()]);
    assert_eq!(
        text,
        "gh/acme: 13 new event(s), 100 re-read (overlap or catch-up)\n  \
         sink a: 13 record(s) delivered\n  sink b: 113 record(s) delivered\n"
    );
}
