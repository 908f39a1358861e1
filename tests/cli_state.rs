//! `state show` and `state reset` through the real binary, and `check`.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Quirks, Simulator};
use e2e::*;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");

fn cli(args: &[&str], cfg: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("CODACY_API_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_reset_and_replay() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(
            3,
            100,
            now - 3 * 86_400_000,
            now - 1_000,
            &GenOptions::default(),
        ),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        config_text(&server.base_url, dir.path(), &[&org], &[("a", "json")], ""),
    )
    .unwrap();

    // Before any run: no checkpoint yet.
    let o = cli(&["state", "show"], &cfg);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("(no checkpoint yet)"), "{}", out(&o));

    let o = cli(&["once"], &cfg);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("gh/acme: 100 new event(s), 0 re-read")
            && out(&o).contains("  sink a: 100 record(s) delivered"),
        "{}",
        out(&o)
    );
    let o = cli(&["state", "show"], &cfg);
    let text = out(&o);
    assert!(
        text.contains("ORGANIZATION") && text.contains("gh/acme") && text.contains(" a "),
        "{text}"
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(text.contains(&today), "cursor should be about now: {text}");

    // Replay the last two days: the next pass delivers them again (and only them).
    let two_days_ago = chrono::DateTime::from_timestamp_millis(now - 2 * 86_400_000).unwrap();
    let to = two_days_ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let o = cli(
        &[
            "state", "reset", "--org", "gh/acme", "--sink", "a", "--to", &to,
        ],
        &cfg,
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("cursor moved"), "{}", out(&o));
    let expected_replay = sim
        .events(&org)
        .iter()
        .filter_map(|v| codacy_audit_forwarder::event::AuditEvent::from_value(v.clone()).ok())
        .filter(|e| e.timestamp_ms >= two_days_ago.timestamp() * 1000)
        .count();
    let o = cli(&["once"], &cfg);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("  sink a: {expected_replay} record(s) delivered")),
        "{}",
        out(&o)
    );
    let lines = read_ndjson(&dir.path().join("a.ndjson"));
    assert_eq!(lines.len(), 100 + expected_replay);

    // Mistakes are usage errors naming the flag; retention and a running daemon need --yes.
    let o = cli(
        &[
            "state", "reset", "--org", "acme", "--sink", "a", "--to", &to,
        ],
        &cfg,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("--org"), "{}", out(&o));
    let o = cli(
        &[
            "state", "reset", "--org", "gh/acme", "--sink", "zzz", "--to", &to,
        ],
        &cfg,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = cli(
        &[
            "state",
            "reset",
            "--org",
            "gh/acme",
            "--sink",
            "a",
            "--to",
            "yesterday",
        ],
        &cfg,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = cli(
        &[
            "state",
            "reset",
            "--org",
            "gh/acme",
            "--sink",
            "a",
            "--to",
            "2001-01-01T00:00:00Z",
        ],
        &cfg,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("retention") && out(&o).contains("--yes"),
        "{}",
        out(&o)
    );
    let lock = codacy_audit_forwarder::lock::StateLock::acquire(&dir.path().join("state")).unwrap();
    let o = cli(
        &[
            "state", "reset", "--org", "gh/acme", "--sink", "a", "--to", &to,
        ],
        &cfg,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("running"), "{}", out(&o));
    let o = cli(
        &[
            "state", "reset", "--org", "gh/acme", "--sink", "a", "--to", &to, "--yes",
        ],
        &cfg,
    );
    // Nothing runs the pipelines behind this lock: the move is left for the daemon, and said so.
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("left for it") && out(&o).contains("next poll"),
        "{}",
        out(&o)
    );
    let request = codacy_audit_forwarder::checkpoint::reset_request_path(
        &dir.path().join("state"),
        &org,
        "a",
    );
    assert!(request.exists());
    // `once` (cron) never runs next to another agent on the same state directory.
    let o = cli(&["once"], &cfg);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("another codacy-audit-forwarder"),
        "{}",
        out(&o)
    );
    drop(lock);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_works_and_what_does_not() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let missing = OrgRef::new(Provider::Bb, "nobody");
    std::fs::write(
        &cfg,
        config_text(
            &server.base_url,
            dir.path(),
            &[&org, &missing],
            &[("a", "json")],
            "",
        ),
    )
    .unwrap();
    let o = cli(&["check"], &cfg);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("organization gh/acme: OK"), "{text}");
    assert!(
        text.contains("organization bb/nobody: FAILED") && text.contains("404"),
        "{text}"
    );
    assert!(text.contains("sink a (file, format json): OK"), "{text}");
    assert!(
        text.contains("API token: from environment variable CODACY_API_TOKEN"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    // check creates nothing: no state directory, no sink file.
    assert!(!dir.path().join("state").exists());
    assert!(!dir.path().join("a.ndjson").exists());

    std::fs::write(
        &cfg,
        config_text(&server.base_url, dir.path(), &[&org], &[("a", "json")], ""),
    )
    .unwrap();
    sim.set_quirks(Quirks {
        forbidden: true,
        ..Quirks::default()
    });
    let o = cli(&["check"], &cfg);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("403") && out(&o).contains("admin or manager"),
        "{}",
        out(&o)
    );
    sim.set_quirks(Quirks::default());
    let o = cli(&["check"], &cfg);
    assert!(o.status.success(), "{}", out(&o));
    server.shutdown().await;
}

/// `state reset --yes` next to a running daemon: the daemon itself moves the cursor at its next
/// poll, so the replay really happens (before, the daemon overwrote the reset checkpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_while_the_daemon_runs_replays() {
    let (sim, org) = acme_with_backlog(30, 5);
    let now = clock::system().now_ms();
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        with_telemetry(&config_text(
            &server.base_url,
            dir.path(),
            &[&org],
            &[("a", "json")],
            "",
        ))
        .0,
    )
    .unwrap();
    let daemon = spawn_run(&cfg, None);
    let file = dir.path().join("a.ndjson");
    wait_until("the backlog", std::time::Duration::from_secs(20), || {
        read_ndjson(&file).len() == 30
    })
    .await;
    let to = chrono::DateTime::from_timestamp_millis(now - 2 * 3_600_000)
        .unwrap()
        .to_rfc3339();
    let o = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "state", "reset", "--org", "gh/acme", "--sink", "a", "--to", &to, "--yes",
            ],
            &cfg,
        )
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("the running daemon moved the cursor"),
        "{}",
        out(&o)
    );
    wait_until("the replay", std::time::Duration::from_secs(20), || {
        read_ndjson(&file).len() == 60
    })
    .await;
    // state show reads the running daemon's live positions, and says so.
    let cfg2 = dir.path().join("config.toml");
    let o = tokio::task::spawn_blocking(move || cli(&["state", "show"], &cfg2))
        .await
        .unwrap();
    assert!(
        out(&o).contains("positions: live, from the running daemon"),
        "{}",
        out(&o)
    );
    let ids = delivered_ids(&read_ndjson(&file), &org);
    assert!(
        ids.values().all(|&n| n == 2),
        "every event replayed once: {ids:?}"
    );
    stop(daemon);
    server.shutdown().await;
}

/// `once --json` and `state show --json` for scripts; `state show` needs no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_for_scripts() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(9, 12, now - 3_600_000, now - 1_000, &GenOptions::default()),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        config_text(&server.base_url, dir.path(), &[&org], &[("a", "json")], ""),
    )
    .unwrap();
    let o = cli(&["once", "--json"], &cfg);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["organizations"][0]["organization"], "gh/acme");
    assert_eq!(v["organizations"][0]["delivered"]["a"], 12);

    let o = Command::new(BIN)
        .args(["state", "show", "--json", "-c"])
        .arg(&cfg)
        .env_remove("CODACY_API_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env(
            "CODACY_FORWARDER_CREDENTIAL_SOURCE",
            dir.path().join("none"),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["pipelines"][0];
    assert_eq!(
        (&p["organization"], &p["sink"], &p["checkpoint"]),
        (&"gh/acme".into(), &"a".into(), &"ok".into())
    );
    assert!(p["cursor"].as_str().unwrap().ends_with('Z'), "{p}");
    assert!(p["lag_seconds"].as_u64().is_some(), "{p}");
    server.shutdown().await;
}
