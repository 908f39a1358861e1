//! Sinks move encoded records to a destination and report acknowledgement. They know nothing of
//! formats. Each sink is one module owning its config struct, connection, batching and tests;
//! adding a sink touches that module and the [`SinkKind`] enum below.

pub mod file;
pub mod http;
pub mod kafka;
pub mod syslog;

use crate::clock::SharedClock;
use crate::deadletter::DeadLetter;
use crate::event::{EventId, OrgRef};
use crate::format::{Format, FormatOptions};
use crate::secret::Redactor;
use crate::telemetry::Metrics;
use async_trait::async_trait;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One encoded event on its way to a destination.
#[derive(Debug, Clone)]
pub struct Record {
    pub event_id: EventId,
    pub org: Arc<OrgRef>,
    /// Event time, epoch ms (syslog TIMESTAMP, Kafka record timestamp, HEC `time`).
    pub timestamp_ms: i64,
    /// Codacy action (syslog MSGID).
    pub action: Arc<str>,
    /// Catalog severity 0-10 (CEF scale; syslog maps it to its levels).
    pub severity: u8,
    pub format: Format,
    /// The encoded record, no trailing newline.
    pub payload: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Network down, busy, 5xx, timeout: retried with backoff.
    Transient,
    /// Needs a human (bad credentials, missing permission, missing directory): retried slowly,
    /// reported unhealthy, logged with the remedy.
    Fatal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub kind: SinkErrorKind,
    pub message: String,
    /// The destination asked us to wait this long (HTTP Retry-After).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            kind: SinkErrorKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        SinkError {
            kind: SinkErrorKind::Fatal,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

/// What every sink gets from the agent when it is built.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The sink's configured name (unique).
    pub name: String,
    pub state_dir: PathBuf,
    /// Where this sink writes records its destination rejects for good.
    pub dead_letter: DeadLetter,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

impl SinkContext {
    /// Dead-letters `record` with `reason`, counts it and logs it. A dead-letter write that fails
    /// is a transient error: the batch is not acknowledged and will be retried.
    pub async fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), SinkError> {
        tracing::warn!(sink = %self.name, organization = %record.org, event_id = %record.event_id,
            reason, path = %self.dead_letter.path().display(), "record rejected for good; dead-lettered");
        self.dead_letter
            .write_record(self.clock.now_ms(), &self.name, record, reason)
            .await
            .map_err(|e| {
                SinkError::transient(format!(
                    "cannot write dead-letter file {}: {e}",
                    self.dead_letter.path().display()
                ))
            })?;
        self.metrics
            .events_dead_lettered(&record.org.key(), &self.name, 1);
        Ok(())
    }
}

/// A destination. Shared by every organization's pipeline, hence `&self` (sinks guard their
/// connections internally).
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers a batch. `Ok` means every record is durably accepted by the destination or was
    /// dead-lettered; only then does the pipeline advance the checkpoint. `Err` means the batch
    /// (all of it) will be offered again later.
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError>;

    /// Connectivity probe for `check`: reach the destination without delivering events.
    async fn check(&self) -> Result<String, SinkError> {
        Ok("configuration valid".to_string())
    }

    /// SIGHUP: reopen files (external logrotate), reconnect.
    async fn reopen(&self) {}

    /// Flush what is buffered, within `deadline`, before the process exits.
    async fn shutdown(&self, _deadline: Duration) {}
}

/// The sink kinds and their configuration (the `type` key).
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    File(file::FileSinkConfig),
    // Boxed: its config is much larger than the other kinds'.
    Kafka(Box<kafka::KafkaSinkConfig>),
    Syslog(syslog::SyslogSinkConfig),
    Http(http::generic::HttpSinkConfig),
    SplunkHec(http::splunk_hec::SplunkHecConfig),
    Elasticsearch(http::elasticsearch::ElasticsearchConfig),
}

impl SinkKind {
    /// Parses the type-specific keys of one `[[sinks]]` table (common keys already removed).
    /// Errors name the key at fault.
    pub fn parse(type_name: &str, table: Value) -> Result<SinkKind, String> {
        match type_name {
            "file" => Ok(SinkKind::File(from_table(table)?)),
            "kafka" => Ok(SinkKind::Kafka(Box::new(from_table(table)?))),
            "syslog" => Ok(SinkKind::Syslog(from_table(table)?)),
            "http" => Ok(SinkKind::Http(from_table(table)?)),
            "splunk_hec" => Ok(SinkKind::SplunkHec(from_table(table)?)),
            "elasticsearch" => Ok(SinkKind::Elasticsearch(from_table(table)?)),
            other => Err(format!(
                "unknown sink type {other:?}; expected one of file, syslog, kafka, http, splunk_hec, elasticsearch"
            )),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Http(_) => "http",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Elasticsearch(_) => "elasticsearch",
        }
    }

    /// Cross-field checks that need the sink's format (e.g. LF framing with raw newlines).
    pub fn validate(&self, format: Format) -> Result<(), String> {
        match self {
            SinkKind::File(c) => c.validate(),
            SinkKind::Kafka(c) => c.validate(),
            SinkKind::Syslog(c) => c.validate(format),
            SinkKind::Http(c) => c.validate(format),
            SinkKind::SplunkHec(c) => c.validate(format),
            SinkKind::Elasticsearch(c) => c.validate(format),
        }
    }

    /// The URL of an HTTP sink that sends in clear text to another machine (allowed by its
    /// `allow_insecure_http`), for a warning at every start.
    pub fn cleartext_url(&self) -> Option<String> {
        let url = match self {
            SinkKind::Http(c) => &c.url,
            SinkKind::SplunkHec(c) => &c.url,
            SinkKind::Elasticsearch(c) => &c.url,
            SinkKind::File(_) | SinkKind::Kafka(_) | SinkKind::Syslog(_) => return None,
        };
        let parsed = reqwest::Url::parse(url).ok()?;
        crate::httputil::cleartext_to_remote(&parsed).then(|| http::display_url(url))
    }

    /// The secrets this sink sends to its destination, read now (none for file and syslog).
    pub fn redactor(&self) -> Redactor {
        match self {
            SinkKind::File(_) | SinkKind::Syslog(_) => Redactor::default(),
            SinkKind::Kafka(c) => c.redactor(),
            SinkKind::Http(c) => c.redactor(),
            SinkKind::SplunkHec(c) => c.redactor(),
            SinkKind::Elasticsearch(c) => c.redactor(),
        }
    }

    /// Opens the sink. Errors here are start-up errors with a remedy.
    pub async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        // Dead-letter reasons quote the destination's answers, which may echo our credentials.
        let ctx = SinkContext {
            dead_letter: ctx.dead_letter.redacting(&self.redactor()),
            ..ctx
        };
        match self {
            SinkKind::File(c) => Ok(Arc::new(file::FileSink::open(c.clone(), ctx).await?)),
            SinkKind::Kafka(c) => Ok(Arc::new(kafka::KafkaSink::start((**c).clone(), ctx).await?)),
            SinkKind::Syslog(c) => Ok(Arc::new(syslog::SyslogSink::new(c.clone(), ctx)?)),
            SinkKind::Http(c) => Ok(Arc::new(http::generic::HttpSink::new(c.clone(), ctx)?)),
            SinkKind::SplunkHec(c) => Ok(Arc::new(http::splunk_hec::SplunkHecSink::new(
                c.clone(),
                ctx,
            )?)),
            SinkKind::Elasticsearch(c) => Ok(Arc::new(
                http::elasticsearch::ElasticsearchSink::new(c.clone(), ctx)?,
            )),
        }
    }
}

/// Deserialises a sink's own keys, rejecting unknown ones with a message naming the key.
pub fn from_table<T: serde::de::DeserializeOwned>(table: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("key `{path}`: {}", e.inner())
        }
    })
}

/// One configured sink: common keys plus its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub format: Format,
    pub format_options: FormatOptions,
    /// Records per delivery call (default 500; 5000 for file sinks, which fsync per batch).
    pub batch_max_events: usize,
    pub kind: SinkKind,
}
