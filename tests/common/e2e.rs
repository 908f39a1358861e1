//! Shared by the end-to-end tests: a simulator-backed configuration and the checks that the
//! delivered multiset equals what the simulator holds.
#![allow(dead_code)]

use codacy_audit_forwarder::config::{Config, TokenSources};
use codacy_audit_forwarder::event::{identify, AuditEvent, OrgRef};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const TOKEN: &str = "e2e-token";

/// A configuration for `orgs` against `base_url`, one JSON file sink per name in `sinks`
/// (written to `dir/<name>.ndjson`), state in `dir/state`.
pub fn config_text(
    base_url: &str,
    dir: &Path,
    orgs: &[&OrgRef],
    sinks: &[(&str, &str)],
    extra_agent: &str,
) -> String {
    let mut t = format!(
        r#"
[codacy]
base_url = "{base_url}"
page_limit = 50
request_timeout = "5s"
max_attempts = 8
max_backoff = "200ms"

[agent]
state_dir = "{state}"
poll_interval = "1s"
initial_lookback = "7d"
overlap = "10m"
{extra_agent}
"#,
        state = dir.join("state").display()
    );
    for o in orgs {
        t.push_str(&format!(
            "\n[[organizations]]\nprovider = \"{}\"\nname = \"{}\"\n",
            o.provider, o.name
        ));
    }
    for (name, format) in sinks {
        t.push_str(&format!(
            "\n[[sinks]]\nname = \"{name}\"\ntype = \"file\"\npath = \"{}\"\nformat = \"{format}\"\nbatch_max_events = 40\n",
            dir.join(format!("{name}.ndjson")).display()
        ));
    }
    t
}

pub fn config(text: &str) -> Arc<Config> {
    let tokens = TokenSources {
        env: Some(TOKEN.into()),
        credentials_directory: None,
    };
    Arc::new(Config::from_toml(text, "e2e.toml", &tokens, false).expect("valid config"))
}

/// Expected event ids (with multiplicity) of the valid events the simulator holds.
pub fn expected_ids(org: &OrgRef, events: &[Value], from_ms: i64) -> BTreeMap<String, usize> {
    let parsed: Vec<AuditEvent> = events
        .iter()
        .filter_map(|v| AuditEvent::from_value(v.clone()).ok())
        .filter(|e| e.timestamp_ms >= from_ms)
        .collect();
    let mut out = BTreeMap::new();
    for e in identify(&Arc::new(org.clone()), parsed, 0) {
        *out.entry(e.id.to_string()).or_default() += 1;
    }
    out
}

/// The JSON lines of a file sink, parsed.
pub fn read_ndjson(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

/// event_id -> count among lines of `org` in a JSON file sink.
pub fn delivered_ids(lines: &[Value], org: &OrgRef) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in lines {
        if l["provider"] == org.provider.as_str() && l["organization"] == org.name.as_str() {
            *out.entry(l["event_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// Removes the provenance keys, leaving the event as the API sent it.
pub fn strip_provenance(line: &Value) -> Value {
    let mut v = line.clone();
    if let Value::Object(m) = &mut v {
        m.remove("event_id");
        m.remove("provider");
        m.remove("organization");
    }
    v
}

/// Polls `cond` every 100 ms until it holds; fails the test naming `what` after `deadline`.
pub async fn wait_until(what: &str, deadline: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A simulator holding `n` generated events of `gh/acme` from the last hour (ending a minute
/// ago), and the organization.
pub fn acme_with_backlog(
    n: usize,
    seed: u64,
) -> (codacy_audit_forwarder::simulator::Simulator, OrgRef) {
    use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(codacy_audit_forwarder::event::Provider::Gh, "acme");
    sim.add_org(&org);
    let now = codacy_audit_forwarder::clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(
            seed,
            n,
            now - 3_600_000,
            now - 60_000,
            &GenOptions::default(),
        ),
    );
    (sim, org)
}

/// `text` with a `[telemetry] listen` on a free loopback port, and that address.
pub fn with_telemetry(text: &str) -> (String, std::net::SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let text = text.replacen(
        "[agent]",
        &format!("[telemetry]\nlisten = \"{addr}\"\n\n[agent]"),
        1,
    );
    (text, addr)
}

/// The real binary's `run` on `config`, its stderr to `log` (or nowhere).
pub fn spawn_run(config: &Path, log: Option<&Path>) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(env!("CARGO_BIN_EXE_codacy-audit-forwarder"))
        .args(["run", "--config"])
        .arg(config)
        .env("CODACY_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log.map_or_else(Stdio::null, |p| {
            Stdio::from(std::fs::File::create(p).unwrap())
        }))
        .spawn()
        .unwrap()
}

/// SIGTERM, then wait for the agent to exit.
pub fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}
