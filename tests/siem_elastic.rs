//! Elastic assets (packaging/elastic): every field the agent's ECS encoder writes is declared in
//! the package's fields/*.yml (Codacy's own fields explicitly, ECS ones as `external: ecs` that
//! really are ECS 8.17 fields); the index template's mappings agree with those declarations;
//! the dashboard only uses declared fields; `sample_event.json` is what the agent writes.

#[path = "common/siem.rs"]
mod siem;

use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::format::{ecs, Encoder, Format, FormatOptions};
use serde_json::Value;
use siem::*;
use std::collections::{BTreeMap, BTreeSet};

const PKG: &str = "packaging/elastic/codacy";
const SAMPLE: &str = "packaging/elastic/codacy/data_stream/audit/sample_event.json";

/// `- name: X` entries of fields/*.yml: name -> type (`external:ecs` for ECS references).
fn declared() -> BTreeMap<String, String> {
    let dir = root().join(PKG).join("data_stream/audit/fields");
    let mut out = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut name: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(n) = line.strip_prefix("- name: ") {
                name = Some(n.trim_matches('"').to_string());
            } else if let (Some(n), Some(t)) = (&name, line.strip_prefix("type: ")) {
                assert!(
                    out.insert(n.clone(), t.to_string()).is_none(),
                    "{n} declared twice"
                );
            } else if let (Some(n), Some("ecs")) = (&name, line.strip_prefix("external: ")) {
                assert!(
                    out.insert(n.clone(), "external:ecs".into()).is_none(),
                    "{n} declared twice"
                );
            }
        }
    }
    out
}

/// Every leaf field of an ECS document; flattened `codacy.audit.details` counts as one field.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if prefix != "codacy.audit.details" => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The ECS documents the agent writes for every fixture event we have (the format golden
/// events and the detections' attack and benign days), with and without `event.original`.
fn documents() -> Vec<Value> {
    let org = OrgRef::new(Provider::Gh, "acme");
    let mut docs = Vec::new();
    for file in [
        "tests/fixtures/formats/events.ndjson",
        "detections/tests/attack-day.ndjson",
        "detections/tests/benign-day.ndjson",
    ] {
        for include_original in [false, true] {
            let options = FormatOptions {
                include_original,
                ..FormatOptions::default()
            };
            let encoder = Encoder::new(Format::Ecs, options);
            let mut out = Vec::new();
            codacy_audit_forwarder::preview::preview(
                &encoder,
                &org,
                read(file).as_bytes(),
                &mut out,
                1_735_689_600_000,
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
            for line in String::from_utf8(out).unwrap().lines() {
                docs.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    docs
}

fn ecs_field_names() -> BTreeSet<String> {
    // The repository's ECS 8.17 subset (the rows the encoder may use) is enough: a declared
    // `external: ecs` field must be one of them.
    ecs::field_defs().keys().map(|k| k.to_string()).collect()
}

#[test]
fn every_field_the_ecs_encoder_writes_is_declared_in_the_package() {
    let declared = declared();
    let ecs_fields = ecs_field_names();
    let mut emitted = BTreeSet::new();
    let docs = documents();
    assert!(docs.len() > 100, "{}", docs.len());
    for d in &docs {
        leaves(d, "", &mut emitted);
    }
    for must in [
        "codacy.audit.details",
        "codacy.audit.details_text",
        "event.original",
        "user.roles",
    ] {
        assert!(
            emitted.contains(must),
            "the fixtures never produce {must}; the check would miss it"
        );
    }
    let undeclared: Vec<&String> = emitted
        .iter()
        .filter(|f| !declared.contains_key(*f))
        .collect();
    assert!(
        undeclared.is_empty(),
        "the agent writes fields {PKG}/data_stream/audit/fields/*.yml does not declare: {undeclared:?} \
         (ECS fields go in ecs.yml as `external: ecs`, codacy.* ones in fields.yml with a type)"
    );
    for (name, ty) in &declared {
        if ty == "external:ecs" {
            assert!(
                ecs_fields.contains(name),
                "{name} is declared `external: ecs` but is no ECS 8.17 field the agent knows"
            );
        } else if !name.starts_with("codacy.") {
            assert!(
                ecs_fields.contains(name)
                    || name.starts_with("data_stream.")
                    || name == "@timestamp",
                "{name}"
            );
        }
    }
    // Everything outside codacy.* is ECS (the encoder's own invariant, restated for the package).
    for f in &emitted {
        assert!(
            f.starts_with("codacy.") || ecs_fields.contains(f),
            "{f} is neither ECS nor codacy.*"
        );
    }
}

#[test]
fn template_mappings_agree_with_the_field_declarations() {
    let declared = declared();
    let component: Value =
        serde_json::from_str(&read("packaging/elastic/component_template.json")).unwrap();
    let props = &component["template"]["mappings"]["properties"];
    let mut mapped = BTreeMap::new();
    fn walk(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
        for (k, x) in v.as_object().unwrap() {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match x.get("properties") {
                Some(inner) => walk(inner, &p, out),
                None => {
                    out.insert(p, x["type"].as_str().unwrap().to_string());
                }
            }
        }
    }
    walk(props, "", &mut mapped);
    let codacy_declared: BTreeMap<&String, &String> = declared
        .iter()
        .filter(|(k, _)| k.starts_with("codacy."))
        .collect();
    let codacy_mapped: BTreeMap<&String, &String> = mapped
        .iter()
        .filter(|(k, _)| k.starts_with("codacy."))
        .collect();
    assert_eq!(
        codacy_declared, codacy_mapped,
        "fields.yml and component_template.json disagree"
    );
    for (k, t) in &mapped {
        if !k.starts_with("codacy.") {
            assert_eq!(declared.get(k), Some(t), "{k}");
        }
    }
    assert_eq!(declared["event.dataset"], "constant_keyword");
    assert_eq!(declared["data_stream.dataset"], "constant_keyword");

    let index: Value =
        serde_json::from_str(&read("packaging/elastic/index_template.json")).unwrap();
    assert_eq!(
        index["index_patterns"],
        serde_json::json!(["logs-codacy.audit-*"])
    );
    assert!(index["data_stream"].is_object());
    assert!(
        index["priority"].as_u64().unwrap() > 100,
        "must beat the built-in logs template"
    );
    let composed: Vec<&str> = index["composed_of"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for t in ["logs@mappings", "ecs@mappings", "logs-codacy.audit@package"] {
        assert!(composed.contains(&t), "{t} not in composed_of");
    }
    // The README installs the component under the name the index template composes.
    let readme = read("packaging/elastic/README.md");
    assert!(readme.contains("PUT \"$ES/_component_template/logs-codacy.audit@package\""));
    assert!(readme.contains("PUT \"$ES/_index_template/logs-codacy.audit\""));
}

#[test]
fn sample_event_is_what_the_agent_writes_for_a_fixture_event() {
    // The first golden event (details object, role, repository), read an hour after it happened.
    let first = read("tests/fixtures/formats/events.ndjson")
        .lines()
        .next()
        .unwrap()
        .to_string();
    let encoder = Encoder::new(Format::Ecs, FormatOptions::default());
    let mut out = Vec::new();
    codacy_audit_forwarder::preview::preview(
        &encoder,
        &OrgRef::new(Provider::Gh, "acme"),
        first.as_bytes(),
        &mut out,
        1_719_830_730_656,
    )
    .unwrap();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = root().join(SAMPLE);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "{SAMPLE} is not what the agent writes; regenerate with UPDATE_GOLDEN=1 cargo test --test siem_elastic\n--- agent:\n{pretty}"
    );
    assert!(ecs::check_document(&doc).is_empty());
}

#[test]
fn package_layout_and_dashboard_fields() {
    let manifest = read(&format!("{PKG}/manifest.yml"));
    for key in [
        "format_version:",
        "name: codacy",
        "title:",
        "description:",
        "version:",
        "type:",
        "owner:",
    ] {
        assert!(
            manifest.lines().any(|l| l.starts_with(key)),
            "manifest.yml lacks {key}"
        );
    }
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap();
    assert!(
        read(&format!("{PKG}/changelog.yml")).contains(&format!("- version: \"{version}\"")),
        "changelog lacks {version}"
    );
    assert!(read(&format!("{PKG}/data_stream/audit/manifest.yml")).contains("title:"));
    assert!(!read(&format!("{PKG}/docs/README.md")).is_empty());
    for line in manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- src: "))
    {
        assert!(
            root().join(PKG).join(line.trim_start_matches('/')).exists(),
            "icon {line}"
        );
    }

    let declared = declared();
    let dir = root().join(PKG).join("kibana/dashboard");
    let mut dashboards = 0;
    for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        dashboards += 1;
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(d["type"], "dashboard");
        assert_eq!(
            f.file_stem().unwrap().to_str(),
            d["id"].as_str(),
            "file name must be the saved-object id"
        );
        let panels: Vec<Value> =
            serde_json::from_str(d["attributes"]["panelsJSON"].as_str().unwrap()).unwrap();
        assert!(panels.len() >= 4);
        let refs: BTreeSet<&str> = d["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for p in &panels {
            let attrs = &p["embeddableConfig"]["attributes"];
            let pid = p["panelIndex"].as_str().unwrap();
            for r in attrs["references"].as_array().unwrap() {
                let name = format!("{pid}:{}", r["name"].as_str().unwrap());
                assert!(
                    refs.contains(name.as_str()),
                    "dashboard references lack {name}"
                );
            }
            let layers = attrs["state"]["datasourceStates"]["formBased"]["layers"]
                .as_object()
                .unwrap();
            for layer in layers.values() {
                for col in layer["columns"].as_object().unwrap().values() {
                    let field = col["sourceField"].as_str().unwrap();
                    assert!(
                        field == "___records___" || declared.contains_key(field),
                        "panel {pid} uses undeclared field {field}"
                    );
                }
            }
            // Fields named in the panel's KQL query.
            let query = attrs["state"]["query"]["query"].as_str().unwrap();
            for field in query
                .split_whitespace()
                .filter(|w| w.contains('.') && !w.starts_with('"'))
            {
                assert!(
                    declared.contains_key(field),
                    "panel {pid} queries undeclared field {field}"
                );
            }
        }
    }
    assert!(dashboards >= 1);
}
