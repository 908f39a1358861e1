//! `demo`: the agent's main job on an embedded default. Starts the Codacy API simulator on
//! 127.0.0.1 with a day of realistic events, runs the agent against it with `config/demo.toml`
//! (built in), writes `OUT/audit.ndjson`, and keeps producing fresh events until Ctrl-C or the
//! duration ends.

use crate::agent::{Agent, StartError};
use crate::cli::{lock_state_dir, on_signal};
use crate::clock::SharedClock;
use crate::config::{Config, TokenSources};
use crate::event::{OrgRef, Provider};
use crate::simulator::{generate_events, GenOptions, ProducerOptions, Simulator};
use crate::telemetry::Metrics;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::SignalKind;

pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const DEMO_TOKEN: &str = "demo-token";

/// The demo configuration, pointed at `base_url` and writing under `out`.
pub fn demo_config(base_url: &str, out: &Path) -> Result<Config, StartError> {
    let tokens = TokenSources {
        env: Some(DEMO_TOKEN.to_string()),
        credentials_directory: None,
    };
    // The file sink's path is set in the text, so it is validated like any configured path.
    let path = serde_json::to_string(&out.join("audit.ndjson"))
        .map_err(|e| StartError::Other(format!("demo output path: {e}")))?;
    let text = DEMO_CONFIG.replace("\"./demo-out/audit.ndjson\"", &path);
    let mut config = Config::from_toml(&text, "config/demo.toml (built in)", &tokens, false)?;
    config.codacy.base_url = base_url.to_string();
    config.agent.state_dir = out.join("state");
    Ok(config)
}

pub async fn run(
    out: PathBuf,
    duration: Option<Duration>,
    clock: SharedClock,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&out)
        .map_err(|e| StartError::Other(format!("cannot create {}: {e}", out.display())))?;
    let out = out.canonicalize().unwrap_or(out);
    let sim = Simulator::with_clock(DEMO_TOKEN, clock.clone());
    let org = OrgRef::new(Provider::Gh, "demo-org");
    sim.add_org(&org);
    let now = clock.now_ms();
    // A day of history: what a first start backfills (initial_lookback = 24h).
    sim.push_events(
        &org,
        generate_events(
            now as u64,
            250,
            now - 23 * 3_600_000,
            now - 1_000,
            &GenOptions::tricky(),
        ),
    );
    let server = sim
        .serve()
        .await
        .map_err(|e| StartError::Other(format!("cannot start the simulator on 127.0.0.1: {e}")))?;
    let producer = sim.spawn_producer_with(
        &org,
        ProducerOptions {
            every: Duration::from_secs(2),
            late_every: Some(5),
            late_by: Duration::from_secs(20),
            ..ProducerOptions::default()
        },
        clock.clone(),
    );
    let config = demo_config(&server.base_url, &out)?;
    // A demo resuming from its checkpoints owns them like any agent: a second demo (or a
    // `once`) on the same directory would deliver twice.
    crate::agent::prepare_state_dir(&config)?;
    let state_dir = config.agent.state_dir.clone();
    let _lock = lock_state_dir(&state_dir)?;
    let file = out.join("audit.ndjson");
    // SIGTERM (systemd, `kill`, a test harness) ends it like Ctrl-C: summary included.
    let mut term = on_signal(SignalKind::terminate())?;
    let mut interrupt = on_signal(SignalKind::interrupt())?;
    println!("codacy-audit-forwarder demo");
    println!(
        "  Codacy API simulator: {}/api/v3/organizations/gh/demo-org/audit",
        server.base_url
    );
    println!("  API token:            {DEMO_TOKEN}   (try: curl -H 'api-token: {DEMO_TOKEN}' '{}/api/v3/organizations/gh/demo-org/audit?limit=2')", server.base_url);
    println!("  writing NDJSON to:    {}", file.display());
    println!(
        "  checkpoints in:       {}",
        config.agent.state_dir.display()
    );
    println!("  look at it:           tail -f {} | jq .", file.display());
    match duration {
        Some(d) => println!("  running for {}; new events arrive every 2 s", humantime::format_duration(d)),
        None => println!("  new events arrive every 2 s; Ctrl-C to stop (run it again: it resumes from its checkpoint)"),
    }
    let metrics = Arc::new(Metrics::new());
    let agent = Agent::start(Arc::new(config), metrics.clone(), clock).await?;
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    agent.shutdown().await;
    producer.abort();
    server.shutdown().await;
    let delivered = metrics.counter(
        "codacy_forwarder_events_delivered_total",
        &[("organization", "gh/demo-org"), ("sink", "demo")],
    );
    println!(
        "delivered {delivered} event(s) to {} this run",
        file.display()
    );
    Ok(())
}
