//! `type = "elasticsearch"`: `POST {url}/_bulk` with one `create` action per record into a data
//! stream (default `logs-codacy.audit-default`), `_id` = the event id.
//!
//! Using `create` with the stable event id makes redelivery idempotent: a document that is already
//! there comes back 409, which counts as delivered. (Data streams accept only `create`; the id
//! only conflicts within the current backing index, so a replay after a rollover can duplicate:
//! dedupe on `event.id` at query time.)
//!
//! Per-item results, in request order: 200/201/409 acknowledge; 429 and 5xx items are resent
//! alone, a few times with backoff, and if still failing the batch fails transiently (it is
//! offered again, and the documents already created come back 409); other 4xx items (mapping
//! errors) go to the dead-letter file with the error type and reason. HTTP 413 splits the request
//! in halves (a single document still too large is dead-lettered). HTTP 401/403 are fatal with
//! the remedy; any other request-level 4xx is fatal too (it is not about one document).
//!
//! Formats: `ecs` (recommended; has `@timestamp`) or `json`, to which the JSON encoder adds
//! `@timestamp` from the event time because data streams require it. `data_stream` must agree
//! with the ECS `data_stream.*` fields, so with `format = "ecs"` its namespace should equal
//! `ecs_namespace`.

mod bulk;
mod config;
mod sink;

pub use config::{ElasticsearchConfig, TYPE};
pub use sink::ElasticsearchSink;

#[cfg(test)]
mod tests;
