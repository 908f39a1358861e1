//! The Kafka sink's keys checked and resolved (durations parsed, files and secrets read, the
//! pass-through properties probed), and the librdkafka producer properties they become.

use super::config::{Compression, KafkaSinkConfig, KeyBy, SaslMechanism, SecurityProtocol};
use super::options;
use super::topic::TopicTemplate;
use crate::config::FieldError;
use crate::secret::{Secret, SecretSource};
use crate::tls::TlsSettings;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Delivery reports must arrive within this unless `message_timeout` says otherwise.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// The configuration checked and resolved: durations parsed, secrets read.
#[derive(Clone)]
pub(crate) struct KafkaSettings {
    pub(crate) brokers: String,
    pub(crate) topic: TopicTemplate,
    pub(crate) key: KeyBy,
    pub(crate) compression: Compression,
    pub(crate) message_timeout: Duration,
    pub(crate) security_protocol: SecurityProtocol,
    pub(crate) sasl: Option<SaslSettings>,
    /// Used only when `security_protocol` speaks TLS (other protocols refuse the `tls_*` keys).
    pub(crate) tls: TlsSettings,
    pub(crate) tls_key_password: Option<Secret>,
    /// `librdkafka_options`, as librdkafka takes them.
    pub(crate) extra: BTreeMap<String, String>,
}

#[derive(Clone)]
pub(crate) struct SaslSettings {
    pub(crate) mechanism: SaslMechanism,
    pub(crate) username: String,
    pub(crate) password: Secret,
}

impl KafkaSinkConfig {
    /// Checks every key and reads the secrets. Errors name the key at fault.
    pub(crate) fn resolve(&self) -> Result<KafkaSettings, FieldError> {
        let brokers = check_brokers(&self.brokers)?;
        let topic = TopicTemplate::parse(&self.topic).map_err(|m| FieldError::new("topic", m))?;
        let message_timeout = self.message_timeout()?;
        let sasl = self.sasl()?;
        let tls_key_password = self.tls_key_password()?;
        let extra = options::pass_through(&self.librdkafka_options)?;
        Ok(KafkaSettings {
            brokers,
            topic,
            key: self.key,
            compression: self.compression,
            message_timeout,
            security_protocol: self.security_protocol,
            sasl,
            tls: self.tls.clone(),
            tls_key_password,
            extra,
        })
    }

    fn message_timeout(&self) -> Result<Duration, FieldError> {
        let Some(s) = &self.message_timeout else {
            return Ok(DEFAULT_MESSAGE_TIMEOUT);
        };
        let error = |m: String| FieldError::new("message_timeout", m);
        let d = humantime::parse_duration(s)
            .map_err(|e| error(format!("{s:?} is not a duration such as \"5m\": {e}")))?;
        // librdkafka takes milliseconds in an i32.
        if d < Duration::from_secs(1) || d.as_millis() > i32::MAX as u128 {
            return Err(error(format!("{s:?} must be between 1s and 24d")));
        }
        Ok(d)
    }

    /// The SASL settings with the password read, when the protocol authenticates with SASL.
    fn sasl(&self) -> Result<Option<SaslSettings>, FieldError> {
        let proto = self.security_protocol.as_str();
        if !self.security_protocol.uses_sasl() {
            let given = [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", self.sasl_username.is_some()),
                ("sasl_password_file", self.sasl_password_file.is_some()),
                ("sasl_password_env", self.sasl_password_env.is_some()),
            ];
            return match given.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(FieldError::new(
                    *key,
                    format!("only used with security_protocol = \"sasl_plaintext\" or \"sasl_ssl\" (it is \"{proto}\")"),
                )),
                None => Ok(None),
            };
        }
        let mechanism = self.sasl_mechanism.ok_or_else(|| {
            FieldError::new(
                "sasl_mechanism",
                format!("required with security_protocol = \"{proto}\" (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"),
            )
        })?;
        let username = self
            .sasl_username
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                FieldError::new(
                    "sasl_username",
                    format!("required with security_protocol = \"{proto}\""),
                )
            })?;
        let source = SecretSource::from_keys(
            self.sasl_password_file.as_deref(),
            self.sasl_password_env.as_deref(),
            "sasl_password_file",
            "sasl_password_env",
        )?
        .ok_or_else(|| {
            FieldError::new(
                "sasl_password_file",
                format!("required with security_protocol = \"{proto}\" (or sasl_password_env)"),
            )
        })?;
        Ok(Some(SaslSettings {
            mechanism,
            username,
            password: source.read()?,
        }))
    }

    /// Checks the TLS keys against the protocol and that their files can be read; returns the
    /// private key's passphrase, read.
    fn tls_key_password(&self) -> Result<Option<Secret>, FieldError> {
        const PASSWORD_KEY: &str = "tls_key_password_file";
        let tls = &self.tls;
        if !self.security_protocol.uses_tls() {
            let password_key = self.tls_key_password_file.as_ref().map(|_| PASSWORD_KEY);
            return match tls.keys_given.first().copied().or(password_key) {
                Some(key) => Err(FieldError::new(
                    key,
                    format!(
                        "only used with security_protocol = \"ssl\" or \"sasl_ssl\" (it is \"{}\")",
                        self.security_protocol.as_str()
                    ),
                )),
                None => Ok(None),
            };
        }
        let files = [
            ("tls_ca_file", &tls.ca_file),
            ("tls_cert_file", &tls.cert_file),
            ("tls_key_file", &tls.key_file),
            (PASSWORD_KEY, &self.tls_key_password_file),
        ];
        for (key, path) in files {
            if let Some(p) = path {
                readable(key, p)?;
            }
        }
        tls.validate()?;
        let Some(path) = &self.tls_key_password_file else {
            return Ok(None);
        };
        if tls.key_file.is_none() {
            return Err(FieldError::new(PASSWORD_KEY, "only used with tls_key_file"));
        }
        let source = SecretSource::File {
            key: PASSWORD_KEY.to_string(),
            path: path.clone(),
        };
        source.read().map(Some)
    }
}

/// librdkafka reads the TLS files when the producer starts; saying so now names the key.
fn readable(key: &str, path: &Path) -> Result<(), FieldError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| FieldError::new(key, format!("cannot read {}: {e}", path.display())))
}

/// The brokers as librdkafka takes them, each checked to be `host:port`.
fn check_brokers(brokers: &str) -> Result<String, FieldError> {
    let list: Vec<&str> = brokers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(FieldError::new(
            "brokers",
            "must name at least one broker as host:port",
        ));
    }
    for b in &list {
        let b = b.rsplit_once("://").map_or(*b, |(_, rest)| rest);
        let port_ok = b
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(FieldError::new(
                "brokers",
                format!("{b:?} is not host:port (for example kafka1.example.com:9092)"),
            ));
        }
    }
    Ok(list.join(","))
}

impl KafkaSettings {
    /// The librdkafka producer properties. Every property that matters for delivery is set
    /// explicitly: the rdkafka docs list outdated defaults.
    /// Never log or Debug-print the result: it holds the SASL password.
    pub(crate) fn client_config(&self, client_id: &str) -> ClientConfig {
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
            self.set_tls(&mut c);
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

    /// The `tls_*` keys as librdkafka's `ssl.*` properties.
    fn set_tls(&self, c: &mut ClientConfig) {
        let (verify, host_check) = if self.tls.verify {
            ("true", "https")
        } else {
            ("false", "none")
        };
        c.set("enable.ssl.certificate.verification", verify)
            .set("ssl.endpoint.identification.algorithm", host_check);
        // Without a CA file, OpenSSL's system trust store is used.
        let files = [
            ("ssl.ca.location", &self.tls.ca_file),
            ("ssl.certificate.location", &self.tls.cert_file),
            ("ssl.key.location", &self.tls.key_file),
        ];
        for (property, path) in files {
            if let Some(p) = path {
                c.set(property, p.to_string_lossy());
            }
        }
        if let Some(s) = &self.tls_key_password {
            c.set("ssl.key.password", s.expose());
        }
    }
}
