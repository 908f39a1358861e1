//! Kafka sink throughput: records/s through `KafkaSink::deliver` (batches of 500, the default
//! `batch_max_events`, awaited one after another like one organization's pipeline, and 4 such
//! pipelines at once) against librdkafka's own producer on the same records with the same
//! properties (a bare `FutureProducer` loop: enqueue everything, await every report).
//!
//! Runs against a real broker (`tansu` on PATH, started on a free 127.0.0.1 port, or
//! `KAFKA_TEST_BROKERS`) and against librdkafka's in-process mock cluster.
//! `cargo bench --bench kafka` (set `KAFKA_BENCH_RECORDS` to change the record count).

use codacy_audit_forwarder::event::{EventId, OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{self, KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink, SinkContext};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 500;

struct Tansu(Child);

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin/tansu"));
    on_path.chain(cargo_home).find(|p| p.is_file())
}

fn start_tansu(bin: &Path, topics: &[&str]) -> (Tansu, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let guard = Tansu(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "tansu did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for topic in topics {
        loop {
            let ok = Command::new(bin)
                .args([
                    "topic",
                    "create",
                    topic,
                    "--broker",
                    &url,
                    "--partitions",
                    "1",
                ])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cannot create {topic}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (guard, format!("127.0.0.1:{port}"))
}

fn records(n: usize, orgs: usize) -> Vec<Record> {
    let orgs: Vec<Arc<OrgRef>> = (0..orgs)
        .map(|i| Arc::new(OrgRef::new(Provider::Gh, format!("org{i}"))))
        .collect();
    (0..n)
        .map(|i| {
            let org = &orgs[i % orgs.len()];
            // About the size of a real audit event encoded as JSON.
            let payload = format!(
                r#"{{"timestamp":"2025-01-01T00:00:{:02}Z","action":"repository.settings.updated","result":"succeed","actor":{{"email":"user{i}@example.com","role":"organizationAdmin"}},"source":"UI","repository":"service-{i}","details":{{"setting":"coverage","from":"off","to":"on"}},"codacy":{{"provider":"gh","organization":"{}","event_id":"{i:064}"}}}}"#,
                i % 60,
                org.name
            );
            Record {
                event_id: EventId::compute(org, payload.as_bytes(), 0),
                org: org.clone(),
                timestamp_ms: 1_735_689_600_000 + i as i64,
                action: "repository.settings.updated".into(),
                severity: 3,
                payload: payload.into_bytes().into(),
            }
        })
        .collect()
}

async fn sink(brokers: &str, topic: &str, dir: &Path) -> Arc<KafkaSink> {
    let config = KafkaSinkConfig::from_json(json!({
        "brokers": brokers, "topic": topic, "message_timeout": "60s",
    }))
    .expect("config");
    let ctx = SinkContext::for_test(dir, "bench");
    Arc::new(KafkaSink::start(config, ctx).await.expect("start sink"))
}

/// Batches of 500, one after another, from `pipelines` concurrent organization pipelines.
async fn through_sink(sink: Arc<KafkaSink>, recs: &[Record], pipelines: usize) -> Duration {
    let per = recs.len().div_ceil(pipelines);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for part in recs.chunks(per) {
        let part = part.to_vec();
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for b in part.chunks(BATCH) {
                sink.deliver(b).await.expect("deliver");
            }
        }));
    }
    for t in tasks {
        t.await.expect("pipeline");
    }
    start.elapsed()
}

/// librdkafka alone: the same properties, every record enqueued, then every report awaited.
async fn bare_producer(brokers: &str, topic: &str, recs: &[Record]) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("message.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "65536")
        .set("compression.codec", "none")
        .create()
        .expect("producer");
    let start = Instant::now();
    let mut futures = Vec::with_capacity(recs.len());
    for r in recs {
        let key = r.org.key();
        let headers = kafka::record_headers(r, "json");
        let mut rec = FutureRecord::to(topic)
            .payload(&r.payload[..])
            .key(key.as_str())
            .headers(headers)
            .timestamp(r.timestamp_ms);
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((_, back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for f in futures {
        assert!(
            matches!(f.await, Ok(Ok(_))),
            "bare producer delivery failed"
        );
    }
    start.elapsed()
}

fn row(target: &str, what: &str, n: usize, bytes: usize, d: Duration) {
    let s = d.as_secs_f64();
    println!(
        "| {target:<12} | {what:<38} | {n:>8} | {:>10.0} | {:>7.1} |",
        n as f64 / s,
        bytes as f64 / s / 1e6
    );
}

async fn run(target: &str, brokers: &str, topics: [&str; 3], n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(n, 4);
    let bytes: usize = recs.iter().map(|r| r.payload.len()).sum();
    let d = bare_producer(brokers, topics[0], &recs).await;
    row(target, "librdkafka FutureProducer (reference)", n, bytes, d);
    let s = sink(brokers, topics[1], dir.path()).await;
    let d = through_sink(s.clone(), &recs, 1).await;
    row(target, "KafkaSink, 1 pipeline, batches of 500", n, bytes, d);
    let s = sink(brokers, topics[2], dir.path()).await;
    let d = through_sink(s, &recs, 4).await;
    row(
        target,
        "KafkaSink, 4 pipelines, batches of 500",
        n,
        bytes,
        d,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: a quick smoke run then.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("KAFKA_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 500 } else { 50_000 });
    let topics = ["bench-bare", "bench-sink-1", "bench-sink-4"];
    println!(
        "| broker       | producer                               |  records |  records/s |    MB/s |"
    );
    println!(
        "|--------------|----------------------------------------|----------|------------|---------|"
    );

    let mock = MockCluster::new(1).expect("mock cluster");
    for t in topics {
        mock.create_topic(t, 1, 1).expect("mock topic");
    }
    run("mock cluster", &mock.bootstrap_servers(), topics, n).await;

    if let Ok(brokers) = std::env::var("KAFKA_TEST_BROKERS") {
        run("KAFKA_TEST_BROKERS", &brokers, topics, n).await;
    } else if let Some(bin) = tansu_binary() {
        let (_tansu, brokers) = start_tansu(&bin, &topics);
        run("tansu", &brokers, topics, n).await;
    } else {
        println!("(no real broker: install tansu or set KAFKA_TEST_BROKERS)");
    }
}
