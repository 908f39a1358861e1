//! Typed configuration: TOML through the `config` crate, validated at start-up. Every error names
//! the file, the key and the problem; a bad configuration never starts the agent.

use crate::event::{OrgRef, Provider};
use crate::httputil::cleartext_to_remote;
use crate::secret::{Redactor, Secret};
use crate::sink::SinkSpec;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod field;
mod sinks;

pub use field::{from_table, FieldError};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/codacy-audit-forwarder/config.toml";
/// Codacy keeps audit events for one year; a backfill never reaches further.
pub const RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Environment variable holding the API token; wins over every other source.
pub const TOKEN_ENV: &str = "CODACY_API_TOKEN";
/// Events held per fetch slice: a 1M-event backfill peaks at 40-60 MB RSS (bench/run.sh); 50,000
/// peaked above 60 MB.
pub const DEFAULT_MAX_EVENTS_IN_MEMORY: usize = 10_000;
/// Default `[codacy] max_response_bytes`: a full page of 1,000 events is a few MB at most.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Prefix of environment overrides: `CODACY_FORWARDER__AGENT__POLL_INTERVAL=30s`.
pub const ENV_PREFIX: &str = "CODACY_FORWARDER";
/// The file the packaged unit hands to the service as its `api-token` credential
/// (`LoadCredential=api-token:...`): what root or the service user reads outside the service.
pub const CREDENTIAL_SOURCE: &str = "/etc/codacy-audit-forwarder/api-token";
/// Names another credential source file (a unit whose drop-in changed `LoadCredential=`); also
/// lets tests point the fallback away from /etc.
pub const CREDENTIAL_SOURCE_ENV: &str = "CODACY_FORWARDER_CREDENTIAL_SOURCE";

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "configuration error in {}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "configuration error in {}: key `{}`: {}",
                self.file, self.key, self.message
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CodacyConfig {
    pub base_url: String,
    pub api_token: Secret,
    /// Where the token came from (for `check` and logs; never the token itself).
    pub token_source: String,
    /// Why there is no token (only when it was not required: `check`, `state`); `api_token`
    /// is then empty.
    pub token_missing: Option<String>,
    /// A token source that was configured but could not be used, while another one could
    /// (an unreadable `api_token_file` next to a systemd credential).
    pub token_warning: Option<String>,
    pub page_limit: u32,
    pub request_timeout: Duration,
    /// Attempts per request before a poll gives up (it is retried next poll).
    pub max_attempts: u32,
    /// Longest backoff between attempts.
    pub max_backoff: Duration,
    /// Requests to the Codacy API in flight at once, for all organizations together.
    pub max_concurrent_requests: usize,
    /// Requests per second to the Codacy API, for all organizations together (token bucket).
    pub max_requests_per_second: f64,
    /// `http://` to a host other than loopback is accepted (with a warning at every start).
    pub allow_insecure_http: bool,
    /// Largest response body read from the API; a larger page is an error.
    pub max_response_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    pub initial_lookback: Duration,
    pub overlap: Duration,
    /// The most events an organization holds at once (the slice being delivered plus the next
    /// one, fetched meanwhile); larger windows are split.
    pub max_events_in_memory: usize,
    /// A quiet organization's poll interval doubles after each empty poll up to this; its first
    /// new event resets it. Equal to `poll_interval` (the default): off.
    pub max_poll_interval: Duration,
    /// Serve only the organizations of this shard (several agents split one list).
    pub shard: Option<Shard>,
}

/// `agent.shard = "k/n"`: this agent serves the organizations whose stable hash of
/// `provider/name` is `k` modulo `n` (0-based, like Prometheus' `hashmod`), so `n` agents with the
/// same organization list split it without talking to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn serves(&self, org: &OrgRef) -> bool {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(org.key().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || {
        format!("{text:?} is not a shard; write \"k/n\" with 0 <= k < n, e.g. \"0/3\" for the first of three agents")
    };
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryConfig {
    /// `/metrics` and `/health` listen address; off when unset.
    pub listen: Option<SocketAddr>,
    /// `/health` turns 503 when a pipeline made no progress for this many poll intervals.
    pub health_stale_intervals: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (for messages).
    pub source: String,
    pub codacy: CodacyConfig,
    pub agent: AgentConfig,
    pub organizations: Vec<OrgRef>,
    pub sinks: Vec<SinkSpec>,
    pub telemetry: TelemetryConfig,
    /// Organizations listed in the file, before `agent.shard` kept this agent's share.
    pub organizations_listed: usize,
}

impl Config {
    /// With `agent.shard`: which organizations this agent serves, for `check` and `state show`.
    pub fn shard_summary(&self) -> Option<String> {
        let shard = self.agent.shard?;
        let names: Vec<String> = self.organizations.iter().map(OrgRef::key).collect();
        Some(format!(
            "shard {shard}: this agent serves {} of the {} organizations listed: {}",
            names.len(),
            self.organizations_listed,
            names.join(", ")
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    codacy: RawCodacy,
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    organizations: Vec<RawOrg>,
    #[serde(default)]
    sinks: Vec<Map<String, Value>>,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodacy {
    base_url: Option<String>,
    api_token_file: Option<PathBuf>,
    page_limit: Option<u32>,
    request_timeout: Option<String>,
    max_attempts: Option<u32>,
    max_backoff: Option<String>,
    max_concurrent_requests: Option<u32>,
    max_requests_per_second: Option<f64>,
    allow_insecure_http: Option<bool>,
    max_response_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    state_dir: Option<PathBuf>,
    poll_interval: Option<String>,
    initial_lookback: Option<String>,
    overlap: Option<String>,
    max_events_in_memory: Option<usize>,
    max_poll_interval: Option<String>,
    shard: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    provider: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    listen: Option<String>,
    health_stale_intervals: Option<u32>,
}

/// Where the token may come from, in order of precedence (first wins).
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    pub env: Option<String>,
    pub credentials_directory: Option<PathBuf>,
}

impl TokenSources {
    /// The process environment: `CODACY_API_TOKEN` and systemd's `CREDENTIALS_DIRECTORY`.
    pub fn from_env() -> Self {
        TokenSources {
            env: std::env::var(TOKEN_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty()),
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

/// How a configuration is loaded: where the token may come from, whether it must be there, and
/// whether `CODACY_FORWARDER__...` variables override the file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub tokens: TokenSources,
    /// The credential's source file (the unit's `LoadCredential=api-token:PATH`), read when
    /// `$CREDENTIALS_DIRECTORY` is absent: root (or the service user) running `check`, `once`
    /// or `state` finds the token the service gets.
    pub credential_source: Option<PathBuf>,
    /// `false` for commands that can do without a token (`check --offline` still validates the
    /// rest, `state` never calls the API).
    pub token_required: bool,
    pub env_overrides: bool,
}

impl LoadOptions {
    /// The process environment, the packaged credential source, token required.
    pub fn from_env() -> Self {
        LoadOptions {
            tokens: TokenSources::from_env(),
            credential_source: Some(
                std::env::var_os(CREDENTIAL_SOURCE_ENV)
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| PathBuf::from(CREDENTIAL_SOURCE), PathBuf::from),
            ),
            token_required: true,
            env_overrides: true,
        }
    }

    pub fn token_optional(self) -> Self {
        LoadOptions {
            token_required: false,
            ..self
        }
    }
}

impl Config {
    /// Loads and validates a configuration file, with `CODACY_FORWARDER__...` overrides and the
    /// token from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &LoadOptions::from_env())
    }

    /// [`Config::load`] with explicit options.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        if !path.exists() {
            return Err(ConfigError {
                file,
                key: String::new(),
                message:
                    "file not found (pass --config PATH or create it from config/example.toml)"
                        .into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let config = Config::from_toml_with(&text, &file, options)?;
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        Ok(config)
    }

    /// What is allowed but unsafe, for a warning at every start: cleartext HTTP to another
    /// machine (`allow_insecure_http = true`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.codacy.token_warning.iter().cloned().collect();
        if reqwest::Url::parse(&self.codacy.base_url).is_ok_and(|u| cleartext_to_remote(&u)) {
            out.push(format!(
                "codacy.base_url {} is plain http to another machine (codacy.allow_insecure_http = true): the API token and the audit log cross the network unencrypted; use https://",
                self.codacy.base_url
            ));
        }
        for s in &self.sinks {
            if let Some(url) = s.config.cleartext_url() {
                out.push(format!(
                    "sink {:?}: url {url} is plain http to another machine (allow_insecure_http = true): its credentials and audit records cross the network unencrypted; use https://",
                    s.name
                ));
            }
        }
        out
    }

    /// Parses configuration text. `file` names it in errors; `env_overrides` applies
    /// `CODACY_FORWARDER__SECTION__KEY` variables.
    pub fn from_toml(
        text: &str,
        file: &str,
        tokens: &TokenSources,
        env_overrides: bool,
    ) -> Result<Config, ConfigError> {
        let options = LoadOptions {
            tokens: tokens.clone(),
            credential_source: None,
            token_required: true,
            env_overrides,
        };
        Config::from_toml_with(text, file, &options)
    }

    /// [`Config::from_toml`] with explicit options. An error about a key that an environment
    /// variable set names that variable, not the file.
    pub fn from_toml_with(
        text: &str,
        file: &str,
        options: &LoadOptions,
    ) -> Result<Config, ConfigError> {
        let overrides = if options.env_overrides {
            env_overrides()
        } else {
            Vec::new()
        };
        Config::parse(text, file, options, &overrides).map_err(|e| blame_environment(e, &overrides))
    }

    fn parse(
        text: &str,
        file: &str,
        options: &LoadOptions,
        overrides: &[EnvOverride],
    ) -> Result<Config, ConfigError> {
        let tokens = &options.tokens;
        let err = |key: &str, message: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        if options.env_overrides {
            builder = builder.add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__"),
            );
        }
        let built = builder.build().map_err(|e| err("", format!("{e}")))?;
        check_scalar_types(&built, overrides).map_err(|(key, m)| err(&key, m))?;
        let raw: RawConfig = serde_path_to_error::deserialize(built).map_err(|e| {
            let path = e.path().to_string();
            err(
                if path == "." { "" } else { &path },
                e.into_inner().to_string(),
            )
        })?;

        let codacy = {
            let c = raw.codacy;
            let base_url = c
                .base_url
                .unwrap_or_else(|| "https://app.codacy.com".to_string());
            let parsed = reqwest::Url::parse(&base_url)
                .map_err(|e| err("codacy.base_url", format!("{base_url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(err(
                    "codacy.base_url",
                    format!("{base_url:?} must be an http(s) URL such as https://app.codacy.com"),
                ));
            }
            let allow_insecure_http = c.allow_insecure_http.unwrap_or(false);
            if cleartext_to_remote(&parsed) && !allow_insecure_http {
                return Err(err(
                    "codacy.base_url",
                    format!("{base_url:?} is plain http to another machine: the API token and the audit log would cross the network unencrypted; use https://, or set codacy.allow_insecure_http = true if the network is trusted (a warning is then logged at every start)"),
                ));
            }
            let page_limit = c.page_limit.unwrap_or(1000);
            if !(1..=1000).contains(&page_limit) {
                return Err(err(
                    "codacy.page_limit",
                    format!("{page_limit} is out of range; the API accepts 1 to 1000"),
                ));
            }
            let max_response_bytes = c.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
            if max_response_bytes < 1024 {
                return Err(err(
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
                Err(m) if !options.token_required => {
                    (Secret::new(""), "none".to_string(), None, Some(m))
                }
                Err(m) => return Err(err("codacy.api_token_file", m)),
            };
            CodacyConfig {
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
                    file,
                )?,
                max_attempts: c.max_attempts.unwrap_or(6).max(1),
                max_backoff: duration(c.max_backoff.as_deref(), "60s", "codacy.max_backoff", file)?,
                max_concurrent_requests: match c.max_concurrent_requests.unwrap_or(4) {
                    0 => {
                        return Err(err(
                            "codacy.max_concurrent_requests",
                            "must be at least 1".into(),
                        ))
                    }
                    n => n as usize,
                },
                max_requests_per_second: match c.max_requests_per_second.unwrap_or(10.0) {
                    r if r.is_finite() && r > 0.0 => r,
                    r => {
                        return Err(err(
                            "codacy.max_requests_per_second",
                            format!("{r} is not a positive number of requests per second"),
                        ))
                    }
                },
                allow_insecure_http,
                max_response_bytes,
            }
        };

        let agent = {
            let a = raw.agent;
            let initial_lookback = duration(
                a.initial_lookback.as_deref(),
                "24h",
                "agent.initial_lookback",
                file,
            )?;
            if initial_lookback > RETENTION {
                // Echoed as written: "400d", not humantime's "1year 1month 4days 7h 26m 24s".
                return Err(err(
                    "agent.initial_lookback",
                    format!(
                        "{:?} is longer than Codacy's one-year retention; use at most 365d",
                        a.initial_lookback.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let poll_interval = duration(
                a.poll_interval.as_deref(),
                "60s",
                "agent.poll_interval",
                file,
            )?;
            if poll_interval < Duration::from_secs(1) {
                return Err(err(
                    "agent.poll_interval",
                    "must be at least 1s (Codacy rate-limits aggressive polling)".into(),
                ));
            }
            let overlap = duration(a.overlap.as_deref(), "10m", "agent.overlap", file)?;
            if overlap > Duration::from_secs(7 * 24 * 3600) {
                return Err(err(
                    "agent.overlap",
                    "must be at most 7d (every poll re-reads this window)".into(),
                ));
            }
            let max_poll_interval = match a.max_poll_interval.as_deref() {
                None => poll_interval,
                Some(_) => duration(
                    a.max_poll_interval.as_deref(),
                    "60s",
                    "agent.max_poll_interval",
                    file,
                )?,
            };
            if max_poll_interval < poll_interval {
                return Err(err(
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
                .map_err(|m| err("agent.shard", m))?;
            let max_events_in_memory = a
                .max_events_in_memory
                .unwrap_or(DEFAULT_MAX_EVENTS_IN_MEMORY);
            if max_events_in_memory == 0 {
                return Err(err(
                    "agent.max_events_in_memory",
                    format!("0 would hold no events at all; use at least 1 (default {DEFAULT_MAX_EVENTS_IN_MEMORY}; larger values take more memory during a backfill)"),
                ));
            }
            AgentConfig {
                max_poll_interval,
                shard,
                state_dir: a
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/codacy-audit-forwarder")),
                poll_interval,
                initial_lookback,
                overlap,
                max_events_in_memory,
            }
        };

        let mut organizations = Vec::new();
        for (i, o) in raw.organizations.into_iter().enumerate() {
            let provider: Provider = o
                .provider
                .parse()
                .map_err(|m| err(&format!("organizations[{i}].provider"), m))?;
            if o.name.trim().is_empty() {
                return Err(err(
                    &format!("organizations[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            let org = OrgRef::new(provider, o.name);
            if organizations.contains(&org) {
                return Err(err(
                    &format!("organizations[{i}]"),
                    format!("organization {org} is listed twice"),
                ));
            }
            organizations.push(org);
        }
        let organizations_listed = organizations.len();
        if let Some(shard) = agent.shard {
            organizations.retain(|o| shard.serves(o));
        }
        if organizations.is_empty() && organizations_listed > 0 {
            return Err(err(
                "agent.shard",
                format!("shard {} serves none of the {organizations_listed} organizations listed; with few organizations use fewer shards", agent.shard.map(|s| s.to_string()).unwrap_or_default()),
            ));
        }
        if organizations.is_empty() {
            return Err(err(
                "organizations",
                "no organization configured; add an [[organizations]] table with provider and name"
                    .into(),
            ));
        }

        let mut sinks = Vec::new();
        let mut names = BTreeSet::new();
        for (i, table) in raw.sinks.into_iter().enumerate() {
            let spec = sinks::parse_sink(i, table).map_err(|e| err(&e.key, e.message))?;
            if !names.insert(spec.name.clone()) {
                return Err(err(
                    &format!("sinks[{i}].name"),
                    format!(
                        "sink name {:?} is used twice; names must be unique (they name checkpoints)",
                        spec.name
                    ),
                ));
            }
            sinks.push(spec);
        }
        if sinks.is_empty() {
            return Err(err(
                "sinks",
                "no sink configured; add a [[sinks]] table (e.g. type = \"file\")".into(),
            ));
        }

        let telemetry = TelemetryConfig {
            listen: match raw.telemetry.listen {
                None => None,
                Some(s) if s.is_empty() => None,
                Some(s) => Some(s.parse().map_err(|e| {
                    err(
                        "telemetry.listen",
                        format!("{s:?} is not an address like 127.0.0.1:9464: {e}"),
                    )
                })?),
            },
            health_stale_intervals: raw.telemetry.health_stale_intervals.unwrap_or(3).max(1),
        };

        Ok(Config {
            source: file.to_string(),
            codacy,
            agent,
            organizations,
            sinks,
            telemetry,
            organizations_listed,
        })
    }
}

impl Config {
    /// Every secret this configuration loads (the Codacy token, each sink's credentials, read
    /// now), to blank out of whatever the agent writes: logs, errors, `/health`, `status.json`,
    /// `check` and `once` output.
    pub fn redactor(&self) -> Redactor {
        self.sinks
            .iter()
            .fold(Redactor::of([&self.codacy.api_token]), |r, s| {
                r.merge(&s.config.redactor())
            })
    }
}

fn duration(
    v: Option<&str>,
    default: &str,
    key: &str,
    file: &str,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s).map_err(|e| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        message: format!(
            "{s:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"24h\", \"7d\""
        ),
    })
}

/// A token found, where it came from, and what was skipped on the way.
struct FoundToken {
    secret: Secret,
    source: String,
    warning: Option<String>,
}

/// Token precedence: env `CODACY_API_TOKEN`, then `api_token_file`, then
/// `$CREDENTIALS_DIRECTORY/api-token` (systemd `LoadCredential=`), or, outside the service (no
/// `$CREDENTIALS_DIRECTORY`), the credential's source file the unit names. An `api_token_file`
/// that cannot be read while a credential can is skipped with a warning: the packaged unit
/// gives the service user the credential, never the root-only file.
fn resolve_token(
    file: Option<&Path>,
    sources: &TokenSources,
    credential_source: Option<&Path>,
) -> Result<FoundToken, String> {
    if let Some(t) = &sources.env {
        return Ok(FoundToken {
            secret: Secret::new(t.trim()),
            source: format!("environment variable {TOKEN_ENV}"),
            warning: None,
        });
    }
    let credential = || -> Option<Result<(Secret, String), String>> {
        match &sources.credentials_directory {
            Some(dir) => {
                let path = dir.join("api-token");
                path.exists().then(|| {
                    Secret::from_file(&path)
                        .map(|s| (s, format!("systemd credential {}", path.display())))
                })
            }
            None => credential_source.filter(|p| p.exists()).map(|path| {
                Secret::from_file(path)
                    .map_err(|e| {
                        // The file is root's (0600): the service user gets it only through systemd.
                        format!(
                            "{e}; it is the service's credential, readable by root only: run this command as root, or as the service user through systemd: sudo systemd-run --pipe --wait -p User=codacy-audit-forwarder -p LoadCredential=api-token:{} codacy-audit-forwarder ...",
                            path.display()
                        )
                    })
                    .map(|s| {
                    (
                        s,
                        format!(
                            "{} (the file the unit hands to the service as its systemd credential)",
                            path.display()
                        ),
                    )
                })
            }),
        }
    };
    let file_error = match file {
        Some(path) => match Secret::from_file(path) {
            Ok(secret) => {
                return Ok(FoundToken {
                    secret,
                    source: format!("file {} (codacy.api_token_file)", path.display()),
                    warning: None,
                })
            }
            Err(e) => Some(e),
        },
        None => None,
    };
    match (credential(), file_error) {
        (Some(Ok((secret, source))), warning) => Ok(FoundToken {
            warning: warning.map(|e| {
                format!("codacy.api_token_file: {e}; using the token from {source} instead (remove api_token_file to silence this)")
            }),
            secret,
            source,
        }),
        (_, Some(e)) => Err(e),
        (Some(Err(e)), None) => Err(e),
        (None, None) => Err(format!(
            "no API token: set {TOKEN_ENV}, or codacy.api_token_file, or LoadCredential=api-token:... in the systemd unit (outside the service, {} is read when it exists)",
            credential_source.map_or_else(|| CREDENTIAL_SOURCE.to_string(), |p| p.display().to_string())
        )),
    }
}

/// One `CODACY_FORWARDER__SECTION__KEY` variable and the key it sets (`section.key`).
#[derive(Debug, Clone)]
struct EnvOverride {
    variable: String,
    key: String,
}

/// The override variables, read the way the `config` crate reads them (case-insensitive
/// prefix, `__` between section and key, empty values count).
fn env_overrides() -> Vec<EnvOverride> {
    let prefix = format!("{ENV_PREFIX}__").to_lowercase();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter_map(|variable| {
            let lower = variable.to_lowercase();
            let rest = lower.strip_prefix(&prefix)?;
            Some(EnvOverride {
                key: rest.replace("__", "."),
                variable,
            })
        })
        .collect()
}

/// Re-attributes an error about a key an environment variable set to that variable: the file
/// is not where the bad value is.
fn blame_environment(mut e: ConfigError, overrides: &[EnvOverride]) -> ConfigError {
    let culprit = overrides.iter().find(|o| {
        o.key == e.key
            || (!e.key.is_empty() && o.key.starts_with(&format!("{}.", e.key)) && {
                // An unknown key inside a section: the message quotes the unknown name.
                let last = o.key.rsplit('.').next().unwrap_or_default();
                e.message.contains(&format!("`{last}`"))
            })
            || (e.key.is_empty() && e.message.contains(&o.key))
    });
    if let Some(o) = culprit {
        e.file = format!(
            "environment variable {} (it overrides `{}` of {})",
            o.variable, o.key, e.file
        );
    }
    e
}

#[derive(Clone, Copy)]
enum Scalar {
    WholeNumber,
    Number,
    Bool,
}

/// Keys of the typed sections whose values the `config` crate would otherwise coerce: a file
/// saying `page_limit = "100"` or `100.5` is a mistake to name, not to round. Environment
/// variables are always text, so there the text must parse exactly.
const SCALAR_KEYS: &[(&str, Scalar)] = &[
    ("codacy.page_limit", Scalar::WholeNumber),
    ("codacy.max_attempts", Scalar::WholeNumber),
    ("codacy.max_concurrent_requests", Scalar::WholeNumber),
    ("codacy.max_response_bytes", Scalar::WholeNumber),
    ("codacy.max_requests_per_second", Scalar::Number),
    ("codacy.allow_insecure_http", Scalar::Bool),
    ("agent.max_events_in_memory", Scalar::WholeNumber),
    ("telemetry.health_stale_intervals", Scalar::WholeNumber),
];

fn check_scalar_types(
    built: &config::Config,
    overrides: &[EnvOverride],
) -> Result<(), (String, String)> {
    use config::ValueKind as K;
    for (key, want) in SCALAR_KEYS {
        let Ok(value) = built.get::<config::Value>(key) else {
            continue;
        };
        let from_env = overrides.iter().any(|o| o.key == *key);
        let name = key.rsplit('.').next().unwrap_or(key);
        let problem = match (&value.kind, want) {
            (K::I64(n), Scalar::WholeNumber) if *n >= 0 => None,
            (K::I64(_) | K::I128(_), Scalar::WholeNumber) => Some(format!(
                "{value} is negative; write a whole number such as {name} = 100"
            )),
            (K::U64(_) | K::U128(_), Scalar::WholeNumber) => None,
            (K::I64(_) | K::I128(_) | K::U64(_) | K::U128(_) | K::Float(_), Scalar::Number) => None,
            (K::Boolean(_), Scalar::Bool) => None,
            (K::String(s), Scalar::WholeNumber) if from_env => s
                .trim()
                .parse::<u64>()
                .is_err()
                .then(|| format!("{s:?} is not a whole number")),
            (K::String(s), Scalar::Number) if from_env => s
                .trim()
                .parse::<f64>()
                .is_err()
                .then(|| format!("{s:?} is not a number")),
            (K::String(s), Scalar::Bool) if from_env => (!matches!(s.trim(), "true" | "false"))
                .then(|| format!("{s:?} is neither true nor false")),
            (K::String(s), _) => Some(format!(
                "{s:?} is text; write the value without quotes, e.g. {name} = {}",
                match want {
                    Scalar::Bool => "true",
                    _ => "100",
                }
            )),
            (K::Float(f), Scalar::WholeNumber) => Some(format!(
                "{f} is not a whole number; write e.g. {name} = {}",
                f.trunc().max(1.0)
            )),
            (other, Scalar::Bool) => Some(format!("must be true or false, found {other:?}")),
            (other, _) => Some(format!("must be a number, found {other:?}")),
        };
        if let Some(p) = problem {
            return Err((key.to_string(), p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    const GOOD: &str = r#"
[codacy]
base_url = "https://app.codacy.com"
page_limit = 1000
request_timeout = "30s"

[agent]
state_dir = "/tmp/x"
poll_interval = "60s"
initial_lookback = "24h"
overlap = "10m"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "archive"
type = "file"
path = "/tmp/x/audit.ndjson"
format = "json"
"#;

    fn tokens() -> TokenSources {
        TokenSources {
            env: Some("tok".into()),
            credentials_directory: None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", &tokens(), false)
    }

    #[test]
    fn shards_split_the_organizations_without_overlap_and_bad_values_name_the_key() {
        let mut text = GOOD.replace("[agent]", "[agent]\nshard = \"SHARD\"");
        for i in 0..40 {
            text.push_str(&format!(
                "\n[[organizations]]\nprovider = \"gl\"\nname = \"org-{i}\"\n"
            ));
        }
        let all = parse(&text.replace("shard = \"SHARD\"", ""))
            .unwrap()
            .organizations;
        let mut seen = Vec::new();
        for k in 0..3 {
            let c = parse(&text.replace("SHARD", &format!("{k}/3"))).unwrap();
            assert_eq!(c.organizations_listed, 41);
            assert!(
                c.organizations.len() >= 5,
                "a shard of 41 got {}",
                c.organizations.len()
            );
            assert!(c
                .shard_summary()
                .unwrap()
                .starts_with(&format!("shard {k}/3: this agent serves")));
            seen.extend(c.organizations);
        }
        seen.sort();
        let mut all_sorted = all.clone();
        all_sorted.sort();
        assert_eq!(seen, all_sorted, "every organization in exactly one shard");
        for bad in ["3/3", "0/0", "a/b", "1"] {
            let e = parse(&text.replace("SHARD", bad)).unwrap_err();
            assert_eq!(e.key, "agent.shard", "{bad}: {e}");
        }
    }

    #[test]
    fn scheduler_and_poll_limits_are_checked() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.codacy.max_concurrent_requests, 4);
        assert_eq!(c.codacy.max_requests_per_second, 10.0);
        assert_eq!(c.agent.max_poll_interval, c.agent.poll_interval);
        for (table, line, key) in [
            (
                "[codacy]",
                "max_concurrent_requests = 0",
                "codacy.max_concurrent_requests",
            ),
            (
                "[codacy]",
                "max_requests_per_second = -1.0",
                "codacy.max_requests_per_second",
            ),
            (
                "[agent]",
                "max_poll_interval = \"10s\"",
                "agent.max_poll_interval",
            ),
        ] {
            let e = parse(&GOOD.replace(table, &format!("{table}\n{line}"))).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
        }
        let c = parse(&GOOD.replace("[agent]", "[agent]\nmax_poll_interval = \"15m\"")).unwrap();
        assert_eq!(c.agent.max_poll_interval, Duration::from_secs(900));
    }

    #[test]
    fn the_documented_keys_work() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.codacy.page_limit, 1000);
        assert_eq!(c.agent.overlap, Duration::from_secs(600));
        assert_eq!(c.organizations, vec![OrgRef::new(Provider::Gh, "acme")]);
        assert_eq!(c.sinks[0].name, "archive");
        assert_eq!(c.codacy.api_token.expose(), "tok");
    }

    #[test]
    fn csv_is_a_file_sink_format_only() {
        let c = parse(&GOOD.replace("format = \"json\"", "format = \"csv\"")).unwrap();
        assert_eq!(c.sinks[0].format, Format::Csv);
        let file = c.sinks[0]
            .config
            .as_any()
            .downcast_ref::<crate::sink::file::FileSinkConfig>();
        assert_eq!(file.unwrap().header, Some(crate::format::csv::HEADER));
        let syslog = GOOD.replace(
            "type = \"file\"\npath = \"/tmp/x/audit.ndjson\"\nformat = \"json\"",
            "type = \"syslog\"\naddress = \"tcp://127.0.0.1:514\"\nformat = \"csv\"",
        );
        let msg = parse(&syslog).unwrap_err().to_string();
        assert!(msg.contains("key `sinks[0].format`"), "{msg}");
        assert!(msg.contains("for `file` sinks only"), "{msg}");
        assert!(msg.contains("json, ecs or cef"), "{msg}");
    }

    #[test]
    fn stream_sinks_batch_more_by_default_to_spare_fsyncs() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.sinks[0].batch_max_events, 5000);
        assert_eq!(c.agent.max_events_in_memory, DEFAULT_MAX_EVENTS_IN_MEMORY);
        let c = parse(&GOOD.replace("format = \"json\"", "batch_max_events = 7")).unwrap();
        assert_eq!(c.sinks[0].batch_max_events, 7);
        let more = format!(
            "{GOOD}\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:514\"\n\
             \n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\n\
             \n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n"
        );
        let c = parse(&more).unwrap();
        let batch = |name: &str| {
            c.sinks
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .batch_max_events
        };
        assert_eq!(
            (batch("siem"), batch("bus"), batch("hook")),
            (5000, 5000, 500)
        );
    }

    fn error_for(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_for(&GOOD.replace("poll_interval = \"60s\"", "poll_interval = \"often\""));
        assert_eq!(e.key, "agent.poll_interval");
        assert!(e.to_string().contains("test.toml"));
        let e = error_for(&GOOD.replace("provider = \"gh\"", "provider = \"github\""));
        assert_eq!(e.key, "organizations[0].provider");
        let e = error_for(&GOOD.replace("[agent]", "[agent]\npoll_intervall = \"1s\""));
        assert!(
            e.key.contains("agent") && e.message.contains("poll_intervall"),
            "{e}"
        );
        let e = error_for(&format!(
            "{GOOD}\n[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"/tmp/y\"\n"
        ));
        assert_eq!(e.key, "sinks[1].name");
        let e =
            error_for(&GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""));
        assert_eq!(e.key, "agent.initial_lookback");
        let e = error_for(&GOOD.replace("format = \"json\"", "format = \"xml\""));
        assert_eq!(e.key, "sinks[0].format");
        let e = error_for(&GOOD.replace(
            "path = \"/tmp/x/audit.ndjson\"",
            "path = \"/tmp/x/audit.ndjson\"\nmode = \"rw\"\ncolour = 1",
        ));
        assert!(e.key.starts_with("sinks[0]"), "{e}");
    }

    #[test]
    fn max_response_bytes_defaults_to_64_mib_and_refuses_tiny_values() {
        assert_eq!(parse(GOOD).unwrap().codacy.max_response_bytes, 64 << 20);
        let c = parse(&GOOD.replace("[codacy]", "[codacy]\nmax_response_bytes = 2048")).unwrap();
        assert_eq!(c.codacy.max_response_bytes, 2048);
        let e = error_for(&GOOD.replace("[codacy]", "[codacy]\nmax_response_bytes = 0"));
        assert_eq!(e.key, "codacy.max_response_bytes");
        assert!(e.message.contains("at least 1024"), "{e}");
    }

    #[test]
    fn plain_http_to_another_machine_needs_allow_insecure_http_and_is_warned_about() {
        let remote = GOOD.replace("https://app.codacy.com", "http://codacy.internal:8080");
        let e = error_for(&remote);
        assert_eq!(e.key, "codacy.base_url");
        assert!(e.message.contains("allow_insecure_http"), "{e}");
        let c = parse(&remote.replace("[codacy]", "[codacy]\nallow_insecure_http = true")).unwrap();
        assert!(c.codacy.allow_insecure_http);
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].contains("http://codacy.internal:8080"),
            "{w:?}"
        );
        // Loopback (a local proxy, the simulator) is not the network.
        let local =
            parse(&GOOD.replace("https://app.codacy.com", "http://127.0.0.1:9000")).unwrap();
        assert!(local.warnings().is_empty());
        assert!(parse(GOOD).unwrap().warnings().is_empty());

        let hook = |extra: &str| {
            format!("{GOOD}\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://siem.internal/x\"\n{extra}")
        };
        let e = error_for(&hook(""));
        assert_eq!(e.key, "sinks[1]", "{e}");
        assert!(
            e.message
                .contains("`url`: http://siem.internal/x is plain http"),
            "{e}"
        );
        assert!(e.message.contains("allow_insecure_http"), "{e}");
        let c = parse(&hook("allow_insecure_http = true")).unwrap();
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].contains("\"hook\"") && w[0].contains("http://siem.internal/x"),
            "{w:?}"
        );
    }

    #[test]
    fn elasticsearch_ecs_namespace_follows_the_data_stream() {
        let es = |ds: &str, extra: &str| {
            format!("{}\n[[sinks]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nformat = \"ecs\"\ndata_stream = \"{ds}\"\napi_key_env = \"ES_KEY\"\n{extra}", GOOD)
        };
        let c = parse(&es("logs-codacy.audit-prod", "")).unwrap();
        assert_eq!(c.sinks[1].format_options.ecs_namespace, "prod");
        let e = error_for(&es("logs-codacy.audit-prod", "ecs_namespace = \"default\""));
        assert_eq!(e.key, "sinks[1].ecs_namespace");
        let e = error_for(&es("logs-other-prod", ""));
        assert_eq!(e.key, "sinks[1].data_stream");
    }

    #[test]
    fn missing_token_is_an_error_naming_the_sources() {
        let e = Config::from_toml(GOOD, "t.toml", &TokenSources::default(), false).unwrap_err();
        assert!(e.message.contains(TOKEN_ENV), "{e}");
    }

    #[test]
    fn the_redactor_knows_every_secret_the_configuration_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{value}\n")).unwrap();
            p.display().to_string()
        };
        let text = format!(
            "{GOOD}\n[[sinks]]\nname = \"bearer\"\ntype = \"http\"\nurl = \"https://h/x\"\n\
             auth = {{ bearer_token_file = \"{}\" }}\n\
             \n[[sinks]]\nname = \"basic\"\ntype = \"http\"\nurl = \"https://h/y\"\n\
             auth = {{ user = \"u\", password_file = \"{}\" }}\n\
             \n[[sinks]]\nname = \"hec\"\ntype = \"splunk_hec\"\nurl = \"https://h:8088\"\ntoken_file = \"{}\"\n\
             \n[[sinks]]\nname = \"es\"\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\napi_key_file = \"{}\"\n\
             \n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopic = \"t\"\n\
             security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n\
             sasl_password_file = \"{}\"\n",
            file("bearer", "bearer-secret"),
            file("pw", "basic-secret"),
            file("hec", "hec-secret"),
            file("es", "es-api-key-secret"),
            file("kafka", "kafka-secret"),
        );
        let config = Config::from_toml(
            &text,
            "t.toml",
            &TokenSources {
                env: Some("codacy-secret".into()),
                credentials_directory: None,
            },
            false,
        )
        .unwrap();
        let r = config.redactor();
        // base64("u:basic-secret"), what a Basic Authorization header carries.
        for secret in [
            "codacy-secret",
            "bearer-secret",
            "basic-secret",
            "dTpiYXNpYy1zZWNyZXQ=",
            "hec-secret",
            "es-api-key-secret",
            "kafka-secret",
        ] {
            assert_eq!(r.redact(&format!("<{secret}>")), "<[redacted]>", "{secret}");
        }
        assert_eq!(r.redact("archive"), "archive");
    }

    #[test]
    fn token_precedence_env_then_file_then_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), "from-cred\n").unwrap();
        let file = dir.path().join("tokfile");
        std::fs::write(&file, "from-file\n").unwrap();
        let cred = TokenSources {
            env: None,
            credentials_directory: Some(dir.path().to_path_buf()),
        };
        assert_eq!(token(None, &cred, None).secret.expose(), "from-cred");
        assert_eq!(token(Some(&file), &cred, None).secret.expose(), "from-file");
        assert_eq!(token(Some(&file), &tokens(), None).secret.expose(), "tok");
    }

    fn token(file: Option<&Path>, sources: &TokenSources, fallback: Option<&Path>) -> FoundToken {
        resolve_token(file, sources, fallback).unwrap()
    }

    #[test]
    fn outside_the_service_the_credential_source_file_is_read_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("api-token");
        std::fs::write(&source, "from-source\n").unwrap();
        let none = TokenSources::default();
        let t = token(None, &none, Some(&source));
        assert_eq!(t.secret.expose(), "from-source");
        assert!(
            t.source.contains(&source.display().to_string()),
            "{}",
            t.source
        );
        // Inside the service, $CREDENTIALS_DIRECTORY is the only credential: no fallback.
        let service = TokenSources {
            env: None,
            credentials_directory: Some(dir.path().join("empty")),
        };
        let e = resolve_token(None, &service, Some(&source)).err().unwrap();
        assert!(e.contains("no API token"), "{e}");
    }

    #[test]
    fn an_unreadable_token_file_next_to_a_credential_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), "from-cred\n").unwrap();
        let missing = dir.path().join("root-only-token");
        let service = TokenSources {
            env: None,
            credentials_directory: Some(dir.path().to_path_buf()),
        };
        let t = token(Some(&missing), &service, None);
        assert_eq!(t.secret.expose(), "from-cred");
        let w = t.warning.unwrap();
        assert!(
            w.contains("codacy.api_token_file") && w.contains("root-only-token"),
            "{w}"
        );
        // Without any credential it stays an error naming the file.
        let e = resolve_token(Some(&missing), &TokenSources::default(), None)
            .err()
            .unwrap();
        assert!(e.contains("root-only-token"), "{e}");
    }

    #[test]
    fn numbers_in_quotes_or_with_decimals_are_refused_naming_the_key() {
        for (line, words) in [
            ("page_limit = \"100\"", "without quotes"),
            ("page_limit = 100.5", "not a whole number"),
            ("max_attempts = -1", "negative"),
            ("allow_insecure_http = \"yes\"", "without quotes"),
        ] {
            let key = format!("codacy.{}", line.split(' ').next().unwrap());
            let e = error_for(&GOOD.replace("page_limit = 1000", line));
            assert_eq!(e.key, key, "{line}: {e}");
            assert!(e.message.contains(words), "{line}: {e}");
        }
        let c = parse(&GOOD.replace("[codacy]", "[codacy]\nmax_requests_per_second = 2")).unwrap();
        assert_eq!(c.codacy.max_requests_per_second, 2.0);
    }

    #[test]
    fn a_lookback_past_retention_is_echoed_as_written() {
        let e =
            error_for(&GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""));
        assert!(e.message.starts_with("\"400d\" is longer"), "{e}");
    }

    #[test]
    fn errors_of_a_key_set_by_the_environment_name_the_variable() {
        let overrides = [EnvOverride {
            variable: "CODACY_FORWARDER__AGENT__POLL_INTERVAL".into(),
            key: "agent.poll_interval".into(),
        }];
        let e = blame_environment(
            error_for(&GOOD.replace("poll_interval = \"60s\"", "poll_interval = \"abc\"")),
            &overrides,
        );
        let text = e.to_string();
        assert!(
            text.contains("environment variable CODACY_FORWARDER__AGENT__POLL_INTERVAL")
                && text.contains("\"abc\""),
            "{text}"
        );
        // Another key's error still names the file.
        let e = blame_environment(
            error_for(&GOOD.replace("overlap = \"10m\"", "overlap = \"x\"")),
            &overrides,
        );
        assert_eq!(e.file, "test.toml");
    }
}
