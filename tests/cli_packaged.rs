//! The README's package install, exercised: the packaged `config/example.toml` (paths moved
//! into a temp dir where a command would write), the token only in the credential's source file
//! the unit names (here a temp file, through `CODACY_FORWARDER_CREDENTIAL_SOURCE`, standing in
//! for `/etc/codacy-audit-forwarder/api-token`), and `check`, `once`, `state show` run as root
//! would run them, outside the service.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::config::CREDENTIAL_SOURCE;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
use e2e::{agent_command, output_of, read_ndjson, TOKEN};
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The packaged example, pointed at `base_url`; `state` and `log` replace the systemd
/// directories when given.
fn packaged_config(base_url: &str, state: Option<&Path>, log: Option<&Path>) -> String {
    let mut text = std::fs::read_to_string(root().join("config/example.toml")).unwrap();
    text = text.replace("https://app.codacy.com\"", &format!("{base_url}\""));
    if let Some(s) = state {
        text = text.replace("/var/lib/codacy-audit-forwarder", &s.display().to_string());
    }
    if let Some(l) = log {
        text = text.replace("/var/log/codacy-audit-forwarder", &l.display().to_string());
    }
    text
}

async fn run(args: &[&str], cfg: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = agent_command(args, cfg);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_of(cmd).await
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_unit_hands_over_the_file_the_commands_fall_back_to() {
    let unit =
        std::fs::read_to_string(root().join("systemd/codacy-audit-forwarder.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l == format!("LoadCredential=api-token:{CREDENTIAL_SOURCE}")),
        "the unit's LoadCredential= and config::CREDENTIAL_SOURCE disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_once_and_state_find_the_services_token_as_root_does() {
    let sim = Simulator::new(TOKEN);
    // The packaged example's organization.
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(4, 25, now - 3_600_000, now - 1_000, &GenOptions::default()),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("etc-api-token");
    std::fs::write(&credential, format!("{TOKEN}\n")).unwrap();
    let env = [("CODACY_FORWARDER_CREDENTIAL_SOURCE", credential.as_path())];

    // As installed: state and log directories are the unit's, which systemd creates.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, packaged_config(&server.base_url, None, None)).unwrap();
    let o = run(&["check", "--offline"], &cfg, &env).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("API token: from {}", credential.display()))
            && t.contains("systemd credential"),
        "{t}"
    );
    for dir in [
        "/var/lib/codacy-audit-forwarder",
        "/var/log/codacy-audit-forwarder",
    ] {
        if !Path::new(dir).exists() {
            assert!(
                t.contains(&format!("CREATED BY SYSTEMD: {dir} does not exist yet")),
                "{t}"
            );
        }
    }

    // Outside the service, `once` writes where it may: the same file with the paths moved.
    let state = dir.path().join("state");
    let log = dir.path().join("log");
    std::fs::create_dir(&log).unwrap();
    std::fs::write(
        &cfg,
        packaged_config(&server.base_url, Some(&state), Some(&log)),
    )
    .unwrap();
    let o = run(&["check"], &cfg, &env).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("organization gh/acme: OK: 25 event(s)"), "{t}");
    let o = run(&["once"], &cfg, &env).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&credential.display().to_string()),
        "says where the token came from: {t}"
    );
    assert_eq!(read_ndjson(&log.join("audit.ndjson")).len(), 25);
    let o = run(&["state", "show"], &cfg, &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("archive"), "{}", text(&o));

    // The service: api_token_file uncommented but unreadable by the service user, while the
    // credential is there: a warning, not an exit 2.
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("api-token"), TOKEN).unwrap();
    let with_file = packaged_config(&server.base_url, Some(&state), Some(&log)).replace(
        "# api_token_file = \"/etc/codacy-audit-forwarder/api-token\"",
        &format!(
            "api_token_file = \"{}\"",
            dir.path().join("unreadable-token").display()
        ),
    );
    std::fs::write(&cfg, with_file).unwrap();
    let o = run(
        &["check"],
        &cfg,
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
    )
    .await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("WARNING: codacy.api_token_file") && t.contains("systemd credential"),
        "{t}"
    );
    assert!(!t.contains(TOKEN), "{t}");
    server.shutdown().await;
}
