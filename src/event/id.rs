//! Event identity: a stable id per event occurrence, the same whichever way the events arrive.

use super::json_writer::HEX_DIGITS;
use super::{AuditEvent, OrgRef};
use sha2::{Digest, Sha256};
use std::fmt;

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
        h.update(itoa::Buffer::new().format(occurrence).as_bytes());
        let hash = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash[..16]);
        // hex::encode collects chars one by one; a table into bytes is several times faster.
        let mut hex = [0u8; 64];
        for (pair, &b) in hex.chunks_exact_mut(2).zip(hash.iter()) {
            pair[0] = HEX_DIGITS[usize::from(b >> 4)];
            pair[1] = HEX_DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII: always UTF-8.
        let hex = std::str::from_utf8(&hex).unwrap_or_default();
        (EventId(hex.to_owned()), key)
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
