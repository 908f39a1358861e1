use super::config::Encoding;
use super::*;
use crate::format::Format;
use crate::sink::http::endpoint::Compression;
use crate::sink::SinkContext;
use std::time::Duration;

fn parse(v: serde_json::Value) -> Result<HttpSinkConfig, String> {
    HttpSinkConfig::from_json(v).map_err(|e| e.to_string())
}

#[test]
fn documented_keys_parse() {
    let c = parse(serde_json::json!({
        "url": "https://hooks.example.com/codacy", "encoding": "json_array",
        "headers": {"X-Team": "sec"}, "batch_max_bytes": 1048576,
        "compression": "gzip", "timeout": "30s", "tls_verify": true
    }))
    .unwrap();
    assert_eq!(c.encoding, Encoding::JsonArray);
    assert_eq!(c.endpoint.timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.endpoint.compression, Compression::Gzip);
    c.validate_keys(Format::Json).unwrap();
}

#[test]
fn validation_messages_name_the_key() {
    let e = parse(serde_json::json!({"url": "https://h", "timeout": "soon"})).unwrap_err();
    assert!(e.contains("timeout") && e.contains("not a duration"), "{e}");
    let e = parse(serde_json::json!({"url": "https://h", "tls_verfy": false})).unwrap_err();
    assert!(e.contains("tls_verfy"), "{e}");

    let c = parse(serde_json::json!({"url": "https://h", "encoding": "json_array"})).unwrap();
    assert!(c
        .validate_keys(Format::Cef)
        .unwrap_err()
        .to_string()
        .contains("json_array"));
    let c =
        parse(serde_json::json!({"url": "https://h", "headers": {"Authorization": "x"}})).unwrap();
    assert!(c
        .validate_keys(Format::Json)
        .unwrap_err()
        .to_string()
        .contains("auth"));
    let c = parse(serde_json::json!({"url": "https://h", "batch_max_bytes": 0})).unwrap();
    assert!(c
        .validate_keys(Format::Json)
        .unwrap_err()
        .to_string()
        .contains("batch_max_bytes"));
    let c = parse(serde_json::json!({"url": "https://h", "auth": {"user": "u"}})).unwrap();
    assert!(c
        .validate_keys(Format::Json)
        .unwrap_err()
        .to_string()
        .contains("password_file"));
    // Secret files are read when the sink starts, and the error names the file.
    let c = parse(serde_json::json!({"url": "https://h",
        "auth": {"bearer_token_file": "/nonexistent/hook-token"}}))
    .unwrap();
    c.validate_keys(Format::Json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = SinkContext::for_test(dir.path(), "hook");
    let e = HttpSink::new(c, ctx).err().unwrap();
    assert_eq!(e.kind, crate::sink::SinkErrorKind::Fatal);
    assert!(
        e.message.contains("/nonexistent/hook-token"),
        "{}",
        e.message
    );
}

#[test]
fn https_clients_build_with_the_shared_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = |name: &str| SinkContext::for_test(dir.path(), name);
    // reqwest accepts our rustls config (same rustls version), verified or not.
    for verify in [true, false] {
        let c =
            parse(serde_json::json!({"url": "https://hooks.example.com/x", "tls_verify": verify}))
                .unwrap();
        assert!(HttpSink::new(c, ctx("h")).is_ok());
    }
    let c = parse(
        serde_json::json!({"url": "https://h.example", "tls_ca_file": "/nonexistent/ca.pem"}),
    )
    .unwrap();
    assert!(c
        .validate_keys(Format::Json)
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/ca.pem"));
}
