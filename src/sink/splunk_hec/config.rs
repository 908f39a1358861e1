//! The HEC sink's keys: the shared HTTP endpoint, the token, the event metadata and indexer
//! acknowledgement.

use super::sink::SplunkHecSink;
use crate::config::FieldError;
use crate::secret::SecretSource;
use crate::sink::http::auth::source_of;
use crate::sink::http::config::{from_json, sink_type};
use crate::sink::http::endpoint::de_duration;
use crate::sink::http::{display_url, Auth, Endpoint, HttpConfig};
use crate::sink::registry::{SinkCommon, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default wait between indexer-acknowledgement polls (Vector's default).
pub const DEFAULT_ACK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default give-up time for indexer acknowledgements (Vector: 30 polls of 10 s).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);
/// The keys that say where the HEC token is read from.
const TOKEN_KEYS: (&str, &str) = ("token_file", "token_env");

pub const TYPE: SinkType = sink_type::<SplunkHecConfig>("splunk_hec", true);

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// `url` is the base URL, e.g. `https://splunk.example.com:8088` (the collector paths are
    /// appended); also `batch_max_bytes`, `compression`, `timeout`, `allow_insecure_http`,
    /// `tls_*`.
    #[serde(skip)]
    pub(crate) endpoint: Endpoint,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) token_env: Option<String>,
    /// Default `codacy:audit`.
    pub(crate) sourcetype: Option<String>,
    /// Default: the token's default index.
    pub(crate) index: Option<String>,
    /// Default `codacy`.
    pub(crate) source: Option<String>,
    /// Default: `hostname`, else this machine's host name.
    pub(crate) host: Option<String>,
    pub(crate) indexer_acknowledgement: bool,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) ack_poll_interval: Option<Duration>,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) ack_timeout: Option<Duration>,
    /// The common `hostname` key (left in this table for it), the default `host`.
    pub(crate) hostname: Option<String>,
}

impl HttpConfig for SplunkHecConfig {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The HEC token: `Authorization: Splunk <token>`.
    fn credentials(&self) -> Result<Auth<SecretSource>, FieldError> {
        let source = source_of(&self.token_file, &self.token_env, TOKEN_KEYS)?;
        let secret = source.ok_or_else(|| {
            FieldError::whole("no HEC token: set `token_file` (a file holding the token from Settings > Data inputs > HTTP Event Collector) or `token_env`")
        })?;
        Ok(Auth::Token {
            scheme: "Splunk",
            secret,
        })
    }

    fn open(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SplunkHecSink::new(self.clone(), ctx)?))
    }

    /// Every format works: json and ecs as JSON object events, cef as a string event.
    fn check(&self, _common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys()
    }
}

impl SplunkHecConfig {
    /// Parses the sink's table (the shared keys into `endpoint`).
    pub fn from_json(table: serde_json::Value) -> Result<Self, FieldError> {
        from_json(table)
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

    /// Checks the keys (every format works, so they are all there is to check).
    pub fn validate_keys(&self) -> Result<(), FieldError> {
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
        self.credentials()?;
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
