//! The Kafka sink against librdkafka's in-process mock cluster: what arrives (keys, headers,
//! timestamps, payloads), injected produce errors, outages past `message_timeout`, records too
//! large for the topic, and errors that need a human.

#[path = "common/kafka.rs"]
mod kafka_common;
use codacy_audit_forwarder::event::{EventId, OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink, SinkErrorKind};
use kafka_common::{ctx, record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Generous: a slow shared CI machine must never make a correct sink fail.
const DEADLINE: Duration = Duration::from_secs(60);

type Mock = MockCluster<'static, DefaultProducerContext>;

fn cluster(brokers: i32, topic: &str, partitions: i32) -> Mock {
    let mock = MockCluster::new(brokers).unwrap();
    mock.create_topic(topic, partitions, brokers.min(3))
        .unwrap();
    mock
}

fn config(brokers: &str, extra: Value) -> KafkaSinkConfig {
    let mut v = json!({"brokers": brokers, "topic": "codacy-audit", "message_timeout": "20s"});
    if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    KafkaSinkConfig::from_json(v).unwrap()
}

fn batch(org: &OrgRef, from: u32, n: u32) -> Vec<Record> {
    (from..from + n).map(|i| record(org, i)).collect()
}

/// Reads `topic` from the beginning until `want` messages arrived or the deadline passed.
async fn consume(brokers: &str, topic: &str, partitions: i32, want: usize) -> Vec<OwnedMessage> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "kafka-mock-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want && start.elapsed() < DEADLINE {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                got.push(m.unwrap().detach());
            }
        }
        got
    })
    .await
    .unwrap()
}

/// Messages stored in the topic, from the brokers' high watermarks (exact on the mock cluster).
async fn stored(brokers: &str, topic: &str, partitions: i32) -> i64 {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "kafka-mock-watermarks")
            .create()
            .unwrap();
        (0..partitions)
            .map(|p| {
                let (lo, hi) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(30))
                    .unwrap();
                hi - lo
            })
            .sum()
    })
    .await
    .unwrap()
}

/// A sink on a one-broker cluster that has delivered record 0 of gh/acme, so that its producer id
/// is assigned before any injected fault: the cluster, its address, the sink, its state dir.
async fn warmed_up() -> (Mock, String, KafkaSink, tempfile::TempDir) {
    let mock = cluster(1, "codacy-audit", 1);
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let sink = KafkaSink::start(config(&brokers, json!({})), ctx(dir.path()))
        .await
        .unwrap();
    sink.deliver(&batch(&OrgRef::new(Provider::Gh, "acme"), 0, 1))
        .await
        .unwrap();
    (mock, brokers, sink, dir)
}

fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn payloads(msgs: &[OwnedMessage]) -> Vec<String> {
    let mut v: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    v.sort();
    v
}

fn expected_payloads(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_with_keys_headers_timestamps_and_payloads() {
    let mock = cluster(3, "codacy-audit", 3);
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let sink = KafkaSink::start(
        config(&brokers, json!({"compression": "zstd"})),
        ctx(dir.path()),
    )
    .await
    .unwrap();
    let acme = OrgRef::new(Provider::Gh, "acme");
    let globex = OrgRef::new(Provider::Gl, "globex");
    let mut records = batch(&acme, 0, 30);
    records.extend(batch(&globex, 100, 30));
    sink.deliver(&records).await.unwrap();

    let msgs = consume(&brokers, "codacy-audit", 3, records.len()).await;
    assert_eq!(payloads(&msgs), expected_payloads(&records));
    let by_id: HashMap<&str, &Record> = records.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let mut partitions: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for m in &msgs {
        let id = header(m, "event_id").unwrap();
        let r = by_id[id.as_str()];
        assert_eq!(m.payload().unwrap(), &r.payload[..]);
        assert_eq!(m.key().unwrap(), r.org.key().as_bytes());
        assert_eq!(m.timestamp(), Timestamp::CreateTime(r.timestamp_ms));
        assert_eq!(header(m, "organization").unwrap(), r.org.name);
        assert_eq!(header(m, "provider").unwrap(), r.org.provider.as_str());
        assert_eq!(header(m, "format").unwrap(), "json");
        partitions
            .entry(r.org.key())
            .or_default()
            .push((m.partition(), r.timestamp_ms));
    }
    // One organization, one partition: its events stay in the order they were delivered.
    for (org, seen) in &partitions {
        assert!(
            seen.windows(2).all(|w| w[0].0 == w[1].0),
            "{org} spread over partitions"
        );
        assert!(
            seen.windows(2).all(|w| w[0].1 < w[1].1),
            "{org} out of order"
        );
    }
    assert_eq!(stored(&brokers, "codacy-audit", 3).await, 60);
    let report = sink.check().await.unwrap();
    assert!(report.contains("3 broker(s) reachable"), "{report}");
    assert!(
        report.contains("topic \"codacy-audit\" exists with 3 partition(s)"),
        "{report}"
    );
    sink.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_id_keys_and_per_organization_topics() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("audit-gh-acme", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let c = config(
        &brokers,
        json!({"key": "event_id", "topic": "audit-{provider}-{organization}"}),
    );
    let sink = KafkaSink::start(c, ctx(dir.path())).await.unwrap();
    let records = batch(&OrgRef::new(Provider::Gh, "acme"), 0, 5);
    sink.deliver(&records).await.unwrap();
    let msgs = consume(&brokers, "audit-gh-acme", 1, 5).await;
    assert_eq!(msgs.len(), 5);
    for m in &msgs {
        assert_eq!(
            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            header(m, "event_id")
        );
    }
    let report = sink.check().await.unwrap();
    assert!(report.contains("named per organization"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_produce_errors_are_retried_inside_without_duplicates() {
    let (mock, brokers, sink, _dir) = warmed_up().await;
    let org = OrgRef::new(Provider::Gh, "acme");
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    let records = batch(&org, 1, 50);
    sink.deliver(&records).await.unwrap();
    let mut all = batch(&org, 0, 1);
    all.extend(records);
    let msgs = consume(&brokers, "codacy-audit", 1, all.len()).await;
    assert_eq!(payloads(&msgs), expected_payloads(&all));
    // Exactly once: idempotence dropped whatever librdkafka's internal retries re-sent.
    assert_eq!(stored(&brokers, "codacy-audit", 1).await, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_hit_a_fatal_error_is_replaced_and_the_retried_batch_delivered() {
    let (mock, brokers, sink, _dir) = warmed_up().await;
    let org = OrgRef::new(Provider::Gh, "acme");
    // The broker rejecting the head-of-line request's sequence number: librdkafka can no longer
    // vouch for ordering or once-ness and fails the idempotent producer for good.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let records = batch(&org, 1, 10);
    let err = sink.deliver(&records).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient, "{}", err.message);
    assert!(
        err.message
            .contains("the Kafka producer hit a fatal error and is being recreated"),
        "{}",
        err.message
    );
    // The pipeline offers the batch again: a new producer delivers it, and keeps delivering.
    sink.deliver(&records).await.unwrap();
    sink.deliver(&batch(&org, 11, 5)).await.unwrap();
    let mut all = batch(&org, 0, 1);
    all.extend(records);
    all.extend(batch(&org, 11, 5));
    let msgs = consume(&brokers, "codacy-audit", 1, all.len()).await;
    assert_eq!(payloads(&msgs), expected_payloads(&all));
    assert_eq!(stored(&brokers, "codacy-audit", 1).await, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_past_message_timeout_fails_the_batch_and_a_retry_delivers_it() {
    let mock = cluster(1, "codacy-audit", 1);
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let sink = KafkaSink::start(
        config(&brokers, json!({"message_timeout": "3s"})),
        ctx(dir.path()),
    )
    .await
    .unwrap();
    let org = OrgRef::new(Provider::Gh, "acme");
    sink.deliver(&batch(&org, 0, 1)).await.unwrap();

    mock.broker_down(1).unwrap();
    let records = batch(&org, 1, 20);
    let err = sink.deliver(&records).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient, "{}", err.message);
    assert!(
        err.message.contains("20 of 20 records not delivered"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("within message_timeout (3s)"),
        "{}",
        err.message
    );
    assert!(err.message.contains(&brokers), "{}", err.message);

    mock.broker_up(1).unwrap();
    // The pipeline keeps its cursor and offers the same batch again.
    let start = Instant::now();
    loop {
        match sink.deliver(&records).await {
            Ok(()) => break,
            Err(e) if start.elapsed() < DEADLINE => {
                eprintln!("retrying after: {}", e.message);
            }
            Err(e) => panic!("never recovered: {}", e.message),
        }
    }
    let mut all = batch(&org, 0, 1);
    all.extend(records);
    let msgs = consume(&brokers, "codacy-audit", 1, all.len()).await;
    assert_eq!(payloads(&msgs), expected_payloads(&all));
    assert_eq!(stored(&brokers, "codacy-audit", 1).await, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_producer_allows_is_dead_lettered() {
    let mock = cluster(1, "codacy-audit", 1);
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let c = config(
        &brokers,
        json!({"librdkafka_options": {"message.max.bytes": "5000"}}),
    );
    let sink = KafkaSink::start(c, ctx(dir.path())).await.unwrap();
    let org = OrgRef::new(Provider::Gh, "acme");
    let mut records = batch(&org, 0, 3);
    let big = format!("{{\"action\":\"a\",\"pad\":\"{}\"}}", "x".repeat(10_000));
    records[1].payload = big.into_bytes().into();
    records[1].event_id = EventId::compute(&org, &records[1].payload, 0);
    sink.deliver(&records).await.unwrap();

    let msgs = consume(&brokers, "codacy-audit", 1, 2).await;
    assert_eq!(
        payloads(&msgs),
        expected_payloads(&[records[0].clone(), records[2].clone()])
    );
    assert_eq!(stored(&brokers, "codacy-audit", 1).await, 2);
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/bus.ndjson")).unwrap();
    let lines: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event_id"], records[1].event_id.as_str());
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("too large"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_refuses_as_too_large_is_tried_alone_then_dead_lettered() {
    let (mock, brokers, sink, dir) = warmed_up().await;
    let org = OrgRef::new(Provider::Gh, "acme");
    use RDKafkaRespErr::*;
    // Refused as part of the batch, then refused again alone: it goes to the dead letters.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    let refused = batch(&org, 1, 1);
    sink.deliver(&refused).await.unwrap();
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/bus.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    assert!(dead.contains(refused[0].event_id.as_str()));
    assert!(dead.contains("max.message.bytes"), "{dead}");

    // Refused once (as if batched with others), accepted alone: delivered, nothing dead-lettered.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let accepted = batch(&org, 2, 1);
    sink.deliver(&accepted).await.unwrap();
    let msgs = consume(&brokers, "codacy-audit", 1, 2).await;
    let mut want = batch(&org, 0, 1);
    want.extend(accepted);
    assert_eq!(payloads(&msgs), expected_payloads(&want));
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/bus.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_authorization_failure_is_fatal_and_says_what_to_grant() {
    let (mock, _brokers, sink, _dir) = warmed_up().await;
    let org = OrgRef::new(Provider::Gh, "acme");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let err = sink.deliver(&batch(&org, 1, 1)).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal, "{}", err.message);
    assert!(
        err.message
            .contains("not authorized to write to Kafka topic \"codacy-audit\""),
        "{}",
        err.message
    );
    assert!(err.message.contains("--operation Write"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_fatal_and_names_it() {
    let mock = MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    // The mock cluster would create the topic on demand; make it answer "unknown topic".
    mock.topic_error(
        "missing-topic",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    let c = config(
        &brokers,
        json!({"topic": "missing-topic", "librdkafka_options": {"topic.metadata.propagation.max.ms": "1000"}}),
    );
    let sink = KafkaSink::start(c, ctx(dir.path())).await.unwrap();
    let err = sink
        .deliver(&batch(&OrgRef::new(Provider::Gh, "acme"), 0, 2))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal, "{}", err.message);
    assert!(
        err.message
            .contains("topic \"missing-topic\" does not exist"),
        "{}",
        err.message
    );
    let report = sink.check().await.unwrap();
    assert!(report.contains("\"missing-topic\""), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plaintext_listener_is_fatal_with_a_remedy() {
    let mock = cluster(1, "codacy-audit", 1);
    let dir = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let c = config(
        &brokers,
        json!({"security_protocol": "ssl", "message_timeout": "3s"}),
    );
    let sink = KafkaSink::start(c, ctx(dir.path())).await.unwrap();
    let err = sink
        .deliver(&batch(&OrgRef::new(Provider::Gh, "acme"), 0, 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal, "{}", err.message);
    assert!(
        err.message.contains("TLS with the Kafka brokers"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("point `brokers` at the brokers' TLS listener, or set security_protocol"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_fail_check_naming_them() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::start(config(&brokers, json!({})), ctx(dir.path()))
        .await
        .unwrap();
    let err = sink.check().await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient, "{}", err.message);
    assert!(
        err.message.contains(&format!("tried {brokers}")),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_bad_tls_file_or_librdkafka_option_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let c = config(
        "127.0.0.1:9",
        json!({"security_protocol": "ssl", "tls_ca_file": ca}),
    );
    let err = KafkaSink::start(c, ctx(dir.path())).await.err().unwrap();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(
        err.message.contains("cannot create the producer"),
        "{}",
        err.message
    );
    assert!(err.message.contains("ssl.ca.location"), "{}", err.message);

    let c = config(
        "127.0.0.1:9",
        json!({"librdkafka_options": {"linger.ms": "-5"}}),
    );
    let err = KafkaSink::start(c, ctx(dir.path())).await.err().unwrap();
    assert!(
        err.message.contains("librdkafka_options.linger.ms"),
        "{}",
        err.message
    );
}
