use super::bulk::{classify_item, item_result, ItemOutcome};
use super::config::validate_data_stream;
use super::*;
use crate::format::Format;
use serde_json::Value;

#[test]
fn bulk_items_are_classified() {
    assert_eq!(classify_item(201), ItemOutcome::Created);
    assert_eq!(classify_item(200), ItemOutcome::Created);
    assert_eq!(classify_item(409), ItemOutcome::Duplicate);
    assert_eq!(classify_item(429), ItemOutcome::Retry);
    assert_eq!(classify_item(503), ItemOutcome::Retry);
    assert_eq!(classify_item(400), ItemOutcome::Reject);
    assert_eq!(classify_item(404), ItemOutcome::Denied);
    assert_eq!(classify_item(403), ItemOutcome::Denied);
}

#[test]
fn item_errors_read_type_and_reason() {
    let item: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!(
        {"create": {"_index": "x", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [a]"}}}
    ))
    .unwrap();
    assert_eq!(
        item_result(&item),
        Some((
            400,
            "mapper_parsing_exception: failed to parse field [a]".into()
        ))
    );
}

#[test]
fn data_stream_names() {
    validate_data_stream("logs-codacy.audit-default").unwrap();
    validate_data_stream("logs-codacy.audit-prod_eu").unwrap();
    for bad in [
        "codacy",
        "logs-codacy-audit-default",
        "logs--default",
        "Logs-a-b",
        "logs-a-b c",
        "logs-_a-b",
    ] {
        let e = validate_data_stream(bad).unwrap_err().to_string();
        assert!(e.contains("data_stream"), "{bad}: {e}");
    }
}

#[test]
fn config_validation() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("es-api-key");
    std::fs::write(
        &key,
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\n",
    )
    .unwrap();
    let parse = |v: Value| -> ElasticsearchConfig { ElasticsearchConfig::from_json(v).unwrap() };
    let good = parse(serde_json::json!({"url": "https://es.example.com:9200",
        "api_key_file": key, "data_stream": "logs-codacy.audit-default"}));
    good.validate_keys(Format::Ecs).unwrap();
    good.validate_keys(Format::Json).unwrap();
    assert!(good
        .validate_keys(Format::Cef)
        .unwrap_err()
        .to_string()
        .contains("ecs"));
    let e = parse(serde_json::json!({"url": "https://es:9200"}))
        .validate_keys(Format::Ecs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("api_key_file"), "{e}");
    let e = parse(
        serde_json::json!({"url": "https://es:9200", "api_key_file": key,
        "auth": {"user": "elastic", "password_file": key}}),
    )
    .validate_keys(Format::Ecs)
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"), "{e}");
    let e = parse(
        serde_json::json!({"url": "https://es:9200", "api_key_file": key, "data_stream": "codacy"}),
    )
    .validate_keys(Format::Ecs)
    .unwrap_err()
    .to_string();
    assert!(e.contains("<type>-<dataset>-<namespace>"), "{e}");
}
