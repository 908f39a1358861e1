//! The Elasticsearch sink: bulk `create` pairs out, the reply judged item by item.

use super::bulk::{classify_bulk_reply, fatal_auth};
use super::config::{validate_data_stream, ElasticsearchConfig};
use crate::clock::Backoff;
use crate::format::envelope::bulk_create;
use crate::sink::http::transport::startup_error;
use crate::sink::http::{
    classify_status, join, Batch, HttpConfig, HttpTransport, Resend, StatusClass,
};
use crate::sink::{Record, Sink, SinkContext, SinkError};
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Resends of 429/5xx items within one delivery before giving the batch back.
pub const DEFAULT_ITEM_RETRIES: u32 = 3;
pub const DEFAULT_ITEM_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

pub struct ElasticsearchSink {
    ctx: SinkContext,
    transport: HttpTransport,
    base: reqwest::Url,
    data_stream: String,
    resend: Resend,
}

impl ElasticsearchSink {
    pub fn new(config: ElasticsearchConfig, ctx: SinkContext) -> Result<Self, SinkError> {
        let fail = |e| startup_error(super::TYPE.name, &ctx.name, e);
        validate_data_stream(config.data_stream()).map_err(fail)?;
        let auth = config.credentials().map_err(fail)?;
        let (transport, base) = HttpTransport::open(
            super::TYPE.name,
            &ctx,
            &config.endpoint,
            &auth,
            HeaderMap::new(),
        )?;
        Ok(ElasticsearchSink {
            transport,
            base,
            data_stream: config.data_stream().to_string(),
            resend: Resend {
                times: DEFAULT_ITEM_RETRIES,
                backoff: DEFAULT_ITEM_BACKOFF,
                after_giving_up:
                    " (documents already created will come back as duplicates, which is fine)",
            },
            ctx,
        })
    }

    /// How often and how patiently 429/5xx items are resent within one delivery.
    pub fn with_item_retry(mut self, retries: u32, backoff: Backoff) -> Self {
        self.resend.times = retries;
        self.resend.backoff = backoff;
        self
    }

    /// The action line and document of `r`, each ending in `\n`.
    fn item(&self, r: &Record) -> Vec<u8> {
        let mut out = Vec::with_capacity(r.payload.len() + 160);
        bulk_create(&self.data_stream, r.event_id.as_str(), &r.payload, &mut out);
        out
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        let items: Vec<Vec<u8>> = batch.iter().map(|r| self.item(r)).collect();
        let url = join(&self.base, "/_bulk");
        let mut classify =
            |reply: &_| classify_bulk_reply(reply, &self.data_stream, &self.ctx.name);
        let request = Batch::concat(&url, "application/x-ndjson", &items).resending(self.resend);
        let rejects = self.transport.deliver(&request, &mut classify).await?;
        rejects.write(&self.ctx, batch).await
    }

    /// `GET /` with the credentials: cluster name and version.
    async fn check(&self) -> Result<String, SinkError> {
        let root = join(&self.base, "/");
        let reply = self.transport.call(Method::GET, &root, true).await?;
        let (shown, status) = (&reply.url, reply.status);
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
            StatusClass::Auth => Err(fatal_auth(
                &self.data_stream,
                status,
                shown,
                &reply.excerpt(),
            )),
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
