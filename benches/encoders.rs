//! Encoder throughput: events per second for each format over ~1000 varied events.
//! `cargo bench --bench encoders` (add `-- --quick` for a short run).

use codacy_audit_forwarder::event::{identify, AuditEvent, IdentifiedEvent, OrgRef, Provider};
use codacy_audit_forwarder::format::{catalog, Encoder, Format, FormatOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use std::sync::Arc;

/// A realistic corpus: every documented action plus unknown ones, both actor shapes, all results,
/// optional fields present or not, details of every shape, some long and CEF-hostile text.
fn corpus(n: usize) -> Vec<IdentifiedEvent> {
    let roles = [
        "organizationAdmin",
        "organizationManager",
        "repositoryWrite",
        "repositoryAdmin",
    ];
    let results = ["succeed", "succeed", "succeed", "failed", "rejected"];
    let events = (0..n)
        .map(|i| {
            let action = catalog::ACTIONS
                .get(i % (catalog::ACTIONS.len() + 3))
                .map_or_else(|| format!("organizations.future{i}.update"), |a| a.action.to_string());
            let mut ev = json!({
                "actor": if i % 7 == 0 { json!(format!("user{i}@example.com")) }
                         else { json!({"email": format!("user{i}@example.com"), "role": roles[i % 4]}) },
                "action": action,
                "result": results[i % 5],
                "timestamp": 1_719_827_130_656i64 + (i as i64) * 1_000,
                "source": if i % 2 == 0 { "UI" } else { "API" },
            });
            let m = ev.as_object_mut().unwrap();
            if i % 3 != 0 {
                m.insert("repositoryName".into(), json!(format!("service-{}", i % 50)));
                m.insert("entityId".into(), json!(format!("{}", 10_000 + i)));
            }
            m.insert(
                "description".into(),
                match i % 10 {
                    0 => json!("set threshold=5 | path C:\\repo\\src\r\nsecond line"),
                    1 => json!("é".repeat(700)),
                    _ => json!(format!("Settings of service-{} updated by user{i}", i % 50)),
                },
            );
            let details: Value = match i % 4 {
                0 => json!({"before": {"enabled": false, "threshold": i}, "after": {"enabled": true}}),
                1 => json!("free text details"),
                2 => json!(["a@example.com", "b@example.com"]),
                _ => Value::Null,
            };
            m.insert("details".into(), details);
            AuditEvent::from_value(ev).unwrap()
        })
        .collect();
    identify(
        &Arc::new(OrgRef::new(Provider::Gh, "acme")),
        events,
        1_735_689_600_000,
    )
}

fn encoders(c: &mut Criterion) {
    let events = corpus(1000);
    let mut group = c.benchmark_group("encode_1000_events");
    group.throughput(Throughput::Elements(events.len() as u64));
    for (label, format, original) in [
        ("json", Format::Json, false),
        ("ecs", Format::Ecs, false),
        ("ecs_original", Format::Ecs, true),
        ("cef", Format::Cef, false),
    ] {
        let encoder = Encoder::new(
            format,
            FormatOptions {
                ecs_namespace: "default".into(),
                include_original: original,
                hostname: "fwd01".into(),
                timestamp_field: false,
            },
        );
        let mut out = Vec::with_capacity(4 << 20);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                out.clear();
                for e in &events {
                    encoder.encode(e, &mut out);
                    out.push(b'\n');
                }
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
