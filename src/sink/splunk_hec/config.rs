//! The HEC sink's keys: the shared HTTP endpoint, the token, the event metadata and indexer
//! acknowledgement.

use super::sink::SplunkHecSink;
use crate::config::FieldError;
use crate::format::Format;
use crate::secret::{Redactor, SecretSource};
use crate::sink::http::auth::source_of;
use crate::sink::http::endpoint::{de_duration, parse_table};
use crate::sink::http::{display_url, Auth, Endpoint};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default wait between indexer-acknowledgement polls (Vector's default).
pub const DEFAULT_ACK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default give-up time for indexer acknowledgements (Vector: 30 polls of 10 s).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// `url` is the base URL, e.g. `https://splunk.example.com:8088` (the collector paths are
    /// appended); also `batch_max_bytes`, `compression`, `timeout`, `allow_insecure_http`,
    /// `tls_*`.
    #[serde(skip)]
    pub endpoint: Endpoint,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    /// Default `codacy:audit`.
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// Default: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Default `codacy`.
    #[serde(default)]
    pub source: Option<String>,
    /// Default: `hostname`, else this machine's host name.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub indexer_acknowledgement: bool,
    #[serde(default, deserialize_with = "de_duration")]
    pub ack_poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub ack_timeout: Option<Duration>,
    /// The common `hostname` key (left in this table for it), the default `host`.
    #[serde(default)]
    pub hostname: Option<String>,
}

pub const TYPE: SinkType = SinkType {
    name: "splunk_hec",
    carries_host: true,
    parse: |table, _| Ok(Box::new(SplunkHecConfig::from_json(table.into())?)),
};

#[async_trait]
impl SinkConfig for SplunkHecConfig {
    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format)
    }

    /// The HEC token (none when it cannot be read: then nothing is sent).
    fn redactor(&self) -> Redactor {
        let token = self.token().and_then(|t| t.read());
        token.map(|t| t.redactor()).unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        self.endpoint.cleartext_url()
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SplunkHecSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SplunkHecConfig {
    /// Parses the sink's table (the shared keys into `endpoint`).
    pub fn from_json(table: serde_json::Value) -> Result<Self, FieldError> {
        let (endpoint, own) = parse_table::<SplunkHecConfig>(table)?;
        Ok(SplunkHecConfig { endpoint, ..own })
    }

    /// Where the HEC token comes from: `Authorization: Splunk <token>`.
    pub(super) fn token(&self) -> Result<Auth<SecretSource>, FieldError> {
        let source = source_of(
            &self.token_file,
            &self.token_env,
            ("token_file", "token_env"),
        )?;
        let secret = source.ok_or_else(|| {
            FieldError::whole("no HEC token: set `token_file` (a file holding the token from Settings > Data inputs > HTTP Event Collector) or `token_env`")
        })?;
        Ok(Auth::Token {
            scheme: "Splunk",
            secret,
        })
    }

    /// `(poll interval, give-up time)` when indexer acknowledgement is on.
    pub(super) fn ack(&self) -> Option<(Duration, Duration)> {
        self.indexer_acknowledgement.then(|| {
            (
                self.ack_poll_interval.unwrap_or(DEFAULT_ACK_POLL_INTERVAL),
                self.ack_timeout.unwrap_or(DEFAULT_ACK_TIMEOUT),
            )
        })
    }

    /// Every format works: json and ecs as JSON object events, cef as a string event.
    pub fn validate_keys(&self, _format: Format) -> Result<(), FieldError> {
        let url = self.endpoint.validate()?;
        if url.path().contains("/services/collector") {
            return Err(FieldError::whole(format!(
                "`url`: give the HEC base URL (e.g. https://splunk.example.com:8088), without /services/collector; found {}",
                display_url(&self.endpoint.url)
            )));
        }
        for (key, v) in [
            ("sourcetype", &self.sourcetype),
            ("index", &self.index),
            ("source", &self.source),
            ("host", &self.host),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(FieldError::whole(format!(
                    "`{key}` must not be empty (leave it out for the default)"
                )));
            }
        }
        self.validate_ack()?;
        self.token()?;
        Ok(())
    }

    fn validate_ack(&self) -> Result<(), FieldError> {
        if self.ack_poll_interval == Some(Duration::ZERO) {
            return Err(FieldError::whole(
                "`ack_poll_interval` must be longer than 0s",
            ));
        }
        if let (Some(i), Some(t)) = (self.ack_poll_interval, self.ack_timeout) {
            if t < i {
                return Err(FieldError::whole(
                    "`ack_timeout` must be at least `ack_poll_interval`",
                ));
            }
        }
        if !self.indexer_acknowledgement
            && (self.ack_poll_interval.is_some() || self.ack_timeout.is_some())
        {
            return Err(FieldError::whole(
                "`ack_poll_interval` / `ack_timeout` only apply with indexer_acknowledgement = true",
            ));
        }
        Ok(())
    }
}
