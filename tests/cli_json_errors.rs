//! With `--json`, a command that cannot run prints its error as one JSON object on stdout (the
//! shape `check --json` uses: `{"ok": false, "config", "error"}`, plus `file` and `key` for a
//! configuration error), with the exit code and stderr line it has without `--json`. And the
//! message a service user gets when it cannot read the root-only token file, run as a real
//! unprivileged user.

#[path = "common/peers.rs"]
mod peers;

#[path = "common/cli.rs"]
mod cli;

use cli::{command, write_config, BIN, GOOD};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The commands that take `--json`.
const JSON_COMMANDS: &[&[&str]] = &[&["once"], &["check"], &["state", "show"]];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` with and without `--json`: the same exit code and error on stderr, and with
/// `--json` exactly one JSON object on stdout, which is returned.
fn json_error(cmd: impl Fn(&[&str]) -> Command, args: &[&str], code: i32) -> Value {
    let plain = cmd(args).output().unwrap();
    let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let json = cmd(&with_json).output().unwrap();
    let err = text(&json.stderr);
    assert_eq!(json.status.code(), Some(code), "{args:?} --json: {err}");
    assert_eq!(plain.status.code(), Some(code), "{args:?}: {err}");
    // The error ends stderr; its message may have several lines (a TOML parse error does).
    let line = |o: &Output| {
        let err = text(&o.stderr);
        let start = match err.strip_prefix("error: ") {
            Some(_) => 0,
            None => err.find("\nerror: ")? + 1,
        };
        Some(err[start..].trim_end().to_string())
    };
    assert!(
        line(&json).is_some(),
        "{args:?} --json: no error line: {err}"
    );
    assert_eq!(line(&json), line(&plain), "{args:?}");
    assert!(plain.stdout.is_empty(), "{args:?}: {}", text(&plain.stdout));
    let out = text(&json.stdout);
    assert_eq!(out.lines().count(), 1, "{args:?}: one line of JSON: {out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    assert_eq!(v["ok"], false, "{out}");
    assert_eq!(
        line(&json).unwrap(),
        format!("error: {}", v["error"].as_str().unwrap()),
        "the JSON error is the message on stderr"
    );
    v
}

#[test]
fn a_bad_key_is_json_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &GOOD.replace("poll_interval = \"60s\"", "poll_interval = \"soon\""),
    );
    for args in JSON_COMMANDS {
        let v = json_error(|a| command(dir.path(), a, &config, Some("tok")), args, 2);
        assert_eq!(v["config"], config.display().to_string(), "{args:?}");
        assert_eq!(v["file"], config.display().to_string(), "{args:?}");
        assert_eq!(v["key"], "agent.poll_interval", "{args:?}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.starts_with("configuration error in ") && e.contains("\"soon\""),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn a_missing_file_is_json_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("absent.toml");
    for args in JSON_COMMANDS {
        let v = json_error(|a| command(dir.path(), a, &config, Some("tok")), args, 2);
        assert_eq!(v["key"], Value::Null, "{args:?}");
        assert!(
            v["error"].as_str().unwrap().contains("file not found"),
            "{args:?}: {v}"
        );
    }
}

#[test]
fn an_environment_override_is_blamed_in_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    for args in JSON_COMMANDS {
        let v = json_error(
            |a| {
                let mut c = command(dir.path(), a, &config, Some("tok"));
                c.env("CODACY_FORWARDER__AGENT__POLL_INTERVAL", "abc");
                c
            },
            args,
            2,
        );
        assert_eq!(v["file"], config.display().to_string(), "{args:?}");
        assert_eq!(
            v["variable"], "CODACY_FORWARDER__AGENT__POLL_INTERVAL",
            "{args:?}"
        );
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains("environment variable CODACY_FORWARDER__AGENT__POLL_INTERVAL (it overrides `agent.poll_interval`"),
            "{args:?}: {error}"
        );
        assert_eq!(v["key"], "agent.poll_interval", "{args:?}");
    }
}

#[test]
fn once_without_a_token_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    let v = json_error(|a| command(dir.path(), a, &config, None), &["once"], 2);
    assert_eq!(v["key"], "codacy.api_token_file");
    assert!(v["error"].as_str().unwrap().contains("no API token"), "{v}");
}

/// A failure after the configuration loaded (here a state directory that is a file) is JSON
/// too, with exit 1 and no `key`.
#[test]
fn once_that_cannot_start_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    std::fs::write(dir.path().join("state"), b"not a directory").unwrap();
    let v = json_error(
        |a| command(dir.path(), a, &config, Some("tok")),
        &["once"],
        1,
    );
    assert!(v.get("key").is_none(), "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("state directory "), "{e}");
}

/// Runs the binary as `nobody`: `None` (skipped, or a failure under `REQUIRE_PEERS=1`) when this
/// process cannot switch users or `nobody` cannot run the binary.
fn as_nobody(args: &[&str], config: &Path, env: &[(&str, &Path)]) -> Option<Output> {
    let install = "run the tests as root (setpriv is in util-linux)";
    // /proc/self belongs to this process's effective user.
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        peers::missing("not root, so the tests cannot run as another user", install);
        return None;
    }
    let run = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ])
        .args(args)
        .env_remove("CODACY_API_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output()
    };
    match run(&["--version"]) {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = format!("nobody cannot run {BIN}: {}", text(&o.stderr).trim());
            peers::missing(&why, install);
            return None;
        }
        Err(e) => {
            peers::missing(&format!("setpriv: {e}"), install);
            return None;
        }
    }
    let mut all: Vec<&str> = args.to_vec();
    let config = config.to_str().unwrap();
    all.extend(["--config", config]);
    Some(run(&all).unwrap())
}

/// A directory `nobody` can enter and read, holding a configuration and a root-only token file
/// (the packaged credential source, 0600 root).
fn unreadable_token_setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(dir.path(), GOOD);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = dir.path().join("api-token");
    std::fs::write(&token, "root-only-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, config, token)
}

/// The service user running `once` or `check` by hand finds the credential's source file but
/// cannot read it: the message names the file and how to run the command instead.
#[test]
fn a_service_user_who_cannot_read_the_token_is_told_the_file_and_the_remedy() {
    let (_dir, config, token) = unreadable_token_setup();
    let env = [("CODACY_FORWARDER_CREDENTIAL_SOURCE", token.as_path())];
    for args in [&["once"][..], &["check", "--offline"], &["once", "--json"]] {
        let Some(o) = as_nobody(args, &config, &env) else {
            return;
        };
        let err = text(&o.stderr);
        let out = text(&o.stdout);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}{out}");
        let said = if args == ["check", "--offline"] {
            &out
        } else {
            &err
        };
        for words in [
            &format!("cannot read secret file {}", token.display()),
            "Permission denied",
            "readable by root only: run this command as root",
            &format!(
                "sudo systemd-run --pipe --wait -p User=codacy-audit-forwarder -p LoadCredential=api-token:{}",
                token.display()
            ),
        ] {
            assert!(said.contains(words), "{args:?}: {words:?} not in: {said}");
        }
        assert!(!said.contains("root-only-token") && !out.contains("root-only-token"));
        if args.contains(&"--json") {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["key"], "codacy.api_token_file");
            assert!(v["error"]
                .as_str()
                .unwrap()
                .contains("run this command as root"));
        }
    }
}

/// An explicit `api_token_file` the service user cannot read while the systemd credential can
/// be read is a warning naming the file, not a failure.
#[test]
fn an_unreadable_api_token_file_next_to_a_credential_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _, token) = unreadable_token_setup();
    let config = write_config(
        dir.path(),
        &GOOD.replace(
            "[codacy]",
            &format!("[codacy]\napi_token_file = \"{}\"", token.display()),
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("api-token"), "service-token\n").unwrap();
    std::fs::set_permissions(
        creds.join("api-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let env = [("CREDENTIALS_DIRECTORY", creds.as_path())];
    let Some(o) = as_nobody(&["check", "--offline"], &config, &env) else {
        return;
    };
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!(
            "WARNING: codacy.api_token_file: cannot read secret file {}",
            token.display()
        )) && out.contains("using the token from systemd credential"),
        "{out}{}",
        text(&o.stderr)
    );
    assert!(out.contains("API token: from systemd credential"), "{out}");
}
