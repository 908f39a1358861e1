//! Embedded Codacy audit-log API simulator: the peer for `codacy-audit-forwarder demo`, for the
//! polling pipeline's integration tests and for the backfill benchmark.
//!
//! It serves `GET /api/v3/organizations/{provider}/{organization}/audit` on 127.0.0.1 the way
//! Codacy's public documentation describes it, with every variant a client must survive. All
//! behaviour is switchable at runtime through the cloneable [`Simulator`] handle, so a test can
//! change the server between (or during) polls.
//!
//! # Requests
//! - Header `api-token` must equal the token given to [`Simulator::new`]; otherwise 401 with a
//!   JSON body `{"error": "Unauthorized", "message": ...}` (the token is never echoed).
//! - An unknown provider or organization (never added, or removed) is 404 naming it. The
//!   organization segment is percent-decoded, so names with spaces, `/` (`%2F`) or unicode work.
//! - Query: `from` (epoch ms, inclusive), `to` (epoch ms, exclusive), `limit` (default 100,
//!   clamped to 1..=1000), `cursor` (base64 of a decimal offset into the window, like Codacy's
//!   `MjUw` = 250; padding optional). Other parameters are ignored; a non-numeric
//!   `from`/`to`/`limit` or a cursor this server cannot have issued is 400. A cursor past the end
//!   is an empty last page.
//!
//! # Quirks ([`Quirks`], via [`Simulator::set_quirks`] / [`Simulator::update_quirks`])
//! `Quirks::default()` is a well-behaved v3 server: envelope, ascending, no faults.
//! - `shape`: [`Shape::Envelope`] answers `{"data": [...], "pagination": {"cursor", "limit",
//!   "total"}}` with no `cursor` on the last page. [`Shape::Array`] answers a bare array of at most
//!   `limit` events and ignores `cursor`: a larger window is silently cut, keeping its oldest or
//!   newest part (`array_keeps`), so the client must split full windows and re-query.
//!   [`Shape::Alternate`] alternates array/envelope per first-page request (one without
//!   `cursor`), starting with the array; requests that follow a cursor always get the envelope, so
//!   one window walk never changes shape midway.
//! - `order`: ascending or newest-first. Cursor offsets count in response order, and they are
//!   offsets: events pushed into the window while a client pages shift them (as with Codacy),
//!   which is why clients pin `to` for a pass.
//! - `page_cap`: at most this many events per response even when `limit` is larger. With the
//!   envelope the cursor still leads to the rest; with a bare array the cut is invisible to a
//!   client that compares the page size with its `limit` (that is what it is for).
//! - `auth_failure` (every request 401) and `forbidden` (every request 403, "not Business tier").
//! - Counter-based, deterministic faults: with `rate_limit_every: Some(n)`, request number `k`
//!   (1-based, counting every audit request, see [`Simulator::request_count`]) with `k % n == 0`
//!   is answered 429 with `Retry-After` as `retry_after` says (seconds, an HTTP date relative to
//!   the simulator's clock, or no header); likewise `unavailable_every` (503), `truncate_every`
//!   (200, `application/json`, the real body cut in half so it never parses) and
//!   `non_json_every` (200, an HTML maintenance page). Faults never consume state: nothing
//!   advances on the server and cursors are offsets, so a retried request gets the real answer.
//! - `slow`: delays every response (tokio's timer).
//!
//! Checks run in this order: `auth_failure`, `forbidden`, 429, 503, the token, the organization,
//! the query, then the page is built and `truncate_every` / `non_json_every` may spoil it.
//!
//! # Events
//! [`Simulator::push_events`] accepts any JSON values with any timestamps, in any order (a late
//! arrival is just a later push with an older timestamp). Each event is serialized once on push
//! and kept sorted by timestamp (ties keep push order), so a query is a binary search plus a
//! concatenation of pre-serialized bytes, fast enough for the 1,000,000-event backfill bench.
//! Values without a usable `timestamp` (for the client's invalid-event path; see
//! [`GenOptions::invalid`]) sit at the timestamp of the previous event of the same push (a leading
//! one at the first valid timestamp of the push, else 0), or exactly where
//! [`Simulator::push_events_at`] puts them. [`Simulator::events`] returns everything held: the
//! multiset a correct client must deliver (minus the events it cannot parse).
//! [`generate_events`] draws realistic, deterministic events (see [`GenOptions`]) and
//! [`Simulator::spawn_producer`] keeps adding fresh ones.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use codacy_audit_forwarder::event::{OrgRef, Provider};
//! use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
//! let sim = Simulator::new("demo-token");
//! let org = OrgRef::new(Provider::Gh, "acme");
//! let now = chrono::Utc::now().timestamp_millis();
//! sim.push_events(&org, generate_events(1, 500, now - 7 * 86_400_000, now, &GenOptions::tricky()));
//! let server = sim.serve().await?; // point the client at server.base_url
//! let producer = sim.spawn_producer(
//!     &org,
//!     std::time::Duration::from_secs(5),
//!     codacy_audit_forwarder::clock::system(),
//! );
//! # drop((server, producer)); Ok(()) }
//! ```
//! Tests do the same with small data, flip [`Quirks`] to drive every client path, and read
//! [`Simulator::requests`] to see what the client asked for and what it got.

mod generate;
mod server;
mod vocabulary;

pub use generate::{generate_events, GenOptions};
pub use server::ServerHandle;
pub use vocabulary::ACTIONS;

use crate::clock::{self, SharedClock};
use crate::event::{parse_timestamp, OrgRef, Provider};
use crate::secret::Secret;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;

fn stored(events: impl IntoIterator<Item = (i64, Value)>) -> Vec<Stored> {
    events
        .into_iter()
        .map(|(ts, value)| Stored {
            ts,
            json: serde_json::to_vec(&value)
                .unwrap_or_else(|_| b"null".to_vec())
                .into_boxed_slice(),
        })
        .collect()
}

/// Default `limit` when the request has none (Codacy's v3 default).
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` honoured; larger values are clamped.
pub const MAX_LIMIT: usize = 1000;
/// The request log keeps at most this many entries (the demo runs for hours).
const REQUEST_LOG_CAP: usize = 10_000;

/// Response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Bare JSON array, at most `limit` events, no cursor.
    Array,
    /// v3 envelope with `data` and `pagination`.
    #[default]
    Envelope,
    /// Array and envelope alternately per first-page request; cursor follow-ups get the envelope.
    Alternate,
}

/// Order of the events within a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    NewestFirst,
}

/// Which part of a window a full bare array keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    #[default]
    Oldest,
    Newest,
}

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>` this many seconds after the simulator's clock.
    HttpDate(u64),
    /// No `Retry-After` header at all.
    Omitted,
}

impl Default for RetryAfter {
    fn default() -> Self {
        RetryAfter::Seconds(1)
    }
}

/// Switchable server behaviour; see the module documentation for each quirk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    /// Bare array, v3 envelope, or alternating.
    pub shape: Shape,
    /// Ascending or newest first.
    pub order: Order,
    /// Which part of a window a full bare array keeps.
    pub array_keeps: Keep,
    /// At most this many events per response, whatever `limit` says.
    pub page_cap: Option<usize>,
    /// Every request 401.
    pub auth_failure: bool,
    /// Every request 403 (wrong role or not Business tier).
    pub forbidden: bool,
    /// Every Nth request 429.
    pub rate_limit_every: Option<u32>,
    /// The `Retry-After` of those 429s.
    pub retry_after: RetryAfter,
    /// Every Nth request 503.
    pub unavailable_every: Option<u32>,
    /// Every Nth request 200 with the JSON body cut in half.
    pub truncate_every: Option<u32>,
    /// Every Nth request 200 with an HTML page.
    pub non_json_every: Option<u32>,
    /// Delay before every response.
    pub slow: Option<Duration>,
}

/// One request as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// 1-based request number (the counter the `*_every` faults use).
    pub number: u64,
    /// `provider/organization` as decoded from the path.
    pub org: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub status: u16,
    /// Events in the (intact) body; 0 for errors and injected faults.
    pub events: usize,
}

/// An event held by the simulator: its window key and its JSON, serialized once.
#[derive(Debug, Clone)]
struct Stored {
    ts: i64,
    json: Box<[u8]>,
}

#[derive(Debug, Default)]
struct OrgEvents {
    /// Sorted by `ts`; equal timestamps keep push order.
    events: Vec<Stored>,
}

impl OrgEvents {
    fn insert(&mut self, mut batch: Vec<Stored>) {
        let in_order = batch.windows(2).all(|w| w[0].ts <= w[1].ts)
            && match (self.events.last(), batch.first()) {
                (Some(last), Some(first)) => last.ts <= first.ts,
                _ => true,
            };
        self.events.append(&mut batch);
        if !in_order {
            // Stable: events sharing a millisecond keep the order they were pushed in.
            self.events.sort_by_key(|e| e.ts);
        }
    }

    /// Index range of events with `from <= ts < to`.
    fn window(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        let lo = self.events.partition_point(|e| e.ts < from);
        let hi = self.events.partition_point(|e| e.ts < to).max(lo);
        lo..hi
    }
}

#[derive(Debug, Default)]
struct State {
    orgs: HashMap<OrgRef, OrgEvents>,
    quirks: Quirks,
    requests: u64,
    /// First-page requests answered so far (drives `Shape::Alternate`).
    first_pages: u64,
    log: VecDeque<RequestRecord>,
    /// Audit requests being answered now, and the most ever at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Events that land once a given request has been answered: (request number, org, events).
    arrivals: Vec<(u64, OrgRef, Vec<Stored>)>,
}

impl State {
    /// Lands the scheduled arrivals due after request `number`.
    fn land_arrivals(&mut self, number: u64) {
        let (due, later) = std::mem::take(&mut self.arrivals)
            .into_iter()
            .partition(|(after, _, _)| *after <= number);
        self.arrivals = later;
        for (_, org, batch) in due {
            self.orgs.entry(org).or_default().insert(batch);
        }
    }
}

/// Cloneable handle to one simulated Codacy; every clone sees and changes the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    token: Secret,
    clock: SharedClock,
    state: Mutex<State>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator that accepts `token` and uses the system clock.
    pub fn new(token: &str) -> Self {
        Self::with_clock(token, clock::system())
    }

    /// A simulator whose "now" (producer timestamps, HTTP-date `Retry-After`) comes from `clock`.
    pub fn with_clock(token: &str, clock: SharedClock) -> Self {
        Simulator {
            inner: Arc::new(Inner {
                token: Secret::new(token),
                clock,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take every other user of the simulator down with it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn token(&self) -> &Secret {
        &self.inner.token
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Makes `org` known (empty); unknown organizations are answered 404. Idempotent.
    pub fn add_org(&self, org: &OrgRef) {
        self.state().orgs.entry(org.clone()).or_default();
    }

    /// Forgets `org` and its events: later requests get 404.
    pub fn remove_org(&self, org: &OrgRef) {
        self.state().orgs.remove(org);
    }

    /// Adds events to `org` (adding the organization if needed). Any timestamps, in any order;
    /// values without a usable `timestamp` are placed next to their neighbours in this push
    /// (see the module documentation).
    pub fn push_events(&self, org: &OrgRef, events: impl IntoIterator<Item = Value>) {
        let values: Vec<Value> = events.into_iter().collect();
        let parsed: Vec<Option<i64>> = values
            .iter()
            .map(|v| v.get("timestamp").and_then(|t| parse_timestamp(t).ok()))
            .collect();
        let first_valid = parsed.iter().flatten().next().copied().unwrap_or(0);
        let mut previous = None;
        let placed = values.into_iter().zip(parsed).map(|(value, ts)| {
            let at = ts.or(previous).unwrap_or(first_valid);
            previous = Some(at);
            (at, value)
        });
        self.push_events_at(org, placed.collect::<Vec<_>>());
    }

    /// Adds events at explicit window positions (epoch ms), whatever their content says: for
    /// serving unparseable events exactly where a test wants them.
    pub fn push_events_at(&self, org: &OrgRef, events: impl IntoIterator<Item = (i64, Value)>) {
        // Serialize outside the lock: a million events take a while and requests must not wait.
        let batch = stored(events);
        self.state()
            .orgs
            .entry(org.clone())
            .or_default()
            .insert(batch);
    }

    /// Events that arrive while a client pages: they land right after request number
    /// `after_request` (1-based, see [`Simulator::request_count`]) is answered, before the next
    /// one is. Each needs a usable `timestamp`. For deterministic "traffic during a walk" tests.
    pub fn arrive_after_request(
        &self,
        after_request: u64,
        org: &OrgRef,
        events: impl IntoIterator<Item = Value>,
    ) {
        let placed = events.into_iter().map(|v| {
            let ts = v
                .get("timestamp")
                .and_then(|t| parse_timestamp(t).ok())
                .unwrap_or(0);
            (ts, v)
        });
        let batch = stored(placed);
        let mut state = self.state();
        if state.requests >= after_request {
            state.orgs.entry(org.clone()).or_default().insert(batch);
        } else {
            state.arrivals.push((after_request, org.clone(), batch));
        }
    }

    /// Everything `org` holds, sorted by timestamp (ties in push order): the expected multiset.
    pub fn events(&self, org: &OrgRef) -> Vec<Value> {
        let state = self.state();
        let Some(held) = state.orgs.get(org) else {
            return Vec::new();
        };
        held.events
            .iter()
            .map(|e| serde_json::from_slice(&e.json).unwrap_or(Value::Null))
            .collect()
    }

    /// How many events `org` holds.
    pub fn event_count(&self, org: &OrgRef) -> usize {
        self.state().orgs.get(org).map_or(0, |o| o.events.len())
    }

    /// Drops every event of `org` (the organization stays known).
    pub fn clear_events(&self, org: &OrgRef) {
        if let Some(o) = self.state().orgs.get_mut(org) {
            o.events.clear();
        }
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        self.state().quirks = quirks;
    }

    pub fn quirks(&self) -> Quirks {
        self.state().quirks.clone()
    }

    /// Changes some quirks in place: `sim.update_quirks(|q| q.order = Order::NewestFirst)`.
    pub fn update_quirks(&self, change: impl FnOnce(&mut Quirks)) {
        change(&mut self.state().quirks);
    }

    /// Audit requests received so far (including refused ones).
    pub fn request_count(&self) -> u64 {
        self.state().requests
    }

    /// Scheduled arrivals ([`Simulator::arrive_after_request`]) that have not landed yet.
    pub fn pending_arrivals(&self) -> usize {
        self.state().arrivals.len()
    }

    /// The most audit requests this server ever answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state().max_in_flight
    }

    /// The most recent requests (up to 10,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.iter().cloned().collect()
    }

    /// Serves on `127.0.0.1` at a free port; see [`ServerHandle`].
    pub async fn serve(&self) -> std::io::Result<ServerHandle> {
        self.serve_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
    }

    /// Serves on a given address (the demo may want a fixed port).
    pub async fn serve_on(&self, addr: std::net::SocketAddr) -> std::io::Result<ServerHandle> {
        server::serve(self.clone(), addr).await
    }

    /// Keeps adding 1 to 3 fresh events "now" to `org` every `every` (demo mode). Abort the
    /// returned task to stop it.
    pub fn spawn_producer(
        &self,
        org: &OrgRef,
        every: Duration,
        clock: SharedClock,
    ) -> JoinHandle<()> {
        self.spawn_producer_with(
            org,
            ProducerOptions {
                every,
                ..ProducerOptions::default()
            },
            clock,
        )
    }

    /// [`Simulator::spawn_producer`] with every knob.
    pub fn spawn_producer_with(
        &self,
        org: &OrgRef,
        opts: ProducerOptions,
        clock: SharedClock,
    ) -> JoinHandle<()> {
        let sim = self.clone();
        let org = org.clone();
        self.add_org(&org);
        tokio::spawn(async move {
            let every = opts.every.max(Duration::from_millis(1));
            let gen_opts = GenOptions::default();
            for tick in 1u64.. {
                tokio::time::sleep(every).await;
                let now = clock.now_ms();
                let seed = opts.seed.wrapping_add(tick);
                let n = 1 + (seed % opts.max_per_tick.max(1) as u64) as usize;
                let mut events = generate_events(seed, n, now, now + 1, &gen_opts);
                if let (Some(late_every), Some(first)) = (opts.late_every, events.first_mut()) {
                    if late_every > 0 && tick % u64::from(late_every) == 0 {
                        let late = now - opts.late_by.as_millis() as i64;
                        first["timestamp"] = Value::String(generate::rfc3339_ms(late));
                    }
                }
                tracing::debug!(org = %org, events = events.len(), "simulator produced events");
                sim.push_events(&org, events);
            }
        })
    }
}

/// Knobs of [`Simulator::spawn_producer_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerOptions {
    pub every: Duration,
    /// Each tick adds 1..=`max_per_tick` events.
    pub max_per_tick: usize,
    /// Every Nth tick, one event is stamped `late_by` in the past (a late arrival).
    pub late_every: Option<u32>,
    pub late_by: Duration,
    pub seed: u64,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            every: Duration::from_secs(5),
            max_per_tick: 3,
            late_every: None,
            late_by: Duration::from_secs(30),
            seed: 0x5EED,
        }
    }
}

/// Parses a `provider` path segment the way Codacy's URLs spell it.
fn provider_from_path(s: &str) -> Option<Provider> {
    s.parse().ok()
}

/// Cursor for an offset: base64 of its decimal digits (`250` -> `MjUw`, as Codacy's look).
pub fn encode_cursor(offset: usize) -> String {
    base64_encode(offset.to_string().as_bytes())
}

/// The offset a cursor stands for; `None` for anything [`encode_cursor`] cannot have produced.
pub fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64_decode(cursor)?;
    let text = std::str::from_utf8(&bytes).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet; padding optional (clients may drop it).
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let trimmed = input.trim_end_matches('=');
    if input.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in trimmed.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
