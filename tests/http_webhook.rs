//! Generic webhook sink against a real HTTP server on 127.0.0.1.

#[path = "common/http_server.rs"]
mod http_server;

use codacy_audit_forwarder::format::Format;
use codacy_audit_forwarder::sink::webhook::{HttpSink, HttpSinkConfig};
use codacy_audit_forwarder::sink::{Sink, SinkErrorKind};
use http_server::*;
use serde_json::{json, Value};
use std::time::Duration;

fn config(url: &str, extra: Value) -> HttpSinkConfig {
    let mut table = json!({ "url": url });
    if let (Value::Object(t), Value::Object(e)) = (&mut table, extra) {
        t.extend(e);
    }
    HttpSinkConfig::from_json(table).unwrap()
}

fn ndjson_lines(r: &Received) -> Vec<Value> {
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn retries_after_429_with_retry_after_then_delivers_gzip_ndjson() {
    let server = TestServer::start(|_, earlier| {
        if earlier.is_empty() {
            Reply::text(429, "slow down").with_header("retry-after", "7")
        } else {
            Reply::text(200, "ok")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "hook-token", "tok-123");
    let ctx = context(dir.path(), "hook");
    let sink = HttpSink::new(
        config(
            &format!("{}/codacy", server.url),
            json!({"compression": "gzip", "headers": {"X-Team": "sec"},
                   "auth": {"bearer_token_file": token}}),
        ),
        ctx.clone(),
    )
    .unwrap();
    let batch = records(Format::Json, 5, &[]);

    let err = sink.deliver(&batch).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert!(err.message.contains("429"), "{}", err.message);

    sink.deliver(&batch).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/codacy");
        assert!(r.gzipped);
        assert_eq!(r.header("authorization").as_deref(), Some("Bearer tok-123"));
        assert_eq!(r.header("x-team").as_deref(), Some("sec"));
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/x-ndjson")
        );
        assert!(r.text().ends_with('\n'));
    }
    let got = ndjson_lines(&reqs[1]);
    let sent: Vec<Value> = batch
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    assert_eq!(got, sent);
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn json_array_with_basic_auth_and_byte_limit_splits_requests() {
    let server = TestServer::start(|_, _| Reply::text(204, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pw", "s3cret");
    let batch = records(Format::Ecs, 7, &[]);
    let one = batch[0].payload.len();
    let sink = HttpSink::new(
        config(
            &server.url,
            json!({"encoding": "json_array", "batch_max_bytes": one * 3 + 3,
                   "auth": {"user": "forwarder", "password_file": pw}}),
        ),
        context(dir.path(), "hook"),
    )
    .unwrap();
    sink.deliver(&batch).await.unwrap();
    let reqs = server.requests();
    assert!(reqs.len() >= 3, "{} requests", reqs.len());
    let mut got = Vec::new();
    for r in &reqs {
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        // base64("forwarder:s3cret")
        assert_eq!(
            r.header("authorization").as_deref(),
            Some("Basic Zm9yd2FyZGVyOnMzY3JldA==")
        );
        assert!(r.body.len() <= one * 3 + 3 + 2);
        let arr: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        got.extend(arr);
    }
    let ids: Vec<String> = got
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, http_server::ids(&batch));
}

#[tokio::test]
async fn a_400_dead_letters_that_request_and_acknowledges() {
    // Only requests containing the marker action are refused.
    let server = TestServer::start(|r, _| {
        if r.text().contains("repo.delete") {
            Reply::json(400, json!({"error": "schema violation: field x"}))
        } else {
            Reply::text(200, "")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "hook");
    let batch = records(Format::Json, 4, &[(2, "repo.delete")]);
    let max = batch.iter().map(|r| r.payload.len() + 1).max().unwrap();
    // One record per request, so only the refused record is dead-lettered.
    let sink = HttpSink::new(
        config(&server.url, json!({"batch_max_bytes": max})),
        ctx.clone(),
    )
    .unwrap();
    sink.deliver(&batch).await.unwrap();
    let dl = dead_letters(&ctx);
    assert_eq!(dl.len(), 1, "{dl:?}");
    let bad = batch.iter().find(|r| &*r.action == "repo.delete").unwrap();
    assert_eq!(dl[0]["event_id"], bad.event_id.as_str());
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("400") && reason.contains("schema violation"),
        "{reason}"
    );
    assert_eq!(
        dl[0]["record"],
        String::from_utf8_lossy(&bad.payload).as_ref()
    );
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn a_401_is_fatal_and_dead_letters_nothing() {
    let server = TestServer::start(|_, _| Reply::text(401, "bad token")).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "hook");
    let sink = HttpSink::new(config(&server.url, json!({})), ctx.clone()).unwrap();
    let err = sink
        .deliver(&records(Format::Json, 3, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(err.message.contains("auth"), "{}", err.message);
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn a_413_halves_the_request_until_it_fits() {
    // Accept at most 2 records per request; a record with the marker is too large alone.
    let server = TestServer::start(|r, _| {
        let lines = r.text().lines().count();
        if lines > 2 || r.text().contains("huge.event") {
            Reply::text(413, "Request Entity Too Large")
        } else {
            Reply::text(200, "")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "hook");
    let sink = HttpSink::new(config(&server.url, json!({})), ctx.clone()).unwrap();
    let batch = records(Format::Json, 9, &[(4, "huge.event")]);
    sink.deliver(&batch).await.unwrap();
    let mut delivered = Vec::new();
    for r in server.requests() {
        if r.text().lines().count() <= 2 && !r.text().contains("huge.event") {
            for l in r.text().lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                delivered.push(v["event_id"].as_str().unwrap().to_string());
            }
        }
    }
    let huge = batch.iter().find(|r| &*r.action == "huge.event").unwrap();
    let expected: Vec<String> = batch
        .iter()
        .filter(|r| r.event_id != huge.event_id)
        .map(|r| r.event_id.to_string())
        .collect();
    assert_eq!(
        delivered, expected,
        "each accepted record exactly once, in order"
    );
    let dl = dead_letters(&ctx);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event_id"], huge.event_id.as_str());
    assert!(dl[0]["reason"].as_str().unwrap().contains("413"));
}

#[tokio::test]
async fn a_server_that_is_down_is_transient_and_check_reports_reachability() {
    let dir = tempfile::tempdir().unwrap();
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = HttpSink::new(
        config(&format!("http://127.0.0.1:{port}/hook?key=abc"), json!({})),
        context(dir.path(), "down"),
    )
    .unwrap();
    let err = down
        .deliver(&records(Format::Json, 1, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(err.message.contains("cannot connect"), "{}", err.message);
    assert!(
        !err.message.contains("key=abc"),
        "query string leaked: {}",
        err.message
    );
    assert!(down.check().await.is_err());

    let server = TestServer::start(|_, _| Reply::text(405, "")).await;
    let up = HttpSink::new(config(&server.url, json!({})), context(dir.path(), "up")).unwrap();
    let msg = up.check().await.unwrap();
    assert!(msg.contains("reachable"), "{msg}");
    assert_eq!(server.requests()[0].method, "OPTIONS");
}

#[tokio::test]
async fn check_fails_on_an_endpoint_delivery_would_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    for (status, words) in [
        (404, "no such endpoint"),
        (401, "check `auth`"),
        (503, "unavailable"),
    ] {
        let server = TestServer::start(move |_, _| Reply::text(status, "nope")).await;
        let sink = HttpSink::new(
            config(&format!("{}/hook", server.url), json!({})),
            context(dir.path(), "hook"),
        )
        .unwrap();
        let err = sink.check().await.unwrap_err();
        assert!(
            err.message.contains(&status.to_string()) && err.message.contains(words),
            "{status}: {}",
            err.message
        );
    }
}
