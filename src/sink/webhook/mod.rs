//! `type = "http"`: POST batches to any webhook, as NDJSON (one record per line) or a JSON array.
//!
//! Responses: 2xx acknowledges; 408, 429 and 5xx (except 501) and transport errors are transient
//! (the batch is offered again, honouring `Retry-After`); 413 splits the request in halves down to
//! one record; 401/403/407 and 3xx/404/405/501 are fatal, because a wrong credential or URL needs
//! a human and dead-lettering every record would bury the evidence; any other 4xx rejects the
//! records of that request for good: they go to the dead-letter file with the status and the
//! start of the response body, and the batch is acknowledged.
//!
//! `check` sends `OPTIONS` to the URL with the delivery's headers: it proves DNS, TCP, TLS and
//! HTTP work without sending an event; 404, a redirect, 401/403 or 5xx fail it, as they would fail
//! a delivery. It cannot prove that the credentials are accepted (a webhook has no standard way to
//! ask).

use crate::config::{from_table, FieldError};
use crate::format::Format;
use crate::secret::Redactor;
use crate::sink::http::{
    build_client, classify_status, de_duration, display_url, gzip, send, split_by_bytes,
    validate_url, Auth, AuthConfig, Compression, Rejects, StatusClass, DEFAULT_BATCH_MAX_BYTES,
    DEFAULT_TIMEOUT,
};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Payload, Record, Sink, SinkContext, SinkError};
use crate::tls::TlsSettings;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How a batch is laid out in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One record per line, each line ending in `\n` (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// `[record,record,...]` (`application/json`); json and ecs formats only.
    JsonArray,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub url: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Extra request headers (not `Authorization`: use `auth`, whose secrets come from files).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Uncompressed body bytes per request (default 1 MiB); a batch is split to respect it.
    #[serde(default)]
    pub batch_max_bytes: Option<usize>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// The `tls_*` keys, taken out of the table before the rest is parsed.
    #[serde(skip)]
    pub tls: TlsSettings,
    /// Accept `http://` to a host other than loopback (a warning is logged at every start).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Keys any HTTP sink validates the same way.
pub(crate) fn validate_common(
    batch_max_bytes: Option<usize>,
    timeout: Option<Duration>,
) -> Result<(), String> {
    if batch_max_bytes == Some(0) {
        return Err("`batch_max_bytes` must be positive".into());
    }
    if timeout == Some(Duration::ZERO) {
        return Err("`timeout` must be longer than 0s".into());
    }
    Ok(())
}

pub const TYPE: SinkType = SinkType {
    name: "http",
    carries_host: false,
    parse: |table, _| Ok(Box::new(HttpSinkConfig::from_json(table.into())?)),
};

#[async_trait]
impl SinkConfig for HttpSinkConfig {
    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format).map_err(FieldError::whole)
    }

    /// The credentials this sink sends (none when they cannot be read: then nothing is sent).
    fn redactor(&self) -> Redactor {
        self.auth(true).map(|a| a.redactor()).unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        crate::sink::http::cleartext_url(&self.url)
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(HttpSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl HttpSinkConfig {
    /// Parses the sink's own keys (the `tls_*` keys through the shared TLS settings).
    pub fn from_json(mut table: serde_json::Value) -> Result<Self, FieldError> {
        let tls = table
            .as_object_mut()
            .map(crate::sink::http::http_tls)
            .transpose()?
            .unwrap_or_else(TlsSettings::verified);
        Ok(HttpSinkConfig {
            tls,
            ..from_table(table)?
        })
    }

    fn tls(&self) -> TlsSettings {
        self.tls.clone()
    }

    fn auth(&self, read: bool) -> Result<Auth, String> {
        self.auth.as_ref().map_or(Ok(Auth::None), |a| a.load(read))
    }

    /// Headers as configured, checked.
    fn header_map(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`headers`: {k:?} is not a valid header name"))?;
            if name == AUTHORIZATION {
                return Err(
                    "`headers`: do not put Authorization here (it would sit in the config in clear); use `auth = { bearer_token_file = \"...\" }`"
                        .into(),
                );
            }
            if name == reqwest::header::CONTENT_ENCODING || name == reqwest::header::CONTENT_LENGTH
            {
                return Err(format!(
                    "`headers`: {k} is set by the sink (use `compression`)"
                ));
            }
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("`headers`: the value of {k} is not a valid header value"))?;
            map.insert(name, value);
        }
        Ok(map)
    }

    pub fn validate_keys(&self, format: Format) -> Result<(), String> {
        validate_url(&self.url, &self.tls(), self.allow_insecure_http)?;
        validate_common(self.batch_max_bytes, self.timeout)?;
        if self.encoding == Encoding::JsonArray && format == Format::Cef {
            return Err(
                "`encoding = \"json_array\"` needs JSON records; use format = \"json\" or \"ecs\", or encoding = \"ndjson\" for CEF lines"
                    .into(),
            );
        }
        self.header_map()?;
        self.auth(false)?;
        Ok(())
    }
}

pub struct HttpSink {
    ctx: SinkContext,
    client: reqwest::Client,
    url: String,
    /// Configured headers plus `Authorization`.
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    max_bytes: usize,
    /// The credentials in `headers`, blanked from excerpts of replies.
    redactor: Redactor,
}

impl HttpSink {
    /// Reads the secrets and builds the client. Errors are start-up errors naming the key.
    pub fn new(config: HttpSinkConfig, ctx: SinkContext) -> Result<HttpSink, SinkError> {
        let fail = |m: String| SinkError::fatal(format!("http sink {:?}: {m}", ctx.name));
        let tls = config.tls();
        let url = validate_url(&config.url, &tls, config.allow_insecure_http).map_err(fail)?;
        let mut headers = config.header_map().map_err(fail)?;
        let auth = config.auth(true).map_err(fail)?;
        if let Some(h) = auth.header().map_err(fail)? {
            headers.insert(AUTHORIZATION, h);
        }
        let client = build_client(
            &url,
            &tls,
            config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            &ctx.name,
        )
        .map_err(fail)?;
        Ok(HttpSink {
            client,
            url: url.to_string(),
            headers,
            encoding: config.encoding,
            compression: config.compression,
            max_bytes: config.batch_max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
            redactor: auth.redactor(),
            ctx,
        })
    }

    fn body(&self, records: &[&Record]) -> (Vec<u8>, &'static str) {
        let size: usize = records.iter().map(|r| r.payload.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 2);
        match self.encoding {
            Encoding::Ndjson => {
                for r in records {
                    body.extend_from_slice(&r.payload);
                    body.push(b'\n');
                }
                let ct = if self.ctx.payload == Payload::JsonObject {
                    "application/x-ndjson"
                } else {
                    "text/plain; charset=utf-8"
                };
                (body, ct)
            }
            Encoding::JsonArray => {
                body.push(b'[');
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&r.payload);
                }
                body.push(b']');
                (body, "application/json")
            }
        }
    }

    /// Sends `batch[range]`, splitting on 413; rejected records are added to `rejects`.
    async fn send_range(
        &self,
        batch: &[Record],
        range: std::ops::Range<usize>,
        rejects: &mut Rejects,
    ) -> Result<(), SinkError> {
        let shown = display_url(&self.url);
        // Depth-first over halves, first half first, so records go out in order.
        let mut work = vec![range];
        while let Some(r) = work.pop() {
            let records: Vec<&Record> = batch[r.clone()].iter().collect();
            let (body, content_type) = self.body(&records);
            let mut req = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, content_type);
            let body = match self.compression {
                Compression::None => body,
                Compression::Gzip => {
                    req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
                    gzip(&body)?
                }
            };
            let reply = send(req.body(body), &self.url, &self.redactor).await?;
            let status = reply.status;
            match classify_status(status) {
                StatusClass::Accepted => {}
                StatusClass::Retry => {
                    return Err(SinkError::transient(format!(
                        "{shown} answered HTTP {status}; will retry: {}",
                        reply.excerpt()
                    ))
                    .with_retry_after(reply.retry_after))
                }
                StatusClass::TooLarge if r.len() > 1 => {
                    let mid = r.start + r.len() / 2;
                    tracing::info!(sink = %self.ctx.name, records = r.len(),
                        "HTTP 413 (payload too large): splitting the request in halves; lower batch_max_bytes to avoid this");
                    work.push(mid..r.end);
                    work.push(r.start..mid);
                }
                StatusClass::TooLarge | StatusClass::Reject => {
                    let reason = format!(
                        "{shown} rejected the record with HTTP {status}: {}",
                        reply.excerpt()
                    );
                    for i in r {
                        rejects.add(i, reason.clone());
                    }
                }
                StatusClass::Auth => {
                    return Err(SinkError::fatal(format!(
                        "{shown} refused the request with HTTP {status}: check `auth` (token or password file) and that it may post here; nothing was dropped, the batch will be retried: {}",
                        reply.excerpt()
                    )))
                }
                StatusClass::Endpoint => {
                    return Err(SinkError::fatal(format!(
                        "{shown} answered HTTP {status}: the URL looks wrong (no such endpoint, a redirect, or POST not allowed); fix `url`: {}",
                        reply.excerpt()
                    )))
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sizes: Vec<usize> = batch.iter().map(|r| r.payload.len() + 1).collect();
        let mut rejects = Rejects::default();
        for range in split_by_bytes(&sizes, self.max_bytes) {
            self.send_range(batch, range, &mut rejects).await?;
        }
        rejects.write(&self.ctx, batch).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let req = self
            .client
            .request(reqwest::Method::OPTIONS, &self.url)
            .headers(self.headers.clone());
        let reply = send(req, &self.url, &self.redactor).await?;
        let shown = display_url(&self.url);
        let status = reply.status;
        // Judged as delivery would judge the same answer to its POST: a URL that is not there
        // (404, a redirect) or credentials refused fail the check; a server that merely does
        // not implement OPTIONS (405, 501) proves the endpoint is reachable.
        match status.as_u16() {
            404 | 410 => Err(SinkError::fatal(format!(
                "{shown} answered HTTP {status}: no such endpoint, so every delivery would fail; fix `url`: {}",
                reply.excerpt()
            ))),
            300..=399 => Err(SinkError::fatal(format!(
                "{shown} answered HTTP {status} (a redirect, which delivery does not follow); set `url` to the final address"
            ))),
            401 | 403 | 407 => Err(SinkError::fatal(format!(
                "{shown} refused the request with HTTP {status}: check `auth` (token or password file): {}",
                reply.excerpt()
            ))),
            408 | 429 | 500 | 502..=599 => Err(SinkError::transient(format!(
                "{shown} answered HTTP {status}: the receiver is unavailable now: {}",
                reply.excerpt()
            ))),
            _ => Ok(format!(
                "{shown} reachable (OPTIONS answered HTTP {status}); no event sent, credentials are only proven by a delivery"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<HttpSinkConfig, String> {
        HttpSinkConfig::from_json(v).map_err(|e| e.to_string())
    }

    #[test]
    fn documented_keys_parse() {
        let c = parse(serde_json::json!({
            "url": "https://hooks.example.com/codacy", "encoding": "json_array",
            "headers": {"X-Team": "sec"}, "batch_max_bytes": 1048576,
            "compression": "gzip", "timeout": "30s", "tls_verify": true
        }))
        .unwrap();
        assert_eq!(c.encoding, Encoding::JsonArray);
        assert_eq!(c.timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.compression, Compression::Gzip);
        c.validate_keys(Format::Json).unwrap();
    }

    #[test]
    fn validation_messages_name_the_key() {
        let e = parse(serde_json::json!({"url": "https://h", "timeout": "soon"})).unwrap_err();
        assert!(e.contains("timeout") && e.contains("not a duration"), "{e}");
        let e = parse(serde_json::json!({"url": "https://h", "tls_verfy": false})).unwrap_err();
        assert!(e.contains("tls_verfy"), "{e}");

        let c = parse(serde_json::json!({"url": "https://h", "encoding": "json_array"})).unwrap();
        assert!(c
            .validate_keys(Format::Cef)
            .unwrap_err()
            .contains("json_array"));
        let c = parse(serde_json::json!({"url": "https://h", "headers": {"Authorization": "x"}}))
            .unwrap();
        assert!(c.validate_keys(Format::Json).unwrap_err().contains("auth"));
        let c = parse(serde_json::json!({"url": "https://h", "batch_max_bytes": 0})).unwrap();
        assert!(c
            .validate_keys(Format::Json)
            .unwrap_err()
            .contains("batch_max_bytes"));
        let c = parse(serde_json::json!({"url": "https://h", "auth": {"user": "u"}})).unwrap();
        assert!(c
            .validate_keys(Format::Json)
            .unwrap_err()
            .contains("password_file"));
        // Secret files are read when the sink starts, and the error names the file.
        let c = parse(serde_json::json!({"url": "https://h",
            "auth": {"bearer_token_file": "/nonexistent/hook-token"}}))
        .unwrap();
        c.validate_keys(Format::Json).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = SinkContext::for_test(dir.path(), "hook");
        let e = HttpSink::new(c, ctx).err().unwrap();
        assert_eq!(e.kind, crate::sink::SinkErrorKind::Fatal);
        assert!(
            e.message.contains("/nonexistent/hook-token"),
            "{}",
            e.message
        );
    }

    #[test]
    fn https_clients_build_with_the_shared_tls_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = |name: &str| SinkContext::for_test(dir.path(), name);
        // reqwest accepts our rustls config (same rustls version), verified or not.
        for verify in [true, false] {
            let c = parse(
                serde_json::json!({"url": "https://hooks.example.com/x", "tls_verify": verify}),
            )
            .unwrap();
            assert!(HttpSink::new(c, ctx("h")).is_ok());
        }
        let c = parse(
            serde_json::json!({"url": "https://h.example", "tls_ca_file": "/nonexistent/ca.pem"}),
        )
        .unwrap();
        assert!(c
            .validate_keys(Format::Json)
            .unwrap_err()
            .contains("/nonexistent/ca.pem"));
    }
}
