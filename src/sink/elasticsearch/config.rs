//! The Elasticsearch sink's keys: the shared HTTP endpoint, credentials (an API key, or `auth`)
//! and the data stream, which also settles the ECS namespace and JSON's `@timestamp`.

use super::sink::ElasticsearchSink;
use crate::config::FieldError;
use crate::format::Format;
use crate::secret::SecretSource;
use crate::sink::http::auth::source_of;
use crate::sink::http::config::{from_json, sink_type};
use crate::sink::http::{Auth, AuthConfig, Endpoint, HttpConfig};
use crate::sink::registry::{SinkCommon, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_DATA_STREAM: &str = "logs-codacy.audit-default";
/// The keys that say where the API key is read from.
const API_KEY_KEYS: (&str, &str) = ("api_key_file", "api_key_env");

pub const TYPE: SinkType = sink_type::<ElasticsearchConfig>("elasticsearch", false);

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// File holding the API key's `encoded` value (base64 of `id:api_key`).
    pub(crate) api_key_file: Option<PathBuf>,
    pub(crate) api_key_env: Option<String>,
    /// Basic auth (`user` + `password_file`) or a bearer token, instead of an API key.
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) data_stream: Option<String>,
    /// `url`, e.g. `https://es.example.com:9200` (a path prefix behind a proxy is kept); also
    /// `batch_max_bytes`, `compression`, `timeout`, `allow_insecure_http`, `tls_*`.
    #[serde(skip)]
    pub(crate) endpoint: Endpoint,
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

impl ElasticsearchConfig {
    /// Parses the sink's table (the shared keys into `endpoint`).
    pub fn from_json(table: serde_json::Value) -> Result<Self, FieldError> {
        from_json(table)
    }

    pub fn data_stream(&self) -> &str {
        self.data_stream.as_deref().unwrap_or(DEFAULT_DATA_STREAM)
    }

    pub fn validate_keys(&self, format: Format) -> Result<(), FieldError> {
        if format == Format::Cef {
            return Err(FieldError::whole(
                "Elasticsearch stores JSON documents: use format = \"ecs\" (recommended) or \"json\"",
            ));
        }
        self.endpoint.validate()?;
        validate_data_stream(self.data_stream())?;
        self.credentials()?;
        Ok(())
    }
}

impl HttpConfig for ElasticsearchConfig {
    fn record_formats(&self) -> &'static [Format] {
        &[Format::Ecs, Format::Json]
    }

    /// An API key (`Authorization: ApiKey <encoded>`) or `auth`.
    fn credentials(&self) -> Result<Auth<SecretSource>, FieldError> {
        let key = source_of(&self.api_key_file, &self.api_key_env, API_KEY_KEYS)?;
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

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    fn open(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(ElasticsearchSink::new(self.clone(), ctx)?))
    }

    /// Also settles what the data stream dictates: an ECS document's `data_stream` fields must
    /// equal the data stream it lands in, or Elasticsearch rejects it (constant_keyword), and a
    /// JSON document needs the `@timestamp` every data stream requires.
    fn check(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
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
}
