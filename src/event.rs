//! The audit event model: known fields typed, every field (known or not) kept as received.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
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

/// A Codacy audit event. `raw` holds every field exactly as received (unknown ones included,
/// in the order received); the typed fields are views of the known ones.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub raw: Map<String, Value>,
    /// Event time, epoch milliseconds (UTC).
    pub timestamp_ms: i64,
    pub action: String,
    /// `succeed`, `failed`, `rejected` (or whatever the API sends).
    pub result: Option<String>,
    pub actor_email: Option<String>,
    /// e.g. `organizationAdmin`; absent when `actor` is a plain string.
    pub actor_role: Option<String>,
    /// `UI` or `API`.
    pub source: Option<String>,
    pub repository: Option<String>,
    pub description: Option<String>,
    pub entity_id: Option<String>,
    /// `details` (or the older `requestDetails`); `None` when absent or null.
    pub details: Option<Value>,
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
fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
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
        let action = match raw.get("action") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err((EventParseError::MissingAction, raw)),
        };
        let (actor_email, actor_role) = match raw.get("actor") {
            Some(Value::Object(actor)) => (
                scalar_text(actor.get("email")),
                scalar_text(actor.get("role")),
            ),
            Some(Value::String(s)) => (Some(s.clone()), None),
            _ => (None, None),
        };
        let details = raw
            .get("details")
            .or_else(|| raw.get("requestDetails"))
            .filter(|v| !v.is_null())
            .cloned();
        Ok(AuditEvent {
            timestamp_ms,
            action,
            result: scalar_text(raw.get("result")),
            actor_email,
            actor_role,
            source: scalar_text(raw.get("source")),
            repository: scalar_text(raw.get("repositoryName")),
            description: scalar_text(raw.get("description")),
            entity_id: scalar_text(raw.get("entityId")),
            details,
            raw,
        })
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
    match value {
        Value::Object(map) => write_canonical_map(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Serialising a scalar Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_canonical_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_canonical(&map[key], out);
    }
    out.push(b'}');
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
        let mut h = Sha256::new();
        h.update(org.provider.as_str().as_bytes());
        h.update(b"/");
        h.update(org.name.as_bytes());
        h.update(b"\n");
        h.update(canonical_json);
        h.update(b"\n");
        h.update(occurrence.to_string().as_bytes());
        EventId(hex::encode(h.finalize()))
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
        assert_eq!(e.actor_email.as_deref(), Some("a@b.com"));
        assert_eq!(e.actor_role.as_deref(), Some("organizationAdmin"));
        assert_eq!(e.entity_id.as_deref(), Some("42"));
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
        assert_eq!(e.actor_email.as_deref(), Some("a@b.com"));
        assert_eq!(e.actor_role, None);
        assert_eq!(e.details, Some(json!("text")));
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
    fn id_depends_on_organization() {
        let c = b"{}";
        let a = EventId::compute(&OrgRef::new(Provider::Gh, "acme"), c, 0);
        let b = EventId::compute(&OrgRef::new(Provider::Gl, "acme"), c, 0);
        assert_ne!(a, b);
        assert!(EventId::from_hex(a.as_str()).is_some());
    }
}
