//! The Kafka sink's keys: parsing, validation messages, and the librdkafka properties they
//! become.

use super::config::{KafkaSinkConfig, KeyBy, SecurityProtocol};
use crate::event::{OrgRef, Provider};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn parse(v: serde_json::Value) -> Result<KafkaSinkConfig, String> {
    KafkaSinkConfig::from_json(v).map_err(|e| e.to_string())
}

fn base() -> serde_json::Value {
    json!({"brokers": "k1:9092,k2:9092", "topic": "codacy-audit"})
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut b = base();
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

fn error(v: serde_json::Value) -> String {
    match parse(v) {
        Err(e) => e,
        Ok(c) => c
            .resolve()
            .err()
            .expect("expected a validation error")
            .to_string(),
    }
}

/// librdkafka's properties are as listed (`None`: not set).
fn assert_properties(cc: &rdkafka::ClientConfig, want: &[(&str, Option<&str>)]) {
    for (property, value) in want {
        assert_eq!(cc.get(property), *value, "{property}");
    }
}

/// Each configuration (the base one with extra keys) is refused with a message containing its text.
fn assert_refused(cases: &[(serde_json::Value, &str)]) {
    for (extra, want) in cases {
        let e = error(with(extra.clone()));
        assert!(e.contains(want), "{extra}: got {e:?}, want {want:?}");
    }
}

#[test]
fn the_documented_toml_loads_through_the_agent_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pw = file_with(dir.path(), "kafka-password", "pw\n");
    let text = format!(
        r#"
[agent]
state_dir = "{state}"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "bus"
type = "kafka"
brokers = "k1:9092,k2:9092"
topic = "codacy-audit-{{organization}}"
format = "json"
key = "organization"
compression = "zstd"
message_timeout = "5m"
security_protocol = "sasl_plaintext"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "forwarder"
sasl_password_file = "{pw}"

[sinks.librdkafka_options]
"queue.buffering.max.kbytes" = "65536"
"linger.ms" = 20
"#,
        state = dir.path().display(),
        pw = pw.display()
    );
    let tokens = crate::config::TokenSources {
        env: Some("tok".into()),
        credentials_directory: None,
    };
    let c = crate::config::Config::from_toml(&text, "t.toml", &tokens, false).unwrap();
    let k = c.sinks[0]
        .config
        .as_any()
        .downcast_ref::<KafkaSinkConfig>()
        .unwrap();
    let s = k.resolve().unwrap();
    let cc = s.client_config("x");
    assert_eq!(cc.get("queue.buffering.max.kbytes"), Some("65536"));
    assert_eq!(cc.get("linger.ms"), Some("20"));
    assert_eq!(cc.get("compression.codec"), Some("zstd"));
    assert_eq!(cc.get("sasl.password"), Some("pw"));
    assert_eq!(
        s.topic.render(&OrgRef::new(Provider::Gh, "acme")).unwrap(),
        "codacy-audit-acme"
    );
    assert!(!format!("{:?}", c.sinks[0]).contains("\"pw\""));
}

#[test]
fn minimal_configuration_gets_safe_defaults() {
    let c = parse(base()).unwrap();
    let s = c.resolve().unwrap();
    assert_eq!(s.key, KeyBy::Organization);
    assert_eq!(s.message_timeout, Duration::from_secs(300));
    let cc = s.client_config("cid");
    assert_properties(
        &cc,
        &[
            ("enable.idempotence", Some("true")),
            ("acks", Some("all")),
            ("message.timeout.ms", Some("300000")),
            ("compression.codec", Some("none")),
            ("bootstrap.servers", Some("k1:9092,k2:9092")),
            ("security.protocol", Some("plaintext")),
            ("sasl.password", None),
        ],
    );
    // librdkafka itself accepts every property we set.
    cc.create_native_config().unwrap();
}

#[test]
fn full_configuration_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let pw = file_with(dir.path(), "pw", "s3cret\n");
    let ca = file_with(dir.path(), "ca.pem", "x");
    let c = parse(with(json!({
        "topic": "audit-{provider}-{organization}",
        "key": "event_id",
        "compression": "zstd",
        "message_timeout": "90s",
        "security_protocol": "sasl_ssl",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "forwarder",
        "sasl_password_file": pw,
        "tls_ca_file": ca,
        "librdkafka_options": {"queue.buffering.max.kbytes": "65536", "linger.ms": 50, "socket.nagle.disable": true},
    })))
    .unwrap();
    let s = c.resolve().unwrap();
    assert_eq!(s.key, KeyBy::EventId);
    assert_eq!(s.sasl.as_ref().unwrap().password.expose(), "s3cret");
    let cc = s.client_config("cid");
    assert_properties(
        &cc,
        &[
            ("sasl.mechanism", Some("SCRAM-SHA-512")),
            ("sasl.password", Some("s3cret")),
            ("message.timeout.ms", Some("90000")),
            ("compression.codec", Some("zstd")),
            ("linger.ms", Some("50")),
            ("socket.nagle.disable", Some("true")),
            ("ssl.ca.location", ca.to_str()),
            ("ssl.endpoint.identification.algorithm", Some("https")),
        ],
    );
    cc.create_native_config().unwrap();
}

#[test]
fn upper_case_protocol_names_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = file_with(dir.path(), "pw", "p");
    let c = parse(with(
        json!({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": "u", "sasl_password_file": pw}),
    ))
    .unwrap();
    assert_eq!(c.security_protocol, SecurityProtocol::SaslPlaintext);
    c.resolve().unwrap();
}

#[test]
fn password_from_the_environment() {
    let var = "KAFKA_SINK_TEST_PASSWORD_7F3A";
    std::env::set_var(var, "from-env");
    let c = parse(with(
        json!({"security_protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN",
        "sasl_username": "u", "sasl_password_env": var}),
    ))
    .unwrap();
    assert_eq!(
        c.resolve().unwrap().sasl.unwrap().password.expose(),
        "from-env"
    );
    let e = error(with(
        json!({"security_protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN",
        "sasl_username": "u", "sasl_password_env": "KAFKA_SINK_TEST_UNSET_9C1"}),
    ));
    assert!(e.contains("KAFKA_SINK_TEST_UNSET_9C1 is not set"), "{e}");
}

#[test]
fn validation_messages_name_the_key_and_the_remedy() {
    // A file that exists, inside the repository.
    let a_file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let cases = [
        (json!({"topic": "audit-{org}"}), "unknown placeholder {org}"),
        (json!({"topic": "audit-{organization"}), "without a closing"),
        (json!({"topic": "audit log"}), "cannot be part of a Kafka topic name"),
        (json!({"topic": ""}), "key `topic`: must not be empty"),
        (json!({"key": "user"}), "unknown variant `user`, expected `organization` or `event_id`"),
        (json!({"compression": "brotli"}), "unknown variant `brotli`"),
        (json!({"message_timeout": "soon"}), "key `message_timeout`"),
        (json!({"message_timeout": "10ms"}), "between 1s and 24d"),
        (json!({"brokers": ""}), "key `brokers`: must name at least one broker"),
        (json!({"brokers": "k1"}), "\"k1\" is not host:port"),
        (json!({"security_protocol": "sasl_ssl"}), "key `sasl_mechanism`: required"),
        (json!({"security_protocol": "sasl_ssl", "sasl_mechanism": "GSSAPI"}), "unknown variant `GSSAPI`"),
        (json!({"security_protocol": "sasl_ssl", "sasl_mechanism": "PLAIN"}), "key `sasl_username`: required"),
        (json!({"security_protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u"}), "key `sasl_password_file`: required"),
        (json!({"security_protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u",
            "sasl_password_file": "/nonexistent/kafka-pw"}), "key `sasl_password_file`: cannot read secret file /nonexistent/kafka-pw"),
        (json!({"sasl_username": "u"}), "key `sasl_username`: only used with security_protocol = \"sasl_plaintext\" or \"sasl_ssl\""),
        (json!({"tls_ca_file": a_file}), "key `tls_ca_file`: only used with security_protocol = \"ssl\""),
        (json!({"security_protocol": "ssl", "tls_ca_file": "/nonexistent/ca.pem"}), "key `tls_ca_file`: cannot read /nonexistent/ca.pem"),
        (json!({"security_protocol": "ssl", "tls_cert_file": a_file}), "tls_cert_file and tls_key_file go together"),
        (json!({"librdkafka_options": {"enable.idempotence": "false"}}), "key `librdkafka_options.enable.idempotence`: cannot be set here: idempotence is always on"),
        (json!({"librdkafka_options": {"acks": "1"}}), "acks=all"),
        (json!({"librdkafka_options": {"sasl.password": "x"}}), "secrets come from files"),
        (json!({"librdkafka_options": {"message.timeout.ms": "1000"}}), "use the `message_timeout` key"),
        (json!({"librdkafka_options": {"no.such.property": "1"}}), "key `librdkafka_options.no.such.property`: librdkafka rejects it"),
        (json!({"librdkafka_options": {"linger.ms": "forever"}}), "key `librdkafka_options.linger.ms`: librdkafka rejects it"),
        (json!({"partitions": 3}), "unknown field `partitions`"),
    ];
    assert_refused(&cases);
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let dir = tempfile::tempdir().unwrap();
    let pw = file_with(dir.path(), "pw", "hunter2-kafka");
    let c = parse(with(
        json!({"security_protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN",
        "sasl_username": "u", "sasl_password_file": pw,
        "librdkafka_options": {"linger.ms": "bad"}}),
    ))
    .unwrap();
    let e = c.resolve().err().unwrap().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(!format!("{c:?}").contains("hunter2"));
}

/// `content` in a new file `name` of `dir`.
fn file_with(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn tls_keys_are_the_shared_ones_and_verification_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = file_with(dir.path(), "ca.pem", "x");
    let verified = parse(with(json!({"security_protocol": "ssl", "tls_ca_file": ca}))).unwrap();
    let cc = verified.resolve().unwrap().client_config("cid");
    assert_eq!(cc.get("enable.ssl.certificate.verification"), Some("true"));
    assert_eq!(cc.get("ssl.ca.location"), Some(ca.to_str().unwrap()));

    let off = parse(with(
        json!({"security_protocol": "ssl", "tls_verify": false}),
    ))
    .unwrap();
    let cc = off.resolve().unwrap().client_config("cid");
    assert_eq!(cc.get("enable.ssl.certificate.verification"), Some("false"));
    assert_eq!(
        cc.get("ssl.endpoint.identification.algorithm"),
        Some("none")
    );
    cc.create_native_config().unwrap();

    let cases = [
        (json!({"tls_verify": false}), "key `tls_verify`: only used with security_protocol = \"ssl\""),
        (json!({"security_protocol": "ssl", "tls_server_name": "kafka.example.com"}),
            "key `tls_server_name`: librdkafka verifies each broker's certificate against the host name it connects to"),
        (json!({"security_protocol": "ssl", "tls_verify": "no"}), "key `tls_verify`"),
        (json!({"tls_key_password_file": ca}), "key `tls_key_password_file`: only used with security_protocol = \"ssl\""),
        (json!({"security_protocol": "ssl", "tls_key_password_file": ca}), "key `tls_key_password_file`: only used with tls_key_file"),
        (json!({"librdkafka_options": {"enable.ssl.certificate.verification": "false"}}), "use the `tls_verify` key"),
    ];
    assert_refused(&cases);
}

#[test]
fn the_key_password_and_the_sasl_password_are_secrets_read_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let pem = file_with(dir.path(), "client.pem", "x");
    let pass = file_with(dir.path(), "key-pass", "key-secret\n");
    let pw = file_with(dir.path(), "pw", "sasl-secret\n");
    let c = parse(with(json!({
        "security_protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u",
        "sasl_password_file": pw, "tls_cert_file": pem, "tls_key_file": pem,
        "tls_key_password_file": pass,
    })))
    .unwrap();
    let cc = c.resolve().unwrap().client_config("cid");
    assert_eq!(cc.get("ssl.key.password"), Some("key-secret"));
    assert_eq!(cc.get("sasl.password"), Some("sasl-secret"));
    let blanked = c.secrets().redact("key-secret sasl-secret");
    assert_eq!(blanked, "[redacted] [redacted]");

    let both = error(with(json!({
        "security_protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u",
        "sasl_password_file": pw, "sasl_password_env": "KAFKA_SINK_TEST_PASSWORD_7F3A",
    })));
    assert!(both.contains("key `sasl_password_env`"), "{both}");
    assert!(both.contains("not both"), "{both}");
}
