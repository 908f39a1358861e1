//! The commands behind the CLI (kept in the library so tests can drive them).

use crate::agent::{self, Agent, StartError};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::event::OrgRef;
use crate::format::{Encoder, Format, FormatOptions};
use crate::lock::StateLock;
use crate::pipeline::PassReport;
use crate::sdnotify::Notifier;
use crate::secret::SharedRedactor;
use crate::telemetry::{self, HealthPolicy, Metrics};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// `run`: the daemon. `secrets` (the log writer's) gets the secrets of every configuration
/// loaded; status.json and `/health` blank them too.
pub async fn run_daemon(
    path: PathBuf,
    config: Config,
    clock: SharedClock,
    secrets: SharedRedactor,
) -> Result<(), StartError> {
    secrets.add(&config.redactor());
    let notifier = Notifier::from_env();
    let metrics = Arc::new(Metrics::new());
    let state_dir = config.agent.state_dir.clone();
    agent::prepare_state_dir(&config)?;
    let _lock = StateLock::acquire(&state_dir).map_err(|e| StartError::State {
        path: state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let sig = |kind: SignalKind| {
        signal(kind).map_err(|e| StartError::Other(format!("cannot install signal handler: {e}")))
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    let (telemetry_stop, telemetry_stopped) = tokio::sync::oneshot::channel::<()>();
    let telemetry = match config.telemetry.listen {
        Some(listen) => {
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
                async {
                    let _ = telemetry_stopped.await;
                },
            )
            .await
            .map_err(|e| StartError::Other(format!("telemetry.listen: {e}")))?;
            tracing::info!(address = %addr, "serving /metrics and /health");
            Some(task)
        }
        None => None,
    };
    let mut agent = Agent::start(Arc::new(config), metrics.clone(), clock.clone()).await?;
    tracing::info!(organizations = agent.config.organizations.len(), sinks = agent.config.sinks.len(),
        config = %path.display(), version = env!("CARGO_PKG_VERSION"), "codacy-audit-forwarder started");
    notifier.ready();
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    let mut watchdog_tick = tokio::time::interval(
        notifier
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(3600)),
    );
    // What status.json holds: it is rewritten only when an error appears or clears.
    let mut written_errors = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading configuration");
                notifier.status("reloading configuration");
                match Config::load(&path) {
                    Ok(new) if new.agent.state_dir != agent.config.agent.state_dir => tracing::error!(
                        "configuration reload rejected: agent.state_dir cannot change while running (restart instead); the running configuration stays"),
                    Ok(new) => {
                        secrets.add(&new.redactor());
                        if let Err(e) = agent.reload(new).await {
                            tracing::error!(error = %e, "configuration reload rejected; the running configuration stays");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "configuration reload rejected; the running configuration stays"),
                }
            }
            _ = watchdog_tick.tick() => {
                // Only vouch for the agent while every pipeline task is alive.
                if agent.tasks_alive() {
                    notifier.watchdog();
                }
            }
            _ = status_tick.tick() => {
                let errors = crate::status::errors(&metrics);
                if written_errors.as_ref() != Some(&errors) {
                    let (dir, e, now, r) = (state_dir.clone(), errors.clone(), clock.now_ms(), secrets.current());
                    let _ = tokio::task::spawn_blocking(move || crate::status::write(&dir, e, now, &r)).await;
                    written_errors = Some(errors);
                }
                notifier.status(&status_line(&agent, &metrics));
            }
        }
    }
    tracing::info!("shutting down: finishing batches in flight");
    notifier.stopping();
    agent.shutdown().await;
    crate::status::write(
        &state_dir,
        crate::status::errors(&metrics),
        clock.now_ms(),
        &secrets.current(),
    );
    let _ = telemetry_stop.send(());
    if let Some(task) = telemetry {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The systemd STATUS= line: what an operator sees in `systemctl status`.
fn status_line(agent: &Agent, metrics: &Metrics) -> String {
    let statuses = metrics.statuses();
    let failing = statuses.values().filter(|s| s.last_error.is_some()).count();
    let delivered: u64 = agent
        .config
        .organizations
        .iter()
        .flat_map(|o| {
            agent
                .config
                .sinks
                .iter()
                .map(move |s| (o.key(), s.name.clone()))
        })
        .map(|(o, s)| {
            metrics.counter(
                "codacy_forwarder_events_delivered_total",
                &[("organization", &o), ("sink", &s)],
            )
        })
        .sum();
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

/// `preview`: events from a file or stdin, printed in a format. Errors starting with "usage:"
/// are command-line mistakes (exit 2).
pub fn preview(
    format: &str,
    org: &str,
    ecs_namespace: &str,
    file: Option<&std::path::Path>,
    clock: &SharedClock,
) -> Result<(), String> {
    use std::io::{BufReader, Write};
    let format: Format = format
        .parse()
        .map_err(|e| format!("usage: --format: {e}"))?;
    let (provider, name) = org
        .split_once('/')
        .ok_or_else(|| format!("usage: --org {org:?}: write provider/name, e.g. gh/acme"))?;
    let org = OrgRef::new(
        provider.parse().map_err(|e| format!("usage: --org: {e}"))?,
        name,
    );
    crate::format::ecs::validate_namespace(ecs_namespace)
        .map_err(|e| format!("usage: --ecs-namespace: {e}"))?;
    let options = FormatOptions {
        ecs_namespace: ecs_namespace.to_string(),
        ..FormatOptions::default()
    };
    let encoder = Encoder::new(format, options);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (result, input) = match file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
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
        Err(e) => Err(format!("{input}: {e}")),
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
