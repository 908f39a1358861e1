//! Shared by the tests that run the binary on a configuration file: a valid configuration and
//! the command with no token source but the ones a test gives.
//! Include it with `#[path = "common/cli.rs"] mod cli;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");

/// A valid configuration; `STATE` stands for the state directory (see [`write_config`]).
pub const GOOD: &str = r#"
[codacy]
base_url = "https://app.codacy.com"
page_limit = 1000
request_timeout = "30s"

[agent]
state_dir = "STATE"
poll_interval = "60s"
initial_lookback = "24h"
overlap = "10m"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "archive"
type = "file"
path = "STATE/audit.ndjson"
format = "json"
"#;

/// Writes `config` to `dir/config.toml` with `STATE` replaced by `dir/state` (not created).
pub fn write_config(dir: &Path, config: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let state = dir.join("state");
    std::fs::write(&path, config.replace("STATE", &state.display().to_string())).unwrap();
    path
}

/// The binary running `args --config config`, with the token `token` when given and no
/// other: the packaged credential source in /etc must not exist for these tests either.
pub fn command(dir: &Path, args: &[&str], config: &Path, token: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CODACY_API_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env(
            "CODACY_FORWARDER_CREDENTIAL_SOURCE",
            dir.join("no-credential-here"),
        );
    if let Some(t) = token {
        cmd.env("CODACY_API_TOKEN", t);
    }
    cmd
}
