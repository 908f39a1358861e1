//! Sinks move encoded records to a destination and report acknowledgement. They know nothing of
//! formats.
//!
//! Each destination is one folder, `src/sink/<name>/`, holding its configuration (a type that
//! implements [`SinkConfig`]), the sink (a type that implements [`Sink`]), its protocol details
//! and its tests. [`registry::SINK_TYPES`] lists them: adding a destination is one new folder and
//! one line there. What several sinks share lives once: TLS settings ([`crate::tls`]), secret
//! sources ([`crate::secret::SecretSource`]), the HTTP transport ([`http`]) and configuration
//! errors ([`crate::config::FieldError`]).
//!
//! The lane of one (organization, sink) is a sink's only caller (`crate::pipeline`).

pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod kafka;
pub mod registry;
pub mod splunk_hec;
pub mod syslog;
pub mod webhook;

pub use registry::{SinkCommon, SinkConfig, SinkSpec, SinkType};

use crate::clock::SharedClock;
use crate::deadletter::DeadLetter;
use crate::event::{EventId, OrgRef};
use crate::format::Format;
use crate::telemetry::Metrics;
use async_trait::async_trait;
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
    /// Where this sink writes records its destination rejects for good.
    pub dead_letter: DeadLetter,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// What the records' bytes are, for protocols that carry JSON and text differently.
    pub payload: Payload,
    /// The records' format name, for dead-letter entries and the Kafka `format` header.
    pub format_label: &'static str,
}

/// What a record's payload is. Sinks decide framing by this, never by the format itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// One JSON object (json, ecs): embedded as an object in HEC envelopes and JSON arrays.
    JsonObject,
    /// One line of text (cef, csv): sent as a string.
    Text,
}

impl Payload {
    pub fn of(format: Format) -> Payload {
        match format {
            Format::Json | Format::Ecs => Payload::JsonObject,
            Format::Cef | Format::Csv => Payload::Text,
        }
    }
}

impl SinkContext {
    /// A context for a sink under test: dead letters go to `dir/dead-letter/<name>.ndjson`.
    pub fn for_test(dir: &std::path::Path, name: &str) -> SinkContext {
        SinkContext {
            name: name.to_string(),
            dead_letter: DeadLetter::in_state_dir(dir, name),
            metrics: Arc::new(Metrics::new()),
            clock: crate::clock::system(),
            payload: Payload::JsonObject,
            format_label: "json",
        }
    }

    /// The same context for records of `format`.
    pub fn with_format(self, format: Format) -> SinkContext {
        SinkContext {
            payload: Payload::of(format),
            format_label: format.as_str(),
            ..self
        }
    }

    /// Dead-letters `record` with `reason`, counts it and logs it. A dead-letter write that fails
    /// is a transient error: the batch is not acknowledged and will be retried.
    pub async fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), SinkError> {
        tracing::warn!(sink = %self.name, organization = %record.org, event_id = %record.event_id,
            reason, path = %self.dead_letter.path().display(), "record rejected for good; dead-lettered");
        let entry = serde_json::json!({
            "sink": self.name,
            "organization": record.org.key(),
            "event_id": record.event_id.as_str(),
            "event_timestamp_ms": record.timestamp_ms,
            "format": self.format_label,
            "record": String::from_utf8_lossy(&record.payload),
        });
        self.dead_letter
            .write(self.clock.now_ms(), reason, entry)
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
