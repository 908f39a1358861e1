//! The commands behind the CLI (kept in the library so tests can drive them).

use crate::agent::{self, Agent, StartError};
use crate::clock::SharedClock;
use crate::codacy::Client;
use crate::config::Config;
use crate::telemetry::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// `run`: the daemon.
pub async fn run_daemon(
    path: PathBuf,
    config: Config,
    clock: SharedClock,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let state_dir = config.agent.state_dir.clone();
    agent::prepare_state_dir(&config)?;
    let _lock = crate::lock::StateLock::acquire(&state_dir).map_err(|e| StartError::State {
        path: state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let sig = |kind: SignalKind| {
        signal(kind).map_err(|e| StartError::Other(format!("cannot install signal handler: {e}")))
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    let mut agent = Agent::start(Arc::new(config), metrics.clone(), clock.clone()).await?;
    tracing::info!(organizations = agent.config.organizations.len(), sinks = agent.config.sinks.len(),
        config = %path.display(), "codacy-audit-forwarder started");
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading configuration");
                match Config::load(&path) {
                    Ok(new) if new.agent.state_dir != agent.config.agent.state_dir => tracing::error!(
                        "configuration reload rejected: agent.state_dir cannot change while running (restart instead); the running configuration stays"),
                    Ok(new) => {
                        if let Err(e) = agent.reload(new).await {
                            tracing::error!(error = %e, "configuration reload rejected; the running configuration stays");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "configuration reload rejected; the running configuration stays"),
                }
            }
            _ = status_tick.tick() => {
                crate::status::write(&state_dir, &metrics, clock.now_ms());
            }
        }
    }
    tracing::info!("shutting down: finishing batches in flight");
    agent.shutdown().await;
    crate::status::write(&state_dir, &metrics, clock.now_ms());
    tracing::info!("stopped");
    Ok(())
}

/// `check`: validates, calls the API once per organization, probes every sink. Prints a report;
/// returns whether everything works.
pub async fn check(config: &Config, clock: &SharedClock) -> bool {
    let mut ok = true;
    println!("configuration {}: valid", config.source);
    println!("API token: from {}", config.codacy.token_source);
    let metrics = Arc::new(Metrics::new());
    let client = match Client::new(&config.codacy, metrics.clone()) {
        Ok(c) => c,
        Err(e) => {
            println!("FAILED: {e}");
            return false;
        }
    };
    let now = clock.now_ms();
    for org in &config.organizations {
        match client.fetch_page(org, now - 3_600_000, now, 1, None).await {
            Ok(page) => println!(
                "organization {org}: OK ({} response, {} event(s) in the last hour)",
                if page.enveloped { "paginated" } else { "array" },
                page.events.len()
            ),
            Err(e) => {
                ok = false;
                println!("organization {org}: FAILED: {e}");
            }
        }
    }
    match agent::prepare_state_dir(config) {
        Ok(()) => println!(
            "state directory {}: writable",
            config.agent.state_dir.display()
        ),
        Err(e) => {
            ok = false;
            println!("FAILED: {e}");
        }
    }
    for spec in &config.sinks {
        let label = format!(
            "sink {} ({}, format {})",
            spec.name,
            spec.kind.type_name(),
            spec.format
        );
        match agent::build_sink(config, spec, &metrics, clock).await {
            Ok(h) => match h.sink.check().await {
                Ok(msg) => println!("{label}: OK ({msg})"),
                Err(e) => {
                    ok = false;
                    println!("{label}: FAILED: {e}");
                }
            },
            Err(e) => {
                ok = false;
                println!("{label}: FAILED: {e}");
            }
        }
    }
    ok
}

/// `demo`: the agent against the embedded simulator.
pub async fn demo(
    out: PathBuf,
    duration: Option<Duration>,
    clock: SharedClock,
) -> Result<(), StartError> {
    crate::demo::run(out, duration, clock).await
}

/// `preview`: events from a file or stdin, printed in a format.
pub fn preview(
    format: &str,
    org: &str,
    ecs_namespace: &str,
    file: Option<&std::path::Path>,
    clock: &SharedClock,
) -> Result<(), String> {
    let _ = (format, org, ecs_namespace, file, clock);
    Err("preview: not available yet".into())
}
