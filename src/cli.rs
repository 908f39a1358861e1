//! The commands behind the CLI (kept in the library so tests can drive them), and the one error
//! type every command fails with.

use crate::agent::{self, Agent, StartError};
use crate::clock::SharedClock;
use crate::config::{Config, ConfigError};
use crate::event::OrgRef;
use crate::export::ExportError;
use crate::format::{Encoder, Format, FormatOptions};
use crate::lock::StateLock;
use crate::pipeline::PassReport;
use crate::sdnotify::Notifier;
use crate::secret::{Redactor, SharedRedactor};
use crate::status::ResetError;
use crate::telemetry::{self, HealthPolicy, Metrics};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

/// Every way a command fails, and the exit code it ends with: 2 for a mistake in the
/// configuration or on the command line, 1 for a failure while running.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Reset(#[from] ResetError),
    /// A command-line value that cannot be used.
    #[error("usage: {0}")]
    Usage(String),
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `preview` stopped at bad input (`input` is the file or "stdin").
    #[error("{input}: {source}")]
    Preview {
        input: String,
        source: crate::preview::PreviewError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write the manual pages into {}: {source}", .dir.display())]
    ManPages {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot render the manual page: {0}")]
    ManPage(#[source] std::io::Error),
}

impl CliError {
    /// The process's exit code: 2 configuration or command line, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) | CliError::Reset(ResetError::BadFlag(_)) => 2,
            CliError::Start(e) => u8::try_from(e.exit_code()).unwrap_or(1),
            CliError::Export(e) => e.exit_code(),
            _ => 1,
        }
    }

    /// The error as `--json` prints it, one object on one line: `{"ok": false, "config": path,
    /// "error": message}`, and for a configuration error also its `file`, its `key` (null for the
    /// whole file) and, when an environment variable set the bad value, that `variable`.
    pub fn json(&self, config: &Path, redactor: &Redactor) -> String {
        let mut out = serde_json::json!({
            "ok": false,
            "config": config.display().to_string(),
            "error": redactor.redact(&self.to_string()),
        });
        if let CliError::Config(e) = self {
            out["file"] = e.file.clone().into();
            out["key"] = (!e.key.is_empty()).then(|| e.key.clone()).into();
            if let Some(origin) = &e.variable {
                out["variable"] = origin.variable.clone().into();
            }
        }
        out.to_string() + "\n"
    }

    /// Prints the error on stderr (and with `--json`, as [`CliError::json`] on stdout), with
    /// the secrets of `redactor` blanked; returns the exit code.
    pub fn report(&self, json_config: Option<&Path>, redactor: &Redactor) -> u8 {
        if let Some(config) = json_config {
            let _ = write_stdout(self.json(config, redactor).as_bytes());
        }
        eprintln!("error: {}", redactor.redact(&self.to_string()));
        self.exit_code()
    }
}

/// `run`: the daemon. `secrets` (the log writer's) gets the secrets of every configuration
/// loaded; status.json and `/health` blank them too.
pub async fn run_daemon(
    path: PathBuf,
    config: Config,
    clock: SharedClock,
    secrets: SharedRedactor,
) -> Result<(), StartError> {
    secrets.add(&config.redactor());
    let metrics = Arc::new(Metrics::new());
    agent::prepare_state_dir(&config)?;
    let _lock = lock_state_dir(&config.agent.state_dir)?;
    let mut signals = Signals::install()?;
    let (telemetry_stop, telemetry_stopped) = tokio::sync::oneshot::channel::<()>();
    let telemetry = serve_telemetry(&config, &metrics, &clock, &secrets, async {
        let _ = telemetry_stopped.await;
    })
    .await?;
    let state_dir = config.agent.state_dir.clone();
    let agent = Agent::start(Arc::new(config), metrics.clone(), clock.clone()).await?;
    tracing::info!(organizations = agent.config.organizations.len(), sinks = agent.config.sinks.len(),
        config = %path.display(), version = env!("CARGO_PKG_VERSION"), "codacy-audit-forwarder started");
    let mut daemon = Daemon {
        path,
        agent,
        notifier: Notifier::from_env(),
        metrics,
        clock,
        secrets,
        state_dir,
        written_errors: None,
    };
    daemon.notifier.ready();
    daemon.serve(&mut signals).await;
    daemon.stop().await;
    let _ = telemetry_stop.send(());
    if let Some(task) = telemetry {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Takes the state directory's lock for an agent (`run`, `demo`): a second agent on the same
/// directory would deliver twice.
pub(crate) fn lock_state_dir(state_dir: &Path) -> Result<StateLock, StartError> {
    StateLock::acquire(state_dir).map_err(|e| StartError::State {
        path: state_dir.display().to_string(),
        message: e.to_string(),
    })
}

/// A stream of one Unix signal.
pub(crate) fn on_signal(kind: SignalKind) -> Result<Signal, StartError> {
    signal(kind).map_err(|e| StartError::Other(format!("cannot install signal handler: {e}")))
}

/// The signals the daemon acts on: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Signals, StartError> {
        Ok(Signals {
            term: on_signal(SignalKind::terminate())?,
            int: on_signal(SignalKind::interrupt())?,
            hup: on_signal(SignalKind::hangup())?,
        })
    }
}

/// Starts `/metrics` and `/health` when `[telemetry] listen` is set; they stop when `stopped`
/// completes.
async fn serve_telemetry(
    config: &Config,
    metrics: &Arc<Metrics>,
    clock: &SharedClock,
    secrets: &SharedRedactor,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<JoinHandle<std::io::Result<()>>>, StartError> {
    let Some(listen) = config.telemetry.listen else {
        return Ok(None);
    };
    let policy = HealthPolicy {
        poll_interval: config.agent.poll_interval,
        stale_intervals: config.telemetry.health_stale_intervals,
    };
    let (task, addr) = telemetry::serve(
        listen,
        metrics.clone(),
        policy,
        clock.clone(),
        secrets.clone(),
        stopped,
    )
    .await
    .map_err(|e| StartError::Other(format!("telemetry.listen: {e}")))?;
    tracing::info!(address = %addr, "serving /metrics and /health");
    Ok(Some(task))
}

/// The running daemon: its agent and what it reports to systemd and status.json.
struct Daemon {
    path: PathBuf,
    agent: Agent,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    secrets: SharedRedactor,
    state_dir: PathBuf,
    /// What status.json holds: it is rewritten only when an error appears or clears.
    written_errors: Option<BTreeMap<String, String>>,
}

impl Daemon {
    /// Runs until SIGTERM or SIGINT.
    async fn serve(&mut self, signals: &mut Signals) {
        let mut status_tick = tokio::time::interval(Duration::from_secs(2));
        let mut watchdog_tick = tokio::time::interval(
            self.notifier
                .watchdog_interval()
                .unwrap_or(Duration::from_secs(3600)),
        );
        loop {
            tokio::select! {
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => self.reload().await,
                _ = watchdog_tick.tick() => {
                    // Only vouch for the agent while every pipeline task is alive.
                    if self.agent.tasks_alive() {
                        self.notifier.watchdog();
                    }
                }
                _ = status_tick.tick() => self.report_status().await,
            }
        }
    }

    /// SIGHUP: the configuration file again; a bad one leaves the running configuration.
    async fn reload(&mut self) {
        tracing::info!(config = %self.path.display(), "SIGHUP: reloading configuration");
        self.notifier.status("reloading configuration");
        match Config::load(&self.path) {
            Ok(new) if new.agent.state_dir != self.agent.config.agent.state_dir => tracing::error!(
                "configuration reload rejected: agent.state_dir cannot change while running (restart instead); the running configuration stays"),
            Ok(new) => {
                self.secrets.add(&new.redactor());
                if let Err(e) = self.agent.reload(new).await {
                    tracing::error!(error = %e, "configuration reload rejected; the running configuration stays");
                }
            }
            Err(e) => tracing::error!(error = %e, "configuration reload rejected; the running configuration stays"),
        }
    }

    /// status.json when the pipelines' errors changed, and systemd's STATUS= line.
    async fn report_status(&mut self) {
        let errors = crate::status::errors(&self.metrics);
        if self.written_errors.as_ref() != Some(&errors) {
            let (dir, e, now, r) = (
                self.state_dir.clone(),
                errors.clone(),
                self.clock.now_ms(),
                self.secrets.current(),
            );
            let _ =
                tokio::task::spawn_blocking(move || crate::status::write(&dir, e, now, &r)).await;
            self.written_errors = Some(errors);
        }
        self.notifier
            .status(&status_line(&self.agent, &self.metrics));
    }

    /// Finishes the batches in flight and leaves status.json as the pipelines ended.
    async fn stop(self) {
        tracing::info!("shutting down: finishing batches in flight");
        self.notifier.stopping();
        self.agent.shutdown().await;
        crate::status::write(
            &self.state_dir,
            crate::status::errors(&self.metrics),
            self.clock.now_ms(),
            &self.secrets.current(),
        );
    }
}

/// The systemd STATUS= line: what an operator sees in `systemctl status`.
fn status_line(agent: &Agent, metrics: &Metrics) -> String {
    // Without copying a status per pipeline: this runs every few seconds, 10,000 organizations.
    let (failing, delivered) = metrics.summary();
    format!(
        "{} organization(s), {} sink(s); {delivered} record(s) delivered since start; {}",
        agent.config.organizations.len(),
        agent.config.sinks.len(),
        if failing == 0 {
            "all pipelines healthy".to_string()
        } else {
            format!("{failing} pipeline(s) failing")
        }
    )
}

/// `once`'s summary: per organization, new and re-read events, then per sink the records
/// delivered or why it failed.
pub fn once_text(reports: &[(OrgRef, PassReport)], sinks: &[String]) -> String {
    reports
        .iter()
        .map(|(org, r)| once_summary(org, r, sinks))
        .collect()
}

/// `once`'s summary: per organization its new and re-read events, then per sink the records
/// delivered or why it failed. `sinks` lists every configured sink, so one that had nothing to
/// do still shows with 0.
fn once_summary(org: &OrgRef, report: &PassReport, sinks: &[String]) -> String {
    let mut out = format!(
        "{org}: {} new event(s), {} re-read (overlap or catch-up){}\n",
        report.fetched,
        report.reread,
        if report.invalid > 0 {
            format!(", {} invalid (dead-lettered)", report.invalid)
        } else {
            String::new()
        }
    );
    if let Some(e) = &report.fetch_error {
        out.push_str(&format!("  FAILED fetch: {e}\n"));
    }
    for sink in sinks {
        let delivered = report.delivered.get(sink).copied().unwrap_or(0);
        let errors: Vec<&str> = report
            .sink_errors
            .iter()
            .filter(|(s, _)| s == sink)
            .map(|(_, e)| e.as_str())
            .collect();
        if errors.is_empty() {
            out.push_str(&format!("  sink {sink}: {delivered} record(s) delivered\n"));
        } else {
            out.push_str(&format!(
                "  sink {sink}: FAILED after {delivered} record(s) delivered: {}\n",
                errors.join("; ")
            ));
        }
    }
    for (sink, e) in &report.sink_errors {
        if !sinks.contains(sink) {
            out.push_str(&format!("  FAILED {sink}: {e}\n"));
        }
    }
    out
}

/// `once --json`: `{"ok", "organizations": [{"organization", "ok", "new", "reread", "invalid",
/// "delivered": {sink: records}, "fetch_error", "sink_errors": {sink: message}}]}`.
pub fn once_json(reports: &[(OrgRef, PassReport)]) -> String {
    let orgs: Vec<serde_json::Value> = reports
        .iter()
        .map(|(org, r)| {
            serde_json::json!({
                "organization": org.key(),
                "ok": r.ok(),
                "new": r.fetched,
                "reread": r.reread,
                "invalid": r.invalid,
                "delivered": r.delivered,
                "fetch_error": r.fetch_error,
                "sink_errors": r.sink_errors.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let out = serde_json::json!({
        "ok": reports.iter().all(|(_, r)| r.ok()),
        "organizations": orgs,
    });
    serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
}

/// `preview`: events from a file or stdin, printed in a format.
pub fn preview(
    format: &str,
    org: &str,
    ecs_namespace: &str,
    file: Option<&Path>,
    clock: &SharedClock,
) -> Result<(), CliError> {
    use std::io::{BufReader, Write};
    let usage = CliError::Usage;
    let format: Format = format
        .parse()
        .map_err(|e| usage(format!("--format: {e}")))?;
    let (provider, name) = org
        .split_once('/')
        .ok_or_else(|| usage(format!("--org {org:?}: write provider/name, e.g. gh/acme")))?;
    let org = OrgRef::new(
        provider.parse().map_err(|e| usage(format!("--org: {e}")))?,
        name,
    );
    crate::format::ecs::validate_namespace(ecs_namespace)
        .map_err(|e| usage(format!("--ecs-namespace: {e}")))?;
    let options = FormatOptions {
        ecs_namespace: ecs_namespace.to_string(),
        ..FormatOptions::default()
    };
    let encoder = Encoder::new(format, options);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (result, input) = match file {
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|source| CliError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            let r = crate::preview::preview(
                &encoder,
                &org,
                BufReader::new(f),
                &mut out,
                clock.now_ms(),
            );
            (r, path.display().to_string())
        }
        None => {
            let r = crate::preview::preview(
                &encoder,
                &org,
                std::io::stdin().lock(),
                &mut out,
                clock.now_ms(),
            );
            (r, "stdin".to_string())
        }
    };
    let _ = out.flush();
    match result {
        Ok(_) => Ok(()),
        // `preview ... | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(source) => Err(CliError::Preview { input, source }),
    }
}

/// Whether `e` (or what caused it) is a write to a pipe whose reader is gone.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Writes a command's output to stdout; a reader that closed the pipe early (`| head`) ends
/// it quietly instead of a panic from `print!`.
pub fn write_stdout(text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}
