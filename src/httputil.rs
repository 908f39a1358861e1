//! Small HTTP helpers shared by the Codacy client and the HTTP sinks.

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

/// The first characters of a response body, on one line, for errors and dead-letter reasons.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = one_line.chars().take(EXCERPT_CHARS).collect();
    if one_line.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}
