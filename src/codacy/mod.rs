//! The Codacy side: the HTTP client and the window walk that turns pages into complete, sorted
//! time slices.

pub mod client;
pub mod scheduler;
pub mod window;

pub use client::{ApiError, Client, Page};
pub use window::{fetch_window, FetchedWindow, InvalidEvent, RejectReason, WindowError};

use crate::event::OrgRef;
use async_trait::async_trait;

/// Where events come from: the Codacy API in production, an in-memory model in property tests.
#[async_trait]
pub trait EventSource: Send + Sync + std::fmt::Debug {
    /// Every event of `[from_ms, to_ms)`, holding at most `max_events` at once.
    async fn fetch(
        &self,
        org: &OrgRef,
        from_ms: i64,
        to_ms: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError>;
}

#[async_trait]
impl EventSource for Client {
    async fn fetch(
        &self,
        org: &OrgRef,
        from_ms: i64,
        to_ms: i64,
        max_events: usize,
    ) -> Result<FetchedWindow, WindowError> {
        fetch_window(self, org, from_ms, to_ms, max_events).await
    }
}
