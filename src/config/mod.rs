//! Typed configuration: TOML through the `config` crate, validated at start-up. Every error names
//! the file, the key and the problem; a bad configuration never starts the agent.

use crate::event::OrgRef;
use crate::httputil::cleartext_to_remote;
use crate::secret::{Redactor, Secret};
use crate::sink::SinkSpec;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod env;
mod field;
mod sections;
mod shard;
mod sinks;
mod token;

use env::{blame_environment, check_scalar_types, env_overrides, EnvOverride};
pub use field::{from_table, FieldError};
use sections::RawConfig;
pub use shard::Shard;
pub use token::TokenSources;

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
    /// The environment variable that set the bad value, when it was not the file.
    pub variable: Option<Box<EnvOrigin>>,
}

/// A `CODACY_FORWARDER__SECTION__KEY` variable and the key (`section.key`) it overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOrigin {
    pub variable: String,
    pub key: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variable {
            Some(o) => write!(
                f,
                "configuration error in environment variable {} (it overrides `{}` of {})",
                o.variable, o.key, self.file
            )?,
            None => write!(f, "configuration error in {}", self.file)?,
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)
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
                variable: None,
                message:
                    "file not found (pass --config PATH or create it from config/example.toml)"
                        .into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            variable: None,
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
        let err = |key: &str, message: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message,
            variable: None,
        };
        let to_config = |e: FieldError| err(&e.key, e.message);
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

        let codacy = sections::codacy(raw.codacy, options).map_err(to_config)?;
        let agent = sections::agent(raw.agent).map_err(to_config)?;
        let (organizations, organizations_listed) =
            sections::organizations(raw.organizations, agent.shard).map_err(to_config)?;
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

        let telemetry = sections::telemetry(raw.telemetry).map_err(to_config)?;
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

#[cfg(test)]
mod tests;
