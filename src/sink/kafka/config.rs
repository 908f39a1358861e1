//! `[[sinks]] type = "kafka"`: the configuration keys, their validation, the topic template and
//! the librdkafka properties they become.

use super::KafkaSink;
use crate::config::{from_table, FieldError};
use crate::event::OrgRef;
use crate::secret::{Redactor, Secret};
use crate::sink::registry::{Preflight, SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use crate::sink::{Sink, SinkContext, SinkError};
use async_trait::async_trait;
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;
/// Delivery reports must arrive within this unless `message_timeout` says otherwise.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// Topic name; may contain `{provider}` and `{organization}`.
    pub topic: String,
    #[serde(default)]
    pub key: KeyBy,
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka may try to deliver a record before its delivery report fails
    /// (humantime: "5m").
    #[serde(default)]
    pub message_timeout: Option<String>,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Name of an environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// File holding the passphrase of an encrypted `tls_key_file`.
    #[serde(default)]
    pub tls_key_password_file: Option<PathBuf>,
    /// Any other librdkafka property, checked by librdkafka at start.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, OptionValue>,
}

/// What the record key is: it picks the partition, so it decides what stays in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    /// `<provider>/<organization>`: each organization's events stay in order in one partition.
    #[default]
    Organization,
    /// The event id: spreads load over partitions, no ordering.
    EventId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A librdkafka property value as TOML may write it (`"65536"`, `65536`, `true`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
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

/// Properties the sink owns. Overriding them would break the delivery guarantee (idempotence,
/// acks, retries), bypass a dedicated key, or put a secret into the configuration file.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    (
        "enable.idempotence",
        "idempotence is always on: it keeps retries free of duplicates and in order",
    ),
    (
        "acks",
        "every record must be acknowledged by all in-sync replicas (acks=all)",
    ),
    (
        "request.required.acks",
        "every record must be acknowledged by all in-sync replicas (acks=all)",
    ),
    (
        "retries",
        "librdkafka retries until `message_timeout`; change that key instead",
    ),
    (
        "message.send.max.retries",
        "librdkafka retries until `message_timeout`; change that key instead",
    ),
    (
        "max.in.flight.requests.per.connection",
        "idempotence requires at most 5 requests in flight",
    ),
    (
        "max.in.flight",
        "idempotence requires at most 5 requests in flight",
    ),
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
    (
        "ssl.keystore.location",
        "use `tls_cert_file` and `tls_key_file` (PEM)",
    ),
    (
        "ssl.keystore.password",
        "use `tls_cert_file` and `tls_key_file` (PEM)",
    ),
    (
        "enable.ssl.certificate.verification",
        "broker certificates are always verified",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "broker host names are always verified",
    ),
];

/// Why `key` may not be set through `librdkafka_options`, if it may not.
pub fn owned_property(key: &str) -> Option<String> {
    let key = key.trim().to_ascii_lowercase();
    if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(k, _)| *k == key) {
        return Some((*why).to_string());
    }
    if key.starts_with("sasl.") {
        return Some(
            "use the `sasl_mechanism`, `sasl_username` and `sasl_password_file` keys: secrets come from files"
                .to_string(),
        );
    }
    None
}

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Provider,
    Organization,
}

/// A topic name with `{provider}` and `{organization}` placeholders, rendered per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

/// Kafka topic names allow only these characters.
fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest.find('}').ok_or_else(|| {
                        format!("{template:?}: `{{` without a closing `}}`; placeholders are {{provider}} and {{organization}}")
                    })?;
                    let name = &rest[1..end];
                    let part = match name {
                        "provider" => Part::Provider,
                        "organization" => Part::Organization,
                        other => {
                            return Err(format!(
                                "{template:?}: unknown placeholder {{{other}}}; use {{provider}} or {{organization}}"
                            ))
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &rest[end + 1..];
                }
                '}' => {
                    return Err(format!(
                        "{template:?}: `}}` without an opening `{{`; placeholders are {{provider}} and {{organization}}"
                    ))
                }
                c if topic_char(c) => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
                c => {
                    return Err(format!(
                        "{template:?}: {c:?} cannot be part of a Kafka topic name (use letters, digits, '.', '_' and '-')"
                    ))
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let t = TopicTemplate { parts };
        match t.fixed() {
            Some("") => Err("must not be empty".to_string()),
            Some("." | "..") => Err(format!("{template:?} is not a valid Kafka topic name")),
            Some(name) if name.len() > MAX_TOPIC_LEN => Err(format!(
                "{template:?} is longer than Kafka's {MAX_TOPIC_LEN} characters"
            )),
            _ => Ok(t),
        }
    }

    /// The topic name when the template has no placeholder.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The topic for one organization's records. Characters Kafka does not allow in topic names
    /// become `_` (organization names may contain them).
    pub fn render(&self, org: &OrgRef) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Provider => out.push_str(org.provider.as_str()),
                Part::Organization => {
                    out.extend(
                        org.name
                            .chars()
                            .map(|c| if topic_char(c) { c } else { '_' }),
                    )
                }
            }
        }
        if out.len() > MAX_TOPIC_LEN || out == "." || out == ".." || out.is_empty() {
            return Err(format!(
                "topic {out:?} for organization {org} is not a valid Kafka topic name (at most {MAX_TOPIC_LEN} characters of letters, digits, '.', '_', '-'); change `topic`"
            ));
        }
        Ok(out)
    }
}

/// The configuration checked and resolved: durations parsed, secrets read.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: TopicTemplate,
    pub key: KeyBy,
    pub compression: Compression,
    pub message_timeout: Duration,
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslSettings>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_key_password: Option<Secret>,
    pub extra: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

fn readable(key: &str, path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| format!("key `{key}`: cannot read {}: {e}", path.display()))
}

fn check_brokers(brokers: &str) -> Result<String, String> {
    let list: Vec<&str> = brokers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err("key `brokers`: must name at least one broker as host:port".into());
    }
    for b in &list {
        let b = b.rsplit_once("://").map_or(*b, |(_, rest)| rest);
        let port_ok = b
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!(
                "key `brokers`: {b:?} is not host:port (for example kafka1.example.com:9092)"
            ));
        }
    }
    Ok(list.join(","))
}

pub const TYPE: SinkType = SinkType {
    name: "kafka",
    carries_host: false,
    parse: |table, _| Ok(Box::new(from_table::<KafkaSinkConfig>(table.into())?)),
};

#[async_trait]
impl SinkConfig for KafkaSinkConfig {
    fn default_batch(&self) -> usize {
        STREAM_BATCH
    }

    fn validate(&self, _common: &mut SinkCommon) -> Result<(), FieldError> {
        self.resolve().map(|_| ()).map_err(FieldError::whole)
    }

    fn redactor(&self) -> Redactor {
        self.secrets()
    }

    /// Starting a producer would contact the brokers: offline, the secrets are read only.
    fn preflight(&self, offline: bool) -> Option<Preflight> {
        offline.then(|| match self.resolve() {
            Ok(_) => Preflight::Ready(
                "configuration and secrets valid; not contacted (--offline)".to_string(),
            ),
            Err(e) => Preflight::Failed(e),
        })
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(KafkaSink::start(self.clone(), ctx).await?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KafkaSinkConfig {
    /// The SASL password and TLS key password (none when they cannot be read: then nothing is
    /// sent).
    pub fn secrets(&self) -> Redactor {
        match self.resolve() {
            Ok(s) => Redactor::of(
                s.sasl
                    .as_ref()
                    .map(|s| &s.password)
                    .into_iter()
                    .chain(s.tls_key_password.as_ref()),
            ),
            Err(_) => Redactor::default(),
        }
    }

    /// Checks every key and reads the secrets. Error messages name the key at fault.
    pub fn resolve(&self) -> Result<KafkaSettings, String> {
        let brokers = check_brokers(&self.brokers)?;
        let topic = TopicTemplate::parse(&self.topic).map_err(|m| format!("key `topic`: {m}"))?;
        let message_timeout = match &self.message_timeout {
            None => DEFAULT_MESSAGE_TIMEOUT,
            Some(s) => {
                let d = humantime::parse_duration(s).map_err(|e| {
                    format!("key `message_timeout`: {s:?} is not a duration such as \"5m\": {e}")
                })?;
                if d < Duration::from_secs(1) || d.as_millis() > i32::MAX as u128 {
                    return Err(format!(
                        "key `message_timeout`: {s:?} must be between 1s and 24d"
                    ));
                }
                d
            }
        };

        let proto = self.security_protocol;
        let sasl_keys = [
            ("sasl_mechanism", self.sasl_mechanism.is_some()),
            ("sasl_username", self.sasl_username.is_some()),
            ("sasl_password_file", self.sasl_password_file.is_some()),
            ("sasl_password_env", self.sasl_password_env.is_some()),
        ];
        let sasl = if proto.uses_sasl() {
            let mechanism = self.sasl_mechanism.ok_or_else(|| {
                format!(
                    "key `sasl_mechanism`: required with security_protocol = \"{}\" (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                    proto.as_str()
                )
            })?;
            let username = self
                .sasl_username
                .clone()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    format!(
                        "key `sasl_username`: required with security_protocol = \"{}\"",
                        proto.as_str()
                    )
                })?;
            let password = match (&self.sasl_password_file, &self.sasl_password_env) {
                (Some(_), Some(_)) => {
                    return Err(
                        "key `sasl_password_env`: give either sasl_password_file or sasl_password_env, not both"
                            .into(),
                    )
                }
                (Some(path), None) => Secret::from_file(path)
                    .map_err(|m| format!("key `sasl_password_file`: {m}"))?,
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => Secret::new(v.trim()),
                    _ => {
                        return Err(format!(
                            "key `sasl_password_env`: environment variable {var} is not set or empty"
                        ))
                    }
                },
                (None, None) => {
                    return Err(format!(
                        "key `sasl_password_file`: required with security_protocol = \"{}\" (or sasl_password_env)",
                        proto.as_str()
                    ))
                }
            };
            Some(SaslSettings {
                mechanism,
                username,
                password,
            })
        } else {
            if let Some((k, _)) = sasl_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "key `{k}`: only used with security_protocol = \"sasl_plaintext\" or \"sasl_ssl\" (it is \"{}\")",
                    proto.as_str()
                ));
            }
            None
        };

        let tls_keys = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
            ("tls_key_password_file", &self.tls_key_password_file),
        ];
        let mut tls_key_password = None;
        if proto.uses_tls() {
            for (k, path) in tls_keys {
                if let Some(p) = path {
                    readable(k, p)?;
                }
            }
            if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
                return Err(
                    "key `tls_key_file`: tls_cert_file and tls_key_file go together (client certificate and its key)"
                        .into(),
                );
            }
            if let Some(p) = &self.tls_key_password_file {
                if self.tls_key_file.is_none() {
                    return Err("key `tls_key_password_file`: only used with tls_key_file".into());
                }
                tls_key_password = Some(
                    Secret::from_file(p)
                        .map_err(|m| format!("key `tls_key_password_file`: {m}"))?,
                );
            }
        } else if let Some((k, _)) = tls_keys.iter().find(|(_, p)| p.is_some()) {
            return Err(format!(
                "key `{k}`: only used with security_protocol = \"ssl\" or \"sasl_ssl\" (it is \"{}\")",
                proto.as_str()
            ));
        }

        let mut extra = BTreeMap::new();
        for (k, v) in &self.librdkafka_options {
            if let Some(why) = owned_property(k) {
                return Err(format!(
                    "key `librdkafka_options.{k}`: cannot be set here: {why}"
                ));
            }
            extra.insert(k.trim().to_string(), v.to_string());
        }
        // librdkafka checks names and values of its properties without connecting anywhere.
        let mut probe = ClientConfig::new();
        probe.extend(extra.clone());
        if let Err(e) = probe.create_native_config() {
            return Err(describe_config_error(&e, "librdkafka_options."));
        }

        Ok(KafkaSettings {
            brokers,
            topic,
            key: self.key,
            compression: self.compression,
            message_timeout,
            security_protocol: proto,
            sasl,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            tls_key_password,
            extra,
        })
    }
}

/// A librdkafka configuration error, naming the property (never its value: it may be a secret).
pub fn describe_config_error(e: &rdkafka::error::KafkaError, prefix: &str) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, desc, key, _) => {
            format!("key `{prefix}{key}`: librdkafka rejects it: {desc}")
        }
        other => format!("librdkafka rejects the configuration: {other}"),
    }
}

impl KafkaSettings {
    /// The librdkafka producer properties. Every property that matters for delivery is set
    /// explicitly: the rdkafka docs list outdated defaults.
    /// Never log or Debug-print the result: it holds the SASL password.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            // Idempotence implies acks=all, unlimited retries within message.timeout.ms, at most
            // 5 requests in flight and FIFO: no duplicates or reordering from internal retries.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("retries", "2147483647")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            .set("request.timeout.ms", "30000")
            .set("linger.ms", "10")
            .set("compression.codec", self.compression.as_str())
            // A full local queue is back-pressure (deliver waits); 64 MiB bounds memory.
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("socket.keepalive.enable", "true")
            // Topics are created by the brokers only if their auto.create.topics.enable allows.
            .set("allow.auto.create.topics", "true")
            .set("security.protocol", self.security_protocol.as_str());
        if self.security_protocol.uses_tls() {
            c.set("enable.ssl.certificate.verification", "true")
                .set("ssl.endpoint.identification.algorithm", "https");
            // Without a CA file, OpenSSL's system trust store is used.
            if let Some(p) = &self.tls_ca_file {
                c.set("ssl.ca.location", p.to_string_lossy());
            }
            if let Some(p) = &self.tls_cert_file {
                c.set("ssl.certificate.location", p.to_string_lossy());
            }
            if let Some(p) = &self.tls_key_file {
                c.set("ssl.key.location", p.to_string_lossy());
            }
            if let Some(s) = &self.tls_key_password {
                c.set("ssl.key.password", s.expose());
            }
        }
        if let Some(s) = &self.sasl {
            c.set("sasl.mechanism", s.mechanism.as_str())
                .set("sasl.username", &s.username)
                .set("sasl.password", s.password.expose());
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provider;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<KafkaSinkConfig, String> {
        from_table(v).map_err(|e| e.to_string())
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
            Ok(c) => c.resolve().err().expect("expected a validation error"),
        }
    }

    #[test]
    fn the_documented_toml_loads_through_the_agent_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("kafka-password");
        std::fs::write(&pw, "pw\n").unwrap();
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
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("message.timeout.ms"), Some("300000"));
        assert_eq!(cc.get("compression.codec"), Some("none"));
        assert_eq!(cc.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(cc.get("security.protocol"), Some("plaintext"));
        assert_eq!(cc.get("sasl.password"), None);
        // librdkafka itself accepts every property we set.
        cc.create_native_config().unwrap();
    }

    #[test]
    fn full_configuration_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
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
        assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cc.get("sasl.password"), Some("s3cret"));
        assert_eq!(cc.get("message.timeout.ms"), Some("90000"));
        assert_eq!(cc.get("compression.codec"), Some("zstd"));
        assert_eq!(cc.get("linger.ms"), Some("50"));
        assert_eq!(cc.get("socket.nagle.disable"), Some("true"));
        assert_eq!(cc.get("ssl.ca.location"), Some(ca.to_str().unwrap()));
        assert_eq!(
            cc.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        cc.create_native_config().unwrap();
    }

    #[test]
    fn upper_case_protocol_names_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "p").unwrap();
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
        for (extra, want) in cases {
            let e = error(with(extra.clone()));
            assert!(e.contains(want), "{extra}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2-kafka").unwrap();
        let c = parse(with(
            json!({"security_protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN",
            "sasl_username": "u", "sasl_password_file": pw,
            "librdkafka_options": {"linger.ms": "bad"}}),
        ))
        .unwrap();
        let e = c.resolve().err().unwrap();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn topic_templates_render_per_organization() {
        let org = OrgRef::new(Provider::Gl, "acme.corp");
        let t = TopicTemplate::parse("audit-{provider}-{organization}").unwrap();
        assert_eq!(t.fixed(), None);
        assert_eq!(t.render(&org).unwrap(), "audit-gl-acme.corp");
        let t = TopicTemplate::parse("{organization}").unwrap();
        assert_eq!(
            t.render(&OrgRef::new(Provider::Gh, "Acme Corp/é")).unwrap(),
            "Acme_Corp__"
        );
        let t = TopicTemplate::parse("codacy-audit").unwrap();
        assert_eq!(t.fixed(), Some("codacy-audit"));
        assert_eq!(t.render(&org).unwrap(), "codacy-audit");
        let long = TopicTemplate::parse(&format!("{}-{{organization}}", "a".repeat(240))).unwrap();
        let e = long
            .render(&OrgRef::new(Provider::Gh, "x".repeat(20)))
            .unwrap_err();
        assert!(e.contains("not a valid Kafka topic name"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn rendered_topics_are_always_valid_kafka_names(name in "\\PC{1,40}", p in 0usize..6) {
            let org = OrgRef::new(Provider::ALL[p], name);
            let t = TopicTemplate::parse("a.{provider}_{organization}").unwrap();
            let topic = t.render(&org).unwrap();
            proptest::prop_assert!(topic.chars().all(topic_char));
            proptest::prop_assert!(topic.starts_with("a."));
        }
    }
}
