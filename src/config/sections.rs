//! The typed sections of the configuration file (`[codacy]`, `[agent]`, `[[organizations]]`,
//! `[telemetry]`): raw as written, then checked. Errors name the key from the file's top.

use super::shard::{parse_shard, Shard};
use super::token::resolve_token;
use super::{
    AgentConfig, CodacyConfig, FieldError, LoadOptions, TelemetryConfig,
    DEFAULT_MAX_EVENTS_IN_MEMORY, DEFAULT_MAX_RESPONSE_BYTES, RETENTION,
};
use crate::event::{OrgRef, Provider};
use crate::httputil::cleartext_to_remote;
use crate::secret::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) codacy: RawCodacy,
    #[serde(default)]
    pub(super) agent: RawAgent,
    #[serde(default)]
    pub(super) organizations: Vec<RawOrg>,
    #[serde(default)]
    pub(super) sinks: Vec<Map<String, Value>>,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCodacy {
    pub(super) base_url: Option<String>,
    pub(super) api_token_file: Option<PathBuf>,
    pub(super) page_limit: Option<u32>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_attempts: Option<u32>,
    pub(super) max_backoff: Option<String>,
    pub(super) max_concurrent_requests: Option<u32>,
    pub(super) max_requests_per_second: Option<f64>,
    pub(super) allow_insecure_http: Option<bool>,
    pub(super) max_response_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) state_dir: Option<PathBuf>,
    pub(super) poll_interval: Option<String>,
    pub(super) initial_lookback: Option<String>,
    pub(super) overlap: Option<String>,
    pub(super) max_events_in_memory: Option<usize>,
    pub(super) max_poll_interval: Option<String>,
    pub(super) shard: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    pub(super) provider: String,
    pub(super) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) listen: Option<String>,
    pub(super) health_stale_intervals: Option<u32>,
}

fn duration(v: Option<&str>, default: &str, key: &str) -> Result<Duration, FieldError> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s).map_err(|e| {
        FieldError::new(
            key,
            format!("{s:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"24h\", \"7d\""),
        )
    })
}

/// `[codacy]`, with the token found as `options` say.
pub(super) fn codacy(c: RawCodacy, options: &LoadOptions) -> Result<CodacyConfig, FieldError> {
    let tokens = &options.tokens;
    let base_url = c
        .base_url
        .unwrap_or_else(|| "https://app.codacy.com".to_string());
    let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
        FieldError::new("codacy.base_url", format!("{base_url:?} is not a URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FieldError::new(
            "codacy.base_url",
            format!("{base_url:?} must be an http(s) URL such as https://app.codacy.com"),
        ));
    }
    let allow_insecure_http = c.allow_insecure_http.unwrap_or(false);
    if cleartext_to_remote(&parsed) && !allow_insecure_http {
        return Err(FieldError::new(
            "codacy.base_url",
            format!("{base_url:?} is plain http to another machine: the API token and the audit log would cross the network unencrypted; use https://, or set codacy.allow_insecure_http = true if the network is trusted (a warning is then logged at every start)"),
        ));
    }
    let page_limit = c.page_limit.unwrap_or(1000);
    if !(1..=1000).contains(&page_limit) {
        return Err(FieldError::new(
            "codacy.page_limit",
            format!("{page_limit} is out of range; the API accepts 1 to 1000"),
        ));
    }
    let max_response_bytes = c.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes < 1024 {
        return Err(FieldError::new(
            "codacy.max_response_bytes",
            format!("{max_response_bytes} is too small for any page; use at least 1024 (the default is {DEFAULT_MAX_RESPONSE_BYTES}, 64 MiB)"),
        ));
    }
    let (api_token, token_source, token_warning, token_missing) = match resolve_token(
        c.api_token_file.as_deref(),
        tokens,
        options.credential_source.as_deref(),
    ) {
        Ok(t) => (t.secret, t.source, t.warning, None),
        Err(m) if !options.token_required => (Secret::new(""), "none".to_string(), None, Some(m)),
        Err(m) => return Err(FieldError::new("codacy.api_token_file", m)),
    };
    Ok(CodacyConfig {
        base_url: base_url.trim_end_matches('/').to_string(),
        api_token,
        token_source,
        token_missing,
        token_warning,
        page_limit,
        request_timeout: duration(
            c.request_timeout.as_deref(),
            "30s",
            "codacy.request_timeout",
        )?,
        max_attempts: c.max_attempts.unwrap_or(6).max(1),
        max_backoff: duration(c.max_backoff.as_deref(), "60s", "codacy.max_backoff")?,
        max_concurrent_requests: match c.max_concurrent_requests.unwrap_or(4) {
            0 => {
                return Err(FieldError::new(
                    "codacy.max_concurrent_requests",
                    "must be at least 1",
                ))
            }
            n => n as usize,
        },
        max_requests_per_second: match c.max_requests_per_second.unwrap_or(10.0) {
            r if r.is_finite() && r > 0.0 => r,
            r => {
                return Err(FieldError::new(
                    "codacy.max_requests_per_second",
                    format!("{r} is not a positive number of requests per second"),
                ))
            }
        },
        allow_insecure_http,
        max_response_bytes,
    })
}

pub(super) fn agent(a: RawAgent) -> Result<AgentConfig, FieldError> {
    let initial_lookback = duration(
        a.initial_lookback.as_deref(),
        "24h",
        "agent.initial_lookback",
    )?;
    if initial_lookback > RETENTION {
        // Echoed as written: "400d", not humantime's "1year 1month 4days 7h 26m 24s".
        return Err(FieldError::new(
            "agent.initial_lookback",
            format!(
                "{:?} is longer than Codacy's one-year retention; use at most 365d",
                a.initial_lookback.as_deref().unwrap_or_default()
            ),
        ));
    }
    let poll_interval = duration(a.poll_interval.as_deref(), "60s", "agent.poll_interval")?;
    if poll_interval < Duration::from_secs(1) {
        return Err(FieldError::new(
            "agent.poll_interval",
            "must be at least 1s (Codacy rate-limits aggressive polling)",
        ));
    }
    let overlap = duration(a.overlap.as_deref(), "10m", "agent.overlap")?;
    if overlap > Duration::from_secs(7 * 24 * 3600) {
        return Err(FieldError::new(
            "agent.overlap",
            "must be at most 7d (every poll re-reads this window)",
        ));
    }
    let max_poll_interval = match a.max_poll_interval.as_deref() {
        None => poll_interval,
        Some(_) => duration(
            a.max_poll_interval.as_deref(),
            "60s",
            "agent.max_poll_interval",
        )?,
    };
    if max_poll_interval < poll_interval {
        return Err(FieldError::new(
            "agent.max_poll_interval",
            format!(
                "must be at least agent.poll_interval ({})",
                a.poll_interval.as_deref().unwrap_or("60s")
            ),
        ));
    }
    let shard = a
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(|m| FieldError::new("agent.shard", m))?;
    let max_events_in_memory = a
        .max_events_in_memory
        .unwrap_or(DEFAULT_MAX_EVENTS_IN_MEMORY);
    if max_events_in_memory == 0 {
        return Err(FieldError::new(
            "agent.max_events_in_memory",
            format!("0 would hold no events at all; use at least 1 (default {DEFAULT_MAX_EVENTS_IN_MEMORY}; larger values take more memory during a backfill)"),
        ));
    }
    Ok(AgentConfig {
        max_poll_interval,
        shard,
        state_dir: a
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/codacy-audit-forwarder")),
        poll_interval,
        initial_lookback,
        overlap,
        max_events_in_memory,
    })
}

/// `[[organizations]]`, and how many were listed before `shard` kept this agent's share.
pub(super) fn organizations(
    listed: Vec<RawOrg>,
    shard: Option<Shard>,
) -> Result<(Vec<OrgRef>, usize), FieldError> {
    let mut organizations = Vec::new();
    for (i, o) in listed.into_iter().enumerate() {
        let provider: Provider = o
            .provider
            .parse()
            .map_err(|m| FieldError::new(format!("organizations[{i}].provider"), m))?;
        if o.name.trim().is_empty() {
            return Err(FieldError::new(
                format!("organizations[{i}].name"),
                "must not be empty",
            ));
        }
        let org = OrgRef::new(provider, o.name);
        if organizations.contains(&org) {
            return Err(FieldError::new(
                format!("organizations[{i}]"),
                format!("organization {org} is listed twice"),
            ));
        }
        organizations.push(org);
    }
    let organizations_listed = organizations.len();
    if let Some(shard) = shard {
        organizations.retain(|o| shard.serves(o));
    }
    if organizations.is_empty() && organizations_listed > 0 {
        return Err(FieldError::new(
            "agent.shard",
            format!("shard {} serves none of the {organizations_listed} organizations listed; with few organizations use fewer shards", shard.map(|s| s.to_string()).unwrap_or_default()),
        ));
    }
    if organizations.is_empty() {
        return Err(FieldError::new(
            "organizations",
            "no organization configured; add an [[organizations]] table with provider and name",
        ));
    }

    Ok((organizations, organizations_listed))
}

pub(super) fn telemetry(raw: RawTelemetry) -> Result<TelemetryConfig, FieldError> {
    Ok(TelemetryConfig {
        listen: match raw.listen {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s.parse().map_err(|e| {
                FieldError::new(
                    "telemetry.listen",
                    format!("{s:?} is not an address like 127.0.0.1:9464: {e}"),
                )
            })?),
        },
        health_stale_intervals: raw.health_stale_intervals.unwrap_or(3).max(1),
    })
}
