//! `type = "elasticsearch"`: `POST {url}/_bulk` with one `create` action per record into a data
//! stream (default `logs-codacy.audit-default`), `_id` = the event id.
//!
//! Using `create` with the stable event id makes redelivery idempotent: a document that is already
//! there comes back 409, which counts as delivered. (Data streams accept only `create`; the id
//! only conflicts within the current backing index, so a replay after a rollover can duplicate:
//! dedupe on `event.id` at query time.)
//!
//! Per-item results, in request order: 200/201/409 acknowledge; 429 and 5xx items are resent
//! alone, a few times with backoff, and if still failing the batch fails transiently (it is
//! offered again, and the documents already created come back 409); other 4xx items (mapping
//! errors) go to the dead-letter file with the error type and reason. HTTP 413 splits the request
//! in halves (a single document still too large is dead-lettered). HTTP 401/403 are fatal with
//! the remedy; any other request-level 4xx is fatal too (it is not about one document).
//!
//! Formats: `ecs` (recommended; has `@timestamp`) or `json`, to which the sink adds `@timestamp`
//! from the event time because data streams require it. `data_stream` must agree with the ECS
//! `data_stream.*` fields, so with `format = "ecs"` its namespace should equal `ecs_namespace`.

use crate::clock::Backoff;
use crate::config::{from_table, FieldError};
use crate::format::Format;
use crate::secret::Redactor;
use crate::sink::http::{
    build_client, classify_status, de_duration, display_url, gzip, join, load_secret, send,
    split_by_bytes, validate_url, Auth, AuthConfig, Compression, Rejects, StatusClass,
    DEFAULT_BATCH_MAX_BYTES, DEFAULT_TIMEOUT,
};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Record, Sink, SinkContext, SinkError};
use crate::tls::TlsSettings;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_DATA_STREAM: &str = "logs-codacy.audit-default";
/// Resends of 429/5xx items within one delivery before giving the batch back.
pub const DEFAULT_ITEM_RETRIES: u32 = 3;
pub const DEFAULT_ITEM_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// e.g. `https://es.example.com:9200` (a path prefix behind a proxy is kept).
    pub url: String,
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

/// Data stream naming: `<type>-<dataset>-<namespace>`, lowercase, no `-` inside dataset or
/// namespace, none of `\ / * ? " < > | , # :` or spaces, at most 100 characters per part.
pub fn validate_data_stream(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('-').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`data_stream`: {name:?} must be <type>-<dataset>-<namespace>, e.g. {DEFAULT_DATA_STREAM}"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_uppercase()
            || c.is_whitespace()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
            )
    }) {
        return Err(format!(
            "`data_stream`: {name:?} contains {c:?}; data stream names are lowercase without \\ / * ? \" < > | , # : or spaces"
        ));
    }
    if parts.iter().any(|p| p.len() > 100) {
        return Err(format!(
            "`data_stream`: {name:?}: type, dataset and namespace are at most 100 characters each"
        ));
    }
    if parts[1].starts_with(['_', '.', '+']) {
        return Err(format!(
            "`data_stream`: dataset {:?} must not start with _ . or +",
            parts[1]
        ));
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
        self.validate_keys(common.format)
            .map_err(FieldError::whole)?;
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
        self.auth(true).map(|a| a.redactor()).unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        crate::sink::http::cleartext_url(&self.url)
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(ElasticsearchSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl ElasticsearchConfig {
    /// Parses the sink's own keys (the `tls_*` keys through the shared TLS settings).
    pub fn from_json(mut table: serde_json::Value) -> Result<Self, FieldError> {
        let tls = table
            .as_object_mut()
            .map(crate::sink::http::http_tls)
            .transpose()?
            .unwrap_or_else(TlsSettings::verified);
        Ok(ElasticsearchConfig {
            tls,
            ..from_table(table)?
        })
    }

    fn tls(&self) -> TlsSettings {
        self.tls.clone()
    }

    pub fn data_stream(&self) -> &str {
        self.data_stream.as_deref().unwrap_or(DEFAULT_DATA_STREAM)
    }

    fn auth(&self, read: bool) -> Result<Auth, String> {
        let key = load_secret(
            self.api_key_file.as_ref(),
            self.api_key_env.as_ref(),
            "api_key_file",
            "api_key_env",
            read,
        )?;
        match (key, &self.auth) {
            (Some(_), Some(_)) => Err("set `api_key_file` or `auth`, not both".into()),
            (Some(key), None) => Ok(Auth::ApiKey(key)),
            (None, Some(a)) => a.load(read),
            (None, None) => Err(
                "no credentials: set `api_key_file` (the `encoded` value from POST /_security/api_key) or `auth = { user = \"...\", password_file = \"...\" }`"
                    .into(),
            ),
        }
    }

    pub fn validate_keys(&self, format: Format) -> Result<(), String> {
        if format == Format::Cef {
            return Err(
                "Elasticsearch stores JSON documents: use format = \"ecs\" (recommended) or \"json\""
                    .into(),
            );
        }
        validate_url(&self.url, &self.tls(), self.allow_insecure_http)?;
        crate::sink::webhook::validate_common(self.batch_max_bytes, self.timeout)?;
        validate_data_stream(self.data_stream())?;
        self.auth(false)?;
        Ok(())
    }
}

/// What one bulk item's status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// 200/201: written.
    Created,
    /// 409 on `create`: already there (a redelivery); counts as delivered.
    Duplicate,
    /// 429, 5xx: resend this item.
    Retry,
    /// 401/403/404 per item: credentials, a write block or a missing data stream. Not the
    /// document's fault: the sink stops with the remedy instead of dead-lettering everything.
    Denied,
    /// Other statuses: the document itself is refused; dead-letter it.
    Reject,
}

pub fn classify_item(status: u16) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Created,
        409 => ItemOutcome::Duplicate,
        429 | 500..=599 => ItemOutcome::Retry,
        401 | 403 | 404 => ItemOutcome::Denied,
        _ => ItemOutcome::Reject,
    }
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    items: Vec<serde_json::Map<String, Value>>,
}

/// `(status, "type: reason")` of one bulk item (`{"create": {...}}`).
fn item_result(item: &serde_json::Map<String, Value>) -> Option<(u16, String)> {
    let inner = item.values().next()?;
    let status = u16::try_from(inner.get("status")?.as_u64()?).ok()?;
    let error = match inner.get("error") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(e) => format!(
            "{}: {}",
            e.get("type").and_then(Value::as_str).unwrap_or("error"),
            e.get("reason").and_then(Value::as_str).unwrap_or("")
        ),
    };
    Some((status, error))
}

pub struct ElasticsearchSink {
    ctx: SinkContext,
    client: reqwest::Client,
    base: reqwest::Url,
    headers: HeaderMap,
    data_stream: String,
    compression: Compression,
    max_bytes: usize,
    item_retries: u32,
    item_backoff: Backoff,
    /// The credentials in `headers`, blanked from excerpts of replies.
    redactor: Redactor,
}

impl ElasticsearchSink {
    pub fn new(config: ElasticsearchConfig, ctx: SinkContext) -> Result<Self, SinkError> {
        let fail = |m: String| SinkError::fatal(format!("elasticsearch sink {:?}: {m}", ctx.name));
        let tls = config.tls();
        let base = validate_url(&config.url, &tls, config.allow_insecure_http).map_err(fail)?;
        validate_data_stream(config.data_stream()).map_err(fail)?;
        let mut headers = HeaderMap::new();
        let auth = config.auth(true).map_err(fail)?;
        if let Some(h) = auth.header().map_err(fail)? {
            headers.insert(AUTHORIZATION, h);
        }
        let client = build_client(
            &base,
            &tls,
            config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            &ctx.name,
        )
        .map_err(fail)?;
        Ok(ElasticsearchSink {
            client,
            base,
            headers,
            data_stream: config.data_stream().to_string(),
            compression: config.compression,
            max_bytes: config.batch_max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
            item_retries: DEFAULT_ITEM_RETRIES,
            item_backoff: DEFAULT_ITEM_BACKOFF,
            redactor: auth.redactor(),
            ctx,
        })
    }

    /// How often and how patiently 429/5xx items are resent within one delivery.
    pub fn with_item_retry(mut self, retries: u32, backoff: Backoff) -> Self {
        self.item_retries = retries;
        self.item_backoff = backoff;
        self
    }

    /// The action line and document of `r`, each ending in `\n`.
    fn item(&self, r: &Record) -> Vec<u8> {
        let action =
            serde_json::json!({"create": {"_index": self.data_stream, "_id": r.event_id.as_str()}});
        let mut out = Vec::with_capacity(r.payload.len() + 160);
        let _ = serde_json::to_writer(&mut out, &action);
        out.push(b'\n');
        out.extend_from_slice(&r.payload);
        out.push(b'\n');
        out
    }

    fn fatal_auth(&self, status: reqwest::StatusCode, url: &str, excerpt: &str) -> SinkError {
        let remedy = if status == reqwest::StatusCode::UNAUTHORIZED {
            "the credentials were refused (API key invalid, expired or revoked, or a wrong password): create a key with POST /_security/api_key and put its `encoded` value in api_key_file"
        } else if status == reqwest::StatusCode::NOT_FOUND {
            "the data stream does not exist and cannot be created: add an index template matching it (logs-*-* has one by default) or fix `data_stream`"
        } else {
            "the credentials lack a privilege or the index is write-blocked: the API key or user needs `create_doc` (or create/index/write) on the data stream, plus `auto_configure` to create it; check index.blocks.write"
        };
        SinkError::fatal(format!(
            "{url}: HTTP {status} writing to {}: {remedy}; nothing was dropped, the batch will be retried: {excerpt}",
            self.data_stream
        ))
    }

    /// Sends the items `indices` of `batch`: item retries, 413 halving, rejects collected.
    async fn send_group(
        &self,
        items: &[Vec<u8>],
        indices: Vec<usize>,
        rejects: &mut Rejects,
    ) -> Result<(), SinkError> {
        let url = join(&self.base, "/_bulk");
        let shown = display_url(&url);
        let mut work = vec![indices];
        while let Some(group) = work.pop() {
            let mut pending = group;
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let body: Vec<u8> = pending
                    .iter()
                    .flat_map(|&i| items[i].iter().copied())
                    .collect();
                let mut req = self
                    .client
                    .post(&url)
                    .headers(self.headers.clone())
                    .header(CONTENT_TYPE, "application/x-ndjson");
                let body = match self.compression {
                    Compression::None => body,
                    Compression::Gzip => {
                        req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
                        gzip(&body)?
                    }
                };
                let reply = send(req.body(body), &url, &self.redactor).await?;
                let status = reply.status;
                match classify_status(status) {
                    StatusClass::Accepted => {}
                    StatusClass::Retry => {
                        return Err(SinkError::transient(format!(
                            "{shown}: HTTP {status}; will retry: {}",
                            reply.excerpt()
                        ))
                        .with_retry_after(reply.retry_after))
                    }
                    StatusClass::TooLarge if pending.len() > 1 => {
                        tracing::info!(sink = %self.ctx.name, documents = pending.len(),
                            "HTTP 413 from Elasticsearch (over http.max_content_length): splitting the request; lower batch_max_bytes to avoid this");
                        let second = pending.split_off(pending.len() / 2);
                        work.push(second);
                        work.push(pending);
                        break;
                    }
                    StatusClass::TooLarge => {
                        rejects.add(
                            pending[0],
                            format!("HTTP 413 from {shown}: the document alone is larger than http.max_content_length"),
                        );
                        break;
                    }
                    StatusClass::Auth => {
                        return Err(self.fatal_auth(status, &shown, &reply.excerpt()))
                    }
                    StatusClass::Endpoint | StatusClass::Reject => {
                        return Err(SinkError::fatal(format!(
                            "{shown}: HTTP {status} for the whole bulk request (check `url` points at Elasticsearch and `data_stream` can be written): {}",
                            reply.excerpt()
                        )))
                    }
                }
                let parsed: BulkResponse = serde_json::from_slice(&reply.body).map_err(|e| {
                    SinkError::transient(format!(
                        "{shown}: unreadable _bulk response ({e}): {}",
                        reply.excerpt()
                    ))
                })?;
                if parsed.items.len() != pending.len() {
                    return Err(SinkError::transient(format!(
                        "{shown}: _bulk answered {} items for {} documents; not acknowledging",
                        parsed.items.len(),
                        pending.len()
                    )));
                }
                let mut retry = Vec::new();
                let mut last_retry_reason = String::new();
                let mut duplicates = 0usize;
                for (&i, item) in pending.iter().zip(&parsed.items) {
                    let Some((item_status, error)) = item_result(item) else {
                        return Err(SinkError::transient(format!(
                            "{shown}: _bulk item without a status: {}",
                            Value::Object(item.clone())
                        )));
                    };
                    match classify_item(item_status) {
                        ItemOutcome::Created => {}
                        ItemOutcome::Duplicate => duplicates += 1,
                        ItemOutcome::Retry => {
                            last_retry_reason = format!("{item_status} {error}");
                            retry.push(i);
                        }
                        ItemOutcome::Denied => {
                            let status = reqwest::StatusCode::from_u16(item_status)
                                .unwrap_or(reqwest::StatusCode::FORBIDDEN);
                            return Err(self.fatal_auth(status, &shown, &error));
                        }
                        ItemOutcome::Reject => rejects.add(
                            i,
                            format!("Elasticsearch refused the document into {}: status {item_status} {error}", self.data_stream),
                        ),
                    }
                }
                if duplicates > 0 {
                    tracing::debug!(sink = %self.ctx.name, duplicates, "documents already present (409): counted as delivered");
                }
                pending = retry;
                if pending.is_empty() {
                    break;
                }
                if attempt >= self.item_retries {
                    return Err(SinkError::transient(format!(
                        "{shown}: {} documents still refused after {} resends (last: {last_retry_reason}); the batch will be offered again (documents already created will come back as duplicates, which is fine)",
                        pending.len(),
                        self.item_retries
                    )));
                }
                tracing::info!(sink = %self.ctx.name, documents = pending.len(), reason = %last_retry_reason, "resending documents Elasticsearch could not take yet");
                tokio::time::sleep(self.item_backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let items: Vec<Vec<u8>> = batch.iter().map(|r| self.item(r)).collect();
        let sizes: Vec<usize> = items.iter().map(Vec::len).collect();
        let mut rejects = Rejects::default();
        for range in split_by_bytes(&sizes, self.max_bytes) {
            self.send_group(&items, range.collect(), &mut rejects)
                .await?;
        }
        rejects.write(&self.ctx, batch).await
    }

    /// `GET /` with the credentials: cluster name and version.
    async fn check(&self) -> Result<String, SinkError> {
        let url = join(&self.base, "/");
        let shown = display_url(&url);
        let reply = send(
            self.client.get(&url).headers(self.headers.clone()),
            &url,
            &self.redactor,
        )
        .await?;
        let status = reply.status;
        match classify_status(status) {
            StatusClass::Accepted => {
                let info: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                let cluster = info["cluster_name"].as_str().unwrap_or("?");
                let version = info["version"]["number"].as_str().unwrap_or("?");
                Ok(format!(
                    "Elasticsearch cluster {cluster:?} (version {version}) at {shown}: credentials accepted; writing to {}",
                    self.data_stream
                ))
            }
            // GET / needs the `monitor` cluster privilege, which a write-only key rightly lacks.
            _ if status == reqwest::StatusCode::FORBIDDEN => Ok(format!(
                "Elasticsearch at {shown}: credentials accepted (GET / refused with 403: no `monitor` privilege, not needed to write to {})",
                self.data_stream
            )),
            StatusClass::Auth => Err(self.fatal_auth(status, &shown, &reply.excerpt())),
            StatusClass::Retry => Err(SinkError::transient(format!(
                "{shown}: HTTP {status}: {}",
                reply.excerpt()
            ))),
            _ => Err(SinkError::fatal(format!(
                "{shown}: HTTP {status}: is `url` an Elasticsearch endpoint? {}",
                reply.excerpt()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_are_classified() {
        assert_eq!(classify_item(201), ItemOutcome::Created);
        assert_eq!(classify_item(200), ItemOutcome::Created);
        assert_eq!(classify_item(409), ItemOutcome::Duplicate);
        assert_eq!(classify_item(429), ItemOutcome::Retry);
        assert_eq!(classify_item(503), ItemOutcome::Retry);
        assert_eq!(classify_item(400), ItemOutcome::Reject);
        assert_eq!(classify_item(404), ItemOutcome::Denied);
        assert_eq!(classify_item(403), ItemOutcome::Denied);
    }

    #[test]
    fn item_errors_read_type_and_reason() {
        let item: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!(
            {"create": {"_index": "x", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [a]"}}}
        ))
        .unwrap();
        assert_eq!(
            item_result(&item),
            Some((
                400,
                "mapper_parsing_exception: failed to parse field [a]".into()
            ))
        );
    }

    #[test]
    fn data_stream_names() {
        validate_data_stream("logs-codacy.audit-default").unwrap();
        validate_data_stream("logs-codacy.audit-prod_eu").unwrap();
        for bad in [
            "codacy",
            "logs-codacy-audit-default",
            "logs--default",
            "Logs-a-b",
            "logs-a-b c",
            "logs-_a-b",
        ] {
            let e = validate_data_stream(bad).unwrap_err();
            assert!(e.contains("data_stream"), "{bad}: {e}");
        }
    }

    #[test]
    fn config_validation() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("es-api-key");
        std::fs::write(
            &key,
            "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\n",
        )
        .unwrap();
        let parse =
            |v: Value| -> ElasticsearchConfig { ElasticsearchConfig::from_json(v).unwrap() };
        let good = parse(serde_json::json!({"url": "https://es.example.com:9200",
            "api_key_file": key, "data_stream": "logs-codacy.audit-default"}));
        good.validate_keys(Format::Ecs).unwrap();
        good.validate_keys(Format::Json).unwrap();
        assert!(good.validate_keys(Format::Cef).unwrap_err().contains("ecs"));
        let e = parse(serde_json::json!({"url": "https://es:9200"}))
            .validate_keys(Format::Ecs)
            .unwrap_err();
        assert!(e.contains("api_key_file"), "{e}");
        let e = parse(
            serde_json::json!({"url": "https://es:9200", "api_key_file": key,
            "auth": {"user": "elastic", "password_file": key}}),
        )
        .validate_keys(Format::Ecs)
        .unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = parse(serde_json::json!({"url": "https://es:9200", "api_key_file": key, "data_stream": "codacy"}))
            .validate_keys(Format::Ecs)
            .unwrap_err();
        assert!(e.contains("<type>-<dataset>-<namespace>"), "{e}");
    }
}
