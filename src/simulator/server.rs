//! The HTTP side of the simulator: routing, auth, faults and page assembly.

use super::{
    decode_cursor, encode_cursor, provider_from_path, Keep, Order, Quirks, RequestRecord,
    RetryAfter, Shape, Simulator, DEFAULT_LIMIT, MAX_LIMIT, REQUEST_LOG_CAP,
};
use crate::event::OrgRef;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(super) const AUDIT_ROUTE: &str = "/api/v3/organizations/:provider/:organization/audit";

/// A running simulator server. Dropping it stops the server (abruptly); [`ServerHandle::shutdown`]
/// stops it gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    /// `http://127.0.0.1:PORT`, what the client's `base_url` should be.
    pub base_url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(super) async fn serve(sim: Simulator, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(AUDIT_ROUTE, get(audit))
        .fallback(unknown_route)
        .with_state(sim);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(%addr, %error, "Codacy simulator server stopped with an error");
        }
    });
    tracing::info!(%addr, "Codacy simulator listening");
    Ok(ServerHandle {
        base_url: format!("http://{addr}"),
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

async fn unknown_route() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Not Found",
        "no such endpoint; the simulator serves GET /api/v3/organizations/{provider}/{organization}/audit",
    )
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    json_response(status, body.to_string().into_bytes())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Every `n`th request (1-based) when `every` is set.
fn hits(every: Option<u32>, number: u64) -> bool {
    matches!(every, Some(n) if n > 0 && number % u64::from(n) == 0)
}

/// The parsed query of one audit request.
#[derive(Debug, Default)]
pub(super) struct AuditQuery {
    pub(super) from: Option<i64>,
    pub(super) to: Option<i64>,
    pub(super) limit: Option<usize>,
    pub(super) cursor: Option<String>,
}

fn parse_query(pairs: &[(String, String)]) -> Result<AuditQuery, String> {
    let mut q = AuditQuery::default();
    let number = |key: &str, value: &str| -> Result<i64, String> {
        value.trim().parse::<i64>().map_err(|_| {
            format!("query parameter `{key}` must be epoch milliseconds, got {value:?}")
        })
    };
    for (key, value) in pairs {
        match key.as_str() {
            "from" => q.from = Some(number(key, value)?),
            "to" => q.to = Some(number(key, value)?),
            "limit" => {
                let n = number(key, value)?;
                q.limit = Some(n.clamp(1, MAX_LIMIT as i64) as usize);
            }
            "cursor" if !value.is_empty() => q.cursor = Some(value.clone()),
            _ => {}
        }
    }
    Ok(q)
}

async fn audit(
    State(sim): State<Simulator>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (number, quirks) = {
        let mut state = sim.state();
        state.requests += 1;
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        (state.requests, state.quirks.clone())
    };
    // Held until the answer is built (slow responses included).
    struct InFlight(Simulator);
    impl Drop for InFlight {
        fn drop(&mut self) {
            let mut state = self.0.state();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
    let _in_flight = InFlight(sim.clone());
    if let Some(delay) = quirks.slow {
        tokio::time::sleep(delay).await;
    }
    let (provider, organization) = match path {
        Ok(Path(p)) => p,
        Err(rejection) => (String::new(), rejection.body_text()),
    };
    let parsed = match query {
        Ok(Query(pairs)) => parse_query(&pairs),
        Err(rejection) => Err(rejection.body_text()),
    };
    let mut record = RequestRecord {
        number,
        org: format!("{provider}/{organization}"),
        from: None,
        to: None,
        limit: None,
        cursor: None,
        status: 0,
        events: 0,
    };
    if let Ok(q) = &parsed {
        record.from = q.from;
        record.to = q.to;
        record.limit = q.limit;
        record.cursor = q.cursor.clone();
    }
    let (response, events) = answer(
        &sim,
        number,
        &quirks,
        &provider,
        &organization,
        parsed,
        &headers,
    );
    record.status = response.status().as_u16();
    record.events = events;
    tracing::debug!(
        number,
        org = %record.org,
        status = record.status,
        events,
        "simulator answered"
    );
    let mut state = sim.state();
    if state.log.len() >= REQUEST_LOG_CAP {
        state.log.pop_front();
    }
    state.log.push_back(record);
    state.land_arrivals(number);
    response
}

/// The response to one request, and how many events an intact body holds.
fn answer(
    sim: &Simulator,
    number: u64,
    quirks: &Quirks,
    provider: &str,
    organization: &str,
    query: Result<AuditQuery, String>,
    headers: &HeaderMap,
) -> (Response, usize) {
    if quirks.auth_failure {
        return (unauthorized(), 0);
    }
    if quirks.forbidden {
        let msg = "the organization is not on the Business tier or the token's user is not an \
                   organization admin or manager (simulated)";
        return (error(StatusCode::FORBIDDEN, "Forbidden", msg), 0);
    }
    if hits(quirks.rate_limit_every, number) {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "rate limit exceeded (simulated)",
        );
        let value = match quirks.retry_after {
            RetryAfter::Seconds(s) => Some(s.to_string()),
            RetryAfter::HttpDate(s) => Some(http_date(
                sim.clock()
                    .now_ms()
                    .saturating_add((s as i64).saturating_mul(1000)),
            )),
            RetryAfter::Omitted => None,
        };
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return (response, 0);
    }
    if hits(quirks.unavailable_every, number) {
        let msg = "service temporarily unavailable (simulated)";
        return (
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", msg),
            0,
        );
    }
    let token_ok = headers
        .get("api-token")
        .is_some_and(|v| v.as_bytes() == sim.token().expose().as_bytes());
    if !token_ok {
        return (unauthorized(), 0);
    }
    let Some(org) = provider_from_path(provider).map(|p| OrgRef::new(p, organization)) else {
        return (unknown_org(provider, organization), 0);
    };
    let q = match query {
        Ok(q) => q,
        Err(msg) => return (error(StatusCode::BAD_REQUEST, "Bad Request", &msg), 0),
    };
    let offset = match q.cursor.as_deref().map(decode_cursor) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            let msg = "query parameter `cursor` is not a cursor this server issued";
            return (error(StatusCode::BAD_REQUEST, "Bad Request", msg), 0);
        }
    };
    let Some((body, events)) = page(sim, quirks, &org, &q, offset) else {
        return (unknown_org(provider, organization), 0);
    };
    if hits(quirks.truncate_every, number) {
        // A complete HTTP message whose JSON stops in the middle (at least one byte is cut).
        let keep = body.len() / 2;
        return (json_response(StatusCode::OK, body[..keep].to_vec()), events);
    }
    if hits(quirks.non_json_every, number) {
        let html = "<!DOCTYPE html>\n<html><head><title>Codacy is under maintenance</title></head>\
                    <body><h1>We'll be back soon</h1></body></html>\n";
        let mut response = (StatusCode::OK, html).into_response();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return (response, events);
    }
    (json_response(StatusCode::OK, body), events)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "invalid or missing api-token (simulated)",
    )
}

fn unknown_org(provider: &str, organization: &str) -> Response {
    let msg = format!("organization {provider}/{organization} not found (simulated)");
    error(StatusCode::NOT_FOUND, "Not Found", &msg)
}

fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Builds the body for one page by concatenating pre-serialized events; `None` for an unknown
/// organization.
pub(super) fn page(
    sim: &Simulator,
    quirks: &Quirks,
    org: &OrgRef,
    q: &AuditQuery,
    offset: usize,
) -> Option<(Vec<u8>, usize)> {
    let mut state = sim.state();
    if !state.orgs.contains_key(org) {
        return None;
    }
    let shape = match quirks.shape {
        Shape::Alternate if q.cursor.is_some() => Shape::Envelope,
        Shape::Alternate => {
            state.first_pages += 1;
            if state.first_pages % 2 == 1 {
                Shape::Array
            } else {
                Shape::Envelope
            }
        }
        other => other,
    };
    let held = state.orgs.get(org)?;
    let window = held.window(q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    let window = &held.events[window];
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let served = quirks.page_cap.map_or(limit, |cap| cap.clamp(1, limit));
    let total = window.len();

    // Indices into `window` (ascending), in response order.
    let (range, cursor) = match shape {
        Shape::Array => {
            let n = total.min(served);
            let range = match quirks.array_keeps {
                Keep::Oldest => 0..n,
                Keep::Newest => total - n..total,
            };
            (range, None)
        }
        _ => {
            let start = offset.min(total);
            let end = start.saturating_add(served).min(total);
            let next = (end < total).then(|| encode_cursor(end));
            // Offsets count in response order: newest-first pages start from the newest end.
            let range = match quirks.order {
                Order::Ascending => start..end,
                Order::NewestFirst => total - end..total - start,
            };
            (range, next)
        }
    };
    let selected = &window[range];
    let bytes: usize = selected.iter().map(|e| e.json.len() + 1).sum();
    let mut body = Vec::with_capacity(bytes + 128);
    body.extend_from_slice(if shape == Shape::Array {
        b"["
    } else {
        b"{\"data\":["
    });
    let mut push = |i: usize, e: &super::Stored| {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.json);
    };
    match quirks.order {
        Order::Ascending => selected.iter().enumerate().for_each(|(i, e)| push(i, e)),
        Order::NewestFirst => selected
            .iter()
            .rev()
            .enumerate()
            .for_each(|(i, e)| push(i, e)),
    }
    body.push(b']');
    if shape != Shape::Array {
        body.extend_from_slice(b",\"pagination\":{");
        if let Some(cursor) = cursor {
            body.extend_from_slice(format!("\"cursor\":\"{cursor}\",").as_bytes());
        }
        body.extend_from_slice(format!("\"limit\":{limit},\"total\":{total}}}}}").as_bytes());
    }
    Some((body, selected.len()))
}
