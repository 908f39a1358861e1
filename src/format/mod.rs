//! Encoders: pure functions from an identified event to one record (no trailing newline).
//! They know nothing of sockets; sinks move the bytes.

pub mod catalog;
pub mod cef;
pub mod csv;
pub(crate) mod date;
pub mod ecs;
pub(crate) mod envelope;
pub mod framing;
pub mod json;

use crate::event::IdentifiedEvent;
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The Codacy event as received plus provenance keys.
    #[default]
    Json,
    /// Elastic Common Schema 8.17 document.
    Ecs,
    /// ArcSight Common Event Format line.
    Cef,
    /// An RFC 4180 row with the columns of Codacy's documented CSV export (file sinks and
    /// `export` only: a header line starts the file).
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
            Format::Csv => "csv",
        }
    }

    /// The line a file of this format starts with, if any (CSV's column names).
    pub fn header(self) -> Option<&'static str> {
        (self == Format::Csv).then_some(csv::HEADER)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "ecs" => Ok(Format::Ecs),
            "cef" => Ok(Format::Cef),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "unknown format {other:?}; expected one of json, ecs, cef, csv"
            )),
        }
    }
}

/// Per-sink knobs that change what an encoder writes. Sinks with equal options share one encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FormatOptions {
    /// ECS `data_stream.namespace` (default `default`).
    pub ecs_namespace: String,
    /// ECS `event.original`: the raw Codacy event, only when asked for.
    pub include_original: bool,
    /// This machine's name (CEF `dvchost`).
    pub hostname: String,
    /// JSON records start with `@timestamp` (Elasticsearch data streams require it; ECS
    /// documents always have it).
    pub timestamp_field: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            ecs_namespace: "default".to_string(),
            include_original: false,
            hostname: local_hostname(),
            timestamp_field: false,
        }
    }
}

/// The machine's host name, from the kernel; `localhost` when it cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// The agent's version, used in CEF headers and ECS `agent.version`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The agent's name, used in ECS `agent.name` and CEF `deviceProcessName`.
pub const AGENT_NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encoder {
    pub format: Format,
    pub options: FormatOptions,
}

impl Encoder {
    pub fn new(format: Format, options: FormatOptions) -> Self {
        Encoder { format, options }
    }

    /// Appends one record for `event` to `out` (no trailing newline).
    pub fn encode(&self, event: &IdentifiedEvent, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => json::encode(event, self.options.timestamp_field, out),
            Format::Ecs => ecs::encode(event, &self.options, out),
            Format::Cef => cef::encode(event, &self.options, out),
            Format::Csv => csv::encode(event, out),
        }
    }

    pub fn encode_to_vec(&self, event: &IdentifiedEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.encode(event, &mut out);
        out
    }
}
