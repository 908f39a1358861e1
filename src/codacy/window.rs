//! Fetches every event of a time window `[from, to)`, whatever the server's page shape.
//!
//! - v3 envelope with `pagination.cursor`: follow the cursor with the same query until none.
//! - A response without a cursor that is full (as many events as asked, or as the server's
//!   reported limit) may have been cut, and nobody can tell which end was kept: split the window
//!   in two and query each half, recursively. A 1 ms window that is still full is reported as an
//!   error, never skipped.
//! - Events outside `[from, to)` (a server with an inclusive `to`, or one ignoring the bounds) are
//!   left to the window they belong to, so boundaries never double-count.
//! - The total held at once is capped; past the cap the caller gets `TooMany` and retries with a
//!   smaller window, so memory stays bounded however large the backlog.

use super::client::{ApiError, Client};
use crate::event::{AuditEvent, EventParseError, OrgRef};
use serde_json::Value;

/// The documented default page size: a bare array of exactly this many events may have been
/// cut by a server that ignored our larger `limit`, so it is treated as full too.
const API_DEFAULT_LIMIT: usize = 100;

#[derive(Debug)]
pub struct InvalidEvent {
    pub raw: Value,
    pub error: EventParseError,
    /// Where it was found: window, page and index, for the log line.
    pub position: String,
}

#[derive(Debug, Default)]
pub struct FetchedWindow {
    pub events: Vec<AuditEvent>,
    pub invalid: Vec<InvalidEvent>,
    pub requests: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("window holds more than {0} events; fetch a smaller window")]
    TooMany(usize),
    #[error("the API returned a full page for the single millisecond {at_ms} even after splitting the window, without a cursor to page further: raise codacy.page_limit (at most 1000); if it is already 1000, more events share that millisecond than the API can return in one response")]
    FullMillisecond { at_ms: i64 },
    /// The task fetching a slice ended without a result (a bug); retried like a failed fetch.
    #[error("the fetch task failed ({0}); this is a bug, please report it with the log")]
    TaskFailed(String),
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
    let limit = client.page_limit;
    while let Some((from, to)) = pending.pop() {
        if from >= to {
            continue;
        }
        let mut cursor: Option<String> = None;
        let mut page_no = 0u32;
        loop {
            let page = client
                .fetch_page(org, from, to, limit, cursor.as_deref())
                .await?;
            out.requests += 1;
            let effective_limit = page
                .reported_limit
                .map(|l| l.min(limit) as usize)
                .unwrap_or(limit as usize);
            let n = page.events.len();
            let full = n >= effective_limit || (!page.enveloped && n == API_DEFAULT_LIMIT);
            let first_page_without_cursor = cursor.is_none() && page.next_cursor.is_none();
            if first_page_without_cursor && full {
                // Possibly cut: split and re-query both halves.
                if to - from <= 1 {
                    return Err(WindowError::FullMillisecond { at_ms: from });
                }
                let mid = from + (to - from) / 2;
                tracing::debug!(organization = %org, from, to, events = n, "full page without cursor; splitting the window");
                pending.push((mid, to));
                pending.push((from, mid));
                break;
            }
            for (i, raw) in page.events.into_iter().enumerate() {
                match AuditEvent::from_value_or_back(raw) {
                    Ok(e) if e.timestamp_ms >= from && e.timestamp_ms < to => out.events.push(e),
                    Ok(_) => {} // belongs to another window; fetched there
                    Err((error, raw)) => out.invalid.push(InvalidEvent {
                        raw,
                        error,
                        position: format!("window [{from}, {to}) page {page_no} index {i}"),
                    }),
                }
            }
            if out.events.len() > max_events {
                return Err(WindowError::TooMany(max_events));
            }
            match page.next_cursor {
                Some(c) if n > 0 => {
                    cursor = Some(c);
                    page_no += 1;
                }
                _ => break,
            }
        }
    }
    Ok(out)
}
