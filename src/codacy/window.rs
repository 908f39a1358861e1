//! Fetches every event of a time window `[from, to)`, whatever the server's page shape, from a
//! read that was consistent.
//!
//! - v3 envelope with `pagination.cursor`: follow the cursor with the same query until none.
//! - A response without a cursor that is full (as many events as asked, or as the server's
//!   reported limit) may have been cut, and nobody can tell which end was kept: split the window
//!   in two and query each half, recursively. A 1 ms window that is still full is reported as an
//!   error, never skipped.
//! - **Data moving under a walk.** Cursors are offsets: an event recorded late inside the window
//!   while we page shifts the following pages, so one event is served twice (and, were events
//!   removed, one skipped). Numbering identical events by counting what was fetched would then give
//!   the repeat a fresh occurrence number, a duplicate no SIEM can remove. So a cursor walk is
//!   accepted only when it was consistent: `pagination.total` the same on every page, and no page
//!   starting with the event that ended the previous one. Otherwise the sub-window is read again
//!   from its first page. A single response is one snapshot, so bare arrays and one-page windows
//!   are always consistent. A boundary repeat without any `total` may be two genuinely identical
//!   events that happen to straddle pages: two reads in a row giving the same sequence settle it.
//!   A window that keeps moving after [`MAX_REREADS`] re-reads is a transient error (the pass is
//!   retried; the cursor does not move).
//! - Events outside `[from, to)`: one at exactly `to` belongs to the next window (a server with an
//!   inclusive `to`) and is fetched there. Any other time outside the window means the server
//!   filed the event by a time other than its `timestamp` (epoch-ms `12345`, year 9999, ...): no
//!   query by its own time would return it, so it is handed back as rejected (the pipeline
//!   dead-letters it with the reason, logs and counts it), never silently dropped.
//! - The total held at once is capped; past the cap the caller gets `TooMany` and retries with a
//!   smaller window, so memory stays bounded however large the backlog.

use super::client::{ApiError, Client};
use crate::event::{AuditEvent, EventParseError, OrgRef};
use serde_json::Value;

/// The documented default page size: a bare array of exactly this many events may have been
/// cut by a server that ignored our larger `limit`, so it is treated as full too.
const API_DEFAULT_LIMIT: usize = 100;

/// Re-reads of one sub-window whose data moved while it was paged, before giving up for this pass.
pub const MAX_REREADS: u32 = 5;

/// Why an event from the API is not delivered but dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error(transparent)]
    Parse(#[from] EventParseError),
    #[error("event `timestamp` ({timestamp_ms} ms since the epoch) is outside the window [{from_ms}, {to_ms}) the API returned it for: the server files it under another time, so no query by its own time would return it; dead-lettered instead of delivered with a wrong time")]
    OutsideWindow {
        timestamp_ms: i64,
        from_ms: i64,
        to_ms: i64,
    },
}

#[derive(Debug)]
pub struct InvalidEvent {
    pub raw: Value,
    pub error: RejectReason,
    /// Where it was found: window, page and index, for the log line.
    pub position: String,
}

#[derive(Debug, Default)]
pub struct FetchedWindow {
    pub events: Vec<AuditEvent>,
    pub invalid: Vec<InvalidEvent>,
    /// Sub-window reads thrown away because the data moved under them.
    pub rereads: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("window holds more than {0} events; fetch a smaller window")]
    TooMany(usize),
    #[error("the API returned a full page for the single millisecond {at_ms} even after splitting the window, without a cursor to page further: raise codacy.page_limit (at most 1000); if it is already 1000, more events share that millisecond than the API can return in one response")]
    FullMillisecond { at_ms: i64 },
    #[error("the audit log of [{from_ms}, {to_ms}) kept changing while it was paged ({rereads} reads, events arriving between pages each time); nothing from it was delivered and the window is read again at the next poll. If this persists, raise codacy.page_limit so the window fits in fewer pages")]
    Unsettled {
        from_ms: i64,
        to_ms: i64,
        rereads: u32,
    },
    /// The task fetching a slice ended without a result (a bug); retried like a failed fetch.
    #[error("the fetch task failed ({0}); this is a bug, please report it with the log")]
    TaskFailed(String),
}

/// The outcome of reading one sub-window once.
enum Read {
    /// A full page without a cursor: the window must be split.
    Split,
    Done {
        events: Vec<AuditEvent>,
        invalid: Vec<InvalidEvent>,
        /// Whether the read may have seen the data move (see module docs).
        moved: Moved,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Moved {
    No,
    /// `pagination.total` changed between pages: certainly moved.
    TotalChanged,
    /// A page started with the event that ended the previous one: moved, or identical events.
    BoundaryRepeat,
}

/// Fetches `[from_ms, to_ms)` completely. `max_events` caps what is held in memory.
pub async fn fetch_window(
    client: &Client,
    org: &OrgRef,
    from_ms: i64,
    to_ms: i64,
    max_events: usize,
) -> Result<FetchedWindow, WindowError> {
    let mut out = FetchedWindow::default();
    let mut pending = vec![(from_ms, to_ms)];
    while let Some((from, to)) = pending.pop() {
        if from >= to {
            continue;
        }
        // The previous read of this sub-window, kept only when it ended in a boundary repeat.
        let mut previous: Option<(Vec<AuditEvent>, Vec<InvalidEvent>)> = None;
        let mut reads = 0u32;
        loop {
            reads += 1;
            let room = max_events.saturating_sub(out.events.len());
            match read_once(client, org, from, to, room).await? {
                Read::Split => {
                    if to - from <= 1 {
                        return Err(WindowError::FullMillisecond { at_ms: from });
                    }
                    let mid = from + (to - from) / 2;
                    tracing::debug!(organization = %org, from, to, "full page without cursor; splitting the window");
                    pending.push((mid, to));
                    pending.push((from, mid));
                    break;
                }
                Read::Done {
                    events,
                    invalid,
                    moved,
                } => {
                    let settled = match moved {
                        Moved::No => true,
                        // The same sequence twice in a row: the repeat is real, not a shift.
                        Moved::BoundaryRepeat => previous.as_ref().is_some_and(|(e, i)| {
                            *e == events
                                && i.len() == invalid.len()
                                && i.iter().zip(&invalid).all(|(a, b)| a.raw == b.raw)
                        }),
                        Moved::TotalChanged => false,
                    };
                    if settled {
                        // Moved, not copied, when it is the first sub-window (the usual case): a
                        // copy would hold the slice twice at its peak.
                        if out.events.is_empty() {
                            out.events = events;
                        } else {
                            out.events.extend(events);
                        }
                        out.invalid.extend(invalid);
                        break;
                    }
                    if reads > MAX_REREADS {
                        return Err(WindowError::Unsettled {
                            from_ms: from,
                            to_ms: to,
                            rereads: reads,
                        });
                    }
                    out.rereads += 1;
                    tracing::debug!(organization = %org, from, to, ?moved, "the window changed while it was paged; reading it again");
                    previous = (moved == Moved::BoundaryRepeat).then_some((events, invalid));
                }
            }
        }
    }
    Ok(out)
}

/// Reads `[from, to)` once, following cursors; `room` caps the events held.
async fn read_once(
    client: &Client,
    org: &OrgRef,
    from: i64,
    to: i64,
    room: usize,
) -> Result<Read, WindowError> {
    let limit = client.page_limit;
    let mut events = Vec::new();
    let mut invalid = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page_no = 0u32;
    let mut first_total: Option<u64> = None;
    let mut moved = Moved::No;
    let mut previous_last: Option<Value> = None;
    loop {
        let page = client
            .fetch_page(org, from, to, limit, cursor.as_deref())
            .await?;
        let effective_limit = page
            .reported_limit
            .map(|l| l.min(limit) as usize)
            .unwrap_or(limit as usize);
        let n = page.events.len();
        let full = n >= effective_limit || (!page.enveloped && n == API_DEFAULT_LIMIT);
        if cursor.is_none() && page.next_cursor.is_none() && full {
            return Ok(Read::Split);
        }
        match (first_total, page.total) {
            (None, Some(t)) => first_total = Some(t),
            (Some(a), Some(b)) if a != b => moved = Moved::TotalChanged,
            _ => {}
        }
        if moved == Moved::No
            && previous_last.is_some()
            && previous_last.as_ref() == page.events.first()
        {
            moved = Moved::BoundaryRepeat;
        }
        previous_last = page.events.last().cloned();
        for (i, raw) in page.events.into_iter().enumerate() {
            let position = || format!("window [{from}, {to}) page {page_no} index {i}");
            match AuditEvent::from_value_or_back(raw) {
                Ok(e) if e.timestamp_ms >= from && e.timestamp_ms < to => events.push(e),
                // An inclusive `to`: the next window returns it too, and delivers it there.
                Ok(e) if e.timestamp_ms == to => {}
                Ok(e) => invalid.push(InvalidEvent {
                    error: RejectReason::OutsideWindow {
                        timestamp_ms: e.timestamp_ms,
                        from_ms: from,
                        to_ms: to,
                    },
                    raw: Value::Object(e.raw.into()),
                    position: position(),
                }),
                Err((error, raw)) => invalid.push(InvalidEvent {
                    raw,
                    error: error.into(),
                    position: position(),
                }),
            }
        }
        if events.len() > room {
            return Err(WindowError::TooMany(room));
        }
        match page.next_cursor {
            Some(c) if n > 0 => {
                cursor = Some(c);
                page_no += 1;
            }
            _ => break,
        }
    }
    Ok(Read::Done {
        events,
        invalid,
        moved,
    })
}
