//! Files holding event data or state are private whatever the umask: `once` under `umask 000`
//! leaves only 0640 files and 0750 directories in the state directory (checkpoints, dead
//! letters, the lock) and a 0640 file sink.

#[path = "common/http_server.rs"]
mod http_server;

use http_server::{Reply, TestServer};
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Every file and directory below `dir` with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        out.push((
            entry.path().display().to_string(),
            meta.is_dir(),
            meta.mode() & 0o777,
        ));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_under_umask_000_creates_private_state_files() {
    let now = chrono::Utc::now().timestamp_millis();
    let server = TestServer::start(move |req, _| {
        if req.path.ends_with("/audit") {
            let events: Vec<_> = [now - 600_000, now - 300_000]
                .iter()
                .map(|t| json!({"timestamp": t, "action": "user.login", "result": "succeed"}))
                .collect();
            Reply::json(200, json!(events))
        } else {
            Reply::text(400, "no thanks")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The state directory itself is the operator's (or systemd's StateDirectory=).
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[codacy]
base_url = "{url}"
max_attempts = 1
[agent]
state_dir = "{state}"
initial_lookback = "1h"
[[organizations]]
provider = "gh"
name = "acme"
[[sinks]]
name = "archive"
type = "file"
path = "{archive}"
[[sinks]]
name = "hook"
type = "http"
url = "{url}/hook"
"#,
            url = server.url,
            state = state.display(),
            archive = dir.path().join("audit.ndjson").display(),
        ),
    )
    .unwrap();

    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" once --config "$1""#)
        .arg(env!("CARGO_BIN_EXE_codacy-audit-forwarder"))
        .arg(&config)
        .env("CODACY_API_TOKEN", "token-for-the-test")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut found = Vec::new();
    modes(&state, &mut found);
    let names: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    for expected in [
        "dead-letter/hook.ndjson",
        "checkpoints/gh/acme/archive.json",
        "lock",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "{expected} missing: {names:?}"
        );
    }
    for (path, is_dir, mode) in &found {
        let want = if *is_dir { 0o750 } else { 0o640 };
        assert_eq!(*mode, want, "{path} has mode {mode:o}");
    }
    let archive = std::fs::metadata(dir.path().join("audit.ndjson")).unwrap();
    assert_eq!(
        archive.mode() & 0o777,
        0o640,
        "the file sink's default mode"
    );
}
