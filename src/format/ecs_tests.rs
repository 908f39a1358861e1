use super::*;
use crate::event::{identify, AuditEvent, OrgRef, Provider};
use serde_json::json;
use std::sync::Arc;

fn doc(v: Value, include_original: bool) -> Value {
    let org = Arc::new(OrgRef::new(Provider::Gh, "acme"));
    let ev = identify(
        &org,
        vec![AuditEvent::from_value(v).unwrap()],
        1_700_000_000_000,
    )
    .remove(0);
    let opts = FormatOptions {
        ecs_namespace: "prod".into(),
        include_original,
        hostname: "h".into(),
        timestamp_field: false,
    };
    let mut out = Vec::new();
    encode(&ev, &opts, &mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn the_subset_defines_every_field_used_and_nothing_else() {
    let defs = field_defs();
    for f in ECS_FIELDS_USED {
        assert!(defs.contains_key(f), "{f} missing from ecs_fields.csv");
    }
    assert_eq!(defs.len(), ECS_FIELDS_USED.len());
    assert!(defs["event.category"].array);
    assert_eq!(defs["event.severity"].field_type, "long");
}

#[test]
fn maps_the_sample_event() {
    let d = doc(
        json!({"actor": {"email": "a@b.com", "role": "organizationAdmin"},
               "action": "repositories.integrations.providersettings.update",
               "result": "succeed", "timestamp": "2024-07-01T09:45:30.656Z", "source": "UI",
               "repositoryName": "service-repo", "entityId": "42", "details": {"k": [1]}}),
        false,
    );
    assert_eq!(d["@timestamp"], "2024-07-01T09:45:30.656Z");
    assert_eq!(d["event"]["created"], "2023-11-14T22:13:20.000Z");
    assert_eq!(d["event"]["category"], json!(["configuration"]));
    assert_eq!(d["event"]["type"], json!(["change"]));
    assert_eq!(d["event"]["outcome"], "success");
    assert_eq!(
        d["message"],
        "Git provider integration settings for the repository updated"
    );
    assert_eq!(d["user"]["roles"], json!(["organizationAdmin"]));
    assert_eq!(d["related"]["user"], json!(["a@b.com"]));
    assert_eq!(d["organization"], json!({"id": "gh/acme", "name": "acme"}));
    assert_eq!(d["data_stream"]["namespace"], "prod");
    assert_eq!(d["codacy"]["audit"]["details"], json!({"k": [1]}));
    assert_eq!(d["event"].get("original"), None);
    assert_eq!(check_document(&d), Vec::<String>::new());
}

#[test]
fn original_only_on_request_and_details_split_by_shape() {
    let raw = json!({"timestamp": 5, "action": "x.y", "details": "text", "z": 1});
    let d = doc(raw.clone(), true);
    let original: Value = serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original, raw);
    assert_eq!(d["codacy"]["audit"]["details_text"], "text");
    assert_eq!(d["codacy"]["audit"].get("details"), None);
    let d = doc(
        json!({"timestamp": 5, "action": "x.y", "details": [1, 2]}),
        false,
    );
    assert_eq!(d["codacy"]["audit"]["details_text"], "[1,2]");
    assert_eq!(check_document(&d), Vec::<String>::new());
}

#[test]
fn failed_and_odd_results() {
    let d = doc(
        json!({"timestamp": 5, "action": "user.login", "result": "rejected", "actor": "a@b"}),
        false,
    );
    assert_eq!(d["event"]["outcome"], "failure");
    assert_eq!(d["event"]["category"], json!(["authentication"]));
    assert_eq!(d["codacy"]["audit"]["result"], "rejected");
    assert_eq!(d["user"]["email"], "a@b");
    let d = doc(
        json!({"timestamp": 5, "action": "x.y", "result": "odd"}),
        false,
    );
    assert_eq!(d["event"]["outcome"], "unknown");
    let d = doc(json!({"timestamp": 5, "action": "x.y"}), false);
    assert_eq!(d["event"].get("outcome"), None);
    assert_eq!(d["message"], "x.y");
    assert_eq!(d.get("user"), None);
}

#[test]
fn far_future_timestamps_stay_valid() {
    let d = doc(
        json!({"timestamp": 300_000_000_000_000i64, "action": "a"}),
        false,
    );
    assert_eq!(d["@timestamp"], json!(300_000_000_000_000i64));
    assert_eq!(check_document(&d), Vec::<String>::new());
}

#[test]
fn the_checker_catches_mistakes() {
    let mut d = doc(json!({"timestamp": 5, "action": "a.create"}), false);
    assert!(check_document(&d).is_empty());
    d["event"]["type"] = json!(["admin"]);
    d["user"] = json!({"nickname": "x", "email": ["a", "b"]});
    d["event"]["created"] = json!("yesterday");
    d["event"]["outcome"] = json!("ok");
    let problems = check_document(&d).join("\n");
    for needle in [
        "user.nickname is not an ECS 8.17 field",
        "user.email is not an array field",
        "event.created = \"yesterday\"",
        "event.outcome \"ok\"",
        "\"admin\" is not expected",
    ] {
        assert!(problems.contains(needle), "{needle} not in {problems}");
    }
}

/// chrono's RFC 3339 text, as `write_date` wrote it before.
fn chrono_date(ms: i64) -> String {
    use chrono::Datelike;
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) if (0..=9999).contains(&t.year()) => format!(
            "\"{}\"",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        _ => ms.to_string(),
    }
}

#[test]
fn dates_are_chronos_text_at_the_edges() {
    let year_0 = -62_167_219_200_000;
    let after_9999 = 253_402_300_800_000;
    for ms in [
        0,
        -1,
        1,
        951_782_400_000,
        1_719_827_130_656,
        year_0,
        year_0 - 1,
        after_9999 - 1,
        after_9999,
        i64::MIN,
        i64::MAX,
    ] {
        let mut out = Vec::new();
        write_date(&mut out, ms);
        assert_eq!(String::from_utf8(out).unwrap(), chrono_date(ms), "{ms}");
    }
}

proptest::proptest! {
    #[test]
    fn dates_are_chronos_text(ms in -70_000_000_000_000i64..260_000_000_000_000) {
        let mut out = Vec::new();
        write_date(&mut out, ms);
        proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), chrono_date(ms));
    }
}
