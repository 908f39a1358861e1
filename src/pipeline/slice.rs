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
    /// once per format, the first time a lane of that format wants it.
    pub(super) fn encode(
        &self,
        events: Vec<IdentifiedEvent>,
        end: i64,
        group: Vec<LaneGuard>,
    ) -> (Slice, Vec<(LaneGuard, Wanted)>) {
        let overlap = self.overlap_ms();
        let mut records_by_format: Vec<(Encoder, Records)> = Vec::new();
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
                        let record = records[i].get_or_insert_with(|| {
                            buf.clear();
                            encoder.encode(e, &mut buf);
                            Arc::from(buf.as_slice())
                        });
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
