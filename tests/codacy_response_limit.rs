//! A Codacy page larger than `[codacy] max_response_bytes` is an error naming the limit and the
//! keys to change, whether the server announces its size or streams it without a length; it
//! is not retried, and the body is read only up to the limit.

#[path = "common/http_server.rs"]
mod http_server;

use codacy_audit_forwarder::codacy::client::{ApiError, Client};
use codacy_audit_forwarder::config::{Config, TokenSources};
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::telemetry::Metrics;
use http_server::{Reply, TestServer};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(base_url: &str, max_response_bytes: u64) -> Client {
    let text = format!(
        r#"
[codacy]
base_url = "{base_url}"
page_limit = 500
max_attempts = 3
max_backoff = "10ms"
max_response_bytes = {max_response_bytes}
[[organizations]]
provider = "gh"
name = "acme"
[[sinks]]
name = "archive"
type = "file"
path = "/tmp/unused.ndjson"
"#
    );
    let tokens = TokenSources {
        env: Some("token".into()),
        credentials_directory: None,
    };
    let config = Config::from_toml(&text, "t.toml", &tokens, false).unwrap();
    Client::new(&config.codacy, Arc::new(Metrics::new())).unwrap()
}

/// A page of `n` events of about 200 bytes each.
fn page(n: usize) -> String {
    let events: Vec<_> = (0..n)
        .map(
            |i| json!({"timestamp": 1_000 + i, "action": "user.login", "details": "x".repeat(150)}),
        )
        .collect();
    json!(events).to_string()
}

fn org() -> OrgRef {
    OrgRef::new(Provider::Gh, "acme")
}

#[tokio::test]
async fn a_page_over_the_limit_is_one_clear_error_and_one_under_it_is_read() {
    let body = page(50);
    assert!(body.len() > 8 * 1024);
    let reply = body.clone();
    let server = TestServer::start(move |_, _| {
        Reply::text(200, &reply).with_header("content-type", "application/json")
    })
    .await;

    let err = client(&server.url, 8 * 1024)
        .fetch_page(&org(), 0, 10_000, 500, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
    assert!(err.needs_human());
    let msg = err.to_string();
    for words in [
        "codacy.max_response_bytes (8192 bytes)",
        &format!("({} bytes by its Content-Length)", body.len()),
        "codacy.page_limit",
        "asked for 500",
    ] {
        assert!(msg.contains(words), "{words:?} not in: {msg}");
    }
    assert_eq!(
        server.requests().len(),
        1,
        "the same page is not fetched again"
    );

    let ok = client(&server.url, 64 * 1024)
        .fetch_page(&org(), 0, 10_000, 500, None)
        .await
        .unwrap();
    assert_eq!(ok.events.len(), 50);
}

/// A server streaming an endless chunked body, without Content-Length: the client stops at the
/// limit instead of buffering what the server sends.
#[tokio::test]
async fn a_streamed_body_without_length_is_cut_at_the_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let served = requests.clone();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent_by_server = sent.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            served.fetch_add(1, Ordering::SeqCst);
            let sent = sent_by_server.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n[{}\r\n", 64 * 1024 + 1, "1".repeat(64 * 1024));
                // Up to 1 GiB unless the client hangs up first.
                for _ in 0..16 * 1024 {
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    sent.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            });
        }
    });

    let err = client(&url, 1024 * 1024)
        .fetch_page(&org(), 0, 10_000, 500, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::TooLarge {
                content_length: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("codacy.max_response_bytes (1048576 bytes)"),
        "{err}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "not retried");
    // The client hung up soon after the limit (socket buffers hold a few MB at most).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 64 * 1024 * 1024,
        "the server could send {sent} bytes"
    );
}
