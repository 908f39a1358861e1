//! codacy-audit-forwarder: poll Codacy's audit log, checkpoint per (organization, sink), encode, deliver.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; tests and benches use the library directly.

pub mod agent;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod codacy;
pub mod config;
pub mod deadletter;
pub mod demo;
pub mod event;
pub mod export;
pub mod format;
pub(crate) mod httputil;
pub mod lock;
pub mod logging;
pub mod pipeline;
pub mod preview;
pub(crate) mod private;
pub(crate) mod progress;
pub(crate) mod repeat;
pub(crate) mod sdnotify;
pub mod secret;
pub mod simulator;
pub mod sink;
pub mod status;
pub mod telemetry;
pub(crate) mod tls;
