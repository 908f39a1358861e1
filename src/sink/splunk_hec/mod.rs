//! `type = "splunk_hec"`: Splunk HTTP Event Collector, `POST {url}/services/collector/event`.
//!
//! Each record becomes one envelope ([`crate::format::envelope::hec_event`]), and a request body
//! holds several envelopes back to back. json and ecs records go in as JSON objects (index-time
//! extraction works with `_json`-style sourcetypes); CEF records go in as a string event, which
//! HEC accepts too.
//!
//! The HEC `code` in the reply decides: 9 (busy) and 8 (internal error) retry; 1-4 (token) and
//! 7 (index not allowed), 10/11/14 (acknowledgement set-up), 16 are fatal with the remedy; data
//! errors (5, 6, 12, 13, 15) bisect the request until the bad record is alone, then dead-letter it.
//!
//! With `indexer_acknowledgement = true` every request carries `X-Splunk-Request-Channel` (one
//! random GUID per sink), the `ackId` of each reply is polled at `/services/collector/ack` and the
//! batch is acknowledged only once every id is `true`. Ids still unconfirmed after `ack_timeout`
//! make the batch fail transiently, so it is sent again. HEC has no de-duplication key: a resent
//! batch can be indexed twice; de-duplicate at search time on `fields.event_id`
//! (e.g. `| dedup event_id`).

mod ack;
mod codes;
mod config;
mod sink;

pub use config::{SplunkHecConfig, TYPE};
pub use sink::SplunkHecSink;

#[cfg(test)]
mod tests;
