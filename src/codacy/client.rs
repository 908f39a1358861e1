//! HTTP client for `GET /api/v3/organizations/{provider}/{org}/audit`: authentication, both
//! response shapes, and retries (429 with Retry-After; 5xx, timeouts, connection errors,
//! truncated or non-JSON bodies with capped exponential backoff and full jitter).

use crate::clock::Backoff;
use crate::codacy::scheduler::Scheduler;
use crate::config::CodacyConfig;
use crate::event::OrgRef;
use crate::httputil::{body_excerpt, excerpt, parse_retry_after, read_body};
use crate::secret::{Redactor, Secret};
use crate::telemetry::Metrics;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait we accept from a Retry-After header of the Codacy API.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Bytes of an error response read for its excerpt.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One response page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Value>,
    /// `pagination.cursor` of the v3 envelope; `None` for the last page and for bare arrays.
    pub next_cursor: Option<String>,
    /// `pagination.limit` when the server reported it (it may be lower than what we asked).
    pub reported_limit: Option<u32>,
    /// Whether the body was the v3 envelope (vs a bare array).
    pub enveloped: bool,
    /// `pagination.total` when the server reported it: how many events the window holds now.
    /// A change between the pages of one walk means the data moved under it.
    pub total: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 401/403: needs a human; the organization is marked failed and retried slowly.
    #[error("{status} from {url}: {hint}")]
    Denied {
        status: u16,
        url: String,
        hint: String,
    },
    /// 404: unknown provider/organization.
    #[error("404 Not Found from {url}: organization {org} is unknown to this Codacy instance; check the provider code and the organization name (as shown in Codacy's URL), and codacy.base_url")]
    NotFound { url: String, org: String },
    /// 404 without a JSON error body: whatever answered is not Codacy's API, so "organization
    /// unknown" would send the user hunting for a typo that is not there.
    #[error("404 Not Found from {url}, without the JSON error body Codacy's API answers with: this server does not look like a Codacy API (is codacy.base_url right? https://app.codacy.com, or your self-hosted Codacy's address, without a path); it answered: {body}")]
    NotCodacy { url: String, body: String },
    /// Other 4xx: a request we cannot fix by retrying.
    #[error("{status} from {url}: {body}")]
    Rejected {
        status: u16,
        url: String,
        body: String,
    },
    /// A page larger than `codacy.max_response_bytes`: the same request would get the same
    /// page, so it is not retried.
    #[error("{url}: the response{} is larger than codacy.max_response_bytes ({limit} bytes); ask for fewer events per page by lowering codacy.page_limit (this request asked for {page_limit}), or raise codacy.max_response_bytes", .content_length.map(|n| format!(" ({n} bytes by its Content-Length)")).unwrap_or_default())]
    TooLarge {
        url: String,
        limit: u64,
        page_limit: u32,
        content_length: Option<u64>,
    },
    /// Still failing after every attempt (network, 5xx, 429, bad bodies).
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The agent is shutting down.
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl ApiError {
    /// Errors that need a human (token, role, tier, organization name).
    pub fn needs_human(&self) -> bool {
        matches!(
            self,
            ApiError::Denied { .. }
                | ApiError::NotFound { .. }
                | ApiError::NotCodacy { .. }
                | ApiError::Rejected { .. }
                | ApiError::TooLarge { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    /// The token, blanked from quotes of response bodies (a proxy may echo request headers).
    redactor: Redactor,
    pub page_limit: u32,
    max_response_bytes: u64,
    max_attempts: u32,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    /// Every request of every organization goes through it.
    scheduler: Arc<Scheduler>,
}

enum Attempt {
    Done(Page),
    Fatal(ApiError),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// 429: the scheduler pauses every organization for `after`.
    RateLimited {
        after: Duration,
    },
}

impl Client {
    pub fn new(config: &CodacyConfig, metrics: Arc<Metrics>) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "codacy-audit-forwarder/",
                env!("CARGO_PKG_VERSION")
            ))
            // A redirect would carry the api-token header to whatever host it names.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base_url: config.base_url.clone(),
            token: config.api_token.clone(),
            redactor: Redactor::of([&config.api_token]),
            page_limit: config.page_limit,
            max_response_bytes: config.max_response_bytes,
            max_attempts: config.max_attempts,
            backoff: Backoff::new(Duration::from_millis(500), config.max_backoff),
            scheduler: Arc::new(Scheduler::new(
                config.max_concurrent_requests,
                config.max_requests_per_second,
                metrics.clone(),
            )),
            metrics,
        })
    }

    /// The endpoint URL for an organization (organization name percent-encoded).
    pub fn audit_url(&self, org: &OrgRef) -> String {
        let mut url = match reqwest::Url::parse(&self.base_url) {
            Ok(u) => u,
            Err(_) => return format!("{}/api/v3/organizations/{org}/audit", self.base_url),
        };
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend([
                "api",
                "v3",
                "organizations",
                org.provider.as_str(),
                &org.name,
                "audit",
            ]);
        }
        url.to_string()
    }

    /// Fetches one page of `[from_ms, to_ms)`, retrying transient failures.
    pub async fn fetch_page(
        &self,
        org: &OrgRef,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ApiError> {
        let url = self.audit_url(org);
        let org_key = org.key();
        let mut last = String::new();
        for attempt in 0..self.max_attempts {
            let slot = self.scheduler.acquire().await;
            let answer = self.attempt(org, &url, from_ms, to_ms, limit, cursor).await;
            drop(slot);
            if !matches!(answer, Attempt::RateLimited { .. }) {
                self.scheduler.answered();
            }
            match answer {
                Attempt::Done(page) => return Ok(page),
                Attempt::Fatal(e) => return Err(e),
                Attempt::RateLimited { after } => {
                    last = "429 Too Many Requests (rate limited)".into();
                    self.metrics.retry("codacy_api");
                    // The scheduler holds every request (this one's retry included) until then.
                    self.scheduler.rate_limited(after.min(MAX_RETRY_AFTER));
                }
                Attempt::Retry { reason, after } => {
                    last = reason;
                    if attempt + 1 == self.max_attempts {
                        break;
                    }
                    let wait = after
                        .map(|a| a.min(MAX_RETRY_AFTER))
                        .unwrap_or_else(|| self.backoff.delay(attempt));
                    self.metrics.retry("codacy_api");
                    tracing::warn!(organization = %org_key, attempt = attempt + 1, wait_ms = wait.as_millis() as u64,
                        reason = %last, "Codacy API request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Err(ApiError::Exhausted {
            url,
            attempts: self.max_attempts,
            last,
        })
    }

    /// One request: its page, or what to do about its failure.
    async fn attempt(
        &self,
        org: &OrgRef,
        url: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
        cursor: Option<&str>,
    ) -> Attempt {
        let org_key = org.key();
        let response = match self.send(url, from_ms, to_ms, limit, cursor).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.api_request(&org_key, "error");
                return Attempt::Retry {
                    reason: describe_transport_error(&e),
                    after: None,
                };
            }
        };
        let status = response.status();
        self.metrics.api_request(&org_key, status.as_str());
        if status.is_success() {
            self.read_page(url, limit, response).await
        } else {
            self.unsuccessful(org, url, response).await
        }
    }

    /// Asks for one page of `[from_ms, to_ms)`.
    async fn send(
        &self,
        url: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
        cursor: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut query: Vec<(&str, String)> = vec![
            ("from", from_ms.to_string()),
            ("to", to_ms.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        self.http
            .get(url)
            .header("api-token", token_header(&self.token))
            .header("accept", "application/json")
            .query(&query)
            .send()
            .await
    }

    /// A status other than 2xx: wait and retry (429, 5xx), or an error that needs a human.
    async fn unsuccessful(&self, org: &OrgRef, url: &str, response: reqwest::Response) -> Attempt {
        let status = response.status();
        if status.as_u16() == 429 {
            let after = retry_after(response.headers());
            return Attempt::RateLimited {
                after: after.unwrap_or(Duration::from_secs(30)),
            };
        }
        if status.is_server_error() {
            return Attempt::Retry {
                reason: format!("{status} from the Codacy API"),
                after: retry_after(response.headers()),
            };
        }
        if matches!(status.as_u16(), 401 | 403) {
            return Attempt::Fatal(ApiError::Denied {
                status: status.as_u16(),
                url: url.to_string(),
                hint: format!(
                    "the API token is invalid or revoked, or its user is not an organization admin or manager of {org}, or the organization is not on Codacy's Business tier (audit logs are a Business feature)"
                ),
            });
        }
        if status.as_u16() == 404 {
            return Attempt::Fatal(self.not_found(org, url, response).await);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("(no Location)")
                .to_string();
            return Attempt::Fatal(ApiError::Rejected {
                status: status.as_u16(),
                url: url.to_string(),
                body: format!(
                    "redirected to {location}; the token is not sent after redirects: set codacy.base_url to the API's real address"
                ),
            });
        }
        let (body, _) = read_body(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        Attempt::Fatal(ApiError::Rejected {
            status: status.as_u16(),
            url: url.to_string(),
            body: body_excerpt(&body, &self.redactor),
        })
    }

    /// A 404 from Codacy names an organization it does not know; from anything else, a wrong
    /// `codacy.base_url`.
    async fn not_found(&self, org: &OrgRef, url: &str, response: reqwest::Response) -> ApiError {
        let (body, _) = read_body(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        // Codacy (and the simulator) explain a 404 in a JSON object; a web server, proxy
        // or wrong base path answers with HTML, text or nothing.
        let codacy_like = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object());
        if codacy_like {
            ApiError::NotFound {
                url: url.to_string(),
                org: org.key(),
            }
        } else {
            ApiError::NotCodacy {
                url: url.to_string(),
                body: if body.is_empty() {
                    "(an empty body)".to_string()
                } else {
                    body_excerpt(&body, &self.redactor)
                },
            }
        }
    }

    /// A 2xx: its body, read up to `codacy.max_response_bytes`, parsed as a page.
    async fn read_page(&self, url: &str, limit: u32, response: reqwest::Response) -> Attempt {
        let too_large = |content_length| {
            Attempt::Fatal(ApiError::TooLarge {
                url: url.to_string(),
                limit: self.max_response_bytes,
                page_limit: limit,
                content_length,
            })
        };
        // Announced too large: not even the start of it is read.
        let content_length = response.content_length();
        if content_length.is_some_and(|n| n > self.max_response_bytes) {
            return too_large(content_length);
        }
        let max = usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX);
        let body = match read_body(response, max).await {
            Ok((b, true)) => b,
            Ok((_, false)) => return too_large(None),
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("response body cut off: {}", describe_transport_error(&e)),
                    after: None,
                }
            }
        };
        match parse_page(&body) {
            Ok(page) => Attempt::Done(page),
            Err(reason) => Attempt::Retry {
                reason: format!(
                    "{reason}; the body starts with {:?}",
                    excerpt(&body, 80, &self.redactor)
                ),
                after: None,
            },
        }
    }
}

/// The token as a header value marked sensitive (kept out of reqwest's Debug output).
fn token_header(token: &Secret) -> reqwest::header::HeaderValue {
    match reqwest::header::HeaderValue::from_str(token.expose()) {
        Ok(mut v) => {
            v.set_sensitive(true);
            v
        }
        // Not a valid header value (a stray control character): sent empty, so the API answers
        // 401 with the remedy instead of the request failing obscurely.
        Err(_) => reqwest::header::HeaderValue::from_static(""),
    }
}

/// Parses a response body: a bare array or the v3 envelope.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("response is not complete JSON ({e}; {} bytes)", body.len()))?;
    match value {
        Value::Array(events) => Ok(Page {
            events,
            next_cursor: None,
            reported_limit: None,
            enveloped: false,
            total: None,
        }),
        Value::Object(mut map) => {
            let events =
                match map.remove("data") {
                    Some(Value::Array(events)) => events,
                    _ => return Err(
                        "response is a JSON object without a `data` array (not an audit-log page)"
                            .into(),
                    ),
                };
            let pagination = map.remove("pagination");
            let next_cursor = pagination
                .as_ref()
                .and_then(|p| p.get("cursor"))
                .and_then(|c| c.as_str())
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            let reported_limit = pagination
                .as_ref()
                .and_then(|p| p.get("limit"))
                .and_then(|l| l.as_u64())
                .map(|l| l.min(u32::MAX as u64) as u32);
            let total = pagination
                .as_ref()
                .and_then(|p| p.get("total"))
                .and_then(|t| t.as_u64());
            Ok(Page {
                events,
                next_cursor,
                reported_limit,
                enveloped: true,
                total,
            })
        }
        _ => Err("response is JSON but neither an array nor an object".into()),
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    // reqwest errors carry the URL but never our headers, so the token cannot leak here.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request failed"
    };
    let mut msg = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Retry-After as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_shapes() {
        let p = parse_page(br#"[{"a":1}]"#).unwrap();
        assert_eq!(
            (p.events.len(), p.enveloped, p.next_cursor),
            (1, false, None)
        );
        let p = parse_page(br#"{"data":[{"a":1},{"b":2}],"pagination":{"cursor":"MjUw","limit":250,"total":1510}}"#)
            .unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.next_cursor.as_deref(), Some("MjUw"));
        assert_eq!(p.reported_limit, Some(250));
        assert_eq!(p.total, Some(1510));
        let p = parse_page(br#"{"data":[],"pagination":{"limit":250}}"#).unwrap();
        assert_eq!(p.next_cursor, None);
    }

    #[test]
    fn truncated_and_foreign_bodies_are_errors() {
        assert!(parse_page(br#"[{"a":1},{"b"#)
            .unwrap_err()
            .contains("not complete JSON"));
        assert!(parse_page(b"<html>busy</html>").is_err());
        assert!(parse_page(br#"{"error":"x"}"#)
            .unwrap_err()
            .contains("data"));
        assert!(parse_page(b"42").is_err());
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn url_encodes_the_organization() {
        let cfg = crate::config::CodacyConfig {
            base_url: "https://codacy.example.com/".into(),
            api_token: Secret::new("t"),
            token_source: String::new(),
            token_missing: None,
            token_warning: None,
            page_limit: 10,
            request_timeout: Duration::from_secs(1),
            max_attempts: 1,
            max_backoff: Duration::from_secs(1),
            max_concurrent_requests: 4,
            max_requests_per_second: 10.0,
            allow_insecure_http: false,
            max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
        };
        let c = Client::new(&cfg, Arc::new(Metrics::new())).unwrap();
        let url = c.audit_url(&OrgRef::new(crate::event::Provider::Gl, "my org/x"));
        assert_eq!(
            url,
            "https://codacy.example.com/api/v3/organizations/gl/my%20org%2Fx/audit"
        );
        let _ = json!(null);
    }
}
