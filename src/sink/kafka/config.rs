//! `[[sinks]] type = "kafka"`: the sink's own keys as the configuration file writes them, and
//! its entry in the sink registry. What they become (checked values, secrets read, librdkafka
//! properties) is in [`super::settings`].

use super::options::OptionValue;
use super::KafkaSink;
use crate::config::{from_table, FieldError};
use crate::secret::Redactor;
use crate::sink::registry::{Preflight, SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use crate::sink::{Sink, SinkContext, SinkError};
use crate::tls::TlsSettings;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The Kafka sink's own keys. Optional keys are `Option`s, which serde leaves `None` when absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` separated by commas.
    pub(crate) brokers: String,
    /// Topic name; may contain `{provider}` and `{organization}`.
    pub(crate) topic: String,
    #[serde(default)]
    pub(crate) key: KeyBy,
    #[serde(default)]
    pub(crate) compression: Compression,
    /// How long librdkafka may try to deliver a record before its delivery report fails
    /// (humantime: "5m").
    pub(crate) message_timeout: Option<String>,
    #[serde(default)]
    pub(crate) security_protocol: SecurityProtocol,
    pub(crate) sasl_mechanism: Option<SaslMechanism>,
    pub(crate) sasl_username: Option<String>,
    pub(crate) sasl_password_file: Option<PathBuf>,
    /// Name of an environment variable holding the SASL password.
    pub(crate) sasl_password_env: Option<String>,
    /// The `tls_*` keys every TLS sink takes, taken out of the table before the rest is parsed
    /// ([`KafkaSinkConfig::from_json`]); verified when the struct is deserialised directly.
    #[serde(skip, default = "TlsSettings::verified")]
    pub(crate) tls: TlsSettings,
    /// File holding the passphrase of an encrypted `tls_key_file` (librdkafka decrypts it).
    pub(crate) tls_key_password_file: Option<PathBuf>,
    /// Any other librdkafka property, checked by librdkafka at start.
    #[serde(default)]
    pub(crate) librdkafka_options: BTreeMap<String, OptionValue>,
}

/// What the record key is: it picks the partition, so it decides what stays in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyBy {
    /// `<provider>/<organization>`: each organization's events stay in order in one partition.
    #[default]
    Organization,
    /// The event id: spreads load over partitions, no ordering.
    EventId,
}

/// librdkafka's `compression.codec`, under its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compression {
    #[default]
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl Compression {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// librdkafka's `security.protocol`; the upper-case spellings of Kafka's own tools work too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecurityProtocol {
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub(crate) fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub(crate) fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

pub const TYPE: SinkType = SinkType {
    name: "kafka",
    carries_host: false,
    parse: |table, _| Ok(Box::new(KafkaSinkConfig::from_json(table.into())?)),
};

impl KafkaSinkConfig {
    /// Parses the sink's own keys; the `tls_*` keys through the TLS settings every sink shares.
    pub fn from_json(table: Value) -> Result<Self, FieldError> {
        let Value::Object(mut table) = table else {
            // Not a table: serde says what it is instead.
            return from_table(table);
        };
        let tls = TlsSettings::take_from(&mut table)?;
        if tls.server_name.is_some() {
            return Err(FieldError::new(
                "tls_server_name",
                "librdkafka verifies each broker's certificate against the host name it connects to (from `brokers` and the cluster's metadata) and takes no other name: remove it",
            ));
        }
        let keys: KafkaSinkConfig = from_table(Value::Object(table))?;
        Ok(KafkaSinkConfig { tls, ..keys })
    }

    /// The SASL password and TLS key password (none when they cannot be read: then nothing is
    /// sent).
    pub(crate) fn secrets(&self) -> Redactor {
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
}

#[async_trait]
impl SinkConfig for KafkaSinkConfig {
    fn default_batch(&self) -> usize {
        STREAM_BATCH
    }

    fn validate(&self, _common: &mut SinkCommon) -> Result<(), FieldError> {
        self.resolve().map(|_| ())
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
            Err(e) => Preflight::Failed(e.to_string()),
        })
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(KafkaSink::start(self.clone(), ctx).await?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
