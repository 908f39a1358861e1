//! `export` through the real binary against the embedded simulator: every event of [from, to)
//! exactly as many times as the API holds it, with the agent's ids, oldest first, whatever the
//! server's order, faults and page shapes; CSV a spreadsheet reads; and no state touched.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{identify, AuditEvent, OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Order, Quirks, Simulator};
use e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");
const DAY: i64 = 86_400_000;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn export(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("export")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CODACY_API_TOKEN", TOKEN)
        .output()
        .unwrap()
}

struct Setup {
    sim: Simulator,
    org: OrgRef,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    now: i64,
    _server: codacy_audit_forwarder::simulator::ServerHandle,
}

/// 1,500 tricky events over 60 days, served newest first with faults; a small memory cap so
/// slices are halved and doubled along the way.
async fn setup() -> Setup {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    let opts = GenOptions {
        page_boundaries: Some(50),
        ..GenOptions::tricky()
    };
    sim.push_events(
        &org,
        generate_events(11, 1500, now - 60 * DAY, now - 60_000, &opts),
    );
    sim.set_quirks(Quirks {
        order: Order::NewestFirst,
        unavailable_every: Some(7),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &server.base_url,
        dir.path(),
        &[&org],
        &[("a", "json")],
        "max_events_in_memory = 120",
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        sim,
        org,
        dir,
        config,
        now,
        _server: server,
    }
}

/// The ids the agent gives the events of [from, to) the simulator holds, with multiplicity.
fn expected(s: &Setup, from: i64, to: i64) -> BTreeMap<String, usize> {
    let parsed: Vec<AuditEvent> = s
        .sim
        .events(&s.org)
        .into_iter()
        .filter_map(|v| AuditEvent::from_value(v).ok())
        .filter(|e| e.timestamp_ms >= from && e.timestamp_ms < to)
        .collect();
    let mut out = BTreeMap::new();
    for e in identify(&Arc::new(s.org.clone()), parsed, 0) {
        *out.entry(e.id.to_string()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_a_window_exactly_once_oldest_first_and_touches_no_state() {
    let s = setup().await;
    let (from, to) = (s.now - 45 * DAY, s.now - 5 * DAY);
    let out_path = s.dir.path().join("audit.ndjson");
    let (from_s, to_s) = (rfc3339(from), rfc3339(to));
    let out = tokio::task::spawn_blocking({
        let (config, out_path) = (s.config.clone(), out_path.clone());
        move || {
            export(
                &config,
                &[
                    "--org",
                    "gh/acme",
                    "--from",
                    &from_s,
                    "--to",
                    &to_s,
                    "--format",
                    "json",
                    "--output",
                    out_path.to_str().unwrap(),
                ],
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    let lines = read_ndjson(&out_path);
    let want = expected(&s, from, to);
    assert!(
        want.values().sum::<usize>() > 800,
        "the window holds most events"
    );
    assert_eq!(delivered_ids(&lines, &s.org), want);
    let times: Vec<i64> = lines
        .iter()
        .map(|l| {
            AuditEvent::from_value(strip_provenance(l))
                .unwrap()
                .timestamp_ms
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "event-time order");
    assert!(!s.dir.path().join("audit.ndjson.partial").exists());
    // No checkpoint, lock or status file: an export runs beside the daemon.
    assert!(!s.dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_to_stdout_is_what_a_spreadsheet_reads() {
    let s = setup().await;
    // Dates: midnight UTC; --to exclusive.
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let (from_d, to_d) = (day(s.now - 30 * DAY), day(s.now - 10 * DAY));
    let from = chrono::NaiveDate::parse_from_str(&from_d, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let to = from + 20 * DAY;
    let config = s.config.clone();
    let out = tokio::task::spawn_blocking(move || {
        export(
            &config,
            &[
                "--org", "gh/acme", "--from", &from_d, "--to", &to_d, "--format", "csv",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "actor",
            "action",
            "timestamp",
            "result",
            "source",
            "repositoryName",
            "details"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), expected(&s, from, to).values().sum::<usize>());
    // Each row's columns are the event's fields as received, objects as JSON.
    let held: Vec<Value> = s.sim.events(&s.org);
    let first = held
        .iter()
        .filter_map(|v| AuditEvent::from_value(v.clone()).ok())
        .filter(|e| e.timestamp_ms >= from && e.timestamp_ms < to)
        .min_by_key(|e| e.timestamp_ms)
        .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
    assert!(actions.contains(&first.action()));
    assert!(rows.iter().all(|r| r.len() == 7));
}

#[test]
fn bad_times_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(
            "http://127.0.0.1:9",
            dir.path(),
            &[&OrgRef::new(Provider::Gh, "other")],
            &[("a", "json")],
            "",
        ),
    )
    .unwrap();
    let out = export(&config, &["--org", "gh/acme", "--from", "last week"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--from \"last week\""), "{stderr}");
    let out = export(
        &config,
        &[
            "--org",
            "gh/acme",
            "--from",
            "2026-07-02",
            "--to",
            "2026-07-01",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be before --to"));
    let out = export(&config, &["--org", "acme", "--from", "2026-07-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("provider/name"));
}
