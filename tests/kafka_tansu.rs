//! The Kafka sink against a real Kafka-protocol broker: `tansu`, started here on free 127.0.0.1
//! ports and killed by a Drop guard (or, for the plaintext test, any brokers named by
//! `KAFKA_TEST_BROKERS`). TLS goes through stunnel in front of tansu (tansu 0.6 parses its
//! `--cert/--key` options but never wraps a connection in TLS), with a CA and certificates this
//! test makes; SASL is tansu's own (`--authentication`).
//!
//! What tansu 0.6 cannot show, and so is not tested here: any *successful* SASL login. It offers
//! SCRAM-SHA-256/512 and OAUTHBEARER but not PLAIN, and its memory storage keeps no SCRAM users
//! (the engines that do need another broker build). So the SASL tests are the refusals: a SCRAM
//! login it does not know, and a mechanism it does not offer. The README's test section says so.
//!
//! Missing tansu or stunnel: a skip locally, a failure under `REQUIRE_PEERS=1` (common/peers.rs).

#[path = "common/kafka.rs"]
mod kafka_common;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/tls.rs"]
mod tls;

use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink, SinkErrorKind};
use kafka_common::{ctx, record};
use peers::Peer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tls::{Ca, CertKey};

const DEADLINE: Duration = Duration::from_secs(60);
const TOPIC: &str = "codacy-audit";

/// A child process owned by the test: killed when dropped (also when the test fails).
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what} never listened on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Owned {
    let log = std::fs::File::create(log).unwrap();
    Owned(
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A tansu broker listening on `port` (plaintext); clients are told to reconnect to `advertised`.
struct Tansu {
    _child: Owned,
    bin: PathBuf,
    port: u16,
}

impl Tansu {
    fn start(bin: &Path, dir: &Path, advertised: Option<u16>, authentication: bool) -> Tansu {
        let port = free_port();
        let listen = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let log = dir.join("tansu.log");
        let mut cmd = Command::new(bin);
        cmd.args(["broker", "--listener-url", &listen])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"]);
        if authentication {
            cmd.arg("--authentication");
        }
        let child = spawn_logged(&mut cmd, &log);
        wait_listening(port, "tansu", &log);
        Tansu {
            _child: child,
            bin: bin.to_path_buf(),
            port,
        }
    }

    fn create_topic(&self, topic: &str) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .args(["topic", "create", topic, "--broker", &broker])
                .args(["--partitions", "1"])
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

/// stunnel terminating TLS on `port` in front of a plaintext port, with `server`'s certificate;
/// with `client_ca`, clients must present a certificate that CA signed.
struct Stunnel {
    _child: Owned,
    port: u16,
}

impl Stunnel {
    fn start(
        bin: &Path,
        dir: &Path,
        port: u16,
        to: u16,
        server: &CertKey,
        client_ca: Option<&Path>,
    ) -> Stunnel {
        let client = client_ca.map_or(String::new(), |ca| {
            format!("CAfile = {}\nverifyChain = yes\n", ca.display())
        });
        let conf = dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid = {pid}\ndebug = notice\n[kafka-tls]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{to}\ncert = {cert}\nkey = {key}\n{client}",
                pid = dir.join("stunnel.pid").display(),
                cert = server.cert.display(),
                key = server.key.display(),
            ),
        )
        .unwrap();
        let log = dir.join("stunnel.log");
        let child = spawn_logged(Command::new(bin).arg(&conf), &log);
        wait_listening(port, "stunnel", &log);
        Stunnel {
            _child: child,
            port,
        }
    }
}

/// The certificates of a TLS test: the brokers' CA with a server certificate for 127.0.0.1 and a
/// client certificate, plus a CA that signed neither.
struct Pki {
    ca: Ca,
    server: CertKey,
    client: CertKey,
    other_ca: Ca,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new(dir, "kafka-ca");
        Pki {
            server: ca.issue("broker", "IP:127.0.0.1,DNS:localhost", false),
            client: ca.issue("forwarder", "DNS:forwarder", true),
            other_ca: Ca::new(dir, "other-ca"),
            ca,
        }
    }
}

/// tansu behind stunnel: clients speak TLS to `tls_port` only (it is the advertised listener).
struct TlsBroker {
    stunnel: Stunnel,
    _tansu: Tansu,
    pki: Pki,
    _dir: tempfile::TempDir,
}

impl TlsBroker {
    /// `None` when tansu or stunnel is missing (and `REQUIRE_PEERS` is not set).
    async fn start(mtls: bool, server_san: Option<&str>, authentication: bool) -> Option<Self> {
        let tansu_bin = peers::require(Peer::Tansu)?;
        let stunnel_bin = peers::require(Peer::Stunnel)?;
        let server_san = server_san.map(str::to_string);
        let broker = tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            let pki = Pki::new(dir.path());
            let tls_port = free_port();
            let tansu = Tansu::start(&tansu_bin, dir.path(), Some(tls_port), authentication);
            if !authentication {
                tansu.create_topic(TOPIC);
            }
            let server = match &server_san {
                Some(san) => pki.ca.issue("misnamed-broker", san, false),
                None => pki.server.clone(),
            };
            let client_ca = mtls.then_some(pki.ca.cert.as_path());
            let stunnel = Stunnel::start(
                &stunnel_bin,
                dir.path(),
                tls_port,
                tansu.port,
                &server,
                client_ca,
            );
            TlsBroker {
                stunnel,
                _tansu: tansu,
                pki,
                _dir: dir,
            }
        })
        .await
        .unwrap();
        Some(broker)
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.stunnel.port)
    }

    /// librdkafka properties of a client that trusts the brokers' CA and shows its certificate.
    fn client_tls(&self) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", path(&self.pki.ca.cert)),
            ("ssl.certificate.location", path(&self.pki.client.cert)),
            ("ssl.key.location", path(&self.pki.client.key)),
        ]
    }

    /// The sink keys for the same.
    fn sink_tls(&self) -> Value {
        json!({
            "security_protocol": "ssl",
            "tls_ca_file": self.pki.ca.cert,
            "tls_cert_file": self.pki.client.cert,
            "tls_key_file": self.pki.client.key,
        })
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A sink config for `brokers` and `topic`, with `extra` keys.
fn sink_config(brokers: &str, topic: &str, extra: Value) -> KafkaSinkConfig {
    let mut v = json!({"brokers": brokers, "topic": topic, "message_timeout": "30s"});
    if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    KafkaSinkConfig::from_json(v).unwrap()
}

/// Reads `topic` until `want` messages arrived (tansu's high watermarks are unreliable).
async fn consume(
    brokers: &str,
    topic: &str,
    client: Vec<(&'static str, String)>,
    want: usize,
) -> Vec<OwnedMessage> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("group.id", "kafka-tansu-test")
            .set("enable.auto.commit", "false");
        for (k, v) in client {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().unwrap();
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

/// Every record arrived once, with its payload, key and timestamp.
fn assert_delivered(msgs: &[OwnedMessage], records: &[Record]) {
    assert_eq!(msgs.len(), records.len(), "messages read back");
    let by_id: HashMap<&str, &Record> = records.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let mut seen = std::collections::HashSet::new();
    for m in msgs {
        let id = header(m, "event_id").unwrap();
        assert!(seen.insert(id.clone()), "duplicate {id}");
        let r = by_id[id.as_str()];
        assert_eq!(m.payload().unwrap(), &r.payload[..]);
        assert_eq!(m.key().unwrap(), r.org.key().as_bytes());
        assert_eq!(m.timestamp(), Timestamp::CreateTime(r.timestamp_ms));
    }
}

/// A sink with `keys` that must fail for good: asserts that both `check` and a batch fail fatally
/// saying each of `wants`.
async fn assert_refused(brokers: &str, mut keys: Value, wants: &[&str]) {
    // Past this, delivery gives up: the failure in `want` must have been diagnosed by then.
    keys["message_timeout"] = json!("5s");
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::start(sink_config(brokers, TOPIC, keys), ctx(dir.path()))
        .await
        .unwrap();
    let checked = sink.check().await.unwrap_err();
    let org = OrgRef::new(Provider::Gh, "acme");
    let delivered = sink.deliver(&[record(&org, 0)]).await.unwrap_err();
    sink.shutdown(Duration::from_secs(2)).await;
    for (what, err) in [("check", checked), ("deliver", delivered)] {
        assert_eq!(err.kind, SinkErrorKind::Fatal, "{what}: {}", err.message);
        for want in wants {
            assert!(
                err.message.contains(want),
                "{what}: {want:?} in {}",
                err.message
            );
        }
        assert!(!err.message.contains("wrong-password"), "{}", err.message);
    }
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

/// A plaintext broker to talk to, and whatever keeps it alive.
struct Broker {
    brokers: String,
    _tansu: Option<Tansu>,
    _dir: tempfile::TempDir,
}

async fn plain_broker(topic: &str) -> Option<Broker> {
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
    let bin = peers::require(Peer::Tansu)?;
    let (topic, path) = (topic.to_string(), dir.path().to_path_buf());
    let tansu = tokio::task::spawn_blocking(move || {
        let t = Tansu::start(&bin, &path, None, false);
        t.create_topic(&topic);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_real_broker_with_keys_headers_and_timestamps() {
    let topic = unique_topic();
    let Some(b) = plain_broker(&topic).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = sink_config(&b.brokers, &topic, json!({}));
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

    let msgs = consume(&b.brokers, &topic, vec![], records.len()).await;
    assert_delivered(&msgs, &records);
    let by_id: HashMap<&str, &Record> = records.iter().map(|r| (r.event_id.as_str(), r)).collect();
    for m in &msgs {
        let r = by_id[header(m, "event_id").unwrap().as_str()];
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_tls_with_a_private_ca_and_a_client_certificate() {
    let Some(b) = TlsBroker::start(true, None, false).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = sink_config(&b.brokers(), TOPIC, b.sink_tls());
    let sink = KafkaSink::start(config, ctx(dir.path())).await.unwrap();
    let report = sink.check().await.unwrap();
    assert!(
        report.contains(&format!("1 broker(s) reachable: {}", b.brokers())),
        "{report}"
    );
    let org = OrgRef::new(Provider::Gh, "acme");
    let records: Vec<Record> = (0..50).map(|i| record(&org, i)).collect();
    sink.deliver(&records).await.unwrap();
    sink.shutdown(Duration::from_secs(10)).await;
    let msgs = consume(&b.brokers(), TOPIC, b.client_tls(), records.len()).await;
    assert_delivered(&msgs, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_brokers_certificate_is_fatal_naming_tls_ca_file() {
    let Some(b) = TlsBroker::start(false, None, false).await else {
        return;
    };
    let keys = json!({"security_protocol": "ssl", "tls_ca_file": b.pki.other_ca.cert});
    let want = format!(
        "is not signed by the CA in tls_ca_file ({}): set tls_ca_file to the PEM file of the CA that signed the brokers' certificates",
        b.pki.other_ca.cert.display()
    );
    assert_refused(&b.brokers(), keys, &[&want]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_for_another_host_is_fatal_naming_the_host() {
    let Some(b) = TlsBroker::start(false, Some("DNS:kafka.example.com"), false).await else {
        return;
    };
    let keys = json!({"security_protocol": "ssl", "tls_ca_file": b.pki.ca.cert});
    let want = "does not name \"127.0.0.1\" (it names kafka.example.com): connect with a name the certificate holds";
    assert_refused(&b.brokers(), keys, &[want]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_where_the_brokers_require_one_is_fatal_naming_tls_cert_file() {
    let Some(b) = TlsBroker::start(true, None, false).await else {
        return;
    };
    let keys = json!({"security_protocol": "ssl", "tls_ca_file": b.pki.ca.cert});
    let want = "the brokers require a client certificate: set tls_cert_file and tls_key_file";
    assert_refused(&b.brokers(), keys, &[want]).await;
}

/// The sink keys of SASL over TLS with `mechanism`, the password in a file.
fn sasl(b: &TlsBroker, dir: &Path, mechanism: &str, password: &str) -> Value {
    let pw = dir.join("kafka-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    json!({
        "security_protocol": "sasl_ssl",
        "tls_ca_file": b.pki.ca.cert,
        "sasl_mechanism": mechanism,
        "sasl_username": "forwarder",
        "sasl_password_file": pw,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_mechanism_the_brokers_do_not_enable_is_fatal_naming_it() {
    // tansu 0.6 offers SCRAM-SHA-256/512 and OAUTHBEARER, not PLAIN.
    let Some(b) = TlsBroker::start(false, None, true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = sasl(&b, dir.path(), "PLAIN", "s3cret");
    let want = "and that the brokers enable PLAIN";
    assert_refused(&b.brokers(), keys, &[want]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_scram_login_is_fatal_naming_the_user_and_the_password_keys() {
    let Some(b) = TlsBroker::start(false, None, true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let keys = sasl(&b, dir.path(), mechanism, "wrong-password");
        let want = format!(
            "SASL authentication as \"forwarder\" ({mechanism}) failed at {}",
            b.brokers()
        );
        let remedy = "check sasl_username, the password in sasl_password_file";
        assert_refused(&b.brokers(), keys, &[&want, remedy]).await;
    }
}
