//! The Kafka sink against a real Kafka-protocol broker: `tansu` (started here on a free
//! 127.0.0.1 port, killed by a Drop guard) or any brokers named by `KAFKA_TEST_BROKERS`.
//! Skipped, with the reason printed, when neither is available.

#[path = "common/kafka.rs"]
mod kafka_common;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink};
use kafka_common::{ctx, record};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A tansu broker owned by the test; killed when dropped (also when the test fails).
struct Tansu {
    child: Child,
    port: u16,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Tansu {
    fn start(bin: &Path, log: &Path) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(log).unwrap();
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
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let tansu = Tansu { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < DEADLINE, "tansu never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        tansu
    }

    fn create_topic(&self, bin: &Path, topic: &str) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        let start = Instant::now();
        loop {
            let out = Command::new(bin)
                .args([
                    "topic",
                    "create",
                    topic,
                    "--broker",
                    &broker,
                    "--partitions",
                    "1",
                ])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "tansu topic create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A broker to talk to, and whatever keeps it alive.
struct Broker {
    brokers: String,
    _tansu: Option<Tansu>,
    _dir: tempfile::TempDir,
}

async fn broker(topic: &str) -> Option<Broker> {
    let dir = tempfile::tempdir().unwrap();
    if let Ok(brokers) = std::env::var("KAFKA_TEST_BROKERS") {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let topics = [NewTopic::new(topic, 1, TopicReplication::Fixed(1))];
        let res = admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap();
        assert!(res.iter().all(|r| r.is_ok()), "create topic: {res:?}");
        return Some(Broker {
            brokers,
            _tansu: None,
            _dir: dir,
        });
    }
    let Some(bin) = tansu_binary() else {
        eprintln!(
            "SKIPPED: no Kafka broker: install tansu (cargo install tansu --locked --features dynostore) or set KAFKA_TEST_BROKERS"
        );
        return None;
    };
    let log = dir.path().join("tansu.log");
    let topic = topic.to_string();
    let tansu = tokio::task::spawn_blocking(move || {
        let t = Tansu::start(&bin, &log);
        t.create_topic(&bin, &topic);
        t
    })
    .await
    .unwrap();
    Some(Broker {
        brokers: format!("127.0.0.1:{}", tansu.port),
        _tansu: Some(tansu),
        _dir: dir,
    })
}

fn unique_topic() -> String {
    format!(
        "codacy-audit-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Reads the topic until `want` messages arrived (tansu's high watermarks are unreliable).
async fn consume(brokers: &str, topic: &str, want: usize) -> Vec<OwnedMessage> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "kafka-tansu-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want && start.elapsed() < DEADLINE {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => got.push(m.detach()),
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        got
    })
    .await
    .unwrap()
}

fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_real_broker_with_keys_headers_and_timestamps() {
    let topic = unique_topic();
    let Some(b) = broker(&topic).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config: KafkaSinkConfig = serde_json::from_value(json!({
        "brokers": b.brokers, "topic": topic, "message_timeout": "30s",
    }))
    .unwrap();
    let sink = KafkaSink::start(config, ctx(dir.path())).await.unwrap();
    let report = sink.check().await.unwrap();
    assert!(report.contains("1 broker(s) reachable"), "{report}");
    assert!(
        report.contains(&format!("topic {topic:?} exists with 1 partition(s)")),
        "{report}"
    );

    let acme = OrgRef::new(Provider::Gh, "acme");
    let globex = OrgRef::new(Provider::Bb, "globex");
    let mut records = Vec::new();
    for chunk in 0..3u32 {
        let batch: Vec<Record> = (0..100u32)
            .map(|i| {
                let org = if i % 2 == 0 { &acme } else { &globex };
                record(org, chunk * 100 + i)
            })
            .collect();
        sink.deliver(&batch).await.unwrap();
        records.extend(batch);
    }
    sink.shutdown(Duration::from_secs(10)).await;

    let msgs = consume(&b.brokers, &topic, records.len()).await;
    assert_eq!(msgs.len(), records.len());
    let by_id: HashMap<&str, &Record> = records.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for m in &msgs {
        let id = header(m, "event_id").unwrap();
        assert!(seen.insert(id.clone()), "duplicate {id}");
        let r = by_id[id.as_str()];
        assert_eq!(m.payload().unwrap(), &r.payload[..]);
        assert_eq!(m.key().unwrap(), r.org.key().as_bytes());
        assert_eq!(m.timestamp(), Timestamp::CreateTime(r.timestamp_ms));
        assert_eq!(header(m, "organization").unwrap(), r.org.name);
        assert_eq!(header(m, "provider").unwrap(), r.org.provider.as_str());
        assert_eq!(header(m, "format").unwrap(), "json");
    }
    // One partition: each organization's records arrive in the order they were delivered.
    for org in [&acme, &globex] {
        let order: Vec<i64> = msgs
            .iter()
            .filter(|m| m.key() == Some(org.key().as_bytes()))
            .map(|m| by_id[header(m, "event_id").unwrap().as_str()].timestamp_ms)
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{org} out of order");
    }
}
