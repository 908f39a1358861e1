//! The one gate in front of the Codacy API, shared by every organization, walk and catch-up:
//!
//! - at most `max_concurrent_requests` requests in flight, whatever the number of organizations;
//! - at most `max_requests_per_second` (a token bucket, burst of one second's worth);
//! - fair: waiters are served first come, first served (tokio's semaphore is FIFO), and each walk
//!   has one request outstanding at a time, so a big backfill of one organization holds at most
//!   one slot while the others' polls queue behind it;
//! - a 429 slows everybody down: nobody sends before its `Retry-After` has passed, and the rate
//!   is halved, then recovers by a quarter after every 20 answered requests.

use crate::telemetry::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The slowest the rate goes after repeated 429s, as a share of the configured rate.
const MIN_RATE_SHARE: f64 = 1.0 / 16.0;
/// Answered requests between two steps of recovery after a 429.
const RECOVER_EVERY: u32 = 20;

#[derive(Debug)]
pub struct Scheduler {
    slots: Arc<Semaphore>,
    max_rate: f64,
    state: Mutex<Bucket>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// No request leaves before this (a 429's Retry-After).
    paused_until: Option<Instant>,
    answered_since_slowdown: u32,
}

/// A request slot; the request holds it until its answer is read.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.api_in_flight(-1);
    }
}

impl Scheduler {
    pub fn new(max_concurrent: usize, max_per_second: f64, metrics: Arc<Metrics>) -> Scheduler {
        let rate = max_per_second.max(0.001);
        Scheduler {
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_rate: rate,
            state: Mutex::new(Bucket {
                rate,
                tokens: rate.max(1.0),
                refilled: Instant::now(),
                paused_until: None,
                answered_since_slowdown: 0,
            }),
            metrics,
        }
    }

    /// Waits for a request slot and a token. Fair: first come, first served.
    pub async fn acquire(&self) -> Slot {
        self.metrics.api_queue(1);
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            unreachable!("the scheduler's semaphore is never closed");
        };
        loop {
            let wait = self.take_token();
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        self.metrics.api_queue(-1);
        self.metrics.api_in_flight(1);
        Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }

    /// Takes a token now (`None`), or says how long to wait for one.
    fn take_token(&self) -> Option<Duration> {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(until) = b.paused_until {
            if now < until {
                return Some(until - now);
            }
            b.paused_until = None;
        }
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate.max(1.0));
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - b.tokens) / b.rate))
        }
    }

    /// A 429: everybody waits `retry_after`, and the rate halves.
    pub fn rate_limited(&self, retry_after: Duration) {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + retry_after;
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
        b.rate = (b.rate / 2.0).max(self.max_rate * MIN_RATE_SHARE);
        b.tokens = 0.0;
        b.answered_since_slowdown = 0;
        drop(b);
        self.metrics.api_slowdown();
        tracing::warn!(
            retry_after_ms = retry_after.as_millis() as u64,
            "Codacy API rate limit (429): every organization waits, then requests go slower for a while"
        );
    }

    /// An answered request (not a 429): the rate recovers gradually.
    pub fn answered(&self) {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if b.rate >= self.max_rate {
            return;
        }
        b.answered_since_slowdown += 1;
        if b.answered_since_slowdown >= RECOVER_EVERY {
            b.answered_since_slowdown = 0;
            b.rate = (b.rate * 1.25).min(self.max_rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrency_and_rate_are_hard_limits() {
        let s = Arc::new(Scheduler::new(2, 5.0, Arc::new(Metrics::new())));
        let a = s.acquire().await;
        let b = s.acquire().await;
        // A third waits for a slot, however long.
        let s2 = s.clone();
        let third = tokio::spawn(async move { s2.acquire().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished());
        drop(a);
        let c = third.await.unwrap();
        drop((b, c));
        // 5 per second with a burst of one second's worth: 20 requests take at least 3 s.
        let before = Instant::now();
        for _ in 0..20 {
            drop(s.acquire().await);
        }
        let took = Instant::now().duration_since(before);
        assert!(took >= Duration::from_millis(2_900), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everybody_and_slows_the_rate_until_it_recovers() {
        let s = Scheduler::new(4, 10.0, Arc::new(Metrics::new()));
        drop(s.acquire().await);
        s.rate_limited(Duration::from_secs(30));
        let before = Instant::now();
        drop(s.acquire().await);
        assert!(Instant::now().duration_since(before) >= Duration::from_secs(30));
        let rate = || s.state.lock().unwrap().rate;
        assert_eq!(rate(), 5.0);
        for _ in 0..RECOVER_EVERY * 4 {
            s.answered();
        }
        assert_eq!(rate(), 10.0);
    }
}
