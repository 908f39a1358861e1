//! Shared by the SIEM-content tests (tests/siem_*.rs): repository paths, the agent binary, a
//! .conf reader, and the rule for missing peers (promtool, the pySigma venv, python3).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs the agent with `args`; returns stdout, failing the test on a non-zero exit.
pub fn agent(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run the agent");
    assert!(
        out.status.success(),
        "codacy-audit-forwarder {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[path = "peers.rs"]
mod peers;
#[allow(unused_imports)] // not every siem test needs a program peer
pub use peers::{require, Peer};

/// A peer the test needs is missing: a failure under `REQUIRE_PEERS=1` (CI), else one skip line
/// naming the install command, and the caller returns.
pub fn peer_missing(what: &str, install: &str) {
    peers::missing(&format!("{what} is missing"), install);
}

/// The pySigma virtual environment scripts/test.sh creates (override with SIGMA_VENV).
pub fn sigma_venv() -> PathBuf {
    match std::env::var_os("SIGMA_VENV") {
        Some(p) => PathBuf::from(p),
        None => {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
            home.join(".cache/codacy-audit-forwarder/sigma-venv")
        }
    }
}

pub const SIGMA_VENV_INSTALL: &str = "python3 -m venv ~/.cache/codacy-audit-forwarder/sigma-venv && ~/.cache/codacy-audit-forwarder/sigma-venv/bin/pip install -r detections/requirements.txt (scripts/test.sh does this)";

/// The venv's python when it has every pinned requirement importable, else None.
pub fn sigma_python() -> Option<PathBuf> {
    let py = sigma_venv().join("bin/python");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import sigma, sigma.backends.splunk, sigma.backends.elasticsearch, sigma.backends.kusto, sigma_backend_duckdb, duckdb, yaml",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

/// One `[stanza]` of a Splunk .conf file with its `key = value` lines in order.
#[derive(Debug)]
pub struct Stanza {
    pub name: String,
    pub keys: Vec<(String, String)>,
}

impl Stanza {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a Splunk .conf file (comments and blank lines skipped; no line continuations used here).
pub fn conf(path: &Path) -> Vec<Stanza> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<Stanza> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push(Stanza {
                name: name.to_string(),
                keys: Vec::new(),
            });
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not key = value: {t}", path.display()));
        let stanza = out
            .last_mut()
            .unwrap_or_else(|| panic!("{}: key before any stanza: {t}", path.display()));
        stanza
            .keys
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}
