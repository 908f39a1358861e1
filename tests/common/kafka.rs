//! What the Kafka sink tests share: a sink context and numbered records.

use codacy_audit_forwarder::event::{EventId, OrgRef};
use codacy_audit_forwarder::sink::{Record, SinkContext};
use std::path::Path;
use std::sync::Arc;

/// A context for a sink named `bus` keeping its state in `dir`.
pub fn ctx(dir: &Path) -> SinkContext {
    SinkContext::for_test(dir, "bus")
}

/// Record `i` of `org`: a distinct payload, id and timestamp (one second apart).
pub fn record(org: &OrgRef, i: u32) -> Record {
    let payload = format!("{{\"action\":\"a\",\"n\":{i},\"org\":\"{}\"}}", org.name);
    Record {
        event_id: EventId::compute(org, payload.as_bytes(), 0),
        org: Arc::new(org.clone()),
        timestamp_ms: 1_700_000_000_000 + i64::from(i) * 1000,
        action: "a".into(),
        severity: 3,
        payload: payload.into_bytes().into(),
    }
}
