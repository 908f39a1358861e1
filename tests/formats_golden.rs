//! Golden files and property tests for the CEF, ECS and JSON encoders and for `preview`.
//!
//! Goldens: `tests/fixtures/formats/events.ndjson` encoded through `preview` (gh/acme, fixed
//! `fetched_at_ms` and hostname) must equal `expected.*`. After a deliberate change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test --test formats_golden`, then review the diff by eye.

use codacy_audit_forwarder::event::{identify, AuditEvent, OrgRef, Provider};
use codacy_audit_forwarder::format::{
    catalog, cef, ecs, Encoder, Format, FormatOptions, AGENT_NAME, AGENT_VERSION,
};
use codacy_audit_forwarder::preview::preview;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FETCHED_AT_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn options(include_original: bool) -> FormatOptions {
    FormatOptions {
        ecs_namespace: "default".into(),
        include_original,
        hostname: "fwd01".into(),
        timestamp_field: false,
    }
}

fn acme() -> OrgRef {
    OrgRef::new(Provider::Gh, "acme")
}

fn run_preview(encoder: &Encoder, file: &str) -> String {
    let input = std::fs::read(fixtures().join(file)).unwrap();
    let mut out = Vec::new();
    preview(encoder, &acme(), &input[..], &mut out, FETCHED_AT_MS).unwrap();
    String::from_utf8(out).unwrap()
}

/// Goldens hold `${AGENT_VERSION}` where the crate version goes, so a release does not change them.
fn check_golden(name: &str, actual: &str) {
    let actual = actual
        .replace(
            &format!("|Codacy|Codacy|{AGENT_VERSION}|"),
            "|Codacy|Codacy|${AGENT_VERSION}|",
        )
        .replace(
            &format!("\"type\":\"{AGENT_NAME}\",\"version\":\"{AGENT_VERSION}\""),
            &format!("\"type\":\"{AGENT_NAME}\",\"version\":\"${{AGENT_VERSION}}\""),
        );
    let path = fixtures().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            assert_eq!(e, a, "{name}: first difference on line {}", i + 1);
        }
        assert_eq!(expected, actual, "{name} differs (line count)");
    }
}

const GOLDENS: &[(&str, Format, bool)] = &[
    ("expected.cef", Format::Cef, false),
    ("expected.ecs.ndjson", Format::Ecs, false),
    ("expected.ecs-original.ndjson", Format::Ecs, true),
    ("expected.json.ndjson", Format::Json, false),
];

#[test]
fn golden_outputs() {
    for (name, format, original) in GOLDENS {
        let out = run_preview(&Encoder::new(*format, options(*original)), "events.ndjson");
        assert_eq!(out.lines().count(), 22, "{name}");
        check_golden(name, &out);
    }
}

#[test]
fn a_v3_page_in_reverse_order_gives_the_same_records_as_ndjson() {
    for (name, format, original) in GOLDENS {
        let enc = Encoder::new(*format, options(*original));
        // Records come in input order; the set of records (ids included) is the same.
        let sorted = |out: String| {
            let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            sorted(run_preview(&enc, "page.json")),
            sorted(run_preview(&enc, "events.ndjson")),
            "{name}"
        );
    }
}

#[test]
fn every_golden_ecs_document_validates_against_ecs_8_17() {
    for original in [false, true] {
        let out = run_preview(
            &Encoder::new(Format::Ecs, options(original)),
            "events.ndjson",
        );
        for (i, line) in out.lines().enumerate() {
            let doc: Value = serde_json::from_str(line).unwrap();
            let problems = ecs::check_document(&doc);
            assert!(problems.is_empty(), "line {}: {problems:?}", i + 1);
        }
    }
}

#[test]
fn all_formats_share_the_event_id() {
    let lines = |f| run_preview(&Encoder::new(f, options(false)), "events.ndjson");
    let (j, e, c) = (lines(Format::Json), lines(Format::Ecs), lines(Format::Cef));
    let mut ids = std::collections::BTreeSet::new();
    for ((j, e), c) in j.lines().zip(e.lines()).zip(c.lines()) {
        let j: Value = serde_json::from_str(j).unwrap();
        let e: Value = serde_json::from_str(e).unwrap();
        let id = j["event_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 64);
        assert_eq!(e["event"]["id"], json!(id));
        let c = parse_cef(c).unwrap();
        assert_eq!(c.ext_value("externalId"), Some(&id[..40]));
        ids.insert(id);
    }
    // The two byte-identical events got distinct ids.
    assert_eq!(ids.len(), 22);
}

#[test]
fn every_golden_cef_line_parses_and_respects_the_limits() {
    let out = run_preview(&Encoder::new(Format::Cef, options(false)), "events.ndjson");
    for (i, line) in out.lines().enumerate() {
        let cef = parse_cef(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        assert!(cef.header[4].len() <= cef::MAX_EVENT_CLASS_ID);
        assert!(cef.header[5].len() <= cef::MAX_NAME);
        let sev: u8 = cef.header[6].parse().unwrap();
        assert!(sev <= 10);
        for (k, v) in &cef.ext {
            let max = match k.as_str() {
                "act" | "outcome" => 63,
                "externalId" => 40,
                "dvchost" => 100,
                k if k.starts_with("cs") && !k.ends_with("Label") => 4000,
                _ => 1023,
            };
            assert!(v.len() <= max, "line {}: {k} is {} bytes", i + 1, v.len());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An independent CEF parser (strict: it accepts only the escapes the spec defines).

#[derive(Debug)]
struct Cef {
    header: Vec<String>,
    ext: Vec<(String, String)>,
}

impl Cef {
    fn ext_value(&self, key: &str) -> Option<&str> {
        self.ext
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_cef(line: &str) -> Result<Cef, String> {
    if line.contains(['\r', '\n']) {
        return Err("raw CR or LF in the record".into());
    }
    let rest = line.strip_prefix("CEF:").ok_or("no CEF: prefix")?;
    // Header: version plus six fields, each ended by an unescaped pipe.
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while header.len() < 7 {
        match chars.next().ok_or("header ended early")? {
            '\\' => match chars.next() {
                Some(c @ ('\\' | '|')) => cur.push(c),
                other => return Err(format!("bad header escape \\{other:?}")),
            },
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    // Extension: decode escapes, remembering which characters were escaped.
    let mut units: Vec<(char, bool)> = Vec::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let decoded = match chars.next() {
                Some('\\') => '\\',
                Some('=') => '=',
                Some('n') => '\n',
                Some('r') => '\r',
                other => return Err(format!("bad extension escape \\{other:?}")),
            };
            units.push((decoded, true));
        } else {
            units.push((c, false));
        }
    }
    // Every unescaped `=` ends a key: the alphanumeric run before it, preceded by a space or the
    // start of the extension. The previous value ends at that space.
    let mut keys = Vec::new(); // (key_start, eq)
    for (i, &(c, escaped)) in units.iter().enumerate() {
        if c == '=' && !escaped {
            let mut k = i;
            while k > 0 && !units[k - 1].1 && units[k - 1].0.is_ascii_alphanumeric() {
                k -= 1;
            }
            if k == i || (k > 0 && units[k - 1] != (' ', false)) {
                return Err(format!("unescaped '=' without a key at unit {i}"));
            }
            keys.push((k, i));
        }
    }
    if units.is_empty() {
        return Ok(Cef {
            header,
            ext: Vec::new(),
        });
    }
    if keys.first().map(|k| k.0) != Some(0) {
        return Err("extension does not start with a key".into());
    }
    let mut ext = Vec::new();
    for (n, &(k, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(units.len(), |next| next.0 - 1);
        let key: String = units[k..eq].iter().map(|u| u.0).collect();
        let value: String = units[eq + 1..end].iter().map(|u| u.0).collect();
        ext.push((key, value));
    }
    Ok(Cef { header, ext })
}

#[test]
fn the_test_parser_itself_is_strict() {
    assert!(parse_cef("CEF:0|a|b|c|d|e|3|k=v x").is_ok());
    assert!(parse_cef("CEF:0|a|b|c|d|e|3|k=v =x").is_err());
    assert!(parse_cef("CEF:0|a|b|c|d|e|3|k=v\\x").is_err());
    assert!(parse_cef("CEF:0|a|b|c|d|e").is_err());
    let c = parse_cef(r"CEF:0|a\|b|c|d|e|f|3|k=v\=w x y=\\\n|z").unwrap();
    assert_eq!(c.header[1], "a|b");
    assert_eq!(
        c.ext,
        vec![("k".into(), "v=w x".into()), ("y".into(), "\\\n|z".into())]
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Arbitrary text biased towards the characters CEF must escape.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<char>(),
            1 => prop::sample::select(vec!['\\', '=', '|', '\r', '\n', ' ', '\t', 'é', '🚀']),
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(6), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An event with every field arbitrary (absent, or any text) and sizes under the CEF limits.
fn arb_event() -> impl Strategy<Value = Value> {
    let opt = |max| prop::option::of(text(max));
    (
        // act allows 63 bytes: 15 characters of at most 4 bytes.
        prop_oneof![
            prop::sample::select(
                catalog::ACTIONS
                    .iter()
                    .map(|a| a.action.to_string())
                    .collect::<Vec<_>>()
            ),
            text(15).prop_filter("action is required", |s| !s.is_empty()),
        ],
        prop_oneof![
            Just(None),
            prop::sample::select(vec!["succeed", "failed", "rejected"])
                .prop_map(|s| Some(s.into())),
            opt(10),
        ],
        -1_000_000_000_000_000i64..1_000_000_000_000_000,
        (opt(200), opt(20), any::<bool>()),
        (opt(200), opt(200), opt(200), opt(200)),
        prop::option::of(arb_json()),
    )
        .prop_map(
            |(
                action,
                result,
                ts,
                (email, role, actor_is_string),
                (src, repo, desc, entity),
                details,
            )| {
                let mut m = Map::new();
                m.insert("timestamp".into(), json!(ts));
                m.insert("action".into(), json!(action));
                if let Some(r) = result {
                    m.insert("result".into(), json!(r));
                }
                match (email, actor_is_string) {
                    (Some(e), true) => {
                        m.insert("actor".into(), json!(e));
                    }
                    (email, _) => {
                        let mut a = Map::new();
                        if let Some(e) = email {
                            a.insert("email".into(), json!(e));
                        }
                        if let Some(r) = role {
                            a.insert("role".into(), json!(r));
                        }
                        m.insert("actor".into(), Value::Object(a));
                    }
                }
                for (k, v) in [
                    ("source", src),
                    ("repositoryName", repo),
                    ("description", desc),
                    ("entityId", entity),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), json!(v));
                    }
                }
                if let Some(d) = details {
                    m.insert("details".into(), d);
                }
                Value::Object(m)
            },
        )
}

fn identified(raw: Value, org_name: &str) -> codacy_audit_forwarder::event::IdentifiedEvent {
    let org = Arc::new(OrgRef::new(Provider::Gl, org_name));
    identify(
        &org,
        vec![AuditEvent::from_value(raw).unwrap()],
        FETCHED_AT_MS,
    )
    .remove(0)
}

/// Header text as the spec wants it: CR, LF and CRLF each become one space.
fn header_text(s: &str) -> String {
    s.replace("\r\n", " ").replace(['\r', '\n'], " ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cef_round_trips_through_an_independent_parser(
        raw in arb_event(),
        org_name in text(20),
        hostname in text(25),
    ) {
        let ev = identified(raw, &org_name);
        let opts = FormatOptions { ecs_namespace: "default".into(), include_original: false, hostname: hostname.clone(), timestamp_field: false };
        let mut out = Vec::new();
        cef::encode(&ev, &opts, &mut out);
        let line = String::from_utf8(out).unwrap();
        let cef = parse_cef(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;

        let e = &ev.event;
        let class = catalog::classify(e.action(), e.result().as_deref());
        prop_assert_eq!(&cef.header[..4], &["0", "Codacy", "Codacy", AGENT_VERSION][..]);
        prop_assert_eq!(&cef.header[4], &header_text(e.action()));
        prop_assert_eq!(&cef.header[5], &header_text(&class.name));
        prop_assert_eq!(&cef.header[6], &class.severity.to_string());

        // The extension values we expect, built from the event independently of the encoder.
        let mut want: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) { want.push((k.into(), v)); }
        };
        put("rt", Some(e.timestamp_ms.to_string()));
        put("end", Some(e.timestamp_ms.to_string()));
        put("act", Some(e.action().to_string()));
        put("cat", Some(catalog::cef_category(e.action())));
        put("outcome", match e.result().as_deref() {
            Some("succeed") => Some("success".into()),
            Some("failed" | "rejected") => Some("failure".into()),
            _ => None,
        });
        put("reason", e.result().map(Cow::into_owned).filter(|r| r != "succeed"));
        put("suser", e.actor_email().map(Cow::into_owned));
        let details = e.details().map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string));
        for (n, label, v) in [
            (1, "repository", e.repository().map(Cow::into_owned)),
            (2, "actorRole", e.actor_role().map(Cow::into_owned)),
            (3, "entityId", e.entity_id().map(Cow::into_owned)),
            (4, "details", details.filter(|d| d.len() <= 4000)),
            (5, "source", e.source().map(Cow::into_owned)),
            (6, "organization", Some(format!("gl/{org_name}"))),
        ] {
            if v.as_deref().is_some_and(|v| !v.is_empty()) {
                put(&format!("cs{n}Label"), Some(label.into()));
                put(&format!("cs{n}"), v);
            }
        }
        put("externalId", Some(ev.id.as_str()[..40].to_string()));
        put("dvchost", Some(hostname));
        put("deviceProcessName", Some(AGENT_NAME.into()));
        put("msg", e.description().map(Cow::into_owned));

        // Long details JSON may be cut (tested separately): compare it as a prefix.
        let got_details = cef.ext_value("cs4").map(str::to_string);
        let got: Vec<(String, String)> = cef.ext.iter().filter(|(k, _)| {
            !(k == "cs4" || k == "cs4Label") || want.iter().any(|(w, _)| w == "cs4")
        }).cloned().collect();
        prop_assert_eq!(got, want);
        if let (Some(got), Some(full)) = (got_details, e.details()) {
            let full = full.as_str().map_or_else(|| full.to_string(), str::to_string);
            prop_assert!(full.starts_with(&got));
        }
    }

    #[test]
    fn ecs_always_validates(raw in arb_event(), org_name in text(20), original in any::<bool>()) {
        let ev = identified(raw, &org_name);
        let mut out = Vec::new();
        ecs::encode(&ev, &options(original), &mut out);
        prop_assert!(!out.contains(&b'\n') && !out.contains(&b'\r'));
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let problems = ecs::check_document(&doc);
        prop_assert!(problems.is_empty(), "{:?}\n{}", problems, doc);
        prop_assert_eq!(&doc["event"]["id"], &json!(ev.id.as_str()));
        prop_assert_eq!(&doc["event"]["action"], &json!(ev.event.action()));
    }

    #[test]
    fn json_parses_back(raw in arb_event(), org_name in text(20)) {
        let ev = identified(raw.clone(), &org_name);
        let out = Encoder::new(Format::Json, options(false)).encode_to_vec(&ev);
        let back: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        for (k, v) in raw.as_object().unwrap() {
            prop_assert_eq!(back.get(k), Some(v));
        }
    }

    #[test]
    fn cef_cuts_long_values_at_a_character_boundary_without_splitting_escapes(
        unit in prop::sample::select(vec!["a", "é", "€", "🚀", "\\", "=", "\r\n", "|"]),
        extra in 0usize..8,
    ) {
        let long = |max: usize| unit.repeat(max / unit.len() + 1 + extra);
        let raw = json!({
            "timestamp": 1, "action": long(1023), "description": long(1023),
            "actor": {"email": long(1023), "role": long(4000)}, "repositoryName": long(4000),
            "details": long(4000), "result": long(1023),
        });
        let ev = identified(raw, "acme");
        let opts = FormatOptions { hostname: long(100), ..options(false) };
        let mut out = Vec::new();
        cef::encode(&ev, &opts, &mut out);
        let line = String::from_utf8(out).unwrap();
        let cef = parse_cef(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        let checks = [
            ("act", 63), ("msg", 1023), ("suser", 1023), ("cs1", 4000), ("cs2", 4000),
            ("cs4", 4000), ("reason", 1023), ("dvchost", 100),
        ];
        for (key, max) in checks {
            let v = cef.ext_value(key).unwrap();
            prop_assert!(v.len() <= max && v.len() + 4 > max, "{} {}", key, v.len());
            prop_assert!(long(max).starts_with(v), "{} is not a prefix", key);
        }
        // Header fields are cut on the raw value (1023 / 512 bytes), then CR/LF become spaces.
        let action = long(1023);
        prop_assert_eq!(&cef.header[4], &header_text(cef::truncate(&action, 1023)));
        prop_assert_eq!(&cef.header[5], &header_text(cef::truncate(&action, 512)));
        if !unit.contains('\n') {
            prop_assert!(cef.header[4].len() + 4 > 1023);
        }
    }
}

#[test]
fn ecs_field_subset_is_verbatim_from_upstream() {
    // How `src/format/ecs_fields.csv` is derived: the header plus the rows of ECS 8.17's
    // generated/csv/fields.csv whose Field is in `ecs::ECS_FIELDS_USED`, in upstream order. The
    // upstream file is kept verbatim in tests/fixtures/ecs/ (ECS is Apache-2.0); ECS_FIELDS_CSV
    // points at another copy, and with UPDATE_GOLDEN=1 the subset is rewritten from it.
    let upstream = std::env::var_os("ECS_FIELDS_CSV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecs/fields-8.17.csv")
        });
    let full = std::fs::read_to_string(&upstream)
        .unwrap_or_else(|e| panic!("upstream ECS fields.csv {}: {e}", upstream.display()));
    let mut lines = full.lines();
    let mut subset = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let field = line.split(',').nth(3).unwrap_or("");
        if ecs::ECS_FIELDS_USED.contains(&field) {
            assert!(line.starts_with("8.17.0,"), "{line}");
            subset.push_str(line);
            subset.push('\n');
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/format/ecs_fields.csv");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &subset).unwrap();
    } else {
        assert_eq!(std::fs::read_to_string(&path).unwrap(), subset);
    }
}
