//! The Elasticsearch sink's keys: the shared HTTP endpoint, credentials (an API key, or `auth`)
//! and the data stream, which also settles the ECS namespace and JSON's `@timestamp`.

use super::sink::ElasticsearchSink;
use crate::config::FieldError;
use crate::format::Format;
use crate::secret::{Redactor, SecretSource};
use crate::sink::http::auth::source_of;
use crate::sink::http::endpoint::parse_table;
use crate::sink::http::{Auth, AuthConfig, Endpoint};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_DATA_STREAM: &str = "logs-codacy.audit-default";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// `url`, e.g. `https://es.example.com:9200` (a path prefix behind a proxy is kept); also
    /// `batch_max_bytes`, `compression`, `timeout`, `allow_insecure_http`, `tls_*`.
    #[serde(skip)]
    pub endpoint: Endpoint,
    /// File holding the API key's `encoded` value (base64 of `id:api_key`).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Basic auth (`user` + `password_file`) or a bearer token, instead of an API key.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub data_stream: Option<String>,
}

/// Data stream naming: `<type>-<dataset>-<namespace>`, lowercase, no `-` inside dataset or
/// namespace, none of `\ / * ? " < > | , # :` or spaces, at most 100 characters per part.
pub fn validate_data_stream(name: &str) -> Result<(), FieldError> {
    let bad = |m: String| FieldError::new("data_stream", m);
    let parts: Vec<&str> = name.split('-').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad(format!(
            "{name:?} must be <type>-<dataset>-<namespace>, e.g. {DEFAULT_DATA_STREAM}"
        )));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_uppercase()
            || c.is_whitespace()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
            )
    }) {
        return Err(bad(format!(
            "{name:?} contains {c:?}; data stream names are lowercase without \\ / * ? \" < > | , # : or spaces"
        )));
    }
    if parts.iter().any(|p| p.len() > 100) {
        return Err(bad(format!(
            "{name:?}: type, dataset and namespace are at most 100 characters each"
        )));
    }
    if parts[1].starts_with(['_', '.', '+']) {
        return Err(bad(format!(
            "dataset {:?} must not start with _ . or +",
            parts[1]
        )));
    }
    Ok(())
}

pub const TYPE: SinkType = SinkType {
    name: "elasticsearch",
    carries_host: false,
    parse: |table, _| Ok(Box::new(ElasticsearchConfig::from_json(table.into())?)),
};

#[async_trait]
impl SinkConfig for ElasticsearchConfig {
    fn formats(&self) -> &'static [Format] {
        &[Format::Ecs, Format::Json]
    }

    /// Also settles what the data stream dictates: an ECS document's `data_stream` fields must
    /// equal the data stream it lands in, or Elasticsearch rejects it (constant_keyword), and a
    /// JSON document needs the `@timestamp` every data stream requires.
    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format)?;
        common.format_options.timestamp_field = common.format == Format::Json;
        if common.format != Format::Ecs {
            return Ok(());
        }
        let ds = self.data_stream();
        let mut parts = ds.splitn(3, '-');
        let (_, dataset, namespace) = (parts.next(), parts.next(), parts.next());
        if dataset != Some("codacy.audit") {
            return Err(FieldError::new(
                "data_stream",
                format!("{ds:?}: ECS documents carry data_stream.dataset \"codacy.audit\"; use logs-codacy.audit-<namespace>"),
            ));
        }
        if let Some(ns) = namespace {
            if common.explicit_namespace && common.format_options.ecs_namespace != ns {
                return Err(FieldError::new(
                    "ecs_namespace",
                    format!("{:?} differs from the namespace of data_stream {ds:?}; leave ecs_namespace out", common.format_options.ecs_namespace),
                ));
            }
            common.format_options.ecs_namespace = ns.to_string();
        }
        Ok(())
    }

    /// The credentials this sink sends (none when they cannot be read: then nothing is sent).
    fn redactor(&self) -> Redactor {
        let auth = self.auth().and_then(|a| a.read());
        auth.map(|a| a.redactor()).unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        self.endpoint.cleartext_url()
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(ElasticsearchSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl ElasticsearchConfig {
    /// Parses the sink's table (the shared keys into `endpoint`).
    pub fn from_json(table: serde_json::Value) -> Result<Self, FieldError> {
        let (endpoint, own) = parse_table::<ElasticsearchConfig>(table)?;
        Ok(ElasticsearchConfig { endpoint, ..own })
    }

    pub fn data_stream(&self) -> &str {
        self.data_stream.as_deref().unwrap_or(DEFAULT_DATA_STREAM)
    }

    /// Where the credentials come from: an API key (`Authorization: ApiKey <encoded>`) or `auth`.
    pub(super) fn auth(&self) -> Result<Auth<SecretSource>, FieldError> {
        let key = source_of(
            &self.api_key_file,
            &self.api_key_env,
            ("api_key_file", "api_key_env"),
        )?;
        match (key, &self.auth) {
            (Some(_), Some(_)) => Err(FieldError::whole(
                "set `api_key_file` or `auth`, not both",
            )),
            (Some(secret), None) => Ok(Auth::Token {
                scheme: "ApiKey",
                secret,
            }),
            (None, Some(a)) => a.sources(),
            (None, None) => Err(FieldError::whole(
                "no credentials: set `api_key_file` (the `encoded` value from POST /_security/api_key) or `auth = { user = \"...\", password_file = \"...\" }`",
            )),
        }
    }

    pub fn validate_keys(&self, format: Format) -> Result<(), FieldError> {
        if format == Format::Cef {
            return Err(FieldError::whole(
                "Elasticsearch stores JSON documents: use format = \"ecs\" (recommended) or \"json\"",
            ));
        }
        self.endpoint.validate()?;
        validate_data_stream(self.data_stream())?;
        self.auth()?;
        Ok(())
    }
}
