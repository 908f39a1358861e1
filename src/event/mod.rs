//! The audit event model: known fields typed, every field (known or not) kept as received.
//! Identity (stable ids, occurrence numbers) is in `id`, the JSON writers ids and records are
//! built with in `json_writer`.

mod fields;
mod id;
mod json_writer;

pub use fields::Fields;
pub use id::{identify, EventId, EventKey, IdSeed, IdentifiedEvent, StreamIdentifier};
pub use json_writer::{
    write_canonical, write_json, write_json_map, write_json_str, write_json_str_parts,
};

use json_writer::write_canonical_map;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Git provider code as used in Codacy URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Gh,
    Ghe,
    Gl,
    Gle,
    Bb,
    Bbe,
}

impl Provider {
    pub const ALL: [Provider; 6] = [
        Provider::Gh,
        Provider::Ghe,
        Provider::Gl,
        Provider::Gle,
        Provider::Bb,
        Provider::Bbe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Gh => "gh",
            Provider::Ghe => "ghe",
            Provider::Gl => "gl",
            Provider::Gle => "gle",
            Provider::Bb => "bb",
            Provider::Bbe => "bbe",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown provider {s:?}; expected one of gh, ghe, gl, gle, bb, bbe \
                     (GitHub, GitHub Enterprise, GitLab, GitLab Enterprise, Bitbucket, Bitbucket Server)"
                )
            })
    }
}

/// One Codacy organization: provider plus organization name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgRef {
    pub provider: Provider,
    pub name: String,
}

impl OrgRef {
    pub fn new(provider: Provider, name: impl Into<String>) -> Self {
        OrgRef {
            provider,
            name: name.into(),
        }
    }

    /// `provider/name`, the form used in logs, metrics, checkpoints and outputs.
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }
}

/// `provider/name` as written on the command line (`--org gh/acme`).
impl FromStr for OrgRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (provider, name) = s
            .split_once('/')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| format!("{s:?}: write provider/name, e.g. gh/acme"))?;
        Ok(OrgRef::new(provider.parse()?, name))
    }
}

impl fmt::Display for OrgRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.name)
    }
}

/// Why an event from the API could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    #[error("event is not a JSON object but {0}")]
    NotAnObject(&'static str),
    #[error("event has no `timestamp`")]
    MissingTimestamp,
    #[error("event `timestamp` {0} is neither RFC 3339 nor epoch milliseconds")]
    BadTimestamp(String),
    #[error("event has no string `action`")]
    MissingAction,
}

/// Up to this many members, [`get`] compares names instead of hashing.
const SCAN_FIELDS: usize = 16;

/// A member of `map` (an `actor` object) by name. An actor has two fields: comparing that many
/// short names is cheaper than hashing the one asked for (the map's hasher is SipHash).
fn get<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if map.len() <= SCAN_FIELDS {
        map.iter()
            .find_map(|(k, v)| (k.as_str() == name).then_some(v))
    } else {
        map.get(name)
    }
}

/// A Codacy audit event: every field exactly as received (unknown ones included, in the order
/// received) and the parsed time. The known fields are read through accessors rather than copied
/// out, so an event costs its parsed JSON and nothing more (the agent holds many at once).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub raw: Fields,
    /// Event time, epoch milliseconds (UTC).
    pub timestamp_ms: i64,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A scalar as text; objects, arrays and null are not text.
fn scalar_text(v: Option<&Value>) -> Option<Cow<'_, str>> {
    match v? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Parses `2024-07-01T09:45:30.656Z` (any RFC 3339 offset) or epoch milliseconds.
pub fn parse_timestamp(v: &Value) -> Result<i64, EventParseError> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.0e15) {
                Ok(f as i64)
            } else {
                Err(EventParseError::BadTimestamp(n.to_string()))
            }
        }
        Value::String(s) => {
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
                return Ok(dt.timestamp_millis());
            }
            // Some clients serialise epoch ms as a string.
            s.parse::<i64>()
                .map_err(|_| EventParseError::BadTimestamp(format!("{s:?}")))
        }
        other => Err(EventParseError::BadTimestamp(type_name(other).to_string())),
    }
}

impl AuditEvent {
    /// Builds the typed view of one event as received from the API.
    pub fn from_value(value: Value) -> Result<Self, EventParseError> {
        let raw = match value {
            Value::Object(map) => map,
            other => return Err(EventParseError::NotAnObject(type_name(&other))),
        };
        Self::from_map(raw)
    }

    pub fn from_map(raw: Map<String, Value>) -> Result<Self, EventParseError> {
        Self::from_fields(raw.into())
    }

    /// The event of fields parsed straight into [`Fields`] (`preview`).
    pub fn from_fields(raw: Fields) -> Result<Self, EventParseError> {
        Self::from_fields_or_back(raw).map_err(|(e, _)| e)
    }

    /// [`AuditEvent::from_value`] that hands the value back when it is not an event, so a
    /// caller can dead-letter it without cloning every valid event up front.
    pub fn from_value_or_back(value: Value) -> Result<Self, (EventParseError, Value)> {
        match value {
            Value::Object(map) => Self::from_fields_or_back(map.into())
                .map_err(|(e, fields)| (e, Value::Object(fields.into()))),
            other => Err((EventParseError::NotAnObject(type_name(&other)), other)),
        }
    }

    fn from_fields_or_back(raw: Fields) -> Result<Self, (EventParseError, Fields)> {
        let timestamp_ms = match raw
            .get("timestamp")
            .ok_or(EventParseError::MissingTimestamp)
            .and_then(parse_timestamp)
        {
            Ok(t) => t,
            Err(e) => return Err((e, raw)),
        };
        if !matches!(raw.get("action"), Some(Value::String(s)) if !s.is_empty()) {
            return Err((EventParseError::MissingAction, raw));
        }
        Ok(AuditEvent { raw, timestamp_ms })
    }

    /// A top-level field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }

    /// `action`: a non-empty string (checked when the event was built).
    pub fn action(&self) -> &str {
        self.field("action").and_then(Value::as_str).unwrap_or("")
    }

    /// `result`: `succeed`, `failed`, `rejected` (or whatever the API sends).
    pub fn result(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.field("result"))
    }

    /// `actor.email`, or `actor` itself when it is a plain string.
    pub fn actor_email(&self) -> Option<Cow<'_, str>> {
        match self.field("actor") {
            Some(Value::Object(actor)) => scalar_text(get(actor, "email")),
            Some(Value::String(s)) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    /// `actor.role`, e.g. `organizationAdmin`; absent when `actor` is a plain string.
    pub fn actor_role(&self) -> Option<Cow<'_, str>> {
        match self.field("actor") {
            Some(Value::Object(actor)) => scalar_text(get(actor, "role")),
            _ => None,
        }
    }

    /// `source`: `UI` or `API`.
    pub fn source(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.field("source"))
    }

    /// `repositoryName`.
    pub fn repository(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.field("repositoryName"))
    }

    pub fn description(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.field("description"))
    }

    /// `entityId`.
    pub fn entity_id(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.field("entityId"))
    }

    /// `details` (or the older `requestDetails`); `None` when absent or null.
    pub fn details(&self) -> Option<&Value> {
        self.field("details")
            .or_else(|| self.field("requestDetails"))
            .filter(|v| !v.is_null())
    }

    /// The event's canonical JSON: keys sorted at every level, no whitespace.
    pub fn canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical_json(&mut out);
        out
    }

    /// Appends [`AuditEvent::canonical_json`] to `out` (a buffer reused from event to event).
    pub fn write_canonical_json(&self, out: &mut Vec<u8>) {
        write_canonical_map(&self.raw, out);
    }
}

#[cfg(test)]
pub(crate) mod tests;
