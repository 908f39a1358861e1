//! Servers that echo our request headers in their error bodies (a misconfigured proxy, a debug
//! endpoint) must not get a secret into anything the agent writes. The real binary runs `once`,
//! `check`, `run` and `state show` against a server on 127.0.0.1 that quotes every request header
//! back: the Codacy token, a webhook bearer token, basic credentials and a Splunk HEC token.

#[path = "common/http_server.rs"]
mod http_server;

use http_server::{secret_file, Received, Reply, TestServer};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CODACY_TOKEN: &str = "codacy-api-token-0123456789abcdef";
const BEARER: &str = "webhook-bearer-token-fedcba9876";
const BASIC_USER: &str = "auditor";
const BASIC_PASSWORD: &str = "basic-password-4242";
const HEC_TOKEN: &str = "11111111-2222-3333-4444-555555555555";
/// The token of a sink added by a SIGHUP reload.
const RELOADED_TOKEN: &str = "99999999-8888-7777-6666-555555555555";
const PASSWORD_ENV: &str = "CAF_REDACTION_TEST_PASSWORD";

fn basic_b64() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
}

/// Fails naming the output and the secret found in it.
fn assert_clean(what: &str, text: &str) {
    for secret in [
        CODACY_TOKEN.to_string(),
        BEARER.to_string(),
        BASIC_PASSWORD.to_string(),
        basic_b64(),
        HEC_TOKEN.to_string(),
        RELOADED_TOKEN.to_string(),
    ] {
        assert!(!text.contains(&secret), "{what} leaks {secret}:\n{text}");
    }
}

fn assert_redacted(what: &str, text: &str) {
    assert_clean(what, text);
    assert!(
        text.contains("[redacted]"),
        "{what} shows no [redacted]:\n{text}"
    );
}

/// Two events of gh/good inside the requested window; every error answer quotes the request's
/// headers.
fn handler(now_ms: i64) -> impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static {
    move |req, _| {
        let echo = format!("you sent:\n{}", req.header_dump());
        match req.path.as_str() {
            "/api/v3/organizations/gh/good/audit" => {
                let param = |n: &str| req.param(n).and_then(|v| v.parse::<i64>().ok());
                let (from, to) = (param("from").unwrap_or(0), param("to").unwrap_or(i64::MAX));
                let events: Vec<_> = [now_ms - 600_000, now_ms - 300_000]
                    .into_iter()
                    .filter(|t| (from..to).contains(t))
                    .map(|t| {
                        json!({"timestamp": t, "action": "user.login", "result": "succeed",
                               "actor": {"email": "a@acme.test", "role": "organizationAdmin"}})
                    })
                    .collect();
                Reply::json(200, json!(events))
            }
            // A long preamble puts the token near the 300-character cut of excerpts.
            "/api/v3/organizations/gh/bad/audit" => {
                Reply::text(400, &format!("{} {echo}", "bad request.".repeat(22)))
            }
            "/services/collector/event" => Reply::json(
                400,
                json!({"text": format!("Invalid data format; {echo}"), "code": 6}),
            ),
            // Splunk's own text, not an excerpt: quoted whole in the sink's fatal error.
            "/reloaded/services/collector/event" => Reply::json(
                403,
                json!({"text": format!("Invalid token; {echo}"), "code": 4}),
            ),
            _ => Reply::text(400, &format!("rejected; {echo}")),
        }
    }
}

fn config(url: &str, dir: &Path, telemetry_port: Option<u16>) -> String {
    let token = secret_file(dir, "hook-token", BEARER);
    let hec = secret_file(dir, "hec-token", HEC_TOKEN);
    let telemetry = telemetry_port
        .map(|p| format!("[telemetry]\nlisten = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
[codacy]
base_url = "{url}"
request_timeout = "5s"
max_attempts = 1

[agent]
state_dir = "{state}"
poll_interval = "1s"
initial_lookback = "1h"

{telemetry}
[[organizations]]
provider = "gh"
name = "good"

[[organizations]]
provider = "gh"
name = "bad"

[[sinks]]
name = "hook"
type = "http"
url = "{url}/hook"
auth = {{ bearer_token_file = "{token}" }}

[[sinks]]
name = "basic"
type = "http"
url = "{url}/basic"
auth = {{ user = "{BASIC_USER}", password_env = "{PASSWORD_ENV}" }}

[[sinks]]
name = "splunk"
type = "splunk_hec"
url = "{url}"
token_file = "{hec}"
"#,
        state = dir.join("state").display(),
        token = token.display(),
        hec = hec.display(),
    )
}

fn command(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_codacy-audit-forwarder"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("CODACY_API_TOKEN", CODACY_TOKEN)
        .env(PASSWORD_ENV, BASIC_PASSWORD)
        .env("NO_COLOR", "1")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

async fn run(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = command(config, args).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The /health body once it contains `needle` (the error of interest has been recorded).
async fn health_containing(url: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await {
            let body = r.text().await.unwrap_or_default();
            if body.contains(needle) {
                return body;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{needle:?} never appeared in {url}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_and_check_blank_echoed_secrets_in_output_logs_and_dead_letters() {
    let server = TestServer::start(handler(now_ms())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&server.url, dir.path(), None)).unwrap();

    let (code, stdout, stderr) = run(&path, &["once"]).await;
    assert_eq!(code, Some(1), "gh/bad fails\n{stdout}\n{stderr}");
    // The echo really reached the agent: the error quotes the headers, token blanked.
    assert!(stdout.contains("api-token: [redacted]"), "{stdout}");
    assert_redacted("once stdout", &stdout);
    assert_redacted("once stderr", &stderr);

    for (sink, header) in [
        ("hook", "Bearer [redacted]"),
        ("basic", "Basic [redacted]"),
        ("splunk", "Splunk [redacted]"),
    ] {
        let file = dir.path().join(format!("state/dead-letter/{sink}.ndjson"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(text.lines().count(), 2, "both events of gh/good: {text}");
        assert!(text.contains(header), "{sink}: {text}");
        assert_redacted(&format!("dead letters of {sink}"), &text);
    }
    // Every sink got the credentials it was configured with: the test proves what it claims.
    let auth: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .collect();
    for expected in [
        format!("Bearer {BEARER}"),
        format!("Basic {}", basic_b64()),
        format!("Splunk {HEC_TOKEN}"),
    ] {
        assert!(auth.contains(&expected), "{expected} not sent: {auth:?}");
    }

    let (code, stdout, stderr) = run(&path, &["check"]).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("organization gh/bad: FAILED"), "{stdout}");
    assert_redacted("check stdout", &stdout);
    assert_clean("check stderr", &stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_blanks_echoed_secrets_in_health_status_json_and_state_show() {
    let server = TestServer::start(handler(now_ms())).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&server.url, dir.path(), Some(port))).unwrap();

    let child = command(&path, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health_url = format!("http://127.0.0.1:{port}/health");
    let health = health_containing(&health_url, "api-token:").await;
    assert_redacted("/health", &health);

    // status.json is rewritten within 2 s of an error appearing.
    let status_path = dir.path().join("state/status.json");
    let start = Instant::now();
    let status = loop {
        let text = std::fs::read_to_string(&status_path).unwrap_or_default();
        if text.contains("api-token:") {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no status.json");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_redacted("status.json", &status);

    // A reload adds a sink with a new secret, which its destination echoes: blanked as well.
    let pid = child.id().unwrap().to_string();
    let reloaded = secret_file(dir.path(), "reloaded-token", RELOADED_TOKEN);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[[sinks]]\nname = \"reloaded\"\ntype = \"splunk_hec\"\nurl = \"{}/reloaded\"\ntoken_file = \"{}\"\n",
        server.url,
        reloaded.display()
    ));
    std::fs::write(&path, text).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let health = health_containing(&health_url, "Invalid token").await;
    assert!(health.contains("Splunk [redacted]"), "{health}");
    assert_redacted("/health after reload", &health);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the daemon stops after SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_redacted("run stderr", &stderr);
    assert_redacted(
        "status.json at exit",
        &std::fs::read_to_string(&status_path).unwrap(),
    );

    let (code, stdout, stderr) = run(&path, &["state", "show"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("gh/bad"), "{stdout}");
    assert_redacted("state show", &stdout);
}
