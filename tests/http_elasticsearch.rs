//! Elasticsearch sink against a real HTTP server on 127.0.0.1 that answers like `_bulk`.

#[path = "common/http_server.rs"]
mod http_server;

use codacy_audit_forwarder::clock::Backoff;
use codacy_audit_forwarder::format::{Encoder, Format};
use codacy_audit_forwarder::sink::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use codacy_audit_forwarder::sink::{Sink, SinkContext, SinkErrorKind};
use http_server::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
const DS: &str = "logs-codacy.audit-default";

fn sink(url: &str, dir: &std::path::Path, extra: Value) -> (ElasticsearchSink, SinkContext) {
    let key = secret_file(dir, "es-api-key", API_KEY);
    let mut table = json!({"url": url, "api_key_file": key, "data_stream": DS});
    if let (Value::Object(t), Value::Object(e)) = (&mut table, extra) {
        t.extend(e);
    }
    let c = ElasticsearchConfig::from_json(table).unwrap();
    let ctx = context(dir, "elastic");
    let s = ElasticsearchSink::new(c, ctx.clone())
        .unwrap()
        .with_item_retry(
            3,
            Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
        );
    (s, ctx)
}

/// (action line, document) pairs of a `_bulk` body.
fn bulk_pairs(r: &Received) -> Vec<(Value, Value)> {
    let text = r.text();
    assert!(text.ends_with('\n'), "bulk body must end with a newline");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn item(status: u16, error: Option<(&str, &str)>) -> Value {
    let mut inner =
        json!({"_index": ".ds-logs-codacy.audit-default-2024.07.01-000001", "status": status});
    if let Some((t, reason)) = error {
        inner["error"] = json!({"type": t, "reason": reason});
    }
    json!({ "create": inner })
}

/// A `_bulk` server deciding each item's status with `f(doc, times this _id was seen before)`.
async fn bulk_server(f: fn(&Value, usize) -> Value) -> TestServer {
    TestServer::start(move |r, earlier| {
        if r.path != "/_bulk" {
            return Reply::text(404, "");
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in earlier.iter().filter(|e| e.path == "/_bulk") {
            for (action, _) in bulk_pairs(e) {
                *seen
                    .entry(action["create"]["_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        let items: Vec<Value> = bulk_pairs(r)
            .iter()
            .map(|(action, doc)| {
                let id = action["create"]["_id"].as_str().unwrap();
                f(doc, seen.get(id).copied().unwrap_or(0))
            })
            .collect();
        let errors = items
            .iter()
            .any(|i| i["create"]["status"].as_u64() != Some(201));
        Reply::json(200, json!({"took": 3, "errors": errors, "items": items}))
    })
    .await
}

fn action_of(doc: &Value) -> &str {
    doc["event"]["action"].as_str().unwrap_or("")
}

#[tokio::test]
async fn mixed_items_created_duplicate_retried_and_dead_lettered() {
    let server = bulk_server(|doc, seen| match action_of(doc) {
        "dup.event" => item(
            409,
            Some((
                "version_conflict_engine_exception",
                "document already exists",
            )),
        ),
        "bad.event" => item(
            400,
            Some((
                "mapper_parsing_exception",
                "failed to parse field [details]",
            )),
        ),
        "busy.event" if seen == 0 => item(
            429,
            Some(("es_rejected_execution_exception", "rejected execution")),
        ),
        _ => item(201, None),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({"compression": "gzip"}));
    let batch = records(
        Format::Ecs,
        6,
        &[(1, "dup.event"), (3, "bad.event"), (4, "busy.event")],
    );
    sink.deliver(&batch).await.unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one bulk request, then the 429 item alone");
    for r in &reqs {
        assert!(r.gzipped);
        assert_eq!(
            r.header("authorization").unwrap(),
            format!("ApiKey {API_KEY}")
        );
        assert_eq!(r.header("content-type").unwrap(), "application/x-ndjson");
    }
    let first = bulk_pairs(&reqs[0]);
    assert_eq!(first.len(), 6);
    for ((action, doc), rec) in first.iter().zip(&batch) {
        assert_eq!(
            action,
            &json!({"create": {"_index": DS, "_id": rec.event_id.as_str()}})
        );
        assert_eq!(doc, &serde_json::from_slice::<Value>(&rec.payload).unwrap());
    }
    let busy = batch.iter().find(|r| &*r.action == "busy.event").unwrap();
    let second = bulk_pairs(&reqs[1]);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0["create"]["_id"], busy.event_id.as_str());

    let bad = batch.iter().find(|r| &*r.action == "bad.event").unwrap();
    let dl = dead_letters(&ctx);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["event_id"], bad.event_id.as_str());
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("mapper_parsing_exception") && reason.contains("400"),
        "{reason}"
    );
}

#[tokio::test]
async fn items_that_stay_429_fail_the_batch_and_dead_letter_nothing_yet() {
    let server = bulk_server(|doc, _| match action_of(doc) {
        "busy.event" => item(429, Some(("es_rejected_execution_exception", "queue full"))),
        "bad.event" => item(400, Some(("mapper_parsing_exception", "bad"))),
        _ => item(201, None),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Ecs, 3, &[(0, "busy.event"), (2, "bad.event")]);
    let err = sink.deliver(&batch).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(
        err.message.contains("es_rejected_execution_exception"),
        "{}",
        err.message
    );
    // 1 request + 3 resends of the busy item.
    assert_eq!(server.requests().len(), 4);
    // The batch is not acknowledged, so nothing is dead-lettered yet (it would be twice).
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn http_413_splits_until_it_fits_and_a_lone_giant_is_dead_lettered() {
    let server = TestServer::start(|r, _| {
        let pairs = bulk_pairs(r);
        if pairs.len() > 2 || r.text().contains("huge.event") {
            return Reply::text(413, "");
        }
        let items: Vec<Value> = pairs.iter().map(|_| item(201, None)).collect();
        Reply::json(200, json!({"took": 1, "errors": false, "items": items}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Ecs, 7, &[(2, "huge.event")]);
    sink.deliver(&batch).await.unwrap();
    let huge = batch.iter().find(|r| &*r.action == "huge.event").unwrap();
    let created: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| bulk_pairs(r).len() <= 2 && !r.text().contains("huge.event"))
        .flat_map(bulk_pairs)
        .map(|(a, _)| a["create"]["_id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = batch
        .iter()
        .filter(|r| r.event_id != huge.event_id)
        .map(|r| r.event_id.to_string())
        .collect();
    assert_eq!(created, expected);
    let dl = dead_letters(&ctx);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event_id"], huge.event_id.as_str());
    assert!(dl[0]["reason"].as_str().unwrap().contains("413"));
}

#[tokio::test]
async fn redelivery_of_an_acknowledged_batch_is_all_duplicates_and_ok() {
    let server = bulk_server(|_, seen| {
        if seen == 0 {
            item(201, None)
        } else {
            item(409, Some(("version_conflict_engine_exception", "exists")))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Ecs, 4, &[]);
    sink.deliver(&batch).await.unwrap();
    sink.deliver(&batch).await.unwrap();
    assert_eq!(server.requests().len(), 2);
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_fatal_with_the_remedy() {
    let server = TestServer::start(|_, earlier| {
        if earlier.is_empty() {
            Reply::json(401, json!({"error": {"type": "security_exception", "reason": "unable to authenticate with provided credentials"}, "status": 401}))
        } else {
            Reply::json(403, json!({"error": {"type": "security_exception", "reason": "action [indices:data/write/bulk[s]] is unauthorized"}, "status": 403}))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, ctx) = sink(&server.url, dir.path(), json!({}));
    let batch = records(Format::Ecs, 2, &[]);
    let e = sink.deliver(&batch).await.unwrap_err();
    assert_eq!(e.kind, SinkErrorKind::Fatal);
    assert!(e.message.contains("api_key_file"), "{}", e.message);
    assert!(!e.message.contains(API_KEY));
    let e = sink.deliver(&batch).await.unwrap_err();
    assert_eq!(e.kind, SinkErrorKind::Fatal);
    assert!(
        e.message.contains("create_doc") && e.message.contains(DS),
        "{}",
        e.message
    );
    assert!(dead_letters(&ctx).is_empty());
}

#[tokio::test]
async fn request_level_503_is_transient_with_retry_after() {
    let server =
        TestServer::start(|_, _| Reply::text(503, "unavailable").with_header("retry-after", "3"))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, _ctx) = sink(&server.url, dir.path(), json!({}));
    let e = sink
        .deliver(&records(Format::Ecs, 2, &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, SinkErrorKind::Transient);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn json_records_get_timestamp_and_check_reports_the_cluster() {
    let server = TestServer::start(|r, _| match r.path.as_str() {
        "/" => Reply::json(
            200,
            json!({"name": "n1", "cluster_name": "sec-logs", "version": {"number": "8.15.0"}}),
        ),
        "/_bulk" => {
            let items: Vec<Value> = bulk_pairs(r).iter().map(|_| item(201, None)).collect();
            Reply::json(200, json!({"took": 1, "errors": false, "items": items}))
        }
        _ => Reply::text(404, ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sink, _ctx) = sink(&server.url, dir.path(), json!({}));
    let msg = sink.check().await.unwrap();
    assert!(msg.contains("sec-logs") && msg.contains("8.15.0"), "{msg}");
    assert_eq!(
        server.requests()[0].header("authorization").unwrap(),
        format!("ApiKey {API_KEY}")
    );
    // The options a `format = "json"` Elasticsearch sink gets from its configuration.
    let text = format!(
        "[[organizations]]\nprovider = \"gh\"\nname = \"acme\"\n\n[[sinks]]\nname = \"es\"\n\
         type = \"elasticsearch\"\nurl = \"{}\"\nformat = \"json\"\napi_key_file = \"/x\"\n",
        server.url
    );
    let tokens = codacy_audit_forwarder::config::TokenSources {
        env: Some("tok".into()),
        credentials_directory: None,
    };
    let spec = codacy_audit_forwarder::config::Config::from_toml(&text, "t.toml", &tokens, false)
        .unwrap()
        .sinks
        .remove(0);
    let encoder = Encoder::new(spec.format, spec.format_options);
    let batch = records_encoded(&encoder, 2, &[]);
    sink.deliver(&batch).await.unwrap();
    let pairs = bulk_pairs(&server.requests_to("/_bulk")[0]);
    for ((_, doc), rec) in pairs.iter().zip(&batch) {
        let ts = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(ts.timestamp_millis(), rec.timestamp_ms);
        assert_eq!(doc["event_id"], rec.event_id.as_str());
    }
}
