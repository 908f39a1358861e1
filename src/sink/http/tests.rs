use super::endpoint::validate_url;
use super::transport::{send_limited, split_by_bytes};
use super::*;
use crate::httputil::{parse_retry_after, MAX_RETRY_AFTER};
use crate::secret::Redactor;
use crate::tls::TlsSettings;
use reqwest::StatusCode;
use std::time::{Duration, SystemTime};
#[test]
fn retry_after_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37Z
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::from_secs(0)));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Sun Nov  6 08:50:07 1994", now),
        Some(Duration::from_secs(30))
    );
    // A date in the past: retry now.
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
    assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
}

#[test]
fn status_classes() {
    let c = |n: u16| classify_status(StatusCode::from_u16(n).unwrap());
    assert_eq!(c(200), StatusClass::Accepted);
    assert_eq!(c(204), StatusClass::Accepted);
    assert_eq!(c(408), StatusClass::Retry);
    assert_eq!(c(429), StatusClass::Retry);
    assert_eq!(c(500), StatusClass::Retry);
    assert_eq!(c(503), StatusClass::Retry);
    assert_eq!(c(501), StatusClass::Endpoint);
    assert_eq!(c(404), StatusClass::Endpoint);
    assert_eq!(c(302), StatusClass::Endpoint);
    assert_eq!(c(401), StatusClass::Auth);
    assert_eq!(c(403), StatusClass::Auth);
    assert_eq!(c(413), StatusClass::TooLarge);
    assert_eq!(c(400), StatusClass::Reject);
    assert_eq!(c(422), StatusClass::Reject);
}

/// A destination answering without end: the reply is cut at the limit, as a fatal error.
#[tokio::test]
async fn replies_are_read_up_to_a_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = sock.read(&mut [0u8; 4096]).await;
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
                let _ = sock.write_all(head.as_bytes()).await;
                while sock.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    let client = reqwest::Client::new();
    let none = Redactor::default();
    let err = send_limited(client.get(&url), &url, &none, 10_000)
        .await
        .unwrap_err();
    assert_eq!(err.kind, crate::sink::SinkErrorKind::Fatal);
    assert!(
        err.message.contains("larger than 10000 bytes") && err.message.contains("/in"),
        "{}",
        err.message
    );
}

#[test]
fn splits_by_bytes_keeping_order() {
    assert_eq!(
        split_by_bytes(&[], 10),
        Vec::<std::ops::Range<usize>>::new()
    );
    assert_eq!(split_by_bytes(&[4, 4, 4], 10), vec![0..2, 2..3]);
    assert_eq!(split_by_bytes(&[4, 20, 4], 10), vec![0..1, 1..2, 2..3]);
    assert_eq!(split_by_bytes(&[5, 5], 10), vec![0..2]);
}

#[test]
fn urls_are_checked() {
    let tls = TlsSettings::verified();
    let refusal = |url: &str, tls: &TlsSettings, allow: bool| {
        validate_url(url, tls, allow).unwrap_err().to_string()
    };
    assert!(validate_url("https://h.example/x", &tls, false).is_ok());
    assert!(validate_url("http://127.0.0.1:9", &tls, false).is_ok());
    assert!(refusal("ftp://h", &tls, false).contains("not supported"));
    assert!(refusal("h.example", &tls, false).contains("not a URL"));
    assert!(refusal("https://u:p@h.example", &tls, false).contains("secret file"));
    let off = TlsSettings::default();
    assert!(refusal("http://h.example", &off, true).contains("TLS keys are set"));
    assert!(refusal("http://h.example/x?token=t", &tls, false)
        .contains("http://h.example/x is plain http to another machine"));
    assert!(validate_url("http://h.example/x", &tls, true).is_ok());
    assert_eq!(
        display_url("https://h.example/hook?token=abc"),
        "https://h.example/hook"
    );
}

#[test]
fn auth_config_messages_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pw");
    std::fs::write(&p, "s3cret\n").unwrap();
    let basic = AuthConfig {
        user: Some("elastic".into()),
        password_file: Some(p.clone()),
        ..Default::default()
    };
    let load = |c: &AuthConfig| c.sources().and_then(|a| a.read());
    let auth = load(&basic).unwrap();
    assert!(!format!("{auth:?}").contains("s3cret"));
    let h = auth.header().unwrap().unwrap();
    assert!(h.is_sensitive());
    // base64("elastic:s3cret")
    assert_eq!(h.to_str().unwrap(), "Basic ZWxhc3RpYzpzM2NyZXQ=");
    // An echo of the header, or of the password, is blanked.
    assert_eq!(
        auth.redactor()
            .redact("authorization: Basic ZWxhc3RpYzpzM2NyZXQ= (s3cret)"),
        "authorization: Basic [redacted] ([redacted])"
    );
    let refusal = |c: AuthConfig| load(&c).unwrap_err().to_string();
    let no_pw = AuthConfig {
        user: Some("elastic".into()),
        ..Default::default()
    };
    assert!(refusal(no_pw).contains("password_file"));
    let both = AuthConfig {
        bearer_token_file: Some(p.clone()),
        user: Some("u".into()),
        password_file: Some(p),
        ..Default::default()
    };
    assert!(refusal(both).contains("not both"));
    let missing = AuthConfig {
        bearer_token_file: Some(dir.path().join("nope")),
        ..Default::default()
    };
    let e = refusal(missing);
    assert!(
        e.contains("auth.bearer_token_file") && e.contains("nope"),
        "{e}"
    );
    let env = AuthConfig {
        bearer_token_env: Some("CAF_TEST_SURELY_UNSET_VAR".into()),
        ..Default::default()
    };
    assert!(refusal(env).contains("is not set"));
}

#[test]
fn the_documented_configuration_works_as_written() {
    let text = r#"
organizations = [{ provider = "gh", name = "acme" }]
agent = { state_dir = "/tmp/x" }

[[sinks]]
name = "hook"
type = "http"
url = "https://hooks.example.com/codacy"
format = "json"
encoding = "ndjson"
headers = { "X-Team" = "sec" }
auth = { bearer_token_file = "/etc/codacy-audit-forwarder/hook-token" }
batch_max_events = 500
batch_max_bytes = 1048576
compression = "gzip"
timeout = "30s"
tls_verify = true

[[sinks]]
name = "splunk"
type = "splunk_hec"
url = "https://splunk.example.com:8088"
token_file = "/etc/codacy-audit-forwarder/hec-token"
format = "json"
sourcetype = "codacy:audit"
index = "security"
source = "codacy"
host = "fwd-1"
indexer_acknowledgement = true

[[sinks]]
name = "elastic"
type = "elasticsearch"
url = "https://es.example.com:9200"
api_key_file = "/etc/codacy-audit-forwarder/es-api-key"
format = "ecs"
data_stream = "logs-codacy.audit-default"
"#;
    let tokens = crate::config::TokenSources {
        env: Some("tok".into()),
        credentials_directory: None,
    };
    let c = crate::config::Config::from_toml(text, "t.toml", &tokens, false).unwrap();
    let kinds: Vec<&str> = c.sinks.iter().map(|s| s.type_name).collect();
    assert_eq!(kinds, ["http", "splunk_hec", "elasticsearch"]);
    let hec = c.sinks[1]
        .config
        .as_any()
        .downcast_ref::<crate::sink::splunk_hec::SplunkHecConfig>();
    assert!(hec.unwrap().indexer_acknowledgement);
    let bad = text.replace("logs-codacy.audit-default", "codacy-audit");
    let e = crate::config::Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
    assert!(e.to_string().contains("data_stream"), "{e}");
}
