//! Splunk HEC sink against a real HTTP server on 127.0.0.1 that speaks HEC's replies.

#[path = "common/http_server.rs"]
mod http_server;

use codacy_audit_forwarder::format::Format;
use codacy_audit_forwarder::sink::splunk_hec::{SplunkHecConfig, SplunkHecSink};
use codacy_audit_forwarder::sink::{Record, Sink, SinkErrorKind};
use http_server::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";

fn sink(
    url: &str,
    dir: &std::path::Path,
    extra: Value,
) -> (SplunkHecSink, codacy_audit_forwarder::sink::SinkContext) {
    sink_of(url, dir, extra, Format::Json)
}

/// A sink whose records are of `format` (CEF events travel as strings).
fn sink_of(
    url: &str,
    dir: &std::path::Path,
    extra: Value,
    format: Format,
) -> (SplunkHecSink, codacy_audit_forwarder::sink::SinkContext) {
    let tok = secret_file(dir, "hec-token", TOKEN);
    let mut table = json!({"url": url, "token_file": tok, "sourcetype": "codacy:audit",
                           "host": "fwd-1"});
    if let (Value::Object(t), Value::Object(e)) = (&mut table, extra) {
        t.extend(e);
    }
    let c = SplunkHecConfig::from_json(table).unwrap();
    let ctx = context(dir, "splunk").with_format(format);
    (SplunkHecSink::new(c, ctx.clone()).unwrap(), ctx)
}

/// The envelopes of one request body (concatenated JSON objects).
fn envelopes(r: &Received) -> Vec<Value> {
    serde_json::Deserializer::from_slice(&r.body)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .collect()
}

fn event_ids(reqs: &[Received]) -> Vec<String> {
    reqs.iter()
        .flat_map(envelopes)
        .map(|e| e["fields"]["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn ok() -> Reply {
    Reply::json(200, json!({"text": "Success", "code": 0}))
}

fn check_envelope(env: &Value, rec: &Record) {
    assert_eq!(env["fields"]["event_id"], rec.event_id.as_str());
    assert_eq!(env["fields"]["organization"], "gh/acme");
    assert_eq!(env["sourcetype"], "codacy:audit");
    assert_eq!(env["host"], "fwd-1");
    assert_eq!(env["source"], "codacy");
    let t = env["time"].as_f64().unwrap();
    assert!((t * 1000.0 - rec.timestamp_ms as f64).abs() < 1.0, "{t}");
    if rec.payload.starts_with(b"CEF:") {
        assert_eq!(env["event"], String::from_utf8_lossy(&rec.payload).as_ref());
    } else {
        assert_eq!(
            env["event"],
            serde_json::from_slice::<Value>(&rec.payload).unwrap()
        );
    }
}

#[tokio::test]
async fn delivers_envelopes_and_waits_for_late_indexer_acks() {
    let next_ack = Arc::new(AtomicU64::new(0));
    let n = next_ack.clone();
    // Ack ids turn true only on their second poll.
    let server = TestServer::start(move |r, earlier| match r.path.as_str() {
        "/services/collector/event" => {
            let id = n.fetch_add(1, Ordering::SeqCst);
            Reply::json(200, json!({"text": "Success", "code": 0, "ackId": id}))
        }
        "/services/collector/ack" => {
            let asked: Vec<u64> = serde_json::from_slice::<Value>(&r.body).unwrap()["acks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let mut acks = serde_json::Map::new();
            for id in asked {
                let polled_before = earlier
                    .iter()
                    .filter(|e| e.path == "/services/collector/ack")
                    .any(|e| {
                        serde_json::from_slice::<Value>(&e.body).unwrap()["acks"]
                            .as_array()
                            .unwrap()
                            .contains(&json!(id))
                    });
                acks.insert(id.to_string(), Value::Bool(polled_before));
            }
            Reply::json(200, json!({ "acks": acks }))
        }
        _ => Reply::text(404, ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let batch = records(Format::Json, 6, &[]);
    let one = batch[0].payload.len();
    let (sink, ctx) = sink(
        &server.url,
        dir.path(),
        json!({"indexer_acknowledgement": true, "ack_poll_interval": "20ms",
               "ack_timeout": "10s", "compression": "gzip", "index": "security",
               "batch_max_bytes": one * 2 + 600}),
    );
    sink.deliver(&batch).await.unwrap();

    let events = server.requests_to("/services/collector/event");
    assert!(events.len() >= 2, "batch_max_bytes splits the batch");
    let channel = sink.channel().unwrap().to_string();
    for r in &events {
        assert!(r.gzipped);
        assert_eq!(
            r.header("authorization").unwrap(),
            format!("Splunk {TOKEN}")
        );
        assert_eq!(r.header("x-splunk-request-channel").unwrap(), channel);
    }
    let envs: Vec<Value> = events.iter().flat_map(envelopes).collect();
    assert_eq!(envs.len(), batch.len());
    for (env, rec) in envs.iter().zip(&batch) {
        check_envelope(env, rec);
        assert_eq!(env["index"], "security");
    }
    // Every ack id was polled until true, on the same channel.
    let polls = server.requests_to("/services/collector/ack");
    assert!(polls.len() >= 2);
    for p in &polls {
        assert_eq!(p.header("x-splunk-request-channel").unwrap(), channel);
    }
    let last: Value = serde_json::from_slice(&polls.last().unwrap().body).unwrap();
    assert!(!last["acks"].as_array().unwrap().is_empty());
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn acks_that_never_come_fail_the_batch_transiently() {
    let server = TestServer::start(|r, _| match r.path.as_str() {
        "/services/collector/event" => {
            Reply::json(200, json!({"text": "Success", "code": 0, "ackId": 7}))
        }
        _ => Reply::json(200, json!({"acks": {"7": false}})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(
        &server.url,
        dir.path(),
        json!({"indexer_acknowledgement": true, "ack_poll_interval": "20ms", "ack_timeout": "200ms"}),
    );
    let err = sink
        .deliver(&records(Format::Json, 3, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(err.message.contains("event_id"), "{}", err.message);
    assert!(!server.requests_to("/services/collector/ack").is_empty());
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn busy_code_9_is_retried_later_without_losing_anything() {
    let server = TestServer::start(|_, earlier| {
        if earlier.len() < 2 {
            Reply::json(503, json!({"text": "Server is busy", "code": 9}))
        } else {
            ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, _ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Ecs, 4, &[]);
    for _ in 0..2 {
        let err = sink.deliver(&batch).await.unwrap_err();
        assert_eq!(err.kind, SinkErrorKind::Transient);
        assert!(err.message.contains("busy"), "{}", err.message);
    }
    sink.deliver(&batch).await.unwrap();
    let reqs = server.requests();
    assert_eq!(event_ids(&reqs[2..]), ids(&batch));
    for (env, rec) in envelopes(&reqs[2]).iter().zip(&batch) {
        check_envelope(env, rec);
    }
}

#[tokio::test]
async fn a_disabled_token_is_fatal_with_the_remedy() {
    let server =
        TestServer::start(|_, _| Reply::json(403, json!({"text": "Token disabled", "code": 1})))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let err = sink
        .deliver(&records(Format::Json, 2, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal);
    assert!(
        err.message.contains("disabled") && err.message.contains("enable"),
        "{}",
        err.message
    );
    assert!(!err.message.contains(TOKEN));
    assert!(dead_letters(&ctx).is_empty());
    let check = sink.check().await.unwrap_err();
    assert_eq!(check.kind, SinkErrorKind::Fatal);
}

#[tokio::test]
async fn a_bad_record_is_isolated_and_dead_lettered_the_rest_delivered() {
    // HEC refuses any request that contains the bad event (code 6) and takes the others.
    let server = TestServer::start(|r, _| {
        if r.text().contains("bad.event") {
            Reply::json(
                400,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 0}),
            )
        } else {
            ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Json, 8, &[(5, "bad.event")]);
    sink.deliver(&batch).await.unwrap();
    let bad = batch.iter().find(|r| &*r.action == "bad.event").unwrap();
    let accepted: Vec<Received> = server
        .requests()
        .into_iter()
        .filter(|r| !r.text().contains("bad.event"))
        .collect();
    let expected: Vec<String> = batch
        .iter()
        .filter(|r| r.event_id != bad.event_id)
        .map(|r| r.event_id.to_string())
        .collect();
    assert_eq!(event_ids(&accepted), expected);
    let dl = dead_letters(&ctx);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event_id"], bad.event_id.as_str());
    assert!(dl[0]["reason"].as_str().unwrap().contains("code 6"));
}

#[tokio::test]
async fn cef_records_are_string_events_and_check_probes_health_and_token() {
    let server = TestServer::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/services/collector/health") => {
            Reply::json(200, json!({"text": "HEC is healthy", "code": 17}))
        }
        ("POST", "/services/collector/event") if r.body.is_empty() => {
            Reply::json(400, json!({"text": "No data", "code": 5}))
        }
        ("POST", "/services/collector/event") => ok(),
        _ => Reply::text(404, ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, _ctx) = sink_of(&server.url, dir.path(), json!({}), Format::Cef);
    let msg = sink.check().await.unwrap();
    assert!(msg.contains("token accepted"), "{msg}");
    let batch = records(Format::Cef, 3, &[]);
    sink.deliver(&batch).await.unwrap();
    let reqs = server.requests_to("/services/collector/event");
    let envs = envelopes(reqs.last().unwrap());
    assert_eq!(envs.len(), 3);
    for (env, rec) in envs.iter().zip(&batch) {
        assert!(env["event"].as_str().unwrap().starts_with("CEF:0|"));
        check_envelope(env, rec);
    }
}
