//! What Elasticsearch's answers mean: the `_bulk` reply, item by item, judged for the transport.

use crate::sink::http::{classify_status, Outcome, RecordOutcome, Reply, StatusClass};
use crate::sink::SinkError;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

/// What one bulk item's status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// 200/201: written.
    Created,
    /// 409 on `create`: already there (a redelivery); counts as delivered.
    Duplicate,
    /// 429, 5xx: resend this item.
    Retry,
    /// 401/403/404 per item: credentials, a write block or a missing data stream. Not the
    /// document's fault: the sink stops with the remedy instead of dead-lettering everything.
    Denied,
    /// Other statuses: the document itself is refused; dead-letter it.
    Reject,
}

pub fn classify_item(status: u16) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Created,
        409 => ItemOutcome::Duplicate,
        429 | 500..=599 => ItemOutcome::Retry,
        401 | 403 | 404 => ItemOutcome::Denied,
        _ => ItemOutcome::Reject,
    }
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    items: Vec<serde_json::Map<String, Value>>,
}

/// `(status, "type: reason")` of one bulk item (`{"create": {...}}`).
pub(super) fn item_result(item: &serde_json::Map<String, Value>) -> Option<(u16, String)> {
    let inner = item.values().next()?;
    let status = u16::try_from(inner.get("status")?.as_u64()?).ok()?;
    let error = match inner.get("error") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(e) => format!(
            "{}: {}",
            e.get("type").and_then(Value::as_str).unwrap_or("error"),
            e.get("reason").and_then(Value::as_str).unwrap_or("")
        ),
    };
    Some((status, error))
}

/// Credentials refused, a privilege missing or the data stream absent: needs a human.
pub(super) fn fatal_auth(
    data_stream: &str,
    status: StatusCode,
    url: &str,
    excerpt: &str,
) -> SinkError {
    let remedy = if status == StatusCode::UNAUTHORIZED {
        "the credentials were refused (API key invalid, expired or revoked, or a wrong password): create a key with POST /_security/api_key and put its `encoded` value in api_key_file"
    } else if status == StatusCode::NOT_FOUND {
        "the data stream does not exist and cannot be created: add an index template matching it (logs-*-* has one by default) or fix `data_stream`"
    } else {
        "the credentials lack a privilege or the index is write-blocked: the API key or user needs `create_doc` (or create/index/write) on the data stream, plus `auto_configure` to create it; check index.blocks.write"
    };
    SinkError::fatal(format!(
        "{url}: HTTP {status} writing to {data_stream}: {remedy}; nothing was dropped, the batch will be retried: {excerpt}"
    ))
}

/// Judges the reply to a `_bulk` request: first as a whole, then item by item.
pub(super) fn classify_bulk_reply(reply: &Reply, data_stream: &str, sink: &str) -> Outcome {
    let (shown, status) = (&reply.url, reply.status);
    match classify_status(status) {
        StatusClass::Accepted => {}
        StatusClass::Retry => {
            return reply.retry_later(format!(
                "{shown}: HTTP {status}; will retry: {}",
                reply.excerpt()
            ))
        }
        StatusClass::TooLarge => return Outcome::Split {
            note: "HTTP 413 from Elasticsearch (over http.max_content_length): splitting the request; lower batch_max_bytes to avoid this",
            reason: format!("HTTP 413 from {shown}: the document alone is larger than http.max_content_length"),
        },
        StatusClass::Auth => {
            return Outcome::Fail(fatal_auth(data_stream, status, shown, &reply.excerpt()))
        }
        StatusClass::Endpoint | StatusClass::Reject => return Outcome::Fail(SinkError::fatal(format!(
            "{shown}: HTTP {status} for the whole bulk request (check `url` points at Elasticsearch and `data_stream` can be written): {}",
            reply.excerpt()
        ))),
    }
    let parsed: BulkResponse = match serde_json::from_slice(&reply.body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Outcome::Fail(SinkError::transient(format!(
                "{shown}: unreadable _bulk response ({e}): {}",
                reply.excerpt()
            )))
        }
    };
    let mut verdicts = Vec::with_capacity(parsed.items.len());
    let mut duplicates = 0usize;
    for item in &parsed.items {
        let Some((item_status, error)) = item_result(item) else {
            return Outcome::Fail(SinkError::transient(format!(
                "{shown}: _bulk item without a status: {}",
                Value::Object(item.clone())
            )));
        };
        verdicts.push(match classify_item(item_status) {
            ItemOutcome::Created => RecordOutcome::Taken,
            ItemOutcome::Duplicate => {
                duplicates += 1;
                RecordOutcome::Taken
            }
            ItemOutcome::Retry => RecordOutcome::Retry(format!("{item_status} {error}")),
            ItemOutcome::Denied => {
                let status = StatusCode::from_u16(item_status).unwrap_or(StatusCode::FORBIDDEN);
                return Outcome::Fail(fatal_auth(data_stream, status, shown, &error));
            }
            ItemOutcome::Reject => RecordOutcome::Rejected(format!(
                "Elasticsearch refused the document into {data_stream}: status {item_status} {error}"
            )),
        });
    }
    if duplicates > 0 {
        tracing::debug!(sink = %sink, duplicates, "documents already present (409): counted as delivered");
    }
    Outcome::PerRecord(verdicts)
}
