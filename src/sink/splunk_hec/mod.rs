//! `type = "splunk_hec"`: Splunk HTTP Event Collector, `POST {url}/services/collector/event`.
//!
//! Each record becomes one envelope, and a request body holds several envelopes back to back:
//! `{"time":<epoch s.ms>,"host","source","sourcetype","index"?,"fields":{"event_id","organization"},
//! "event":<record>}`. json and ecs records go in as JSON objects (index-time extraction works with
//! `_json`-style sourcetypes); CEF records go in as a string event, which HEC accepts too.
//!
//! The HEC `code` in the reply decides: 9 (busy) and 8 (internal error) retry; 1-4 (token) and
//! 7 (index not allowed), 10/11/14 (acknowledgement set-up), 16 are fatal with the remedy; data
//! errors (5, 6, 12, 13, 15) bisect the request until the bad record is alone, then dead-letter it.
//!
//! With `indexer_acknowledgement = true` every request carries `X-Splunk-Request-Channel` (one
//! random GUID per sink), the `ackId` of each reply is polled at `/services/collector/ack` and the
//! batch is acknowledged only once every id is `true`. Ids still unconfirmed after `ack_timeout`
//! make the batch fail transiently, so it is sent again. HEC has no de-duplication key: a resent
//! batch can be indexed twice; de-duplicate at search time on `fields.event_id`
//! (e.g. `| dedup event_id`).

use crate::config::{from_table, FieldError};
use crate::format::Format;
use crate::secret::Redactor;
use crate::sink::http::{
    build_client, classify_status, de_duration, display_url, gzip, join, load_secret, send,
    split_by_bytes, validate_url, Auth, Compression, Rejects, StatusClass, DEFAULT_BATCH_MAX_BYTES,
    DEFAULT_TIMEOUT,
};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Payload, Record, Sink, SinkContext, SinkError};
use crate::tls::TlsSettings;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default wait between indexer-acknowledgement polls (Vector's default).
pub const DEFAULT_ACK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default give-up time for indexer acknowledgements (Vector: 30 polls of 10 s).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);
const CHANNEL_HEADER: &str = "x-splunk-request-channel";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Base URL, e.g. `https://splunk.example.com:8088` (the collector paths are appended).
    pub url: String,
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
    #[serde(default)]
    pub batch_max_bytes: Option<usize>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// The `tls_*` keys, taken out of the table before the rest is parsed.
    #[serde(skip)]
    pub tls: TlsSettings,
    /// The common `hostname` key (left in this table for it), the default `host`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Accept `http://` to a host other than loopback (a warning is logged at every start).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

pub const TYPE: SinkType = SinkType {
    name: "splunk_hec",
    carries_host: true,
    parse: |table, _| Ok(Box::new(SplunkHecConfig::from_json(table.into())?)),
};

#[async_trait]
impl SinkConfig for SplunkHecConfig {
    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format).map_err(FieldError::whole)
    }

    /// The HEC token (none when it cannot be read: then nothing is sent).
    fn redactor(&self) -> Redactor {
        self.token(true)
            .map(|t| Auth::Splunk(t).redactor())
            .unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        crate::sink::http::cleartext_url(&self.url)
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SplunkHecSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SplunkHecConfig {
    /// Parses the sink's own keys (the `tls_*` keys through the shared TLS settings).
    pub fn from_json(mut table: serde_json::Value) -> Result<Self, FieldError> {
        let tls = table
            .as_object_mut()
            .map(crate::sink::http::http_tls)
            .transpose()?
            .unwrap_or_else(TlsSettings::verified);
        Ok(SplunkHecConfig {
            tls,
            ..from_table(table)?
        })
    }

    fn tls(&self) -> TlsSettings {
        self.tls.clone()
    }

    fn token(&self, read: bool) -> Result<crate::secret::Secret, String> {
        load_secret(
            self.token_file.as_ref(),
            self.token_env.as_ref(),
            "token_file",
            "token_env",
            read,
        )?
        .ok_or_else(|| {
            "no HEC token: set `token_file` (a file holding the token from Settings > Data inputs > HTTP Event Collector) or `token_env`".to_string()
        })
    }

    /// Every format works: json and ecs as JSON object events, cef as a string event.
    pub fn validate_keys(&self, _format: Format) -> Result<(), String> {
        let url = validate_url(&self.url, &self.tls(), self.allow_insecure_http)?;
        if url.path().contains("/services/collector") {
            return Err(format!(
                "`url`: give the HEC base URL (e.g. https://splunk.example.com:8088), without /services/collector; found {}",
                display_url(&self.url)
            ));
        }
        crate::sink::webhook::validate_common(self.batch_max_bytes, self.timeout)?;
        for (key, v) in [
            ("sourcetype", &self.sourcetype),
            ("index", &self.index),
            ("source", &self.source),
            ("host", &self.host),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(format!(
                    "`{key}` must not be empty (leave it out for the default)"
                ));
            }
        }
        if self.ack_poll_interval == Some(Duration::ZERO) {
            return Err("`ack_poll_interval` must be longer than 0s".into());
        }
        if let (Some(i), Some(t)) = (self.ack_poll_interval, self.ack_timeout) {
            if t < i {
                return Err("`ack_timeout` must be at least `ack_poll_interval`".into());
            }
        }
        if !self.indexer_acknowledgement
            && (self.ack_poll_interval.is_some() || self.ack_timeout.is_some())
        {
            return Err(
                "`ack_poll_interval` / `ack_timeout` only apply with indexer_acknowledgement = true"
                    .into(),
            );
        }
        self.token(false)?;
        Ok(())
    }
}

/// What a HEC status code asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecAction {
    /// 0: accepted (wait for the ack when acknowledgement is on).
    Accepted,
    /// 8 (internal error), 9 (busy): retry with backoff.
    Retry,
    /// 1-4: token disabled, missing, malformed or invalid.
    Token,
    /// 7: the index is not allowed for this token.
    Index,
    /// 10, 11, 14: channel / acknowledgement set-up.
    AckConfig,
    /// 5, 6, 12, 13, 15: the data was refused; a bug or a bad record.
    Data,
    /// 16 and unknown codes: needs a human.
    Other,
}

pub fn classify_code(code: i64) -> HecAction {
    match code {
        0 => HecAction::Accepted,
        8 | 9 => HecAction::Retry,
        1..=4 => HecAction::Token,
        7 => HecAction::Index,
        10 | 11 | 14 => HecAction::AckConfig,
        5 | 6 | 12 | 13 | 15 => HecAction::Data,
        _ => HecAction::Other,
    }
}

#[derive(Debug, Default, Deserialize)]
struct HecReply {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AckReply {
    #[serde(default)]
    acks: std::collections::HashMap<String, bool>,
}

/// Epoch milliseconds as HEC `time`: seconds with a 3-digit fraction.
pub fn hec_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

pub struct SplunkHecSink {
    ctx: SinkContext,
    client: reqwest::Client,
    base: reqwest::Url,
    /// Authorization (and the channel when acknowledgement is on).
    headers: HeaderMap,
    /// `"host":..,"source":..,"sourcetype":..[,"index":..]` ready to splice into envelopes.
    meta: String,
    ack: Option<(Duration, Duration)>,
    compression: Compression,
    max_bytes: usize,
    /// The HEC token, blanked from excerpts of replies.
    redactor: Redactor,
}

fn fatal_for(action: HecAction, code: i64, text: &str, url: &str) -> SinkError {
    let remedy = match action {
        HecAction::Token => match code {
            1 => "the HEC token is disabled: enable it in Splunk (Settings > Data inputs > HTTP Event Collector)",
            2 => "no token was sent: check token_file",
            3 => "the Authorization header was not accepted: check that token_file holds only the token (no \"Splunk \" prefix)",
            _ => "the HEC token is not valid on this Splunk: copy it again into token_file (and check the URL points at the right Splunk)",
        },
        HecAction::Index => "the token may not write to `index`: add the index to the token's allowed indexes in Splunk, or change `index`",
        HecAction::AckConfig => "indexer acknowledgement is misconfigured: enable it on the HEC token to use indexer_acknowledgement = true, or set indexer_acknowledgement = false",
        _ => "see Splunk's HEC status codes; the batch is kept and will be retried",
    };
    SinkError::fatal(format!("{url}: Splunk HEC code {code} ({text}): {remedy}"))
}

impl SplunkHecSink {
    pub fn new(config: SplunkHecConfig, ctx: SinkContext) -> Result<SplunkHecSink, SinkError> {
        let fail = |m: String| SinkError::fatal(format!("splunk_hec sink {:?}: {m}", ctx.name));
        let tls = config.tls();
        let base = validate_url(&config.url, &tls, config.allow_insecure_http).map_err(fail)?;
        let auth = Auth::Splunk(config.token(true).map_err(fail)?);
        let mut headers = HeaderMap::new();
        if let Some(h) = auth.header().map_err(fail)? {
            headers.insert(AUTHORIZATION, h);
        }
        let ack = if config.indexer_acknowledgement {
            let channel = crate::sink::http::random_uuid();
            let value = HeaderValue::from_str(&channel).map_err(|e| fail(e.to_string()))?;
            headers.insert(CHANNEL_HEADER, value);
            tracing::info!(sink = %ctx.name, channel, "Splunk HEC indexer acknowledgement on");
            Some((
                config
                    .ack_poll_interval
                    .unwrap_or(DEFAULT_ACK_POLL_INTERVAL),
                config.ack_timeout.unwrap_or(DEFAULT_ACK_TIMEOUT),
            ))
        } else {
            None
        };
        let host = config
            .host
            .clone()
            .or(config.hostname.clone())
            .unwrap_or_else(crate::format::local_hostname);
        let mut meta = serde_json::json!({
            "host": host,
            "source": config.source.as_deref().unwrap_or("codacy"),
            "sourcetype": config.sourcetype.as_deref().unwrap_or("codacy:audit"),
        });
        if let Some(index) = &config.index {
            meta["index"] = index.clone().into();
        }
        let meta = meta.to_string();
        // `{...}` -> `...` so it can be spliced after "time".
        let meta = meta[1..meta.len() - 1].to_string();
        let client = build_client(
            &base,
            &tls,
            config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            &ctx.name,
        )
        .map_err(fail)?;
        Ok(SplunkHecSink {
            ctx,
            client,
            base,
            headers,
            meta,
            ack,
            compression: config.compression,
            max_bytes: config.batch_max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
            redactor: auth.redactor(),
        })
    }

    /// The channel GUID (when acknowledgement is on).
    pub fn channel(&self) -> Option<&str> {
        self.headers
            .get(CHANNEL_HEADER)
            .and_then(|v| v.to_str().ok())
    }

    /// One HEC envelope for `r`.
    pub fn envelope(&self, r: &Record) -> Vec<u8> {
        let mut out = Vec::with_capacity(r.payload.len() + self.meta.len() + 200);
        out.extend_from_slice(b"{\"time\":");
        out.extend_from_slice(hec_time(r.timestamp_ms).as_bytes());
        out.push(b',');
        out.extend_from_slice(self.meta.as_bytes());
        out.extend_from_slice(b",\"fields\":");
        let fields = serde_json::json!({
            "event_id": r.event_id.as_str(),
            "organization": r.org.key(),
        });
        let _ = serde_json::to_writer(&mut out, &fields);
        out.extend_from_slice(b",\"event\":");
        match self.ctx.payload {
            Payload::JsonObject => out.extend_from_slice(&r.payload),
            Payload::Text => {
                let _ = serde_json::to_writer(&mut out, &String::from_utf8_lossy(&r.payload));
            }
        }
        out.push(b'}');
        out
    }

    fn post(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(reqwest::RequestBuilder, String), SinkError> {
        let url = join(&self.base, path);
        let mut req = self
            .client
            .post(&url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json");
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
                gzip(&body)?
            }
        };
        Ok((req.body(body), url))
    }

    /// Sends `envelopes[range]` (bisecting on data errors and 413); returns the ack ids.
    async fn send_range(
        &self,
        envelopes: &[Vec<u8>],
        range: std::ops::Range<usize>,
        rejects: &mut Rejects,
        ack_ids: &mut Vec<u64>,
    ) -> Result<(), SinkError> {
        let mut work = vec![range];
        while let Some(r) = work.pop() {
            let body: Vec<u8> = envelopes[r.clone()].concat();
            let (req, url) = self.post("/services/collector/event", body)?;
            let shown = display_url(&url);
            let reply = send(req, &url, &self.redactor).await?;
            let status = reply.status;
            let parsed: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
            let text = parsed.text.clone().unwrap_or_else(|| reply.excerpt());
            let action = match parsed.code {
                Some(code) => classify_code(code),
                None => match classify_status(status) {
                    StatusClass::Accepted => HecAction::Accepted,
                    StatusClass::Retry => HecAction::Retry,
                    StatusClass::Auth => HecAction::Token,
                    StatusClass::Reject => HecAction::Data,
                    StatusClass::TooLarge => HecAction::Data,
                    StatusClass::Endpoint => {
                        return Err(SinkError::fatal(format!(
                            "{shown} answered HTTP {status}: is `url` the HEC base URL (port 8088 by default) with HEC enabled? {}",
                            reply.excerpt()
                        )))
                    }
                },
            };
            let code = parsed.code.unwrap_or(-1);
            match action {
                HecAction::Accepted if status.is_success() => {
                    if self.ack.is_some() {
                        match parsed.ack_id {
                            Some(id) => ack_ids.push(id),
                            None => return Err(SinkError::fatal(format!(
                                "{shown}: indexer_acknowledgement = true but Splunk returned no ackId: enable indexer acknowledgement on the HEC token, or set indexer_acknowledgement = false"
                            ))),
                        }
                    }
                }
                HecAction::Accepted | HecAction::Retry => {
                    return Err(SinkError::transient(format!(
                        "{shown}: HTTP {status}, HEC code {code} ({text}); will retry"
                    ))
                    .with_retry_after(reply.retry_after))
                }
                HecAction::Data if r.len() > 1 => {
                    // Find the bad record: resend each half (HEC may have indexed events before
                    // the bad one, so this can duplicate; dedupe on fields.event_id).
                    tracing::info!(sink = %self.ctx.name, records = r.len(), code, text,
                        "Splunk refused the data; bisecting the request to isolate the bad record");
                    let mid = r.start + r.len() / 2;
                    work.push(mid..r.end);
                    work.push(r.start..mid);
                }
                HecAction::Data => {
                    rejects.add(
                        r.start,
                        format!("Splunk HEC refused the event: HTTP {status}, code {code} ({text})"),
                    );
                }
                HecAction::Token if parsed.code.is_none() => {
                    return Err(SinkError::fatal(format!(
                        "{shown}: HTTP {status}: the HEC token was refused; check token_file: {text}"
                    )))
                }
                other => return Err(fatal_for(other, code, &text, &shown)),
            }
        }
        Ok(())
    }

    /// Polls `/services/collector/ack` until every id is true; a transient error when some are
    /// still pending at the deadline.
    async fn wait_for_acks(&self, ids: Vec<u64>) -> Result<(), SinkError> {
        let Some((interval, timeout)) = self.ack else {
            return Ok(());
        };
        let total = ids.len();
        let mut pending: BTreeSet<u64> = ids.into_iter().collect();
        let deadline = tokio::time::Instant::now() + timeout;
        // Indexing usually takes a second or two: start short, back off to the interval.
        let mut wait = interval.min(Duration::from_secs(1));
        let mut last_problem = String::from("not yet indexed");
        while !pending.is_empty() {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(SinkError::transient(format!(
                    "Splunk did not confirm indexing of {} of {total} requests within ack_timeout ({}; last: {last_problem}); the batch will be sent again (HEC cannot de-duplicate: dedupe on fields.event_id)",
                    pending.len(),
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(wait.min(deadline - now)).await;
            wait = (wait * 2).min(interval);
            let body = serde_json::to_vec(&serde_json::json!({ "acks": pending }))
                .map_err(|e| SinkError::transient(e.to_string()))?;
            let (req, url) = self.post("/services/collector/ack", body)?;
            let reply = match send(req, &url, &self.redactor).await {
                Ok(r) => r,
                Err(e) => {
                    last_problem = e.message;
                    continue;
                }
            };
            if reply.status.is_success() {
                match serde_json::from_slice::<AckReply>(&reply.body) {
                    Ok(acks) => {
                        for (id, done) in acks.acks {
                            if let (true, Ok(id)) = (done, id.parse::<u64>()) {
                                pending.remove(&id);
                            }
                        }
                    }
                    Err(_) => last_problem = format!("unreadable ack reply: {}", reply.excerpt()),
                }
                continue;
            }
            let parsed: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
            let text = parsed.text.clone().unwrap_or_else(|| reply.excerpt());
            match parsed.code.map(classify_code) {
                Some(a @ (HecAction::Token | HecAction::AckConfig | HecAction::Other)) => {
                    return Err(fatal_for(
                        a,
                        parsed.code.unwrap_or(-1),
                        &text,
                        &display_url(&url),
                    ))
                }
                _ => last_problem = format!("HTTP {}: {text}", reply.status),
            }
        }
        tracing::debug!(sink = %self.ctx.name, requests = total, "Splunk confirmed indexing");
        Ok(())
    }
}

#[async_trait]
impl Sink for SplunkHecSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let envelopes: Vec<Vec<u8>> = batch.iter().map(|r| self.envelope(r)).collect();
        let sizes: Vec<usize> = envelopes.iter().map(Vec::len).collect();
        let mut rejects = Rejects::default();
        let mut ack_ids = Vec::new();
        for range in split_by_bytes(&sizes, self.max_bytes) {
            self.send_range(&envelopes, range, &mut rejects, &mut ack_ids)
                .await?;
        }
        self.wait_for_acks(ack_ids).await?;
        rejects.write(&self.ctx, batch).await
    }

    /// Health endpoint, then an empty POST: HEC answers code 5 ("No data") to a valid token
    /// and 1-4 to a bad one, so the token is checked without indexing anything.
    async fn check(&self) -> Result<String, SinkError> {
        let health = join(&self.base, "/services/collector/health");
        let reply = send(self.client.get(&health), &health, &self.redactor).await?;
        let parsed: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
        if reply.status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(SinkError::transient(format!(
                "{}: HEC unhealthy (code {}): {}",
                display_url(&health),
                parsed.code.unwrap_or(-1),
                parsed.text.unwrap_or_else(|| reply.excerpt())
            )));
        }
        let (req, url) = self.post("/services/collector/event", Vec::new())?;
        let reply = send(req, &url, &self.redactor).await?;
        let parsed: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
        let text = parsed.text.clone().unwrap_or_else(|| reply.excerpt());
        match parsed.code {
            Some(5) | Some(0) => Ok(format!(
                "Splunk HEC at {} healthy; token accepted{}",
                display_url(self.base.as_str()),
                if self.ack.is_some() { " (indexer acknowledgement on)" } else { "" }
            )),
            Some(code) => match classify_code(code) {
                HecAction::Retry => Err(SinkError::transient(format!(
                    "{}: HEC code {code} ({text})",
                    display_url(&url)
                ))),
                a => Err(fatal_for(a, code, &text, &display_url(&url))),
            },
            None => Err(SinkError::fatal(format!(
                "{}: HTTP {} without a HEC reply: is `url` the HEC base URL (port 8088 by default)? {text}",
                display_url(&url),
                reply.status
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hec_codes_are_classified() {
        assert_eq!(classify_code(0), HecAction::Accepted);
        assert_eq!(classify_code(9), HecAction::Retry);
        assert_eq!(classify_code(8), HecAction::Retry);
        for c in 1..=4 {
            assert_eq!(classify_code(c), HecAction::Token);
        }
        assert_eq!(classify_code(7), HecAction::Index);
        for c in [10, 11, 14] {
            assert_eq!(classify_code(c), HecAction::AckConfig);
        }
        for c in [5, 6, 12, 13, 15] {
            assert_eq!(classify_code(c), HecAction::Data);
        }
        assert_eq!(classify_code(16), HecAction::Other);
    }

    #[test]
    fn time_is_seconds_with_millis() {
        assert_eq!(hec_time(1_719_827_130_656), "1719827130.656");
        assert_eq!(hec_time(5), "0.005");
        assert_eq!(hec_time(-1), "-1.999");
    }

    #[test]
    fn token_messages_carry_the_remedy() {
        let e = fatal_for(HecAction::Token, 1, "Token disabled", "https://s:8088/x");
        assert!(e.message.contains("disabled") && e.message.contains("enable it"));
        let e = fatal_for(HecAction::Index, 7, "Incorrect index", "u");
        assert!(e.message.contains("allowed indexes"));
    }

    #[test]
    fn config_validation() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("hec-token");
        std::fs::write(&tok, "11111111-2222-3333-4444-555555555555\n").unwrap();
        let parse =
            |v: serde_json::Value| -> SplunkHecConfig { SplunkHecConfig::from_json(v).unwrap() };
        let good = parse(serde_json::json!({"url": "https://splunk.example.com:8088",
            "token_file": tok, "sourcetype": "codacy:audit", "index": "security",
            "indexer_acknowledgement": true, "ack_poll_interval": "1s", "ack_timeout": "1m"}));
        good.validate_keys(Format::Json).unwrap();
        good.validate_keys(Format::Cef).unwrap();
        let e = parse(serde_json::json!({"url": "https://s:8088"}))
            .validate_keys(Format::Json)
            .unwrap_err();
        assert!(e.contains("token_file"), "{e}");
        let e = parse(serde_json::json!({"url": "https://s:8088/services/collector/event", "token_file": tok}))
            .validate_keys(Format::Json)
            .unwrap_err();
        assert!(e.contains("base URL"), "{e}");
        let e = parse(
            serde_json::json!({"url": "https://s:8088", "token_file": tok, "ack_timeout": "1m"}),
        )
        .validate_keys(Format::Json)
        .unwrap_err();
        assert!(e.contains("indexer_acknowledgement"), "{e}");
        // The token file is read when the sink starts; the error names the file, not the token.
        let missing = parse(
            serde_json::json!({"url": "https://s:8088", "token_file": dir.path().join("missing")}),
        );
        missing.validate_keys(Format::Json).unwrap();
        let ctx = SinkContext::for_test(dir.path(), "splunk");
        let e = SplunkHecSink::new(missing, ctx).err().unwrap();
        assert!(
            e.message.contains("token_file") && e.message.contains("missing"),
            "{}",
            e.message
        );
    }
}
