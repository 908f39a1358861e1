//! The one door from the configuration to a sink: the common keys of a `[[sinks]]` table are
//! parsed here (by `crate::config`), the rest of the table goes to the type's own configuration,
//! which implements [`SinkConfig`].

use super::{
    elasticsearch, file, kafka, splunk_hec, syslog, webhook, Sink, SinkContext, SinkError,
};
use crate::config::FieldError;
use crate::format::{Format, FormatOptions};
use crate::secret::Redactor;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Every sink type, by its `type` key. Adding a destination: its folder, and one line here.
pub const SINK_TYPES: &[SinkType] = &[
    file::TYPE,
    syslog::TYPE,
    kafka::TYPE,
    webhook::TYPE,
    splunk_hec::TYPE,
    elasticsearch::TYPE,
];

/// One sink type: its `type` name and how its own keys are parsed.
pub struct SinkType {
    pub name: &'static str,
    /// Its protocol carries a host name (syslog HOSTNAME, HEC `host`), so it takes the
    /// `hostname` key whatever the format.
    pub carries_host: bool,
    /// Parses the type's own keys (the common ones are already taken out). Errors name the key,
    /// relative to the sink's table.
    pub parse: ParseFn,
}

/// Parses a sink type's own keys into its configuration.
pub type ParseFn = fn(Map<String, Value>, &SinkCommon) -> Result<Box<dyn SinkConfig>, FieldError>;

impl SinkType {
    pub fn named(name: &str) -> Result<&'static SinkType, String> {
        SINK_TYPES.iter().find(|t| t.name == name).ok_or_else(|| {
            format!(
                "unknown sink type {name:?}; expected one of {}",
                type_names().join(", ")
            )
        })
    }
}

/// The `type` names, in registry order (for messages).
pub fn type_names() -> Vec<&'static str> {
    SINK_TYPES.iter().map(|t| t.name).collect()
}

/// The keys every sink takes, parsed before its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkCommon {
    pub name: String,
    pub type_name: &'static str,
    pub format: Format,
    pub format_options: FormatOptions,
    /// `hostname` as written (`format_options.hostname` falls back to this machine's name).
    pub hostname: Option<String>,
    /// `ecs_namespace` was written (not defaulted).
    pub explicit_namespace: bool,
}

/// What `check` can say of a sink without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Ready, as this sentence says.
    Ready(String),
    /// The directory that will hold the sink's files does not exist yet.
    MissingDirectory(PathBuf),
    Failed(String),
}

/// Equality across `dyn SinkConfig` (a reload keeps a sink whose configuration is unchanged).
pub trait DynEq {
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

/// A sink type's own configuration.
#[async_trait]
pub trait SinkConfig: fmt::Debug + Send + Sync + Any + DynEq {
    /// The formats this sink accepts (default: json, ecs, cef; `csv` is for files).
    fn formats(&self) -> &'static [Format] {
        &[Format::Json, Format::Ecs, Format::Cef]
    }

    /// Records per delivery call when `batch_max_events` is not set.
    fn default_batch(&self) -> usize {
        DEFAULT_BATCH
    }

    /// Cross-field checks that need the common keys; may settle format options that the
    /// destination dictates (Elasticsearch's data stream namespace).
    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError>;

    /// The secrets this sink sends to its destination, read now.
    fn redactor(&self) -> Redactor {
        Redactor::default()
    }

    /// The URL when this sink sends in clear text to another machine (allowed by its
    /// `allow_insecure_http`), for a warning at every start.
    fn cleartext_url(&self) -> Option<String> {
        None
    }

    /// What `check` can tell without opening the sink (`None`: build it and probe it).
    /// `offline`: no network.
    fn preflight(&self, _offline: bool) -> Option<Preflight> {
        None
    }

    /// Opens the sink. Errors here are start-up errors with a remedy.
    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError>;

    /// For equality and for tests that look at one type's settings.
    fn as_any(&self) -> &dyn Any;
}

/// Records per delivery for sinks that keep request bodies at a size every receiver accepts.
pub const DEFAULT_BATCH: usize = 500;
/// Records per delivery for stream sinks (file, syslog, Kafka): every batch ends with a
/// checkpoint write (two fsyncs), so at 500 a year's backfill is fsync-bound, and a larger batch
/// costs them nothing per record.
pub const STREAM_BATCH: usize = 5000;

/// One configured sink: the common keys and its type's own configuration.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub type_name: &'static str,
    pub format: Format,
    pub format_options: FormatOptions,
    /// Records per delivery call (`batch_max_events`, else the type's default).
    pub batch_max_events: usize,
    pub config: Arc<dyn SinkConfig>,
}

impl SinkSpec {
    /// Opens the sink with `ctx`, completed with what the records are.
    pub async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        let ctx = ctx.with_format(self.format);
        // Dead-letter reasons quote the destination's answers, which may echo our credentials.
        let ctx = SinkContext {
            dead_letter: ctx.dead_letter.clone().redacting(&self.config.redactor()),
            ..ctx
        };
        self.config.build(ctx).await
    }
}

impl PartialEq for SinkSpec {
    fn eq(&self, other: &SinkSpec) -> bool {
        self.name == other.name
            && self.type_name == other.type_name
            && self.format == other.format
            && self.format_options == other.format_options
            && self.batch_max_events == other.batch_max_events
            && (*self.config).dyn_eq((*other.config).as_any())
    }
}
