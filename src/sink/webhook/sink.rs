//! The webhook sink: its bodies and what its answers mean, over the shared HTTP transport.

use super::config::{Encoding, HttpSinkConfig};
use crate::format::framing;
use crate::sink::http::transport::startup_error;
use crate::sink::http::{
    classify_status, Batch, BodyFraming, HttpConfig, HttpTransport, Outcome, Reply, StatusClass,
};
use crate::sink::{Payload, Record, Sink, SinkContext, SinkError};
use async_trait::async_trait;
use std::borrow::Cow;

pub struct HttpSink {
    ctx: SinkContext,
    transport: HttpTransport,
    url: String,
    encoding: Encoding,
}

impl HttpSink {
    /// Reads the secrets and builds the client. Errors are start-up errors naming the key.
    pub fn new(config: HttpSinkConfig, ctx: SinkContext) -> Result<HttpSink, SinkError> {
        let fail = |e| startup_error(super::TYPE.name, &ctx.name, e);
        let headers = config.header_map().map_err(fail)?;
        let auth = config.credentials().map_err(fail)?;
        let (transport, url) =
            HttpTransport::open(super::TYPE.name, &ctx, &config.endpoint, &auth, headers)?;
        Ok(HttpSink {
            transport,
            url: url.to_string(),
            encoding: config.encoding,
            ctx,
        })
    }

    /// One part per record and how they make a body, with its content type.
    fn parts<'r>(&self, batch: &'r [Record]) -> (Vec<Cow<'r, [u8]>>, BodyFraming, &'static str) {
        match self.encoding {
            Encoding::Ndjson => {
                let lines = batch.iter().map(|r| {
                    let mut line = Vec::with_capacity(r.payload.len() + 1);
                    framing::line(&r.payload, &mut line);
                    Cow::Owned(line)
                });
                let content_type = match self.ctx.payload {
                    Payload::JsonObject => "application/x-ndjson",
                    Payload::Text => "text/plain; charset=utf-8",
                };
                (lines.collect(), BodyFraming::Concat, content_type)
            }
            Encoding::JsonArray => {
                let records = batch.iter().map(|r| Cow::Borrowed(&r.payload[..]));
                (
                    records.collect(),
                    BodyFraming::JsonArray,
                    "application/json",
                )
            }
        }
    }
}

/// What a webhook's answer means for the records of its request.
fn classify(reply: &Reply) -> Outcome {
    let (shown, status) = (&reply.url, reply.status);
    let rejected = || {
        format!(
            "{shown} rejected the record with HTTP {status}: {}",
            reply.excerpt()
        )
    };
    match classify_status(status) {
        StatusClass::Accepted => Outcome::Accepted,
        StatusClass::Retry => reply.retry_later(format!(
            "{shown} answered HTTP {status}; will retry: {}",
            reply.excerpt()
        )),
        StatusClass::TooLarge => Outcome::Split {
            note: "HTTP 413 (payload too large): splitting the request in halves; lower batch_max_bytes to avoid this",
            reason: rejected(),
        },
        StatusClass::Reject => Outcome::RejectAll(rejected()),
        StatusClass::Auth => Outcome::Fail(SinkError::fatal(format!(
            "{shown} refused the request with HTTP {status}: check `auth` (token or password file) and that it may post here; nothing was dropped, the batch will be retried: {}",
            reply.excerpt()
        ))),
        StatusClass::Endpoint => Outcome::Fail(SinkError::fatal(format!(
            "{shown} answered HTTP {status}: the URL looks wrong (no such endpoint, a redirect, or POST not allowed); fix `url`: {}",
            reply.excerpt()
        ))),
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        let (parts, framing, content_type) = self.parts(batch);
        let request = Batch {
            framing,
            ..Batch::concat(&self.url, content_type, &parts)
        };
        let rejects = self.transport.deliver(&request, &mut classify).await?;
        rejects.write(&self.ctx, batch).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let reply = self
            .transport
            .call(reqwest::Method::OPTIONS, &self.url, true)
            .await?;
        let (shown, status) = (&reply.url, reply.status);
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
