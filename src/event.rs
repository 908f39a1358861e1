//! The audit event model: known fields typed, every field (known or not) kept as received.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
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

/// A Codacy audit event: every field exactly as received (unknown ones included, in the order
/// received) and the parsed time. The known fields are read through accessors rather than copied
/// out, so an event costs its parsed JSON and nothing more (the agent holds many at once).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub raw: Map<String, Value>,
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
        Self::from_map_or_back(raw).map_err(|(e, _)| e)
    }

    /// [`AuditEvent::from_value`] that hands the value back when it is not an event, so a
    /// caller can dead-letter it without cloning every valid event up front.
    pub fn from_value_or_back(value: Value) -> Result<Self, (EventParseError, Value)> {
        match value {
            Value::Object(map) => {
                Self::from_map_or_back(map).map_err(|(e, map)| (e, Value::Object(map)))
            }
            other => Err((EventParseError::NotAnObject(type_name(&other)), other)),
        }
    }

    fn from_map_or_back(
        raw: Map<String, Value>,
    ) -> Result<Self, (EventParseError, Map<String, Value>)> {
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

    /// `action`: a non-empty string (checked when the event was built).
    pub fn action(&self) -> &str {
        self.raw.get("action").and_then(Value::as_str).unwrap_or("")
    }

    /// `result`: `succeed`, `failed`, `rejected` (or whatever the API sends).
    pub fn result(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.raw.get("result"))
    }

    /// `actor.email`, or `actor` itself when it is a plain string.
    pub fn actor_email(&self) -> Option<Cow<'_, str>> {
        match self.raw.get("actor") {
            Some(Value::Object(actor)) => scalar_text(actor.get("email")),
            Some(Value::String(s)) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    /// `actor.role`, e.g. `organizationAdmin`; absent when `actor` is a plain string.
    pub fn actor_role(&self) -> Option<Cow<'_, str>> {
        match self.raw.get("actor") {
            Some(Value::Object(actor)) => scalar_text(actor.get("role")),
            _ => None,
        }
    }

    /// `source`: `UI` or `API`.
    pub fn source(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.raw.get("source"))
    }

    /// `repositoryName`.
    pub fn repository(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.raw.get("repositoryName"))
    }

    pub fn description(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.raw.get("description"))
    }

    /// `entityId`.
    pub fn entity_id(&self) -> Option<Cow<'_, str>> {
        scalar_text(self.raw.get("entityId"))
    }

    /// `details` (or the older `requestDetails`); `None` when absent or null.
    pub fn details(&self) -> Option<&Value> {
        self.raw
            .get("details")
            .or_else(|| self.raw.get("requestDetails"))
            .filter(|v| !v.is_null())
    }

    /// The event's canonical JSON: keys sorted at every level, no whitespace.
    pub fn canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_canonical_map(&self.raw, &mut out);
        out
    }
}

/// Writes `value` as canonical JSON (sorted keys, compact). Deterministic for a given value.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::Sorted, out);
}

fn write_canonical_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    write_map(map, KeyOrder::Sorted, out);
}

/// Appends `value` as compact JSON with keys in their order: the same bytes as
/// `serde_json::to_writer`, written with [`write_json_str`].
pub fn write_json(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::AsReceived, out);
}

/// [`write_json`] for an object.
pub fn write_json_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    write_map(map, KeyOrder::AsReceived, out);
}

#[derive(Clone, Copy, PartialEq)]
enum KeyOrder {
    Sorted,
    AsReceived,
}

fn write_value(value: &Value, order: KeyOrder, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            // Serialising a number into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, order, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(map, order, out),
    }
}

fn write_map(map: &Map<String, Value>, order: KeyOrder, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut member = |i: usize, key: &str, value: &Value| {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_value(value, order, out);
    };
    match order {
        KeyOrder::Sorted => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (key, value)) in members.into_iter().enumerate() {
                member(i, key, value);
            }
        }
        // No copy of the members: this is the path every JSON and ECS record takes.
        KeyOrder::AsReceived => {
            for (i, (key, value)) in map.iter().enumerate() {
                member(i, key, value);
            }
        }
    }
    out.push(b'}');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes in `word` needs an escape, with word-wide arithmetic (the classic
/// "has a zero / has a byte below n" bit tricks; exact about whether any byte matches).
fn any_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    control | quote | backslash != 0
}

/// Appends `s` as a JSON string escaped exactly as serde_json escapes it (the same bytes, so
/// canonical JSON and ids do not change). serde_json looks at every byte; this skips runs that
/// need no escape 8 bytes at a time, which is most of a record.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !any_needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if needs_escape(b) {
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX_DIGITS[usize::from(b >> 4)],
                    HEX_DIGITS[usize::from(b & 0xf)],
                ]),
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Stable identity of one event occurrence: hex SHA-256 over provider, organization, the event's
/// canonical JSON and its occurrence number among identical events (first = 0).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    pub fn compute(org: &OrgRef, canonical_json: &[u8], occurrence: u32) -> Self {
        IdSeed::new(org, canonical_json).id(occurrence)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a previously computed id (e.g. read back from a checkpoint).
    pub fn from_hex(s: &str) -> Option<Self> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| EventId(s.to_string()))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 state of an [`EventId`] before its occurrence number: hashing the canonical JSON
/// once serves every occurrence of the event.
#[derive(Clone)]
pub struct IdSeed(Sha256);

/// Stands for an event's canonical JSON (within one organization) in [`StreamIdentifier`]:
/// 16 bytes of its occurrence-0 id hash, so no second hash is needed.
pub type EventKey = [u8; 16];

impl IdSeed {
    pub fn new(org: &OrgRef, canonical_json: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(org.provider.as_str().as_bytes());
        h.update(b"/");
        h.update(org.name.as_bytes());
        h.update(b"\n");
        h.update(canonical_json);
        h.update(b"\n");
        IdSeed(h)
    }

    pub fn id(&self, occurrence: u32) -> EventId {
        self.finish(occurrence).0
    }

    /// The occurrence-0 id and the key [`StreamIdentifier`] counts by.
    pub fn first(&self) -> (EventId, EventKey) {
        self.finish(0)
    }

    fn finish(&self, occurrence: u32) -> (EventId, EventKey) {
        let mut h = self.0.clone();
        h.update(occurrence.to_string().as_bytes());
        let hash = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash[..16]);
        // hex::encode collects chars one by one; a table is several times faster.
        let mut hex = String::with_capacity(64);
        for &b in hash.iter() {
            hex.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
        }
        (EventId(hex), key)
    }
}

/// Occurrence numbers for events seen one at a time (`preview` streams its input): the n-th
/// byte-identical copy gets n - 1. [`identify`] numbers a sorted batch the same way, and identical
/// copies are interchangeable, so both give the same ids. Holds one key and count per distinct
/// event (about 40 bytes), not the events.
#[derive(Debug, Default)]
pub struct StreamIdentifier {
    seen: std::collections::HashMap<EventKey, u32, std::hash::BuildHasherDefault<KeyHasher>>,
}

/// Keys are hash bytes already, evenly spread: their first eight bytes serve as the hash, with
/// none of SipHash's cost.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

impl StreamIdentifier {
    pub fn occurrence(&mut self, key: EventKey) -> u32 {
        let count = self.seen.entry(key).or_insert(0);
        let occurrence = *count;
        *count = count.saturating_add(1);
        occurrence
    }
}

/// An event ready for encoding: the event plus everything an encoder may need about where it came
/// from. `fetched_at_ms` is when the agent read it (ECS `event.created`).
#[derive(Debug, Clone)]
pub struct IdentifiedEvent {
    pub org: std::sync::Arc<OrgRef>,
    pub id: EventId,
    pub occurrence: u32,
    pub fetched_at_ms: i64,
    pub event: AuditEvent,
}

/// Sorts events by (timestamp, canonical JSON) and assigns occurrence numbers among byte-identical
/// events, so that ids are the same whatever order the server returned them in.
pub fn identify(
    org: &std::sync::Arc<OrgRef>,
    mut events: Vec<AuditEvent>,
    fetched_at_ms: i64,
) -> Vec<IdentifiedEvent> {
    let mut keyed: Vec<(Vec<u8>, AuditEvent)> =
        events.drain(..).map(|e| (e.canonical_json(), e)).collect();
    keyed.sort_by(|a, b| {
        a.1.timestamp_ms
            .cmp(&b.1.timestamp_ms)
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut out = Vec::with_capacity(keyed.len());
    let mut occurrence = 0u32;
    for i in 0..keyed.len() {
        if i > 0 && keyed[i].0 == keyed[i - 1].0 {
            occurrence += 1;
        } else {
            occurrence = 0;
        }
        let id = EventId::compute(org, &keyed[i].0, occurrence);
        out.push((id, occurrence));
    }
    keyed
        .into_iter()
        .zip(out)
        .map(|((_, event), (id, occurrence))| IdentifiedEvent {
            org: org.clone(),
            id,
            occurrence,
            fetched_at_ms,
            event,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn org() -> std::sync::Arc<OrgRef> {
        std::sync::Arc::new(OrgRef::new(Provider::Gh, "acme"))
    }

    #[test]
    fn a_value_that_is_no_event_comes_back_unchanged() {
        for bad in [
            json!({"action": "user.login", "zeta": [1]}),
            json!({"timestamp": "2024-07-01T09:45:30.656Z", "action": ""}),
            json!([1, 2]),
        ] {
            let (_, back) = AuditEvent::from_value_or_back(bad.clone()).unwrap_err();
            assert_eq!(back, bad);
        }
        let good = json!({"timestamp": 1, "action": "a"});
        assert!(AuditEvent::from_value_or_back(good).is_ok());
    }

    #[test]
    fn parses_object_actor_and_rfc3339() {
        let e = AuditEvent::from_value(json!({
            "actor": {"email": "a@b.com", "role": "organizationAdmin"},
            "action": "user.login", "result": "succeed",
            "timestamp": "2024-07-01T09:45:30.656Z", "source": "UI",
            "repositoryName": "r", "entityId": "42", "details": {"x": 1}, "future": [1, 2]
        }))
        .unwrap();
        assert_eq!(e.timestamp_ms, 1_719_827_130_656);
        assert_eq!(e.actor_email().as_deref(), Some("a@b.com"));
        assert_eq!(e.actor_role().as_deref(), Some("organizationAdmin"));
        assert_eq!(e.entity_id().as_deref(), Some("42"));
        assert_eq!(e.raw["future"], json!([1, 2]));
    }

    #[test]
    fn parses_string_actor_epoch_ms_and_request_details() {
        let e = AuditEvent::from_value(json!({
            "actor": "a@b.com", "action": "x.y", "timestamp": 1_719_827_130_656i64,
            "requestDetails": "text"
        }))
        .unwrap();
        assert_eq!(e.timestamp_ms, 1_719_827_130_656);
        assert_eq!(e.actor_email().as_deref(), Some("a@b.com"));
        assert_eq!(e.actor_role(), None);
        assert_eq!(e.details(), Some(&json!("text")));
    }

    #[test]
    fn rejects_unusable_events_with_a_reason() {
        assert_eq!(
            AuditEvent::from_value(json!([1])),
            Err(EventParseError::NotAnObject("an array"))
        );
        assert_eq!(
            AuditEvent::from_value(json!({"action": "a"})),
            Err(EventParseError::MissingTimestamp)
        );
        assert!(matches!(
            AuditEvent::from_value(json!({"action": "a", "timestamp": "yesterday"})),
            Err(EventParseError::BadTimestamp(_))
        ));
        assert_eq!(
            AuditEvent::from_value(json!({"timestamp": 1})),
            Err(EventParseError::MissingAction)
        );
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a =
            AuditEvent::from_value(json!({"timestamp": 1, "action": "a", "d": {"y": 1, "x": 2}}))
                .unwrap();
        let b =
            AuditEvent::from_value(json!({"d": {"x": 2, "y": 1}, "action": "a", "timestamp": 1}))
                .unwrap();
        assert_eq!(a.canonical_json(), b.canonical_json());
        assert_eq!(
            String::from_utf8(a.canonical_json()).unwrap(),
            r#"{"action":"a","d":{"x":2,"y":1},"timestamp":1}"#
        );
    }

    #[test]
    fn identical_events_get_distinct_stable_ids_regardless_of_order() {
        let e1 = AuditEvent::from_value(json!({"timestamp": 5, "action": "a"})).unwrap();
        let e2 = AuditEvent::from_value(json!({"timestamp": 5, "action": "b"})).unwrap();
        let ids = |v: Vec<AuditEvent>| -> Vec<String> {
            let mut ids: Vec<String> = identify(&org(), v, 0)
                .into_iter()
                .map(|e| e.id.to_string())
                .collect();
            ids.sort();
            ids
        };
        let first = ids(vec![e1.clone(), e2.clone(), e1.clone()]);
        let second = ids(vec![e1.clone(), e1.clone(), e2.clone()]);
        assert_eq!(first, second);
        assert_eq!(first.len(), 3);
        assert_eq!(
            first
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
    }

    #[test]
    fn streamed_occurrences_give_the_ids_of_a_batch() {
        let e1 = AuditEvent::from_value(json!({"timestamp": 5, "action": "a"})).unwrap();
        let e2 = AuditEvent::from_value(json!({"timestamp": 4, "action": "b"})).unwrap();
        let input = vec![e1.clone(), e2.clone(), e1.clone(), e1.clone()];
        let mut batch: Vec<String> = identify(&org(), input.clone(), 0)
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        let mut ident = StreamIdentifier::default();
        let mut streamed: Vec<String> = input
            .iter()
            .map(|e| {
                let seed = IdSeed::new(&org(), &e.canonical_json());
                let (first, key) = seed.first();
                let occurrence = ident.occurrence(key);
                assert_eq!(first, seed.id(0));
                seed.id(occurrence).to_string()
            })
            .collect();
        batch.sort();
        streamed.sort();
        assert_eq!(batch, streamed);
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            "[\\x00-\\x20\"\\\\a-z\u{7f}é€]{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec(("[\\x00-\\x20\"a-z]*", inner), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn the_word_check_finds_every_byte_that_needs_an_escape_wherever_it_is() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                // Neighbours that need no escape, and ones just above and below the ranges.
                for filler in [b'a', 0x21, 0x5d, 0xff] {
                    let mut word = [filler; 8];
                    word[at] = byte;
                    assert_eq!(
                        any_needs_escape(u64::from_le_bytes(word)),
                        needs_escape(byte),
                        "byte {byte:#04x} at {at} among {filler:#04x}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_json_writers_write_what_serde_json_writes(v in arb_json()) {
            let mut out = Vec::new();
            write_json(&v, &mut out);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
            // Canonical JSON as the agent wrote it before: serde_json with sorted keys.
            fn sorted(v: &Value) -> serde_json::Value {
                match v {
                    Value::Object(m) => {
                        let mut keys: Vec<_> = m.iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(b.0));
                        Value::Object(keys.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
                    }
                    Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
                    other => other.clone(),
                }
            }
            let mut canon = Vec::new();
            write_canonical(&v, &mut canon);
            proptest::prop_assert_eq!(
                String::from_utf8(canon).unwrap(),
                serde_json::to_string(&sorted(&v)).unwrap()
            );
        }
    }

    #[test]
    fn ids_are_lowercase_hex_of_the_sha256() {
        let org = OrgRef::new(Provider::Gh, "acme");
        let id = EventId::compute(&org, b"{}", 2);
        let mut h = Sha256::new();
        h.update(b"gh/acme\n{}\n2");
        assert_eq!(id.as_str(), hex::encode(h.finalize()));
    }

    #[test]
    fn id_depends_on_organization() {
        let c = b"{}";
        let a = EventId::compute(&OrgRef::new(Provider::Gh, "acme"), c, 0);
        let b = EventId::compute(&OrgRef::new(Provider::Gl, "acme"), c, 0);
        assert_ne!(a, b);
        assert!(EventId::from_hex(a.as_str()).is_some());
    }
}
