//! `hostname` is a key of the sinks that use it: CEF records (`dvchost`) of any sink, and the
//! protocols that carry a host (syslog, Splunk HEC). Run as a user would, through `once`.

#[path = "common/e2e.rs"]
mod e2e;

use e2e::*;

#[tokio::test]
async fn a_cef_file_sink_writes_its_hostname_as_dvchost() {
    let (sim, org) = acme_with_backlog(25, 7);
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(&server.base_url, dir.path(), &[&org], &[("cef", "cef")], "");
    text.push_str("hostname = \"fwd01\"\n");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, &text).unwrap();
    let mut cmd = agent_command(&["once"], &cfg);
    cmd.env("CODACY_API_TOKEN", TOKEN);
    let out = output_of(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("cef.ndjson")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 25);
    for line in lines {
        assert!(line.starts_with("CEF:0|"), "{line}");
        assert!(line.contains(" dvchost=fwd01"), "{line}");
    }
}

#[test]
fn hostname_on_a_sink_that_would_ignore_it_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(
        "http://127.0.0.1:1",
        dir.path(),
        &[],
        &[("archive", "json")],
        "",
    );
    text = text.replacen(
        "[agent]",
        "[[organizations]]\nprovider = \"gh\"\nname = \"acme\"\n\n[agent]",
        1,
    );
    text.push_str("hostname = \"fwd01\"\n");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, &text).unwrap();
    let out = agent_command(&["check", "--offline"], &cfg)
        .env("CODACY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key `sinks[0].hostname`"), "{err}");
    assert!(err.contains("CEF records (dvchost)"), "{err}");
}
