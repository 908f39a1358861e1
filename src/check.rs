//! `check`: what would happen if the agent started now, told truthfully, and nothing touched.
//!
//! - Counts are real: the last hour's events, from the API's `pagination.total` when the
//!   envelope has one, otherwise by walking the hour like a poll does.
//! - Every API request is tried once: a refused connection is reported at once, not retried for
//!   seconds with a warning per attempt.
//! - Nothing is created or written: the state directory and file sinks are inspected (a missing
//!   directory that the packaged unit's `StateDirectory=`/`LogsDirectory=` creates is said so),
//!   other sinks are probed with their own `check` (HTTP status classified as delivery does).
//! - `--offline` validates the configuration and reads every secret without the network.
//!
//! The report is one value, printed as text lines or as JSON (`--json`, shape in the README);
//! both go through the configuration's [`Redactor`].

use crate::agent;
use crate::clock::SharedClock;
use crate::codacy::{ApiError, Client, WindowError};
use crate::config::Config;
use crate::event::OrgRef;
use crate::secret::Redactor;
use crate::sink::registry::Preflight;
use crate::sink::SinkSpec;
use crate::telemetry::Metrics;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// The directories the packaged units have systemd create before the service starts.
const SYSTEMD_STATE_DIRECTORY: &str = "/var/lib/codacy-audit-forwarder";
const SYSTEMD_LOGS_DIRECTORY: &str = "/var/log/codacy-audit-forwarder";

/// One verdict. `created_by_systemd` counts as working: the service creates the directory at
/// start (commands run outside the service need it created first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
    CreatedBySystemd,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Failed => "FAILED",
            Status::Skipped => "SKIPPED",
            Status::CreatedBySystemd => "CREATED BY SYSTEMD",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub status: Status,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgItem {
    pub organization: String,
    pub status: Status,
    pub message: String,
    /// Events of the last hour (absent when the API could not be asked).
    pub events_last_hour: Option<u64>,
    /// `true` when there are more than `events_last_hour` (the walk stopped at
    /// `agent.max_events_in_memory`).
    pub more: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkItem {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub format: String,
    pub status: Status,
    pub message: String,
}

/// What `check` found; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub config: String,
    pub offline: bool,
    /// Where the token came from; `failed` when there is none.
    pub token: Item,
    pub warnings: Vec<String>,
    pub shard: Option<String>,
    pub state_dir: Item,
    pub organizations: Vec<OrgItem>,
    pub sinks: Vec<SinkItem>,
}

impl CheckReport {
    /// Exit code: 0 everything works, 1 something does not, 2 the configuration is incomplete
    /// (no token).
    pub fn exit_code(&self) -> u8 {
        if self.token.status == Status::Failed {
            2
        } else if self.ok {
            0
        } else {
            1
        }
    }

    /// The human report, one line per item.
    pub fn text(&self) -> String {
        let mut out = format!("configuration {}: valid\n", self.config);
        match self.token.status {
            Status::Failed => out.push_str(&format!("API token: FAILED: {}\n", self.token.message)),
            _ => out.push_str(&format!("API token: from {}\n", self.token.message)),
        }
        for w in &self.warnings {
            out.push_str(&format!("WARNING: {w}\n"));
        }
        if let Some(s) = &self.shard {
            out.push_str(&format!("{s}\n"));
        }
        for o in &self.organizations {
            out.push_str(&format!(
                "organization {}: {}: {}\n",
                o.organization,
                o.status.label(),
                o.message
            ));
        }
        out.push_str(&format!(
            "state directory: {}: {}\n",
            self.state_dir.status.label(),
            self.state_dir.message
        ));
        for s in &self.sinks {
            out.push_str(&format!(
                "sink {} ({}, format {}): {}: {}\n",
                s.name,
                s.kind,
                s.format,
                s.status.label(),
                s.message
            ));
        }
        out.push_str(if self.ok {
            "check passed\n"
        } else {
            "check FAILED\n"
        });
        out
    }

    /// `--json`: the report, pretty-printed.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"{e}\"}}"))
    }
}

/// Runs every check. Nothing is created or written; with `offline`, nothing is contacted.
pub async fn check(config: &Config, clock: &SharedClock, offline: bool) -> CheckReport {
    let token = match &config.codacy.token_missing {
        Some(m) => Item {
            status: Status::Failed,
            message: m.clone(),
        },
        None => Item {
            status: Status::Ok,
            message: config.codacy.token_source.clone(),
        },
    };
    let organizations = if token.status == Status::Failed {
        skipped_orgs(config, "no API token")
    } else if offline {
        skipped_orgs(config, "not contacted (--offline)")
    } else {
        check_orgs(config, clock).await
    };
    let state_dir = check_state_dir(&config.agent.state_dir);
    let mut sinks = Vec::new();
    for spec in &config.sinks {
        sinks.push(check_sink(config, spec, clock, offline).await);
    }
    let ok = token.status != Status::Failed
        && state_dir.status != Status::Failed
        && organizations.iter().all(|o| o.status != Status::Failed)
        && sinks.iter().all(|s| s.status != Status::Failed);
    CheckReport {
        ok,
        config: config.source.clone(),
        offline,
        token,
        warnings: config.warnings(),
        shard: config.shard_summary(),
        state_dir,
        organizations,
        sinks,
    }
}

/// Prints the report (text or JSON) with the secrets of `redactor` blanked; returns its exit code.
pub fn print(report: &CheckReport, json: bool, redactor: &Redactor) -> u8 {
    let text = if json {
        report.json() + "\n"
    } else {
        report.text()
    };
    let _ = crate::cli::write_stdout(redactor.redact(&text).as_bytes());
    report.exit_code()
}

fn skipped_orgs(config: &Config, why: &str) -> Vec<OrgItem> {
    config
        .organizations
        .iter()
        .map(|o| OrgItem {
            organization: o.key(),
            status: Status::Skipped,
            message: why.to_string(),
            events_last_hour: None,
            more: false,
        })
        .collect()
}

async fn check_orgs(config: &Config, clock: &SharedClock) -> Vec<OrgItem> {
    // One attempt per request: a check reports what is wrong now, it does not wait it out.
    let mut codacy = config.codacy.clone();
    codacy.max_attempts = 1;
    let client = match Client::new(&codacy, Arc::new(Metrics::new())) {
        Ok(c) => c,
        Err(e) => return skipped_orgs(config, &e),
    };
    let now = clock.now_ms();
    let mut out = Vec::new();
    for org in &config.organizations {
        let item = match count_last_hour(&client, config, org, now).await {
            Ok((n, more, shape)) => OrgItem {
                organization: org.key(),
                status: Status::Ok,
                message: format!(
                    "{}{n} event(s) in the last hour ({shape})",
                    if more { "more than " } else { "" }
                ),
                events_last_hour: Some(n),
                more,
            },
            Err(message) => OrgItem {
                organization: org.key(),
                status: Status::Failed,
                message,
                events_last_hour: None,
                more: false,
            },
        };
        out.push(item);
    }
    out
}

/// The last hour's events: `pagination.total` when the envelope has it, else the hour walked
/// (bounded by `agent.max_events_in_memory`, past which it says "more than").
async fn count_last_hour(
    client: &Client,
    config: &Config,
    org: &OrgRef,
    now: i64,
) -> Result<(u64, bool, &'static str), String> {
    let from = now - 3_600_000;
    let page = client
        .fetch_page(org, from, now, config.codacy.page_limit, None)
        .await
        .map_err(|e| api_error(&e))?;
    if let Some(total) = page.total {
        return Ok((total, false, "paginated response, pagination.total"));
    }
    let shape = if page.enveloped {
        "paginated response, counted"
    } else {
        "array response, counted"
    };
    // One page that cannot have been cut holds the whole hour.
    if page.next_cursor.is_none() && page.events.len() < client.page_limit.min(100) as usize {
        return Ok((page.events.len() as u64, false, shape));
    }
    let max = config.agent.max_events_in_memory;
    match crate::codacy::fetch_window(client, org, from, now, max).await {
        Ok(w) => Ok(((w.events.len() + w.invalid.len()) as u64, false, shape)),
        Err(WindowError::TooMany(n)) => Ok((n as u64, true, shape)),
        Err(WindowError::Api(e)) => Err(api_error(&e)),
        Err(e) => Err(e.to_string()),
    }
}

fn api_error(e: &ApiError) -> String {
    match e {
        // One attempt: "gave up after 1 attempts" would suggest retries that never happened.
        ApiError::Exhausted { url, last, .. } => {
            format!("{url}: {last}; is codacy.base_url right and reachable from this machine?")
        }
        other => other.to_string(),
    }
}

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
}

fn writable(dir: &Path) -> Result<(), String> {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| format!("{}: not writable by this user: {e}", dir.display()))
}

/// Whether the packaged unit (or its shard template) has systemd create `dir`.
fn systemd_creates(dir: &Path) -> Option<&'static str> {
    let state = Path::new(SYSTEMD_STATE_DIRECTORY);
    if dir == state
        || (dir.parent() == Some(state)
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("shard-")))
    {
        return Some("StateDirectory=");
    }
    (dir == Path::new(SYSTEMD_LOGS_DIRECTORY)).then_some("LogsDirectory=")
}

fn systemd_item(dir: &Path, setting: &str) -> Item {
    Item {
        status: Status::CreatedBySystemd,
        message: format!(
            "{} does not exist yet: systemd creates it ({setting} of the packaged unit) when the service starts; `once` outside the service needs it created first",
            dir.display()
        ),
    }
}

fn check_state_dir(dir: &Path) -> Item {
    let failed = |message: String| Item {
        status: Status::Failed,
        message,
    };
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => failed(format!("{} is not a directory; change agent.state_dir", dir.display())),
        Ok(_) => match writable(dir) {
            Ok(()) => Item {
                status: Status::Ok,
                message: format!("{} writable", dir.display()),
            },
            Err(e) => failed(format!(
                "{e}; the agent keeps its checkpoints there: let the service user write to it"
            )),
        },
        Err(_) => match (systemd_creates(dir), existing_ancestor(dir)) {
            (Some(setting), _) => systemd_item(dir, setting),
            (None, Some(parent)) => match writable(parent) {
                Ok(()) => Item {
                    status: Status::Ok,
                    message: format!(
                        "{} does not exist yet; `run` and `once` create it (mode 0750)",
                        dir.display()
                    ),
                },
                Err(e) => failed(format!(
                    "{} does not exist and cannot be created: {e}; create it for the service user or change agent.state_dir",
                    dir.display()
                )),
            },
            (None, None) => failed(format!("{} cannot be created", dir.display())),
        },
    }
}

async fn check_sink(
    config: &Config,
    spec: &SinkSpec,
    clock: &SharedClock,
    offline: bool,
) -> SinkItem {
    let (status, message) = match spec.config.preflight(offline) {
        Some(Preflight::Ready(m)) => (Status::Ok, m),
        Some(Preflight::Failed(m)) => (Status::Failed, m),
        Some(Preflight::MissingDirectory(dir)) => match systemd_creates(&dir) {
            Some(setting) => {
                let item = systemd_item(&dir, setting);
                (item.status, item.message)
            }
            None => (
                Status::Failed,
                format!(
                    "directory {} does not exist; create it (and let the service user write to it) or change `path`",
                    dir.display()
                ),
            ),
        },
        None => {
            let metrics = Arc::new(Metrics::new());
            match agent::build_sink(config, spec, &metrics, clock).await {
                Err(e) => (Status::Failed, e.to_string()),
                Ok(_) if offline => (
                    Status::Ok,
                    "configuration and secrets valid; not contacted (--offline)".to_string(),
                ),
                Ok(h) => {
                    let result = h.sink.check().await;
                    h.sink.shutdown(std::time::Duration::from_secs(2)).await;
                    match result {
                        Ok(m) => (Status::Ok, m),
                        Err(e) => (Status::Failed, e.message),
                    }
                }
            }
        }
    };
    SinkItem {
        name: spec.name.clone(),
        kind: spec.type_name.to_string(),
        format: spec.format.to_string(),
        status,
        message,
    }
}
