//! One HTTP transport for the HTTP sinks: the client, the headers every request carries, gzip,
//! reading replies, and the delivery loop that splits a batch into requests, halves a request
//! the destination finds too large (or that holds a bad record), resends the records it asks
//! to retry, and collects the records it refuses for good. What a reply means is the sink's
//! business: it passes a classifier that turns each reply into an [`Outcome`].

use super::auth::Auth;
use super::endpoint::{display_url, Compression, Endpoint};
use crate::clock::Backoff;
use crate::format::framing;
use crate::httputil::{body_excerpt, parse_retry_after, read_body};
use crate::secret::{Redactor, SecretSource};
use crate::sink::{Record, SinkContext, SinkError};
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Largest reply read from a destination: far above any answer to one request (a bulk reply to
/// 100,000 documents is about 25 MB). A server sending more is misbehaving, and reading it
/// whole would take the agent's memory with it.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// What a response status means for the records of that request, in plain HTTP terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: accepted.
    Accepted,
    /// 408, 429, 5xx except 501: retry later.
    Retry,
    /// 413: split the request.
    TooLarge,
    /// 401, 403, 407: credentials or permissions; needs a human.
    Auth,
    /// 3xx, 404, 405, 501: the URL or method is wrong; needs a human (dead-lettering every
    /// record because the URL has a typo would bury the evidence).
    Endpoint,
    /// Any other 4xx: these records are rejected for good.
    Reject,
}

pub fn classify_status(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::Accepted,
        408 | 429 => StatusClass::Retry,
        413 => StatusClass::TooLarge,
        401 | 403 | 407 => StatusClass::Auth,
        404 | 405 | 501 => StatusClass::Endpoint,
        500..=599 => StatusClass::Retry,
        400..=499 => StatusClass::Reject,
        // 1xx/3xx (redirects are not followed).
        _ => StatusClass::Endpoint,
    }
}

/// What one reply means for the records of its request: the sink's classifier says it, the
/// transport acts on it.
#[derive(Debug)]
pub enum Outcome {
    /// Every record of the request is taken.
    Accepted,
    /// One verdict per record of the request, in request order.
    PerRecord(Vec<RecordOutcome>),
    /// Send the request again in halves (too large, or a bad record somewhere in it); a record
    /// alone is refused for good for `reason`. `note` is logged when splitting.
    Split { note: &'static str, reason: String },
    /// Every record of the request is refused for good.
    RejectAll(String),
    /// Stop the delivery: a transient error offers the batch again, a fatal one needs a human.
    Fail(SinkError),
}

/// The verdict on one record of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Taken,
    /// Refused for good: dead-lettered with this reason once the batch is otherwise done.
    Rejected(String),
    /// Not taken yet (busy): resend it, for this reason.
    Retry(String),
}

/// How often records a reply asks to retry are resent within one delivery.
#[derive(Debug, Clone, Copy)]
pub struct Resend {
    pub times: u32,
    pub backoff: Backoff,
    /// Said when giving up: what a later resend of the whole batch does to the records already
    /// taken.
    pub after_giving_up: &'static str,
}

/// How the parts of a request are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Back to back: each part carries its own framing (a line, an envelope, an action pair).
    Concat,
    /// `[p1,p2,...]`.
    JsonArray,
}

/// A batch as the transport sends it: one encoded part per record, in batch order.
pub struct Batch<'a, P> {
    pub url: &'a str,
    pub content_type: &'a str,
    pub parts: &'a [P],
    pub framing: BodyFraming,
    pub resend: Option<Resend>,
}

impl<'a, P: AsRef<[u8]> + Sync> Batch<'a, P> {
    /// Parts sent back to back, nothing resent within a delivery.
    pub fn concat(url: &'a str, content_type: &'a str, parts: &'a [P]) -> Self {
        Batch {
            url,
            content_type,
            parts,
            framing: BodyFraming::Concat,
            resend: None,
        }
    }

    /// Resends what replies ask to retry, as `resend` says.
    pub fn resending(self, resend: Resend) -> Self {
        Batch {
            resend: Some(resend),
            ..self
        }
    }

    /// The body of a request holding the parts `group`.
    fn body(&self, group: &[usize]) -> Vec<u8> {
        let parts = group.iter().map(|&i| self.parts[i].as_ref());
        let mut out = Vec::with_capacity(group.iter().map(|&i| self.size(i)).sum::<usize>() + 2);
        match self.framing {
            BodyFraming::Concat => parts.for_each(|p| out.extend_from_slice(p)),
            BodyFraming::JsonArray => framing::json_array(parts, &mut out),
        }
        out
    }

    /// Bytes part `i` adds to a body.
    fn size(&self, i: usize) -> usize {
        let separator = usize::from(self.framing == BodyFraming::JsonArray);
        self.parts[i].as_ref().len() + separator
    }
}

/// The HTTP client of one sink and what every request it sends carries.
pub struct HttpTransport {
    client: reqwest::Client,
    /// The sink's own headers plus `Authorization`.
    headers: HeaderMap,
    compression: Compression,
    max_bytes: usize,
    /// The credentials in `headers`, blanked from excerpts of replies.
    redactor: Redactor,
    /// The sink's name, for log lines.
    sink: String,
}

impl HttpTransport {
    /// Checks the endpoint, reads the credentials and builds the client (shared TLS settings,
    /// the timeout, no redirects so credentials never follow a `Location`). Errors are start-up
    /// errors naming the sink and the key. Returns the parsed URL too.
    pub fn open(
        sink_type: &str,
        ctx: &SinkContext,
        endpoint: &Endpoint,
        auth: &Auth<SecretSource>,
        mut headers: HeaderMap,
    ) -> Result<(HttpTransport, reqwest::Url), SinkError> {
        let fail = |e: String| startup_error(sink_type, &ctx.name, e);
        let url = endpoint.validate().map_err(|e| fail(e.to_string()))?;
        let auth = auth.read().map_err(|e| fail(e.to_string()))?;
        if let Some(h) = auth.header().map_err(fail)? {
            headers.insert(AUTHORIZATION, h);
        }
        let client = build_client(&url, endpoint, &ctx.name).map_err(fail)?;
        let transport = HttpTransport {
            client,
            headers,
            compression: endpoint.compression,
            max_bytes: endpoint.max_bytes(),
            redactor: auth.redactor(),
            sink: ctx.name.clone(),
        };
        Ok((transport, url))
    }

    /// A header every request carries.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// POSTs `body` (gzipped when configured) and reads the reply.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply, SinkError> {
        let mut req = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type);
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => {
                req = req.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip(&body)?
            }
        };
        send(req.body(body), url, &self.redactor).await
    }

    /// A request without a body (`check`), with the credentials or without them.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        with_credentials: bool,
    ) -> Result<Reply, SinkError> {
        let mut req = self.client.request(method, url);
        if with_credentials {
            req = req.headers(self.headers.clone());
        }
        send(req, url, &self.redactor).await
    }

    /// Sends `batch` in requests of at most `batch_max_bytes`, each reply judged by `classify`. The records refused for
    /// good are returned, to be dead-lettered once the whole batch is otherwise accepted: a
    /// batch that ends in a transient error is offered again, and its rejects would otherwise
    /// be dead-lettered twice.
    pub async fn deliver<P: AsRef<[u8]> + Sync>(
        &self,
        batch: &Batch<'_, P>,
        classify: &mut (dyn FnMut(&Reply) -> Outcome + Send),
    ) -> Result<Rejects, SinkError> {
        let sizes: Vec<usize> = (0..batch.parts.len()).map(|i| batch.size(i)).collect();
        let mut rejects = Rejects::default();
        for range in split_by_bytes(&sizes, self.max_bytes) {
            // Depth-first over halves, first half first, so records go out in order.
            let mut work = vec![range.collect::<Vec<usize>>()];
            while let Some(group) = work.pop() {
                self.send_group(batch, group, classify, &mut work, &mut rejects)
                    .await?;
            }
        }
        Ok(rejects)
    }

    /// Sends one request (and the resends its reply asks for); halves go onto `work`.
    async fn send_group<P: AsRef<[u8]> + Sync>(
        &self,
        batch: &Batch<'_, P>,
        mut group: Vec<usize>,
        classify: &mut (dyn FnMut(&Reply) -> Outcome + Send),
        work: &mut Vec<Vec<usize>>,
        rejects: &mut Rejects,
    ) -> Result<(), SinkError> {
        let mut attempt = 0u32;
        loop {
            let reply = self
                .post(batch.url, batch.content_type, batch.body(&group))
                .await?;
            let retry = match classify(&reply) {
                Outcome::Accepted => return Ok(()),
                Outcome::Fail(e) => return Err(e),
                Outcome::Split { note, reason } if group.len() > 1 => {
                    tracing::info!(sink = %self.sink, records = group.len(), %reason, "{note}");
                    let second = group.split_off(group.len() / 2);
                    work.push(second);
                    work.push(group);
                    return Ok(());
                }
                Outcome::RejectAll(reason) | Outcome::Split { reason, .. } => {
                    group.iter().for_each(|&i| rejects.add(i, reason.clone()));
                    return Ok(());
                }
                Outcome::PerRecord(verdicts) => sort_verdicts(&reply, &group, verdicts, rejects)?,
            };
            let Some((last_reason, retry)) = retry else {
                return Ok(());
            };
            let resend = match batch.resend {
                Some(resend) if attempt < resend.times => resend,
                _ => return Err(give_up(batch.resend, &reply, retry.len(), &last_reason)),
            };
            tracing::info!(sink = %self.sink, records = retry.len(), reason = %last_reason,
                "resending records the destination could not take yet");
            tokio::time::sleep(resend.backoff.delay(attempt)).await;
            attempt += 1;
            group = retry;
        }
    }
}

/// The error when records a reply asked to retry are still refused after every resend.
fn give_up(resend: Option<Resend>, reply: &Reply, records: usize, last_reason: &str) -> SinkError {
    let (times, after) = resend.map_or((0, ""), |r| (r.times, r.after_giving_up));
    SinkError::transient(format!(
        "{}: {records} records still refused after {times} resends (last: {last_reason}); the batch will be offered again{after}",
        reply.url
    ))
}

/// Files the per-record verdicts of a reply: rejects into `rejects`; the records to resend (and
/// the last reason) are returned. A reply that judges another number of records than were sent
/// cannot be matched to them: nothing is acknowledged.
fn sort_verdicts(
    reply: &Reply,
    group: &[usize],
    verdicts: Vec<RecordOutcome>,
    rejects: &mut Rejects,
) -> Result<Option<(String, Vec<usize>)>, SinkError> {
    if verdicts.len() != group.len() {
        return Err(SinkError::transient(format!(
            "{}: the reply judged {} records for {} sent; not acknowledging",
            reply.url,
            verdicts.len(),
            group.len()
        )));
    }
    let mut retry = Vec::new();
    let mut last_reason = String::new();
    for (&i, verdict) in group.iter().zip(verdicts) {
        match verdict {
            RecordOutcome::Taken => {}
            RecordOutcome::Rejected(reason) => rejects.add(i, reason),
            RecordOutcome::Retry(reason) => {
                last_reason = reason;
                retry.push(i);
            }
        }
    }
    Ok((!retry.is_empty()).then_some((last_reason, retry)))
}

/// Builds the HTTP client: shared TLS settings, a timeout, no redirects.
fn build_client(
    url: &reqwest::Url,
    endpoint: &Endpoint,
    sink: &str,
) -> Result<reqwest::Client, String> {
    let timeout = endpoint.timeout();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            env!("CARGO_PKG_NAME"),
            "/",
            env!("CARGO_PKG_VERSION")
        ));
    if url.scheme() == "https" {
        builder = builder.use_preconfigured_tls(crate::tls::client_config(&endpoint.tls, sink)?);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Gzips a request body.
fn gzip(body: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(body)
        .and_then(|_| enc.finish())
        .map_err(|e| SinkError::transient(format!("gzip failed: {e}")))
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    /// The URL answering, safe to print (no query string).
    pub url: String,
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
    /// The credentials the request carried, which the server may have echoed.
    redactor: Redactor,
}

impl Reply {
    /// The start of the body for an error or a dead-letter reason, credentials blanked.
    pub fn excerpt(&self) -> String {
        body_excerpt(&self.body, &self.redactor)
    }

    /// A transient error honouring the reply's `Retry-After`.
    pub fn retry_later(&self, message: String) -> Outcome {
        Outcome::Fail(SinkError::transient(message).with_retry_after(self.retry_after))
    }
}

/// Sends a request and reads the response. Transport failures (refused, reset, timeout, TLS)
/// are transient errors naming the URL and a likely cause.
async fn send(
    req: reqwest::RequestBuilder,
    url: &str,
    redactor: &Redactor,
) -> Result<Reply, SinkError> {
    send_limited(req, url, redactor, MAX_REPLY_BYTES).await
}

/// [`send`], reading at most `limit` bytes of reply: a longer one is a fatal error (the records
/// are not acknowledged, and the same request would get the same answer).
pub(super) async fn send_limited(
    req: reqwest::RequestBuilder,
    url: &str,
    redactor: &Redactor,
    limit: usize,
) -> Result<Reply, SinkError> {
    let what = display_url(url);
    let resp = req.send().await.map_err(|e| transport_error(&what, e))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (body, complete) = read_body(resp, limit)
        .await
        .map_err(|e| transport_error(&what, e))?;
    if !complete {
        return Err(SinkError::fatal(format!(
            "{what} answered HTTP {status} with a reply larger than {limit} bytes; it was not read further and nothing was acknowledged: check that `url` points at the collector"
        )));
    }
    Ok(Reply {
        url: what,
        status,
        retry_after,
        body,
        redactor: redactor.clone(),
    })
}

fn transport_error(url: &str, e: reqwest::Error) -> SinkError {
    let hint = if e.is_timeout() {
        "timed out; the server is slow or unreachable (raise `timeout` if it is just slow)"
    } else if e.is_connect() {
        "cannot connect; check that the host and port are right, the service is up and no firewall is in the way (TLS problems also show here: check tls_ca_file)"
    } else {
        "the connection failed"
    };
    // reqwest's Display hides the cause ("connection refused", the TLS alert): append the chain.
    let mut chain = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    // `without_url`: we print the URL ourselves, without its query string.
    let head = e.without_url().to_string();
    SinkError::transient(format!("{url}: {hint} ({head}{chain})"))
}

/// Splits `sizes` (bytes per record in a request body) into consecutive ranges of at most
/// `max_bytes` each. A record larger than `max_bytes` goes alone (the server decides).
pub(super) fn split_by_bytes(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut total = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && total + size > max_bytes {
            out.push(start..i);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Records rejected for good while a batch was sent, written once the batch is otherwise done.
#[derive(Debug, Default)]
pub struct Rejects(Vec<(usize, String)>);

impl Rejects {
    fn add(&mut self, index: usize, reason: String) {
        self.0.push((index, reason));
    }

    /// Dead-letters every reject (indices into `batch`).
    pub async fn write(self, ctx: &SinkContext, batch: &[Record]) -> Result<(), SinkError> {
        if self.0.is_empty() {
            return Ok(());
        }
        tracing::warn!(sink = %ctx.name, rejected = self.0.len(), batch = batch.len(),
            path = %ctx.dead_letter.path().display(), "records rejected for good by the destination");
        // The parts sent were made from `batch`, one per record: an index outside it is a bug,
        // and acknowledging the batch would lose that record.
        if let Some((i, _)) = self.0.iter().find(|(i, _)| *i >= batch.len()) {
            return Err(SinkError::fatal(format!(
                "rejected record {i} is not in the batch of {}; nothing was acknowledged",
                batch.len()
            )));
        }
        for (i, reason) in self.0 {
            ctx.dead_letter(&batch[i], &reason).await?;
        }
        Ok(())
    }
}

/// A start-up error of an HTTP sink, naming the sink.
pub fn startup_error(sink_type: &str, sink: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::fatal(format!("{sink_type} sink {sink:?}: {e}"))
}
