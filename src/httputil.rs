//! Small HTTP helpers shared by the Codacy client and the HTTP sinks.

use crate::secret::Redactor;
use std::time::{Duration, SystemTime};

/// Longest wait accepted from a `Retry-After` header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Characters of a response body quoted in errors and dead-letter reasons.
pub const EXCERPT_CHARS: usize = 300;

/// Parses `Retry-After`: delay-seconds or an HTTP date (RFC 9110), relative to `now`. A date in
/// the past means "now"; values are capped at one hour.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value)
            .ok()
            .map(|d| d.timestamp_millis())
            .or_else(|| {
                // Obsolete forms still allowed by RFC 9110: RFC 850 and asctime.
                ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                    .iter()
                    .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
                    .map(|d| d.and_utc().timestamp_millis())
            })?;
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Reads a response body chunk by chunk, keeping at most `limit` bytes, so that memory follows
/// the limit and not the server: `(body, true)` when that was all of it, `(its first limit
/// bytes, false)` when it is longer (the rest is not read).
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let expected = response.content_length().unwrap_or(0);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(limit).min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// Whether requests to `url` cross the network unencrypted: `http://` to a host that is not
/// this machine's loopback (`localhost`, 127.0.0.0/8, `::1`).
pub fn cleartext_to_remote(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "http" && !loopback
}

/// The first characters of a response body, on one line, for errors and dead-letter reasons,
/// with the secrets of `redactor` blanked (a server may echo our request headers).
pub fn body_excerpt(body: &[u8], redactor: &Redactor) -> String {
    excerpt(body, EXCERPT_CHARS, redactor)
}

/// At most `max_chars` characters of `body` on one line. Secrets are blanked before the text is
/// cut, so a cut can never leave part of one behind; only a prefix of the body is decoded, but
/// always enough that the characters shown do not come from its possibly cut-off end.
pub fn excerpt(body: &[u8], max_chars: usize, redactor: &Redactor) -> String {
    // A secret that ends within the part shown starts at most `longest` bytes before its end.
    let guard = redactor.longest();
    let mut take = max_chars.saturating_mul(4).saturating_add(guard);
    let (one_line, whole) = loop {
        let end = take.min(body.len());
        let text = String::from_utf8_lossy(&body[..end]);
        let one_line: String = redactor
            .redact(text.trim())
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let whole = end == body.len();
        // Blanking shortens text: make sure what is shown does not reach the last `guard`
        // characters, where a secret may have been cut by `end` and so not recognised.
        if whole || one_line.chars().count() >= max_chars.saturating_add(guard) {
            break (one_line, whole);
        }
        take = take.saturating_mul(2);
    };
    if one_line.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = one_line.chars().take(max_chars).collect();
    if !whole || one_line.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn cleartext_means_http_to_another_machine() {
        let c = |u: &str| cleartext_to_remote(&reqwest::Url::parse(u).unwrap());
        assert!(c("http://codacy.internal:8080"));
        assert!(c("http://10.0.0.5/"));
        assert!(!c("https://codacy.internal"));
        assert!(!c("http://127.0.0.1:9000"));
        assert!(!c("http://127.1.2.3"));
        assert!(!c("http://LOCALHOST:80"));
        assert!(!c("http://[::1]:8080"));
    }

    #[test]
    fn excerpt_is_one_bounded_line() {
        let none = Redactor::default();
        assert_eq!(body_excerpt(b"", &none), "(empty body)");
        assert_eq!(body_excerpt(b" {\"a\":\n1} ", &none), "{\"a\": 1}");
        let long = vec![b'x'; 1000];
        let e = body_excerpt(&long, &none);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    /// A server echoing our headers: whatever the cut, no part of the token survives.
    #[test]
    fn excerpts_blank_secrets_even_where_the_text_is_cut() {
        let token = "s3cr3t-T0KEN-0123456789abcdefghijklmnopqrstuvwxyz";
        let r = Redactor::of([&Secret::new(token)]);
        for pad in 0..EXCERPT_CHARS + 10 {
            let body = format!("{}api-token: {token}, again {token}", "x".repeat(pad));
            let e = body_excerpt(body.as_bytes(), &r);
            assert!(
                !e.contains("s3cr3t") && !e.contains("xyz,"),
                "pad {pad}: {e}"
            );
            assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        }
        // Many secrets shrink the text: more of the body comes into view, still blanked.
        let body = format!("{token} ").repeat(200);
        let e = body_excerpt(body.as_bytes(), &r);
        assert!(
            e.starts_with("[redacted] [redacted]") && !e.contains("s3cr"),
            "{e}"
        );
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
    }
}
