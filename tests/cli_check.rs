//! `check` through the real binary: true counts, sinks probed as delivery uses them, servers
//! that are not Codacy said so, fast failure, `--offline`, `--json`, and nothing created.

#[path = "common/e2e.rs"]
mod e2e;
#[path = "common/http_server.rs"]
mod http_server;

use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Quirks, Shape, Simulator};
use e2e::*;
use http_server::{Reply, TestServer};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

async fn check(cfg: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("check")
        .chain(extra.iter().copied())
        .collect();
    let mut cmd = agent_command(&args, cfg);
    cmd.env("CODACY_API_TOKEN", TOKEN);
    output_of(cmd).await
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path below `dir`, to prove `check` added none.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(tree(&p));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_the_last_hour_and_creates_nothing() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    // 130 events in the last hour (more than one page of 50), 40 before it.
    sim.push_events(
        &org,
        generate_events(1, 130, now - 3_000_000, now - 5_000, &GenOptions::default()),
    );
    sim.push_events(
        &org,
        generate_events(
            2,
            40,
            now - 20_000_000,
            now - 10_000_000,
            &GenOptions::default(),
        ),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        config_text(&server.base_url, dir.path(), &[&org], &[("a", "json")], ""),
    )
    .unwrap();
    let before = tree(dir.path());

    // The envelope's pagination.total.
    let o = check(&cfg, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("organization gh/acme: OK: 130 event(s) in the last hour"),
        "{}",
        text(&o)
    );
    // A bare array has no total: the hour is walked.
    sim.set_quirks(Quirks {
        shape: Shape::Array,
        ..Quirks::default()
    });
    let o = check(&cfg, &["--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["organizations"][0]["events_last_hour"], 130);
    assert_eq!(report["organizations"][0]["status"], "ok");
    assert_eq!(report["sinks"][0]["name"], "a");
    assert_eq!(report["sinks"][0]["status"], "ok");
    assert_eq!(
        report["token"]["message"],
        "environment variable CODACY_API_TOKEN"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(TOKEN));

    assert_eq!(tree(dir.path()), before, "check created or removed files");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_at_once_and_offline_contacts_nothing() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let org = OrgRef::new(Provider::Gh, "acme");
    std::fs::write(
        &cfg,
        config_text(
            &format!("http://127.0.0.1:{port}"),
            dir.path(),
            &[&org],
            &[("a", "json")],
            "",
        ),
    )
    .unwrap();
    let o = check(&cfg, &[]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("organization gh/acme: FAILED") && t.contains("cannot connect"),
        "{t}"
    );
    // One attempt: no retry warnings, no "gave up after N attempts".
    assert!(!t.contains("WARN") && !t.contains("attempts"), "{t}");

    let o = check(&cfg, &["--offline"]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("not contacted (--offline)"), "{t}");

    // Without a token the syntax is still checked; the token is reported missing (exit 2).
    let o = output_of(agent_command(&["check", "--offline"], &cfg)).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("configuration") && t.contains("valid") && t.contains("API token: FAILED"),
        "{t}"
    );
    assert!(!dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_from_a_server_that_is_not_codacy_and_a_webhook_404_fail_with_their_cause() {
    // A web server that answers everything with an HTML 404.
    let web = TestServer::start(|_, _| Reply::text(404, "<html>Not Found</html>")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let org = OrgRef::new(Provider::Gh, "acme");
    let mut text_cfg = config_text(&web.url, dir.path(), &[&org], &[("a", "json")], "");
    text_cfg.push_str(&format!(
        "\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"{}/hook\"\n",
        web.url
    ));
    std::fs::write(&cfg, text_cfg).unwrap();
    let o = check(&cfg, &[]).await;
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("does not look like a Codacy API") && !t.contains("is unknown"),
        "{t}"
    );
    assert!(
        t.contains("sink hook (http, format json): FAILED") && t.contains("404"),
        "{t}"
    );
}
