//! The Kafka sink's `kafka-poll` thread: it sleeps while the sink is idle, a batch wakes it at
//! once (not the idle check), and `shutdown` stops it. A test binary of its own, as it counts
//! the process's threads and installs a global tracing subscriber.

#[path = "common/kafka.rs"]
mod kafka_common;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink};
use kafka_common::{ctx, record};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Generous: only a hang fails it, never a slow machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Counts the poll thread's "woken by a batch or check" trace events.
struct Wakes(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Wakes {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "kafka_poll" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The `kafka-poll` threads of this process, by thread id.
fn poll_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let tid = t.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim() == "kafka-poll").then_some(tid)
        })
        .collect()
}

/// How many times the thread was scheduled in (each wake-up is a context switch).
fn switches(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Waits until the poll thread `tid` stays asleep for a second: the connection's events served.
async fn wait_until_asleep(tid: &str) {
    let started = Instant::now();
    loop {
        let before = switches(tid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if switches(tid) == before {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the poll thread never went idle"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_thread_sleeps_at_idle_is_woken_by_a_batch_and_stops_at_shutdown() {
    let wakes = Arc::new(AtomicUsize::new(0));
    tracing_subscriber::registry()
        .with(
            Wakes(wakes.clone()).with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() == "kafka_poll"
            })),
        )
        .init();
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap();
    mock.create_topic("codacy-audit", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = KafkaSinkConfig::from_json(json!({
        "brokers": mock.bootstrap_servers(), "topic": "codacy-audit", "message_timeout": "20s"
    }))
    .unwrap();
    let sink = KafkaSink::start(config.clone(), ctx(dir.path()))
        .await
        .unwrap();
    // One per producer (the thread names itself as it starts).
    wait_for_poll_threads(1).await;
    let threads = poll_threads();
    let org = OrgRef::new(Provider::Gh, "acme");
    let first: Vec<Record> = (0..10).map(|i| record(&org, i)).collect();
    sink.deliver(&first).await.unwrap();
    wait_until_asleep(&threads[0]).await;

    // Idle, it wakes only for its rare idle check (every 10 s); rdkafka's own polling thread
    // woke 30 times in 3 s. A slow machine can only make it wake less.
    let before = switches(&threads[0]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let woke = switches(&threads[0]) - before;
    assert!(woke <= 2, "the idle poll thread woke {woke} times in 3 s");

    // The next batch wakes it at once, rather than waiting for that idle check.
    let before = wakes.load(Ordering::SeqCst);
    let next: Vec<Record> = (10..20).map(|i| record(&org, i)).collect();
    sink.deliver(&next).await.unwrap();
    assert!(
        wakes.load(Ordering::SeqCst) > before,
        "the batch was served without waking the sleeping poll thread"
    );

    sink.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        poll_threads(),
        Vec::<String>::new(),
        "shutdown stops the poll thread"
    );
    let after = sink.deliver(&next).await.unwrap_err();
    assert!(after.message.contains("shut down"), "{}", after.message);
    drop(sink);

    // A producer replaced by reopen, or dropped with its sink, leaves no thread behind.
    let sink = KafkaSink::start(config.clone(), ctx(dir.path()))
        .await
        .unwrap();
    sink.deliver(&first).await.unwrap();
    sink.reopen().await;
    wait_for_poll_threads(1).await;
    sink.deliver(&next).await.unwrap();
    drop(sink);
    wait_for_poll_threads(0).await;
}

async fn wait_for_poll_threads(n: usize) {
    let started = Instant::now();
    while poll_threads().len() != n {
        assert!(
            started.elapsed() < DEADLINE,
            "{} kafka-poll threads, expected {n}",
            poll_threads().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
