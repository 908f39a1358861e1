//! Every bad configuration stops the real binary with exit code 2 and a message that names the
//! file and the key (never a panic, never a start).

#[path = "common/cli.rs"]
mod cli;

use cli::{command, write_config, BIN, GOOD};
use std::path::Path;
use std::process::Command;

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn run(dir: &Path, config: &str, subcommand: &str, token: Option<&str>) -> Outcome {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let path = write_config(dir, config);
    let out = command(dir, &[subcommand], &path, token).output().unwrap();
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_config_error(config: &str, key: &str, words: &str) {
    for subcommand in ["run", "once", "check"] {
        let dir = tempfile::tempdir().unwrap();
        let o = run(dir.path(), config, subcommand, Some("secret-token-value"));
        assert_eq!(
            o.code,
            Some(2),
            "{subcommand}: expected exit 2, stderr: {}",
            o.stderr
        );
        assert!(
            o.stderr.contains("config.toml"),
            "{subcommand}: no file name in: {}",
            o.stderr
        );
        assert!(
            o.stderr.contains(key),
            "{subcommand}: key {key:?} not named in: {}",
            o.stderr
        );
        assert!(
            o.stderr.contains(words),
            "{subcommand}: {words:?} not in: {}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        assert!(
            !o.stderr.contains("secret-token-value"),
            "token leaked: {}",
            o.stderr
        );
    }
}

#[test]
fn unknown_key() {
    assert_config_error(
        &GOOD.replace("[agent]", "[agent]\npoll_intervall = \"5s\""),
        "agent",
        "poll_intervall",
    );
}

#[test]
fn bad_duration() {
    assert_config_error(
        &GOOD.replace("overlap = \"10m\"", "overlap = \"ten minutes\""),
        "agent.overlap",
        "not a duration",
    );
}

#[test]
fn unknown_provider() {
    assert_config_error(
        &GOOD.replace("provider = \"gh\"", "provider = \"github\""),
        "organizations[0].provider",
        "gh, ghe, gl, gle, bb, bbe",
    );
}

#[test]
fn duplicate_sink_names() {
    let two = format!(
        "{GOOD}\n[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"STATE/b.ndjson\"\n"
    );
    assert_config_error(&two, "sinks[1].name", "used twice");
}

#[test]
fn unknown_sink_type_and_sink_key() {
    assert_config_error(
        &GOOD.replace("type = \"file\"", "type = \"ftp\""),
        "sinks[0]",
        "unknown sink type",
    );
    assert_config_error(
        &GOOD.replace("format = \"json\"", "format = \"json\"\nrotate = true"),
        "sinks[0]",
        "rotate",
    );
}

#[test]
fn lookback_beyond_retention() {
    assert_config_error(
        &GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""),
        "agent.initial_lookback",
        "365d",
    );
}

#[test]
fn missing_token() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), GOOD, "once", None);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("codacy.api_token_file") && o.stderr.contains("CODACY_API_TOKEN"),
        "{}",
        o.stderr
    );
}

#[test]
fn token_file_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GOOD.replace(
        "request_timeout = \"30s\"",
        "request_timeout = \"30s\"\napi_token_file = \"/nonexistent/token\"",
    );
    let o = run(dir.path(), &cfg, "once", None);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("/nonexistent/token"), "{}", o.stderr);
}

#[test]
fn missing_config_file() {
    let out = Command::new(BIN)
        .args(["once", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/config.toml") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn not_toml_at_all() {
    assert_config_error("[codacy\nbase_url = 1", "", "config.toml");
}

#[test]
fn missing_sink_directory_is_a_startup_error_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GOOD.replace(
        "path = \"STATE/audit.ndjson\"",
        "path = \"/nonexistent-dir/audit.ndjson\"",
    );
    let o = run(dir.path(), &cfg, "once", Some("t"));
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("/nonexistent-dir") && o.stderr.contains("does not exist"),
        "{}",
        o.stderr
    );
}

#[test]
fn plain_http_to_another_machine_is_refused_unless_allowed() {
    assert_config_error(
        &GOOD.replace("https://app.codacy.com", "http://codacy.internal:8080"),
        "codacy.base_url",
        "allow_insecure_http",
    );
    assert_config_error(
        &format!("{GOOD}\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://siem.internal/in\"\n"),
        "sinks[1]",
        "allow_insecure_http",
    );
}

#[test]
fn allowed_plain_http_is_warned_about_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = GOOD
        .replace("https://app.codacy.com", "http://codacy.internal:8080")
        .replace("[codacy]", "[codacy]\nallow_insecure_http = true")
        .replace("STATE", &state.display().to_string());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    // `state show` loads the configuration like every command, without reaching the network.
    let out = Command::new(BIN)
        .args(["state", "show", "--config"])
        .arg(&path)
        .env("CODACY_API_TOKEN", "t")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("WARN")
            && stderr.contains("http://codacy.internal:8080")
            && stderr.contains("unencrypted"),
        "{stderr}"
    );
}

#[test]
fn a_file_mode_that_is_not_octal() {
    assert_config_error(
        &GOOD.replace("format = \"json\"", "format = \"json\"\nmode = \"0999\""),
        "sinks[0].mode",
        "\"0999\" is not an octal permission such as \"0640\"",
    );
}

#[test]
fn no_events_in_memory() {
    assert_config_error(
        &GOOD.replace("[agent]", "[agent]\nmax_events_in_memory = 0"),
        "agent.max_events_in_memory",
        "at least 1",
    );
}

#[test]
fn an_environment_override_with_a_bad_value_names_the_variable_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    let state = dir.path().join("state");
    std::fs::write(&path, GOOD.replace("STATE", &state.display().to_string())).unwrap();
    for (var, value, words) in [
        (
            "CODACY_FORWARDER__AGENT__POLL_INTERVAL",
            "abc",
            "\"abc\" is not a duration",
        ),
        (
            "CODACY_FORWARDER__CODACY__PAGE_LIMIT",
            "100.5",
            "not a whole number",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["check", "--offline", "--config"])
            .arg(&path)
            .env("CODACY_API_TOKEN", "t")
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("environment variable {var}")) && stderr.contains(words),
            "{var}={value}: {stderr}"
        );
    }
}

#[test]
fn numbers_written_as_text_or_fractions_are_refused() {
    assert_config_error(
        &GOOD.replace("page_limit = 1000", "page_limit = \"100\""),
        "codacy.page_limit",
        "without quotes",
    );
    assert_config_error(
        &GOOD.replace("page_limit = 1000", "page_limit = 100.5"),
        "codacy.page_limit",
        "not a whole number",
    );
}

#[test]
fn a_lookback_beyond_retention_is_echoed_as_written() {
    assert_config_error(
        &GOOD.replace("initial_lookback = \"24h\"", "initial_lookback = \"400d\""),
        "agent.initial_lookback",
        "\"400d\" is longer",
    );
}
