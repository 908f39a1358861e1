use super::json_writer::{any_needs_escape, needs_escape, next_escape};
use super::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn org() -> std::sync::Arc<OrgRef> {
    std::sync::Arc::new(OrgRef::new(Provider::Gh, "acme"))
}

#[test]
fn a_value_that_is_no_event_comes_back_unchanged() {
    for bad in [
        json!({"action": "user.login", "zeta": [1]}),
        json!({"timestamp": "2024-07-01T09:45:30.656Z", "action": ""}),
        json!([1, 2]),
    ] {
        let (_, back) = AuditEvent::from_value_or_back(bad.clone()).unwrap_err();
        assert_eq!(back, bad);
    }
    let good = json!({"timestamp": 1, "action": "a"});
    assert!(AuditEvent::from_value_or_back(good).is_ok());
}

#[test]
fn parses_object_actor_and_rfc3339() {
    let e = AuditEvent::from_value(json!({
        "actor": {"email": "a@b.com", "role": "organizationAdmin"},
        "action": "user.login", "result": "succeed",
        "timestamp": "2024-07-01T09:45:30.656Z", "source": "UI",
        "repositoryName": "r", "entityId": "42", "details": {"x": 1}, "future": [1, 2]
    }))
    .unwrap();
    assert_eq!(e.timestamp_ms, 1_719_827_130_656);
    assert_eq!(e.actor_email().as_deref(), Some("a@b.com"));
    assert_eq!(e.actor_role().as_deref(), Some("organizationAdmin"));
    assert_eq!(e.entity_id().as_deref(), Some("42"));
    assert_eq!(e.raw["future"], json!([1, 2]));
}

#[test]
fn parses_string_actor_epoch_ms_and_request_details() {
    let e = AuditEvent::from_value(json!({
        "actor": "a@b.com", "action": "x.y", "timestamp": 1_719_827_130_656i64,
        "requestDetails": "text"
    }))
    .unwrap();
    assert_eq!(e.timestamp_ms, 1_719_827_130_656);
    assert_eq!(e.actor_email().as_deref(), Some("a@b.com"));
    assert_eq!(e.actor_role(), None);
    assert_eq!(e.details(), Some(&json!("text")));
}

#[test]
fn rejects_unusable_events_with_a_reason() {
    assert_eq!(
        AuditEvent::from_value(json!([1])),
        Err(EventParseError::NotAnObject("an array"))
    );
    assert_eq!(
        AuditEvent::from_value(json!({"action": "a"})),
        Err(EventParseError::MissingTimestamp)
    );
    assert!(matches!(
        AuditEvent::from_value(json!({"action": "a", "timestamp": "yesterday"})),
        Err(EventParseError::BadTimestamp(_))
    ));
    assert_eq!(
        AuditEvent::from_value(json!({"timestamp": 1})),
        Err(EventParseError::MissingAction)
    );
}

#[test]
fn canonical_json_ignores_key_order() {
    let a = AuditEvent::from_value(json!({"timestamp": 1, "action": "a", "d": {"y": 1, "x": 2}}))
        .unwrap();
    let b = AuditEvent::from_value(json!({"d": {"x": 2, "y": 1}, "action": "a", "timestamp": 1}))
        .unwrap();
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert_eq!(
        String::from_utf8(a.canonical_json()).unwrap(),
        r#"{"action":"a","d":{"x":2,"y":1},"timestamp":1}"#
    );
}

#[test]
fn identical_events_get_distinct_stable_ids_regardless_of_order() {
    let e1 = AuditEvent::from_value(json!({"timestamp": 5, "action": "a"})).unwrap();
    let e2 = AuditEvent::from_value(json!({"timestamp": 5, "action": "b"})).unwrap();
    let ids = |v: Vec<AuditEvent>| -> Vec<String> {
        let mut ids: Vec<String> = identify(&org(), v, 0)
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let first = ids(vec![e1.clone(), e2.clone(), e1.clone()]);
    let second = ids(vec![e1.clone(), e1.clone(), e2.clone()]);
    assert_eq!(first, second);
    assert_eq!(first.len(), 3);
    assert_eq!(
        first
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
}

#[test]
fn streamed_occurrences_give_the_ids_of_a_batch() {
    let e1 = AuditEvent::from_value(json!({"timestamp": 5, "action": "a"})).unwrap();
    let e2 = AuditEvent::from_value(json!({"timestamp": 4, "action": "b"})).unwrap();
    let input = vec![e1.clone(), e2.clone(), e1.clone(), e1.clone()];
    let mut batch: Vec<String> = identify(&org(), input.clone(), 0)
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    let mut ident = StreamIdentifier::default();
    let mut streamed: Vec<String> = input
        .iter()
        .map(|e| {
            let seed = IdSeed::new(&org(), &e.canonical_json());
            let (first, key) = seed.first();
            let occurrence = ident.occurrence(key);
            assert_eq!(first, seed.id(0));
            seed.id(occurrence).to_string()
        })
        .collect();
    batch.sort();
    streamed.sort();
    assert_eq!(batch, streamed);
}

/// Any JSON value, strings with every character that needs an escape.
pub(crate) fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[\\x00-\\x20\"\\\\a-z\u{7f}é€]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[\\x00-\\x20\"a-z]*", inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn the_word_check_finds_every_byte_that_needs_an_escape_wherever_it_is() {
    for byte in 0..=255u8 {
        for at in 0..8 {
            // Neighbours that need no escape, and ones just above and below the ranges.
            for filler in [b'a', 0x21, 0x5d, 0xff] {
                let mut word = [filler; 8];
                word[at] = byte;
                assert_eq!(
                    any_needs_escape(u64::from_le_bytes(word)),
                    needs_escape(byte),
                    "byte {byte:#04x} at {at} among {filler:#04x}"
                );
            }
        }
    }
}

#[test]
fn the_first_byte_that_needs_an_escape_is_found_whatever_follows_it() {
    // Strings of 1 to 19 bytes (full words and padded tails), one byte that needs an escape at
    // every place, followed by bytes that need one or not (a false mark could only follow it).
    for len in 1..20 {
        for at in 0..len {
            for byte in (0..=255u8).filter(|&b| needs_escape(b)) {
                for after in [b'a', 0x00, 0x1f, 0x20, b'"', b'\\', 0xff] {
                    let mut s = vec![b'x'; len];
                    s[at] = byte;
                    s[at + 1..].fill(after);
                    assert_eq!(next_escape(&s, 0), Some(at), "{s:?}");
                    assert_eq!(
                        next_escape(&s, at + 1),
                        s[at + 1..]
                            .iter()
                            .position(|&b| needs_escape(b))
                            .map(|p| at + 1 + p),
                        "{s:?}"
                    );
                }
            }
        }
        assert_eq!(next_escape(&vec![0x21; len], 0), None);
    }
}

proptest::proptest! {
    #[test]
    fn the_json_writers_write_what_serde_json_writes(v in arb_json()) {
        let mut out = Vec::new();
        write_json(&v, &mut out);
        proptest::prop_assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        // Canonical JSON as the agent wrote it before: serde_json with sorted keys.
        fn sorted(v: &Value) -> serde_json::Value {
            match v {
                Value::Object(m) => {
                    let mut keys: Vec<_> = m.iter().collect();
                    keys.sort_by(|a, b| a.0.cmp(b.0));
                    Value::Object(keys.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
                }
                Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        let mut canon = Vec::new();
        write_canonical(&v, &mut canon);
        proptest::prop_assert_eq!(
            String::from_utf8(canon).unwrap(),
            serde_json::to_string(&sorted(&v)).unwrap()
        );
    }
}

#[test]
fn ids_are_lowercase_hex_of_the_sha256() {
    let org = OrgRef::new(Provider::Gh, "acme");
    let id = EventId::compute(&org, b"{}", 2);
    let mut h = Sha256::new();
    h.update(b"gh/acme\n{}\n2");
    assert_eq!(id.as_str(), hex::encode(h.finalize()));
}

#[test]
fn id_depends_on_organization() {
    let c = b"{}";
    let a = EventId::compute(&OrgRef::new(Provider::Gh, "acme"), c, 0);
    let b = EventId::compute(&OrgRef::new(Provider::Gl, "acme"), c, 0);
    assert_ne!(a, b);
    assert!(EventId::from_hex(a.as_str()).is_some());
}
