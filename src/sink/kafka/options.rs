//! `librdkafka_options`: librdkafka properties passed through as written, except the ones the
//! sink owns (delivery guarantee, dedicated keys, secrets), which are refused with the key to use.

use crate::config::FieldError;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A librdkafka property value as TOML may write it (`"65536"`, `65536`, `true`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(n) => write!(f, "{n}"),
            OptionValue::Float(n) => write!(f, "{n}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The prefix of the pass-through properties' keys in messages.
const PREFIX: &str = "librdkafka_options.";

const ALL_ACKS: &str = "every record must be acknowledged by all in-sync replicas (acks=all)";
const RETRIES: &str = "librdkafka retries until `message_timeout`; change that key instead";
const IN_FLIGHT: &str = "idempotence requires at most 5 requests in flight";
const KEYSTORE: &str = "use `tls_cert_file` and `tls_key_file` (PEM)";

/// Properties the sink owns. Overriding them would break the delivery guarantee (idempotence,
/// acks, retries), bypass a dedicated key, or put a secret into the configuration file.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    (
        "enable.idempotence",
        "idempotence is always on: it keeps retries free of duplicates and in order",
    ),
    ("acks", ALL_ACKS),
    ("request.required.acks", ALL_ACKS),
    ("retries", RETRIES),
    ("message.send.max.retries", RETRIES),
    ("max.in.flight.requests.per.connection", IN_FLIGHT),
    ("max.in.flight", IN_FLIGHT),
    ("queuing.strategy", "idempotence requires FIFO queuing"),
    ("transactional.id", "the sink does not use transactions"),
    ("message.timeout.ms", "use the `message_timeout` key"),
    ("delivery.timeout.ms", "use the `message_timeout` key"),
    ("bootstrap.servers", "use the `brokers` key"),
    ("metadata.broker.list", "use the `brokers` key"),
    ("compression.codec", "use the `compression` key"),
    ("compression.type", "use the `compression` key"),
    ("security.protocol", "use the `security_protocol` key"),
    ("ssl.ca.location", "use the `tls_ca_file` key"),
    ("ssl.ca.pem", "use the `tls_ca_file` key"),
    ("ssl.certificate.location", "use the `tls_cert_file` key"),
    ("ssl.certificate.pem", "use the `tls_cert_file` key"),
    ("ssl.key.location", "use the `tls_key_file` key"),
    ("ssl.key.pem", "use the `tls_key_file` key"),
    (
        "ssl.key.password",
        "use the `tls_key_password_file` key: secrets come from files",
    ),
    ("ssl.keystore.location", KEYSTORE),
    ("ssl.keystore.password", KEYSTORE),
    (
        "enable.ssl.certificate.verification",
        "use the `tls_verify` key",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "use the `tls_verify` key",
    ),
];

/// Why `key` may not be set through `librdkafka_options`, if it may not.
fn owned_property(key: &str) -> Option<&'static str> {
    let key = key.trim().to_ascii_lowercase();
    if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(k, _)| *k == key) {
        return Some(why);
    }
    key.starts_with("sasl.").then_some(
        "use the `sasl_mechanism`, `sasl_username` and `sasl_password_file` keys: secrets come from files",
    )
}

/// The pass-through properties as librdkafka takes them, once none is owned by the sink and
/// librdkafka accepts every name and value (it checks them without connecting anywhere).
pub(crate) fn pass_through(
    options: &BTreeMap<String, OptionValue>,
) -> Result<BTreeMap<String, String>, FieldError> {
    let mut extra = BTreeMap::new();
    for (k, v) in options {
        if let Some(why) = owned_property(k) {
            return Err(FieldError::new(
                format!("{PREFIX}{k}"),
                format!("cannot be set here: {why}"),
            ));
        }
        extra.insert(k.trim().to_string(), v.to_string());
    }
    let mut probe = ClientConfig::new();
    probe.extend(extra.clone());
    probe
        .create_native_config()
        .map_err(|e| describe_config_error(&e))?;
    Ok(extra)
}

/// A librdkafka configuration error, naming the property (never its value: it may be a secret).
/// Only the pass-through properties can be wrong: the sink sets the others from checked keys.
pub(crate) fn describe_config_error(e: &KafkaError) -> FieldError {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => FieldError::new(
            format!("{PREFIX}{key}"),
            format!("librdkafka rejects it: {desc}"),
        ),
        other => FieldError::whole(format!("librdkafka rejects the configuration: {other}")),
    }
}
