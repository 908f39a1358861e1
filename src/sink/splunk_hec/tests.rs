use super::ack::random_uuid;
use super::codes::{classify_code, fatal_for, HecAction};
use super::*;
use crate::format::Format;
use crate::sink::http::HttpConfig;
use crate::sink::SinkContext;

#[test]
fn hec_codes_are_classified() {
    assert_eq!(classify_code(0), HecAction::Accepted);
    assert_eq!(classify_code(9), HecAction::Retry);
    assert_eq!(classify_code(8), HecAction::Retry);
    for c in 1..=4 {
        assert_eq!(classify_code(c), HecAction::Token);
    }
    assert_eq!(classify_code(7), HecAction::Index);
    for c in [10, 11, 14] {
        assert_eq!(classify_code(c), HecAction::AckConfig);
    }
    for c in [5, 6, 12, 13, 15] {
        assert_eq!(classify_code(c), HecAction::Data);
    }
    assert_eq!(classify_code(16), HecAction::Other);
}

#[test]
fn token_messages_carry_the_remedy() {
    let e = fatal_for(HecAction::Token, 1, "Token disabled", "https://s:8088/x");
    assert!(e.message.contains("disabled") && e.message.contains("enable it"));
    let e = fatal_for(HecAction::Index, 7, "Incorrect index", "u");
    assert!(e.message.contains("allowed indexes"));
}

#[test]
fn config_validation() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("hec-token");
    std::fs::write(&tok, "11111111-2222-3333-4444-555555555555\n").unwrap();
    let parse =
        |v: serde_json::Value| -> SplunkHecConfig { SplunkHecConfig::from_json(v).unwrap() };
    let good = parse(serde_json::json!({"url": "https://splunk.example.com:8088",
        "token_file": tok, "sourcetype": "codacy:audit", "index": "security",
        "indexer_acknowledgement": true, "ack_poll_interval": "1s", "ack_timeout": "1m"}));
    good.validate_keys().unwrap();
    assert!(good.record_formats().contains(&Format::Cef));
    let e = parse(serde_json::json!({"url": "https://s:8088"}))
        .validate_keys()
        .unwrap_err()
        .to_string();
    assert!(e.contains("token_file"), "{e}");
    let e = parse(
        serde_json::json!({"url": "https://s:8088/services/collector/event", "token_file": tok}),
    )
    .validate_keys()
    .unwrap_err()
    .to_string();
    assert!(e.contains("base URL"), "{e}");
    let e =
        parse(serde_json::json!({"url": "https://s:8088", "token_file": tok, "ack_timeout": "1m"}))
            .validate_keys()
            .unwrap_err()
            .to_string();
    assert!(e.contains("indexer_acknowledgement"), "{e}");
    // The token file is read when the sink starts; the error names the file, not the token.
    let missing = parse(
        serde_json::json!({"url": "https://s:8088", "token_file": dir.path().join("missing")}),
    );
    missing.validate_keys().unwrap();
    let ctx = SinkContext::for_test(dir.path(), "splunk");
    let e = SplunkHecSink::new(missing, ctx).err().unwrap();
    let m = &e.message;
    assert!(m.contains("token_file") && m.contains("missing"), "{m}");
}

#[test]
fn uuid_is_v4_shaped() {
    let u = random_uuid();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
    assert_ne!(u, random_uuid());
}
