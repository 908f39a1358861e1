//! The Kafka sink's `kafka-poll` thread: it sleeps while the sink is idle, yet serves a batch's
//! delivery reports at once, and `shutdown` stops it within its deadline. A test binary of its
//! own, as it counts the process's threads.

#[path = "common/kafka.rs"]
mod kafka_common;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink};
use kafka_common::{ctx, record};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::json;
use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_thread_sleeps_at_idle_serves_a_batch_at_once_and_stops_at_shutdown() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap();
    mock.create_topic("codacy-audit", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config: KafkaSinkConfig = serde_json::from_value(json!({
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
    // Connected, and the connection's log lines served.
    let first: Vec<Record> = (0..10).map(|i| record(&org, i)).collect();
    sink.deliver(&first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = switches(&threads[0]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let woke = switches(&threads[0]) - before;
    // rdkafka's own polling thread woke 30 times in 3 s.
    assert!(woke <= 3, "the idle poll thread woke {woke} times in 3 s");

    let next: Vec<Record> = (10..20).map(|i| record(&org, i)).collect();
    let started = Instant::now();
    sink.deliver(&next).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a batch after idling took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    sink.shutdown(Duration::from_secs(2)).await;
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
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
            started.elapsed() < Duration::from_secs(5),
            "{} kafka-poll threads, expected {n}",
            poll_threads().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
