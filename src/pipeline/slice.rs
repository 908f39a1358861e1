//! What a walk makes of one fetched slice: its invalid events dead-lettered (each once per
//! process), and for each lane of the walk the events it wants with their records in its format.

use super::lane::LaneGuard;
use super::walk::Walker;
use crate::event::IdentifiedEvent;
use crate::format::{catalog, Encoder};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// Remembered invalid events (so each is dead-lettered once per process, not every poll).
const MAX_REMEMBERED_INVALID: usize = 100_000;

/// Invalid events already dead-lettered by this process (by digest), shared by the walks.
pub(super) type InvalidSeen = Arc<std::sync::Mutex<HashSet<[u8; 32]>>>;

/// One fetched slice, identified, shared by the lanes it is handed to.
pub(super) struct Slice {
    pub(super) events: Vec<IdentifiedEvent>,
    /// Each event's action and severity, which every record carries.
    pub(super) meta: Vec<(Arc<str>, u8)>,
    pub(super) end: i64,
}

/// What one lane takes from a slice: the index of each event it wants, oldest first, with the
/// event's record in the lane's format. Built with the lane, so a lane cannot be handed an event
/// without its record, nor look up a format the walk did not encode.
pub(super) type Wanted = Vec<(usize, Arc<[u8]>)>;

/// A slice's records in one format, by event index: `None` until a lane of the format wants it.
type Records = Vec<Option<Arc<[u8]>>>;

/// A slice's records in one format.
pub(super) type Encoded = (Encoder, Records);

/// The formats of a group's lanes, each once.
pub(super) fn formats(group: &[LaneGuard]) -> Vec<Encoder> {
    let mut out: Vec<Encoder> = Vec::new();
    for lane in group {
        if !out.contains(&lane.handle.encoder) {
            out.push(lane.handle.encoder.clone());
        }
    }
    out
}

/// Every event encoded in each of `formats`.
pub(super) fn encode_all(events: &[IdentifiedEvent], formats: Vec<Encoder>) -> Vec<Encoded> {
    let mut buf = Vec::with_capacity(1024);
    formats
        .into_iter()
        .map(|encoder| {
            let records = events
                .iter()
                .map(|e| Some(encode_one(&encoder, e, &mut buf)))
                .collect();
            (encoder, records)
        })
        .collect()
}

fn encode_one(encoder: &Encoder, event: &IdentifiedEvent, buf: &mut Vec<u8>) -> Arc<[u8]> {
    buf.clear();
    encoder.encode(event, buf);
    Arc::from(buf.as_slice())
}

impl Walker {
    /// Dead-letters events that could not be used (each once per process) and counts them.
    /// Fails when the dead-letter file cannot be written: then no cursor may move, or the event
    /// would be lost.
    pub(super) async fn dead_letter_invalid(
        &self,
        invalid: Vec<crate::codacy::InvalidEvent>,
    ) -> Result<usize, String> {
        let org_key = self.org.key();
        let mut n = 0;
        for inv in invalid {
            let mut canon = Vec::new();
            crate::event::write_canonical(&inv.raw, &mut canon);
            let digest: [u8; 32] = Sha256::digest(&canon).into();
            if self.seen(&digest) {
                continue;
            }
            let path = self.shared.invalid_events.path().display().to_string();
            tracing::error!(organization = %org_key, position = %inv.position, error = %inv.error,
                path = %path, "invalid event from the API; dead-lettered");
            let entry = serde_json::json!({
                "organization": org_key, "position": inv.position, "event": inv.raw,
            });
            self.shared
                .invalid_events
                .write(self.shared.clock.now_ms(), &inv.error.to_string(), entry)
                .await
                .map_err(|e| {
                    format!("cannot write the invalid-events dead-letter file {path}: {e}; check that the state directory is writable")
                })?;
            let mut seen = self
                .invalid_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.len() >= MAX_REMEMBERED_INVALID {
                seen.clear();
            }
            seen.insert(digest);
            drop(seen);
            self.shared.metrics.events_invalid(&org_key, 1);
            n += 1;
        }
        Ok(n)
    }

    /// Whether this process dead-lettered the invalid event of this digest already.
    fn seen(&self, digest: &[u8; 32]) -> bool {
        self.invalid_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(digest)
    }

    /// Pairs each lane of the group with the events it wants from `events`. Each event is encoded
    /// once per format, the first time a lane of that format wants it, unless `encoded` (the
    /// prefetch's work) has it already.
    pub(super) fn encode(
        &self,
        events: Vec<IdentifiedEvent>,
        end: i64,
        group: Vec<LaneGuard>,
        encoded: Vec<Encoded>,
    ) -> (Slice, Vec<(LaneGuard, Wanted)>) {
        let overlap = self.overlap_ms();
        let mut records_by_format = encoded;
        let mut buf = Vec::with_capacity(1024);
        let lanes = group
            .into_iter()
            .map(|lane| {
                let encoder = &lane.handle.encoder;
                let format = match records_by_format.iter().position(|(e, _)| e == encoder) {
                    Some(format) => format,
                    None => {
                        records_by_format.push((encoder.clone(), vec![None; events.len()]));
                        records_by_format.len() - 1
                    }
                };
                let records = &mut records_by_format[format].1;
                let wanted = events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| lane.cursor.wants(&e.id, e.event.timestamp_ms, overlap))
                    .map(|(i, e)| {
                        let record =
                            records[i].get_or_insert_with(|| encode_one(encoder, e, &mut buf));
                        (i, record.clone())
                    })
                    .collect();
                (lane, wanted)
            })
            .collect();
        let meta = events
            .iter()
            .map(|e| {
                (
                    Arc::from(e.event.action()),
                    catalog::classify(e.event.action(), e.event.result().as_deref()).severity,
                )
            })
            .collect();
        let slice = Slice { events, meta, end };
        (slice, lanes)
    }
}
