//! A scripted HTTP server on 127.0.0.1 (axum, port 0) that records every request (gzip bodies
//! decoded) and answers with whatever the test's handler says. Stopped on drop.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use codacy_audit_forwarder::event::{identify, AuditEvent, OrgRef, Provider};
use codacy_audit_forwarder::format::{Encoder, Format, FormatOptions};
use codacy_audit_forwarder::sink::{Record, SinkContext};
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    /// The query string, without the `?` (empty when none).
    pub query: String,
    pub headers: HeaderMap,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    pub gzipped: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of query parameter `name`, if present (values here need no decoding).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// Every request header as `name: value` lines, as an echoing server or proxy shows them.
    pub fn header_dump(&self) -> String {
        self.headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// `handler(request, earlier requests)` -> reply.
type Handler = dyn Fn(&Received, &[Received]) -> Reply + Send + Sync;

pub struct TestServer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(
        handler: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let handler: Arc<Handler> = Arc::new(handler);
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let rec = received.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let handler = handler.clone();
                let rec = rec.clone();
                async move {
                    let gzipped = headers
                        .get("content-encoding")
                        .is_some_and(|v| v.as_bytes() == b"gzip");
                    let body = if gzipped {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut out)
                            .expect("request body is valid gzip");
                        out
                    } else {
                        body.to_vec()
                    };
                    let req = Received {
                        method,
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers,
                        body,
                        gzipped,
                    };
                    let reply = {
                        let mut all = rec.lock().unwrap();
                        let reply = handler(&req, &all);
                        all.push(req);
                        reply
                    };
                    let mut h = HeaderMap::new();
                    for (k, v) in reply.headers {
                        h.insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    let resp: Response =
                        (StatusCode::from_u16(reply.status).unwrap(), h, reply.body)
                            .into_response();
                    resp
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            url: format!("http://{addr}"),
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` distinct events of organization gh/acme, encoded in `format`. Events whose index is in
/// `actions` get that action instead of the default (so a server can pick them out).
pub fn records(format: Format, n: usize, special: &[(usize, &str)]) -> Vec<Record> {
    records_encoded(&Encoder::new(format, FormatOptions::default()), n, special)
}

/// `records`, encoded by `encoder` (the options a sink's configuration settles).
pub fn records_encoded(encoder: &Encoder, n: usize, special: &[(usize, &str)]) -> Vec<Record> {
    let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
    let events: Vec<AuditEvent> = (0..n)
        .map(|i| {
            let action = special
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| "user.login".to_string());
            AuditEvent::from_value(serde_json::json!({
                "timestamp": 1_719_827_130_000i64 + i as i64 * 1001,
                "action": action,
                "actor": {"email": format!("user{i}@acme.test"), "role": "organizationAdmin"},
                "result": "succeed",
                "details": {"n": i},
            }))
            .unwrap()
        })
        .collect();
    identify(&org, events, 1_719_900_000_000)
        .into_iter()
        .map(|ev| Record {
            event_id: ev.id.clone(),
            org: ev.org.clone(),
            timestamp_ms: ev.event.timestamp_ms,
            action: ev.event.action().into(),
            severity: 3,
            payload: encoder.encode_to_vec(&ev).into(),
        })
        .collect()
}

pub fn context(dir: &Path, name: &str) -> SinkContext {
    SinkContext::for_test(dir, name)
}

/// The dead-letter entries written so far.
pub fn dead_letters(ctx: &SinkContext) -> Vec<Value> {
    match std::fs::read_to_string(ctx.dead_letter.path()) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => vec![],
    }
}

/// Writes a secret file and returns its path.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

pub fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.event_id.to_string()).collect()
}
