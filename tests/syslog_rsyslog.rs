//! The syslog sink against a real rsyslogd: what rsyslog parses (pri, timestamp, hostname,
//! app-name, procid, msgid, structured-data, msg) must equal what we meant to send, over UDP,
//! TCP (octet-counting and LF) and TLS, in RFC 5424 and RFC 3164, for json/ecs/cef records with
//! nasty content; and nothing acknowledged may be lost when rsyslog restarts.

#[path = "common/peers.rs"]
mod peers;
#[path = "common/rsyslog.rs"]
mod rsyslog;
#[path = "common/tls.rs"]
mod tls;

use codacy_audit_forwarder::clock::Backoff;
use codacy_audit_forwarder::event::{identify, AuditEvent, OrgRef, Provider};
use codacy_audit_forwarder::format::{Encoder, Format, FormatOptions};
use codacy_audit_forwarder::sink::syslog::{SyslogSink, SyslogSinkConfig};
use codacy_audit_forwarder::sink::{Record, Sink, SinkContext, SinkErrorKind};
use rsyslog::Rsyslog;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::TlsFiles;

const HOST: &str = "fwd01";
const APP: &str = "codacy-audit";
/// An organization name that needs every SD escape.
const ORG: &str = "acme \"q\" ]\\ ü";

fn ctx(dir: &Path) -> SinkContext {
    SinkContext::for_test(dir, "siem")
}

/// Builds the sink through the same path as the config file (parse + validate), with a short
/// reconnection backoff so the tests do not wait long.
fn sink(dir: &Path, format: Format, keys: Value) -> SyslogSink {
    let mut table: serde_json::Map<String, Value> =
        serde_json::from_value(json!({"app_name": APP, "hostname": HOST, "facility": "local4"}))
            .unwrap();
    table.extend(keys.as_object().unwrap().clone());
    let config = SyslogSinkConfig::from_keys(table).unwrap();
    config.validate_keys().unwrap();
    SyslogSink::new(config, ctx(dir).with_format(format))
        .unwrap()
        .with_reconnect_backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
}

/// Events with pipes, `=`, backslashes, quotes, `]`, unicode, line breaks and long values.
fn corpus(first_ms: i64, n: usize) -> Vec<AuditEvent> {
    let nasty = [
        "pipe|pipe = equals \\ backslash \"quote\" ] bracket",
        "ünïcödé 日本語 🎉 CEF:0|x|y| key=value",
        "line one\nline two\r\n\ttabbed",
    ];
    (0..n)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp_millis(first_ms + i as i64 * 1_001)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let action = match i % 3 {
                0 => "repositories.tokens.create".to_string(),
                1 => "organization.settings.a.very.long.action.name.beyond.thirty.two".to_string(),
                _ => "weird action ü|=\"]".to_string(),
            };
            let description = if i % 4 == 3 {
                format!("{}{}", "long=|\\\"] ".repeat(300), i)
            } else {
                format!("{} #{i}", nasty[i % nasty.len()])
            };
            AuditEvent::from_value(json!({
                "timestamp": ts,
                "action": action,
                "result": if i % 2 == 0 { "succeed" } else { "failed" },
                "actor": {"email": "ops@example.com", "role": "organizationAdmin"},
                "repositoryName": "repo|with=odd\\chars]",
                "description": description,
                "details": {"k=v": "a|b", "quote\"": "]"},
            }))
            .unwrap()
        })
        .collect()
}

fn records(format: Format, first_ms: i64, n: usize) -> Vec<Record> {
    let org = Arc::new(OrgRef::new(Provider::Gh, ORG));
    let options = FormatOptions {
        hostname: HOST.into(),
        ..FormatOptions::default()
    };
    let encoder = Encoder::new(format, options);
    identify(&org, corpus(first_ms, n), first_ms)
        .into_iter()
        .enumerate()
        .map(|(i, e)| Record {
            payload: encoder.encode_to_vec(&e).into(),
            event_id: e.id.clone(),
            org: org.clone(),
            timestamp_ms: e.event.timestamp_ms,
            action: e.event.action().into(),
            // Cover every band of the severity mapping.
            severity: [0u8, 4, 5, 7, 9, 10][i % 6],
        })
        .collect()
}

/// PRI for facility local4 (20) and the documented severity mapping.
fn expected_pri(catalog: u8) -> String {
    let sev = match catalog {
        9.. => 2,
        7..=8 => 3,
        5..=6 => 4,
        4 => 5,
        _ => 6,
    };
    (20 * 8 + sev).to_string()
}

/// RFC 5424 header rule written independently of the sink: printable ASCII, `_` otherwise, cut.
fn header_field(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect()
}

fn expected_sd(r: &Record) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    format!(
        "[codacy@32473 event_id=\"{}\" organization=\"{}\"]",
        r.event_id,
        esc(&r.org.key())
    )
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

/// Asserts rsyslog's view of one RFC 5424 message.
fn assert_5424(got: &Value, r: &Record) {
    let payload = std::str::from_utf8(&r.payload).unwrap();
    assert_eq!(text(got, "protocol-version"), "1", "{got}");
    assert_eq!(text(got, "pri"), expected_pri(r.severity), "{got}");
    assert_eq!(
        text(got, "timereported"),
        chrono::DateTime::from_timestamp_millis(r.timestamp_ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    );
    assert_eq!(text(got, "hostname"), HOST);
    assert_eq!(text(got, "app-name"), APP);
    assert_eq!(text(got, "procid"), std::process::id().to_string());
    assert_eq!(text(got, "msgid"), header_field(&r.action, 32));
    assert_eq!(text(got, "structured-data"), expected_sd(r));
    assert_eq!(text(got, "msg"), format!("\u{feff}{payload}"));
}

/// Asserts rsyslog's view of one RFC 3164 message (rsyslog guesses the year; the rest must match).
fn assert_3164(got: &Value, r: &Record) {
    let payload = std::str::from_utf8(&r.payload).unwrap();
    assert_eq!(text(got, "protocol-version"), "0", "{got}");
    assert_eq!(text(got, "pri"), expected_pri(r.severity), "{got}");
    let when = chrono::DateTime::from_timestamp_millis(r.timestamp_ms).unwrap();
    assert_eq!(
        text(got, "timereported")[4..],
        when.format("-%m-%dT%H:%M:%S+00:00").to_string()
    );
    assert_eq!(text(got, "hostname"), HOST);
    assert_eq!(text(got, "programname"), APP);
    assert_eq!(
        text(got, "syslogtag"),
        format!("{APP}[{}]:", std::process::id())
    );
    // rsyslog keeps the space after the tag's colon in msg.
    assert_eq!(text(got, "msg"), format!(" {payload}"));
}

/// Sends `recs` in batches of 4 and checks each arrived exactly once, intact.
async fn roundtrip(r: &Rsyslog, sink: &SyslogSink, recs: &[Record], rfc3164: bool) {
    let before = r.records().len();
    for batch in recs.chunks(4) {
        sink.deliver(batch).await.unwrap();
    }
    let got = r.wait_for(before + recs.len());
    let got = &got[before..];
    assert_eq!(got.len(), recs.len(), "{got:#?}");
    if rfc3164 {
        // One connection, in order.
        for (g, rec) in got.iter().zip(recs) {
            assert_3164(g, rec);
        }
    } else {
        // Matched by event id (UDP may reorder).
        let by_sd: BTreeMap<String, &Value> = got
            .iter()
            .map(|g| (text(g, "structured-data"), g))
            .collect();
        assert_eq!(by_sd.len(), recs.len(), "duplicates: {got:#?}");
        for rec in recs {
            let g = by_sd
                .get(&expected_sd(rec))
                .unwrap_or_else(|| panic!("{} not received: {got:#?}", rec.event_id));
            assert_5424(g, rec);
        }
    }
}

const FORMATS: [Format; 3] = [Format::Json, Format::Ecs, Format::Cef];
// 2024-07-01T09:45:30.656Z and 2024-12-09T08:07:06.005Z (single-digit day and hour).
const T1: i64 = 1_719_827_130_656;
const T2: i64 = 1_733_731_626_005;

#[tokio::test]
async fn udp_rfc5424_in_every_format() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Rsyslog::start(dir.path(), None);
    let addr = format!("udp://127.0.0.1:{}", r.udp_port);
    for format in FORMATS {
        let s = sink(dir.path(), format, json!({"address": addr}));
        roundtrip(&r, &s, &records(format, T1, 8), false).await;
    }
}

#[tokio::test]
async fn tcp_octet_counting_rfc5424_and_rfc3164_in_every_format() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Rsyslog::start(dir.path(), None);
    let addr = format!("tcp://127.0.0.1:{}", r.tcp_port);
    for format in FORMATS {
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "framing": "octet-counting", "protocol": "rfc5424"}),
        );
        roundtrip(&r, &s, &records(format, T1, 9), false).await;
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "protocol": "rfc3164"}),
        );
        roundtrip(&r, &s, &records(format, T2, 9), true).await;
    }
}

#[tokio::test]
async fn tcp_lf_framing_rfc5424_and_rfc3164_in_every_format() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Rsyslog::start(dir.path(), None);
    let addr = format!("tcp://127.0.0.1:{}", r.tcp_port);
    for format in FORMATS {
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "framing": "lf"}),
        );
        roundtrip(&r, &s, &records(format, T1, 9), false).await;
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "framing": "lf", "protocol": "rfc3164"}),
        );
        roundtrip(&r, &s, &records(format, T2, 9), true).await;
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_in_every_format() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let r = Rsyslog::start(dir.path(), Some(tls.clone()));
    let port = r.tls_port.unwrap();
    for (host, format) in [
        ("localhost", Format::Json),
        ("127.0.0.1", Format::Ecs),
        ("localhost", Format::Cef),
    ] {
        let addr = format!("tls://{host}:{port}");
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "tls_ca_file": tls.ca.display().to_string()}),
        );
        let checked = s.check().await.unwrap();
        assert!(checked.contains("TLS connection established"), "{checked}");
        roundtrip(&r, &s, &records(format, T1, 9), false).await;
        let s = sink(
            dir.path(),
            format,
            json!({"address": addr, "protocol": "rfc3164", "tls_ca_file": tls.ca.display().to_string()}),
        );
        roundtrip(&r, &s, &records(format, T2, 5), true).await;
    }

    // Without our CA the server is not trusted: a fatal error that says what to set, and nothing sent.
    let before = r.records().len();
    let s = sink(
        dir.path(),
        Format::Json,
        json!({"address": format!("tls://localhost:{port}")}),
    );
    let err = s.deliver(&records(Format::Json, T1, 1)).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Fatal, "{}", err.message);
    assert!(err.message.contains("tls_ca_file"), "{}", err.message);
    // A name that is not in the certificate is refused too.
    let s = sink(
        dir.path(),
        Format::Json,
        json!({"address": format!("tls://127.0.0.1:{port}"), "tls_ca_file": tls.ca.display().to_string(),
               "tls_server_name": "siem.example.com"}),
    );
    assert!(s.check().await.is_err());
    assert_eq!(r.records().len(), before);
}

/// Offers `batch` until the sink accepts it (as the pipeline does); returns the failures seen.
async fn deliver_until_ok(s: &SyslogSink, batch: &[Record]) -> usize {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match s.deliver(batch).await {
            Ok(()) => return failures,
            Err(e) => {
                assert_eq!(e.kind, SinkErrorKind::Transient, "{}", e.message);
                failures += 1;
                assert!(
                    started.elapsed() < rsyslog::DEADLINE,
                    "never delivered: {}",
                    e.message
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn received_ids(r: &Rsyslog) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for g in r.records() {
        *ids.entry(text(&g, "structured-data")).or_insert(0) += 1;
    }
    ids
}

#[tokio::test]
async fn rsyslog_restart_mid_stream_loses_nothing_acknowledged() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rsyslog::start(dir.path(), None);
    let addr = format!("tcp://127.0.0.1:{}", r.tcp_port);
    let s = sink(dir.path(), Format::Cef, json!({"address": addr}));
    let all = records(Format::Cef, T1, 30);
    let batches: Vec<&[Record]> = all.chunks(3).collect();
    let mut acked: Vec<&Record> = Vec::new();

    for batch in &batches[..4] {
        s.deliver(batch).await.unwrap();
        acked.extend(batch.iter());
    }
    r.wait_for(acked.len());

    // The receiver goes away. The sink's connection is now dead: the next batch must not be
    // acknowledged (it would be written into a closed socket and lost).
    r.stop();
    for _ in 0..3 {
        let err = s.deliver(batches[4]).await.unwrap_err();
        assert_eq!(err.kind, SinkErrorKind::Transient);
        assert!(err.message.contains(&addr), "{}", err.message);
    }

    // It comes back on the same port: the sink reconnects, the pending batch goes through, and
    // so does everything after it.
    r.restart();
    deliver_until_ok(&s, batches[4]).await;
    acked.extend(batches[4].iter());
    for batch in &batches[5..7] {
        s.deliver(batch).await.unwrap();
        acked.extend(batch.iter());
    }

    // A second restart without a failed delivery in between: the first batch after it must not
    // vanish into the old connection.
    r.restart();
    for batch in &batches[7..] {
        deliver_until_ok(&s, batch).await;
        acked.extend(batch.iter());
    }

    r.wait_for(acked.len());
    let ids = received_ids(&r);
    for rec in &acked {
        assert_eq!(
            ids.get(&expected_sd(rec)),
            Some(&1),
            "acknowledged record {} lost or duplicated: {ids:#?}",
            rec.event_id
        );
    }
    assert_eq!(ids.len(), all.len());
}

#[tokio::test]
async fn nothing_listening_is_a_transient_error_naming_the_address_until_rsyslog_starts() {
    if !rsyslog::installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = rsyslog::free_tcp_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let s = sink(dir.path(), Format::Json, json!({"address": addr}));
    let batch = records(Format::Json, T1, 3);
    let err = s.deliver(&batch).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Transient);
    assert!(err.message.contains(&addr), "{}", err.message);
    assert!(err.message.contains("listening"), "{}", err.message);
    assert!(s.check().await.is_err());

    // Start rsyslog on exactly that port.
    let r = Rsyslog::start_on_port(dir.path(), port);
    deliver_until_ok(&s, &batch).await;
    let got = r.wait_for(batch.len());
    for (g, rec) in got.iter().zip(&batch) {
        assert_5424(g, rec);
    }
}
