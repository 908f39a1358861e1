//! The shipped systemd unit: what the agent relies on is declared, it verifies, and
//! `systemd-analyze security` rates its exposure 2.0 or lower. The systemd-analyze parts need
//! the tool (see `common/peers.rs`: a skip locally, a failure under `REQUIRE_PEERS=1`).

#[path = "common/peers.rs"]
mod peers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAME: &str = "codacy-audit-forwarder";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("systemd/{NAME}.service"))
}

/// `Key=Value` lines of the [Service] and [Unit] sections; repeated keys keep every value.
fn directives() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    out
}

fn one(d: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    let v = d.get(key).unwrap_or_else(|| panic!("{key}= missing"));
    assert_eq!(v.len(), 1, "{key}= given more than once");
    v[0].clone()
}

fn systemd_analyze() -> bool {
    peers::require(peers::Peer::SystemdAnalyze).is_some()
}

#[test]
fn unit_declares_what_the_agent_relies_on() {
    let d = directives();
    assert_eq!(one(&d, "Type"), "notify", "the agent sends READY=1");
    assert_eq!(
        one(&d, "ExecStart"),
        format!("/usr/bin/{NAME} run --config /etc/{NAME}/config.toml")
    );
    assert_eq!(one(&d, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&d, "Restart"), "on-failure");
    assert_eq!(
        one(&d, "RestartPreventExitStatus"),
        "2",
        "exit 2 = configuration error: restarting cannot fix it"
    );
    assert_eq!(
        one(&d, "LoadCredential"),
        format!("api-token:/etc/{NAME}/api-token"),
        "config.rs reads $CREDENTIALS_DIRECTORY/api-token"
    );
    for dir in ["StateDirectory", "LogsDirectory", "ConfigurationDirectory"] {
        assert_eq!(one(&d, dir), NAME, "{dir}");
    }
    // The static user from sysusers.d, not DynamicUser (stable owner of /var/log files).
    let sysusers = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("systemd/{NAME}.sysusers")),
    )
    .unwrap();
    let user_line = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a u line");
    assert_eq!(user_line.split_whitespace().nth(1), Some(NAME));
    assert_eq!(one(&d, "User"), NAME);
    assert_eq!(one(&d, "Group"), NAME);
    assert!(!d.contains_key("DynamicUser"));
    // It must reach Codacy and SIEMs anywhere: no IP allow list, and IPv4/6 sockets allowed.
    assert!(!d.contains_key("IPAddressDeny"));
    let families = one(&d, "RestrictAddressFamilies");
    for f in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(families.split_whitespace().any(|x| x == f), "{f}");
    }
    // Writable: only what systemd creates for it.
    assert_eq!(one(&d, "ProtectSystem"), "strict");
    assert!(!d.contains_key("ReadWritePaths"));
    // The watchdog is long enough for the slowest HTTP timeout plus a batch.
    let wd = humantime::parse_duration(&one(&d, "WatchdogSec")).unwrap();
    assert!(wd >= std::time::Duration::from_secs(120), "{wd:?}");
}

#[test]
fn unit_verifies_with_systemd_analyze() {
    if !systemd_analyze() {
        return;
    }
    // `verify` checks that ExecStart exists; it is not installed in /usr/bin here, so verify a
    // copy (same file name) whose ExecStart points at the binary cargo built for this test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(format!("{NAME}.service"));
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let bin = env!(concat!("CARGO_BIN_EXE_", "codacy-audit-forwarder"));
    let replaced = text.replace(
        &format!("ExecStart=/usr/bin/{NAME} "),
        &format!("ExecStart={bin} "),
    );
    assert_ne!(replaced, text, "ExecStart not found");
    std::fs::write(&copy, replaced).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Other units on the host may produce warnings; only ours matter.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(NAME)).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify failed:\n{stderr}"
    );
}

#[test]
fn unit_exposure_score_is_at_most_2_0() {
    if !systemd_analyze() {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            // The threshold is on systemd's internal 0-100 scale: 20 = an exposure of 2.0.
            "--threshold=20",
            "--no-pager",
        ])
        .arg(unit_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: Option<f64> = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.rsplit_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok());
    println!("systemd-analyze security exposure: {score:?} (threshold 2.0)");
    let failing: Vec<&str> = stdout.lines().filter(|l| l.contains('✗')).collect();
    assert!(
        out.status.success(),
        "exposure {score:?} above 2.0; findings:\n{}\n{}",
        failing.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let score = score.expect("no 'Overall exposure level' line");
    assert!(score <= 2.0, "{score}");
}

/// Non-comment lines of a unit file.
fn unit_lines(file: &str) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(file),
    )
    .unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The shard template is the single-agent unit (same hardening, same credential) plus the lines
/// that make an instance one shard with its own state directory.
#[test]
fn the_shard_template_is_the_unit_plus_its_shard() {
    let single = unit_lines(&format!("{NAME}.service"));
    let template = unit_lines(&format!("{NAME}@.service"));
    let only_template: Vec<&String> = template.difference(&single).collect();
    let only_single: Vec<&String> = single.difference(&template).collect();
    assert_eq!(
        only_template,
        [
            "Description=Codacy audit log forwarder, shard %I",
            "Environment=CODACY_FORWARDER__AGENT__SHARD=%I",
            "Environment=CODACY_FORWARDER__AGENT__STATE_DIR=/var/lib/codacy-audit-forwarder/shard-%i",
            "StateDirectory=codacy-audit-forwarder/shard-%i",
        ]
    );
    assert_eq!(
        only_single,
        [
            "Description=Codacy audit log forwarder",
            "StateDirectory=codacy-audit-forwarder",
        ]
    );
}

/// What the template sets through the environment is what the agent reads: `state show` under the
/// instance `@1-3`'s environment (systemd turns `1-3` into `1/3` for `%I`) serves shard 1/3 from its
/// own state directory.
#[test]
fn the_template_environment_makes_the_agent_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let mut text = format!(
        "[codacy]\nbase_url = \"http://127.0.0.1:9\"\n[agent]\nstate_dir = \"{}\"\n",
        dir.path().join("unused").display()
    );
    for i in 0..12 {
        text.push_str(&format!(
            "[[organizations]]\nprovider = \"gh\"\nname = \"org-{i}\"\n"
        ));
    }
    text.push_str("[[sinks]]\nname = \"a\"\ntype = \"file\"\npath = \"/dev/null\"\n");
    std::fs::write(&cfg, text).unwrap();
    let shard_dir = dir.path().join("shard-1-3");
    let out = Command::new(env!("CARGO_BIN_EXE_codacy-audit-forwarder"))
        .args(["state", "show", "--config"])
        .arg(&cfg)
        .env("CODACY_API_TOKEN", "t")
        .env("CODACY_FORWARDER__AGENT__SHARD", "1/3")
        .env("CODACY_FORWARDER__AGENT__STATE_DIR", &shard_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("shard 1/3: this agent serves ")
            && stdout.contains("of the 12 organizations listed"),
        "{stdout}"
    );
}
