//! The webhook's keys: the shared HTTP endpoint, the body layout, extra headers and `auth`.

use super::sink::HttpSink;
use crate::config::FieldError;
use crate::format::Format;
use crate::secret::SecretSource;
use crate::sink::http::config::{from_json, sink_type};
use crate::sink::http::{Auth, AuthConfig, Endpoint, HttpConfig};
use crate::sink::registry::{SinkCommon, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const TYPE: SinkType = sink_type::<HttpSinkConfig>("http", false);

/// How a batch is laid out in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Encoding {
    /// One record per line, each line ending in `\n` (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// `[record,record,...]` (`application/json`); json and ecs formats only.
    JsonArray,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `url`, `batch_max_bytes`, `compression`, `timeout`, `allow_insecure_http`, `tls_*`.
    #[serde(skip)]
    pub(crate) endpoint: Endpoint,
    pub(crate) encoding: Encoding,
    /// Extra request headers (not `Authorization`: use `auth`, whose secrets come from files).
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) auth: Option<AuthConfig>,
}

impl HttpSinkConfig {
    /// Parses the sink's table (the shared keys into `endpoint`).
    pub fn from_json(table: serde_json::Value) -> Result<Self, FieldError> {
        from_json(table)
    }

    /// Headers as configured, checked.
    pub(super) fn header_map(&self) -> Result<HeaderMap, FieldError> {
        let bad = |m: String| FieldError::whole(format!("`headers`: {m}"));
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(format!("{k:?} is not a valid header name")))?;
            if name == AUTHORIZATION {
                return Err(bad(
                    "do not put Authorization here (it would sit in the config in clear); use `auth = { bearer_token_file = \"...\" }`"
                        .into(),
                ));
            }
            if name == reqwest::header::CONTENT_ENCODING || name == reqwest::header::CONTENT_LENGTH
            {
                return Err(bad(format!("{k} is set by the sink (use `compression`)")));
            }
            let value = HeaderValue::from_str(v)
                .map_err(|_| bad(format!("the value of {k} is not a valid header value")))?;
            map.insert(name, value);
        }
        Ok(map)
    }

    pub fn validate_keys(&self, format: Format) -> Result<(), FieldError> {
        self.endpoint.validate()?;
        if self.encoding == Encoding::JsonArray && format == Format::Cef {
            return Err(FieldError::whole(
                "`encoding = \"json_array\"` needs JSON records; use format = \"json\" or \"ecs\", or encoding = \"ndjson\" for CEF lines",
            ));
        }
        self.header_map()?;
        self.credentials()?;
        Ok(())
    }
}

impl HttpConfig for HttpSinkConfig {
    /// `auth`, if any.
    fn credentials(&self) -> Result<Auth<SecretSource>, FieldError> {
        self.auth
            .as_ref()
            .map_or(Ok(Auth::None), AuthConfig::sources)
    }

    fn check(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format)
    }

    fn open(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(HttpSink::new(self.clone(), ctx)?))
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }
}
