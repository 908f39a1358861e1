//! The HEC sink: envelopes out, codes judged, acknowledgements awaited.

use super::ack::{random_uuid, CHANNEL_HEADER};
use super::codes::{classify_code, classify_event_reply, fatal_for, HecAction, HecReply};
use super::config::SplunkHecConfig;
use crate::format::envelope::{hec_event, HecEvent, HecMeta};
use crate::sink::http::transport::startup_error;
use crate::sink::http::{join, Batch, HttpConfig, HttpTransport};
use crate::sink::{Record, Sink, SinkContext, SinkError};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use std::time::Duration;

pub(super) const EVENT_PATH: &str = "/services/collector/event";

pub struct SplunkHecSink {
    pub(super) ctx: SinkContext,
    pub(super) transport: HttpTransport,
    pub(super) base: reqwest::Url,
    /// `host`, `source`, `sourcetype` and `index` of every event.
    meta: HecMeta,
    /// `(poll interval, give-up time)` when indexer acknowledgement is on.
    pub(super) ack: Option<(Duration, Duration)>,
}

impl SplunkHecSink {
    pub fn new(config: SplunkHecConfig, ctx: SinkContext) -> Result<SplunkHecSink, SinkError> {
        let fail = |e| startup_error(super::TYPE.name, &ctx.name, e);
        let token = config.credentials().map_err(fail)?;
        let mut headers = HeaderMap::new();
        let ack = config.ack();
        if ack.is_some() {
            let channel = random_uuid();
            // Hex digits and dashes: always a valid header value.
            let value = HeaderValue::from_str(&channel)
                .map_err(|e| startup_error(super::TYPE.name, &ctx.name, e))?;
            headers.insert(CHANNEL_HEADER, value);
            tracing::info!(sink = %ctx.name, channel, "Splunk HEC indexer acknowledgement on");
        }
        let (transport, base) =
            HttpTransport::open(super::TYPE.name, &ctx, &config.endpoint, &token, headers)?;
        let host = config
            .host
            .clone()
            .or(config.hostname.clone())
            .unwrap_or_else(crate::format::local_hostname);
        let meta = HecMeta::new(
            &host,
            config.source.as_deref().unwrap_or("codacy"),
            config.sourcetype.as_deref().unwrap_or("codacy:audit"),
            config.index.as_deref(),
        );
        Ok(SplunkHecSink {
            ctx,
            transport,
            base,
            meta,
            ack,
        })
    }

    /// The channel GUID (when acknowledgement is on).
    pub fn channel(&self) -> Option<&str> {
        self.transport.header(CHANNEL_HEADER)
    }

    /// One HEC envelope for `r`.
    pub fn envelope(&self, r: &Record) -> Vec<u8> {
        let mut out = Vec::with_capacity(r.payload.len() + 200);
        let event = HecEvent {
            time_ms: r.timestamp_ms,
            event_id: r.event_id.as_str(),
            organization: &r.org.key(),
            record: &r.payload,
            payload: self.ctx.payload,
        };
        hec_event(&self.meta, &event, &mut out);
        out
    }
}

#[async_trait]
impl Sink for SplunkHecSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        let envelopes: Vec<Vec<u8>> = batch.iter().map(|r| self.envelope(r)).collect();
        let url = join(&self.base, EVENT_PATH);
        let mut ack_ids = Vec::new();
        let acknowledged = self.ack.is_some();
        let mut classify =
            |reply: &_| classify_event_reply(reply, acknowledged.then_some(&mut ack_ids));
        let request = Batch::concat(&url, "application/json", &envelopes);
        let rejects = self.transport.deliver(&request, &mut classify).await?;
        self.wait_for_acks(ack_ids).await?;
        rejects.write(&self.ctx, batch).await
    }

    /// Health endpoint, then an empty POST: HEC answers code 5 ("No data") to a valid token
    /// and 1-4 to a bad one, so the token is checked without indexing anything.
    async fn check(&self) -> Result<String, SinkError> {
        let health = join(&self.base, "/services/collector/health");
        let reply = self.transport.call(Method::GET, &health, false).await?;
        let parsed = HecReply::of(&reply);
        if reply.status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(SinkError::transient(format!(
                "{}: HEC unhealthy (code {}): {}",
                reply.url,
                parsed.code.unwrap_or(-1),
                parsed.text_or_excerpt(&reply)
            )));
        }
        let url = join(&self.base, EVENT_PATH);
        let reply = self
            .transport
            .post(&url, "application/json", Vec::new())
            .await?;
        let parsed = HecReply::of(&reply);
        let text = parsed.text_or_excerpt(&reply);
        match parsed.code {
            Some(5) | Some(0) => Ok(format!(
                "Splunk HEC at {} healthy; token accepted{}",
                crate::sink::http::display_url(self.base.as_str()),
                if self.ack.is_some() { " (indexer acknowledgement on)" } else { "" }
            )),
            Some(code) => match classify_code(code) {
                HecAction::Retry => Err(SinkError::transient(format!(
                    "{}: HEC code {code} ({text})",
                    reply.url
                ))),
                a => Err(fatal_for(a, code, &text, &reply.url)),
            },
            None => Err(SinkError::fatal(format!(
                "{}: HTTP {} without a HEC reply: is `url` the HEC base URL (port 8088 by default)? {text}",
                reply.url, reply.status
            ))),
        }
    }
}
