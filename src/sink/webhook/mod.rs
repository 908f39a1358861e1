//! `type = "http"`: POST batches to any webhook, as NDJSON (one record per line) or a JSON array.
//!
//! Responses: 2xx acknowledges; 408, 429 and 5xx (except 501) and transport errors are transient
//! (the batch is offered again, honouring `Retry-After`); 413 splits the request in halves down to
//! one record; 401/403/407 and 3xx/404/405/501 are fatal, because a wrong credential or URL needs
//! a human and dead-lettering every record would bury the evidence; any other 4xx rejects the
//! records of that request for good: they go to the dead-letter file with the status and the
//! start of the response body, and the batch is acknowledged.
//!
//! `check` sends `OPTIONS` to the URL with the delivery's headers: it proves DNS, TCP, TLS and
//! HTTP work without sending an event; 404, a redirect, 401/403 or 5xx fail it, as they would fail
//! a delivery. It cannot prove that the credentials are accepted (a webhook has no standard way to
//! ask).

mod config;
mod sink;

pub use config::{HttpSinkConfig, TYPE};
pub use sink::HttpSink;

#[cfg(test)]
mod tests;
