//! The HTTP transport shared by the HTTP sinks: the generic webhook (`type = "http"`, in
//! [`crate::sink::webhook`]), Splunk HEC ([`crate::sink::splunk_hec`]) and Elasticsearch `_bulk`
//! ([`crate::sink::elasticsearch`]).
//!
//! - [`endpoint`]: the keys the three share (`url`, `batch_max_bytes`, `compression`, `timeout`,
//!   `allow_insecure_http`, `tls_*`) and their checks.
//! - [`config`]: [`HttpConfig`], from which each HTTP sink's `SinkConfig` follows.
//! - [`auth`]: credentials, read through [`crate::secret::SecretSource`], and the
//!   `Authorization` header.
//! - [`transport`]: the client (rustls via [`crate::tls`], no redirects so credentials never
//!   follow a `Location`), gzip, replies with `Retry-After` and redacted body excerpts, and the
//!   delivery loop (split by bytes, halve on request, resend, collect rejects) driven by the
//!   sink's own classifier of replies.

pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod endpoint;
pub(crate) mod transport;

pub(crate) use auth::{Auth, AuthConfig};
pub(crate) use config::HttpConfig;
pub(crate) use endpoint::{display_url, join, Endpoint};
pub(crate) use transport::{
    classify_status, Batch, BodyFraming, HttpTransport, Outcome, RecordOutcome, Reply, Resend,
    StatusClass,
};

#[cfg(test)]
mod tests;
