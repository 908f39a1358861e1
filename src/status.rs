//! `state show` / `state reset`, and the status file the daemon keeps so that `state show` can
//! report each pipeline's last error.

use crate::checkpoint::{self, Cursor};
use crate::config::{Config, RETENTION};
use crate::event::OrgRef;
use crate::secret::Redactor;
use crate::telemetry::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct StatusFile {
    /// "organization|sink" (sink empty for the fetch) -> last error.
    errors: BTreeMap<String, String>,
    updated_ms: i64,
}

fn status_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("status.json")
}

/// The pipelines' last errors, keyed "organization|sink", as the status file holds them.
pub fn errors(metrics: &Metrics) -> BTreeMap<String, String> {
    metrics
        .last_errors()
        .into_iter()
        .map(|((org, sink), e)| (format!("{org}|{sink}"), e))
        .collect()
}

/// Writes `errors` to `state_dir/status.json` (atomically; a failure is logged), with the secrets
/// of `redactor` blanked. The daemon calls it only when they changed, so an idle agent does not
/// touch the disk.
pub fn write(state_dir: &Path, errors: BTreeMap<String, String>, now_ms: i64, redactor: &Redactor) {
    let path = status_path(state_dir);
    let file = StatusFile {
        errors: errors
            .into_iter()
            .map(|(k, e)| (k, redactor.redact(&e).into_owned()))
            .collect(),
        updated_ms: now_ms,
    };
    let tmp = state_dir.join(".status.json.tmp");
    let result = serde_json::to_vec_pretty(&file)
        .map_err(std::io::Error::other)
        .and_then(|b| crate::private::create(&tmp).and_then(|mut f| f.write_all(&b)))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write status file");
    }
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

fn fmt_lag(ms: i64) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// One row of `state show`: a pipeline's checkpoint and last error, or an organization's fetch
/// error (`sink` absent).
#[derive(Debug, Clone, Serialize)]
pub struct PipelineState {
    pub organization: String,
    /// Absent for the organization's fetch.
    pub sink: Option<String>,
    /// `ok`, `none` (no checkpoint yet), `unreadable`, or `fetch` for a fetch error row.
    pub checkpoint: &'static str,
    /// RFC 3339: everything before it was delivered.
    pub cursor: Option<String>,
    pub lag_seconds: Option<u64>,
    pub ids_in_overlap: Option<usize>,
    pub last_error: Option<String>,
    /// `live` (the running daemon's position, from its /metrics) or `checkpoint` (the file).
    pub position: &'static str,
}

/// Where `state show` read the positions from.
#[derive(Debug)]
pub enum Positions {
    /// The running daemon's /metrics: (organization, sink) -> cursor ms.
    Live {
        from: String,
        cursors: BTreeMap<(String, String), i64>,
    },
    /// The checkpoint files; `daemon_running` when a daemon holds the state directory (its
    /// quiet lanes' moves reach the files only every few minutes).
    Files { daemon_running: bool },
}

impl Positions {
    /// The daemon's live positions when it runs and serves /metrics, else the files.
    pub fn find(config: &Config) -> Positions {
        let daemon_running = crate::lock::StateLock::is_held(&config.agent.state_dir);
        let Some(listen) = config.telemetry.listen.filter(|_| daemon_running) else {
            return Positions::Files { daemon_running };
        };
        match scrape_cursors(listen) {
            Some(cursors) => Positions::Live {
                from: format!("http://{listen}/metrics"),
                cursors,
            },
            None => Positions::Files { daemon_running },
        }
    }

    fn describe(&self) -> String {
        match self {
            Positions::Live { from, .. } => {
                format!("positions: live, from the running daemon ({from})")
            }
            Positions::Files {
                daemon_running: true,
            } => "positions: from the checkpoint files; the daemon is running and writes a quiet organization's move only every 5 minutes (set [telemetry] listen for live positions)".into(),
            Positions::Files {
                daemon_running: false,
            } => "positions: from the checkpoint files".into(),
        }
    }
}

/// The lanes' live positions from a running agent's /metrics (loopback, 2 s at most).
fn scrape_cursors(listen: std::net::SocketAddr) -> Option<BTreeMap<(String, String), i64>> {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    if !body.starts_with("HTTP/1.") || !body.contains(" 200 ") {
        return None;
    }
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("codacy_forwarder_checkpoint_timestamp_seconds{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ")?;
        let org = label(labels, "organization")?;
        let sink = label(labels, "sink")?;
        let secs: f64 = value.trim().parse().ok()?;
        out.insert((org, sink), (secs * 1000.0).round() as i64);
    }
    Some(out)
}

/// A label's value in Prometheus text format (`\\`, `\"` and `\n` escaped).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// What `state show` reports, as data.
pub fn states(config: &Config, now_ms: i64, positions: &Positions) -> Vec<PipelineState> {
    let state_dir = &config.agent.state_dir;
    let status: StatusFile = std::fs::read(status_path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for org in &config.organizations {
        let org_key = org.key();
        if let Some(e) = status.errors.get(&format!("{org_key}|")) {
            rows.push(PipelineState {
                organization: org_key.clone(),
                sink: None,
                checkpoint: "fetch",
                cursor: None,
                lag_seconds: None,
                ids_in_overlap: None,
                last_error: Some(e.clone()),
                position: "checkpoint",
            });
        }
        for sink in &config.sinks {
            let path = checkpoint::path_for(state_dir, org, &sink.name);
            let err = status
                .errors
                .get(&format!("{org_key}|{}", sink.name))
                .cloned();
            let mut row = PipelineState {
                organization: org_key.clone(),
                sink: Some(sink.name.clone()),
                checkpoint: "none",
                cursor: None,
                lag_seconds: None,
                ids_in_overlap: None,
                last_error: err,
                position: "checkpoint",
            };
            match checkpoint::load(&path, org, &sink.name, now_ms) {
                Ok(Some(c)) => {
                    row.checkpoint = "ok";
                    row.cursor = Some(fmt_time(c.cursor_ms));
                    row.lag_seconds = Some(((now_ms - c.cursor_ms).max(0) / 1000) as u64);
                    row.ids_in_overlap = Some(c.recent.len());
                }
                Ok(None) => {}
                Err(e) => {
                    row.checkpoint = "unreadable";
                    row.last_error = Some(e.to_string());
                }
            }
            if let Positions::Live { cursors, .. } = positions {
                if let Some(&live) = cursors.get(&(org_key.clone(), sink.name.clone())) {
                    row.cursor = Some(fmt_time(live));
                    row.lag_seconds = Some(((now_ms - live).max(0) / 1000) as u64);
                    row.position = "live";
                }
            }
            rows.push(row);
        }
    }
    rows
}

/// `state show --json`: `{"shard": ..., "pipelines": [...]}` (README, "Scripts").
pub fn show_json(config: &Config, now_ms: i64) -> String {
    let positions = Positions::find(config);
    let out = serde_json::json!({
        "state_dir": config.agent.state_dir.display().to_string(),
        "shard": config.agent.shard.map(|s| s.to_string()),
        "positions": positions.describe(),
        "pipelines": states(config, now_ms, &positions),
    });
    serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
}

/// The `state show` table.
pub fn show(config: &Config, now_ms: i64) -> String {
    let mut rows = vec![[
        "ORGANIZATION".to_string(),
        "SINK".to_string(),
        "CURSOR".to_string(),
        "LAG".to_string(),
        "IDS IN OVERLAP".to_string(),
        "LAST ERROR".to_string(),
    ]];
    let positions = Positions::find(config);
    for r in states(config, now_ms, &positions) {
        let cursor = match r.checkpoint {
            "ok" => r.cursor.unwrap_or_default(),
            "none" => "(no checkpoint yet)".into(),
            "unreadable" => "(unreadable)".into(),
            _ => String::new(),
        };
        rows.push([
            r.organization,
            r.sink.unwrap_or_else(|| "(fetch)".into()),
            cursor,
            r.lag_seconds
                .map(|s| fmt_lag(s as i64 * 1000))
                .unwrap_or_default(),
            r.ids_in_overlap.map(|n| n.to_string()).unwrap_or_default(),
            r.last_error.unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = config
        .shard_summary()
        .map(|s| format!("{s}\n"))
        .unwrap_or_default();
    out.push_str(&positions.describe());
    out.push('\n');
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The daemon holds the state directory and would overwrite the checkpoint: ask it to move the
/// cursor itself at its next poll of that organization, and wait (a little) to see it done.
fn request_reset_from_daemon(
    config: &Config,
    org: &OrgRef,
    sink: &str,
    to_ms: i64,
) -> Result<String, ResetError> {
    let state_dir = &config.agent.state_dir;
    let request = checkpoint::reset_request_path(state_dir, org, sink);
    checkpoint::request_reset(&request, org, sink, to_ms).map_err(|source| {
        ResetError::Request {
            path: request.clone(),
            source,
        }
    })?;
    // A quiet organization may be polled as rarely as max_poll_interval.
    let wait = config.agent.max_poll_interval + std::time::Duration::from_secs(5);
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if !request.exists() {
            return Ok(format!(
                "{org} / {sink}: the running daemon moved the cursor to {}; it delivers from there",
                fmt_time(to_ms)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(format!(
        "{org} / {sink}: the daemon is running, so the move to {} was left for it as {}; it is applied at the daemon's next poll of {org} (not yet after {}s: is that organization's pipeline stuck? see `state show` and /health)",
        fmt_time(to_ms),
        request.display(),
        wait.as_secs()
    ))
}

/// Why `state reset` did not move the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// A flag's value cannot be used (a command-line mistake).
    #[error("{0}")]
    BadFlag(String),
    #[error("the daemon is running on {} and would overwrite this checkpoint; stop it first (or pass --yes)", .state_dir.display())]
    DaemonRunning { state_dir: std::path::PathBuf },
    #[error("--to {to} is before Codacy's one-year retention; nothing older can be fetched (pass --yes to set it anyway)")]
    BeyondRetention { to: String },
    #[error("cannot leave the reset request {} for the running daemon: {source}", .path.display())]
    Request {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Boxed: it is large, and an error is the rare path.
    #[error(transparent)]
    Checkpoint(#[from] Box<checkpoint::CheckpointError>),
}

/// `state reset`: moves one checkpoint to `to` (RFC 3339), clearing its overlap ids.
pub fn reset(
    config: &Config,
    org: &str,
    sink: &str,
    to: &str,
    yes: bool,
    now_ms: i64,
) -> Result<String, ResetError> {
    let usage = ResetError::BadFlag;
    let (provider, name) = org
        .split_once('/')
        .ok_or_else(|| usage(format!("--org {org:?}: write provider/name, e.g. gh/acme")))?;
    let org_ref = OrgRef::new(
        provider.parse().map_err(|m| usage(format!("--org: {m}")))?,
        name,
    );
    if !config.organizations.contains(&org_ref) {
        return Err(usage(format!(
            "--org {org}: not an organization of {}",
            config.source
        )));
    }
    if !config.sinks.iter().any(|s| s.name == sink) {
        return Err(usage(format!(
            "--sink {sink:?}: no such sink in {}",
            config.source
        )));
    }
    let to_ms = chrono::DateTime::parse_from_rfc3339(to)
        .map_err(|e| {
            usage(format!(
                "--to {to:?} is not an RFC 3339 time ({e}), e.g. 2024-07-01T00:00:00Z"
            ))
        })?
        .timestamp_millis();
    if to_ms > now_ms {
        return Err(usage(format!("--to {to} is in the future")));
    }
    let state_dir = &config.agent.state_dir;
    if !yes && crate::lock::StateLock::is_held(state_dir) {
        return Err(ResetError::DaemonRunning {
            state_dir: state_dir.clone(),
        });
    }
    if !yes && to_ms < now_ms - RETENTION.as_millis() as i64 {
        return Err(ResetError::BeyondRetention { to: to.to_string() });
    }
    let path = checkpoint::path_for(state_dir, &org_ref, sink);
    if crate::lock::StateLock::is_held(state_dir) {
        return request_reset_from_daemon(config, &org_ref, sink, to_ms);
    }
    // An unreadable checkpoint is what a reset repairs: it only shows as "(none)".
    let before = match checkpoint::load(&path, &org_ref, sink, now_ms) {
        Ok(Some(c)) => fmt_time(c.cursor_ms),
        _ => "(none)".into(),
    };
    let cursor = Cursor::starting_at(to_ms);
    checkpoint::store(&path, &org_ref, sink, &cursor, now_ms).map_err(Box::new)?;
    Ok(format!(
        "{org} / {sink}: cursor moved from {before} to {}; the next poll delivers from there",
        fmt_time(to_ms)
    ))
}

#[cfg(test)]
mod tests {

    #[test]
    fn label_values_are_read_with_their_escapes() {
        let labels = r#"organization="gh/a \"b\" \\ c",sink="x""#;
        assert_eq!(
            label(labels, "organization").as_deref(),
            Some(r#"gh/a "b" \ c"#)
        );
        assert_eq!(label(labels, "sink").as_deref(), Some("x"));
        assert_eq!(label(labels, "state"), None);
    }

    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_status_file_is_private_and_blanks_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let token = crate::secret::Secret::new("tok-abcdef-123");
        let errors = BTreeMap::from([(
            "gh/acme|".to_string(),
            "400 from https://api: echo api-token: tok-abcdef-123".to_string(),
        )]);
        write(dir.path(), errors, 0, &Redactor::of([&token]));
        let path = status_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("echo api-token: [redacted]"), "{text}");
        assert!(!text.contains("tok-abcdef"), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    }
}
