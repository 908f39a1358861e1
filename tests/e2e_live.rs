//! Exactly once while events arrive: the embedded simulator serves newest-first pages (cursors are
//! offsets, as with Codacy), and events, some byte-identical twins of events already held, land
//! inside the window between the pages of a walk. Whatever the arrival schedule, every event is
//! delivered exactly as many times as the API holds it, each with its own stable id: an arrival
//! that shifts the pages must never turn a re-served event into a "second identical event".

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::agent;
use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{
    generate_events, GenOptions, Order, Quirks, Shape, Simulator,
};
use codacy_audit_forwarder::telemetry::Metrics;
use e2e::*;
use proptest::prelude::*;
use serde_json::Value;
use std::sync::Arc;

/// One arrival: after which request it lands, how many fresh events, and whether it also brings
/// a byte-identical twin of an event the server already holds.
#[derive(Debug, Clone)]
struct Arrival {
    after_request: u64,
    fresh: usize,
    twin_of: Option<usize>,
}

fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec(
        (1u64..10, 0usize..4, prop::option::of(0usize..300)).prop_map(|(r, f, t)| Arrival {
            after_request: r,
            fresh: f,
            twin_of: t,
        }),
        1..6,
    )
}

async fn run_schedule(shape: Shape, schedule: Vec<Arrival>, seed: u64) {
    let schedule_shown = format!("{schedule:?}");
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(
            seed,
            270,
            now - 12 * 3_600_000,
            now - 6 * 60_000,
            &GenOptions::tricky(),
        ),
    );
    // Twins copy these: recent enough that a twin landing after the walk is still inside the
    // next pass's overlap (an older late arrival is documented as not seen).
    let recent = generate_events(
        seed + 1,
        30,
        now - 5 * 60_000,
        now - 2_000,
        &GenOptions::tricky(),
    );
    sim.push_events(&org, recent.clone());
    for (k, a) in schedule.iter().enumerate() {
        // Recorded late: stamped in the last minutes, inside the window being paged (and inside
        // the overlap, so an arrival after the walk is caught by the next pass).
        let mut batch: Vec<Value> = generate_events(
            seed * 100 + k as u64,
            a.fresh,
            now - 5 * 60_000,
            now - 1_000,
            &GenOptions::default(),
        );
        if let Some(i) = a.twin_of {
            batch.push(recent[i % recent.len()].clone());
        }
        sim.arrive_after_request(a.after_request, &org, batch);
    }
    sim.set_quirks(Quirks {
        shape,
        order: Order::NewestFirst,
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&config_text(
        &server.base_url,
        dir.path(),
        &[&org],
        &[("a", "json")],
        "",
    ));
    // Arrivals land only when requests are made: keep polling until every one has landed, then
    // once more (an arrival after a pass's last request is the next pass's, inside the overlap).
    let mut passes = 0;
    loop {
        let landed = sim.pending_arrivals() == 0;
        let reports = agent::once(cfg.clone(), Arc::new(Metrics::new()), clock::system())
            .await
            .unwrap();
        assert!(reports[0].1.ok(), "{:?}", reports[0].1);
        passes += 1;
        if landed && passes >= 2 {
            break;
        }
        assert!(passes < 10, "arrivals never landed");
    }
    let lines = read_ndjson(&dir.path().join("a.ndjson"));
    let delivered = delivered_ids(&lines, &org);
    let expected = expected_ids(&org, &sim.events(&org), i64::MIN);
    let extra: Vec<_> = delivered
        .iter()
        .filter(|(id, n)| expected.get(*id) != Some(n))
        .collect();
    assert!(
        extra.is_empty(),
        "{} records for {} events held; ids delivered a wrong number of times or unknown to the API: {extra:?}",
        lines.len(),
        expected.values().sum::<usize>()
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, n)| delivered.get(*id) != Some(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} ids missing or short of their count: {missing:?}\nschedule: {schedule_shown}\nheld (ms before the test's start, id): {:?}\nrequests (number, from, to relative to the test's start, cursor, status, events): {:?}",
        missing.len(),
        sim.events(&org)
            .into_iter()
            .filter_map(|v| codacy_audit_forwarder::event::AuditEvent::from_value(v).ok())
            .filter(|e| e.timestamp_ms > now - 6 * 60_000)
            .map(|e| now - e.timestamp_ms)
            .collect::<Vec<_>>(),
        sim.requests()
            .iter()
            .map(|r| (r.number, r.from.map(|f| f - now), r.to.map(|t| t - now), r.cursor.clone(), r.status, r.events))
            .collect::<Vec<_>>()
    );
    server.shutdown().await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn envelope_newest_first_with_arrivals_between_pages(schedule in arrivals(), seed in 1u64..1000) {
        runtime().block_on(run_schedule(Shape::Envelope, schedule, seed));
    }

    #[test]
    fn bare_arrays_newest_first_with_arrivals_between_requests(schedule in arrivals(), seed in 1u64..1000) {
        runtime().block_on(run_schedule(Shape::Array, schedule, seed));
    }

    #[test]
    fn alternating_shapes_with_arrivals(schedule in arrivals(), seed in 1u64..1000) {
        runtime().block_on(run_schedule(Shape::Alternate, schedule, seed));
    }
}

/// The measured case of the issue, fixed: an arrival on every page of a long walk.
#[test]
fn an_arrival_between_every_page_gives_no_duplicate_ids() {
    let schedule = (1..=12)
        .map(|r| Arrival {
            after_request: r,
            fresh: 2,
            twin_of: Some(r as usize * 7),
        })
        .collect();
    runtime().block_on(run_schedule(Shape::Envelope, schedule, 42));
}
