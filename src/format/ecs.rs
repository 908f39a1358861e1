//! `format = "ecs"`: one Elastic Common Schema 8.17 document per event.
//!
//! Field choices follow the ECS 8.17 field reference (event, user, source, organization and
//! related fieldsets); category/type come from the action catalog (`crate::format::catalog`). Every field outside `codacy.*` is an ECS 8.17 field with a
//! matching type: `ecs_fields.csv` next to this file holds the rows of ECS's `fields.csv` (v8.17.0)
//! for exactly the fields in [`ECS_FIELDS_USED`], and [`check_document`] validates a document
//! against it (the tests run it on every output).
//!
//! Codacy-specific data lives under `codacy.audit.*`. `details` is split by shape so that one index
//! never sees both an object and a string under the same name (a mapping conflict Elasticsearch
//! would reject): an object goes to `codacy.audit.details` (map it as `flattened`), any other
//! value to `codacy.audit.details_text` (a string as is, arrays/numbers/booleans as compact JSON).

use super::catalog;
use super::date;
use super::FormatOptions;
use crate::event::{
    write_json, write_json_map, write_json_str, write_json_str_parts, AuditEvent, IdentifiedEvent,
};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

/// `ecs.version` (pinned to 8.17.0).
pub const ECS_VERSION: &str = "8.17.0";
/// `event.module`; `event.dataset` and `data_stream.dataset` are [`DATASET`] (ECS: they must be equal).
pub const MODULE: &str = "codacy";
pub const DATASET: &str = "codacy.audit";

/// The ECS fields this encoder can emit; `ecs_fields.csv` holds their upstream definitions.
pub const ECS_FIELDS_USED: &[&str] = &[
    "@timestamp",
    "agent.name",
    "agent.type",
    "agent.version",
    "data_stream.dataset",
    "data_stream.namespace",
    "data_stream.type",
    "ecs.version",
    "event.action",
    "event.category",
    "event.created",
    "event.dataset",
    "event.id",
    "event.kind",
    "event.module",
    "event.original",
    "event.outcome",
    "event.provider",
    "event.severity",
    "event.type",
    "message",
    "organization.id",
    "organization.name",
    "related.user",
    "tags",
    "user.email",
    "user.name",
    "user.roles",
];

/// The checked-in subset of ECS 8.17 `fields.csv` (rows verbatim, header included).
pub const ECS_FIELDS_CSV: &str = include_str!("ecs_fields.csv");

/// RFC 3339 with milliseconds and `Z` in quotes; epoch milliseconds (which Elasticsearch's
/// default date format also accepts) for instants outside years 0-9999, which RFC 3339 cannot
/// write.
fn write_date(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    if date::write_rfc3339_millis(out, ms) {
        out.push(b'"');
    } else {
        out.pop();
        let _ = write!(out, "{ms}");
    }
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// `succeed` -> success, `failed`/`rejected` -> failure (ECS event.outcome), another value -> unknown;
/// no result -> no outcome.
pub fn outcome(result: Option<&str>) -> Option<&'static str> {
    match result? {
        "succeed" => Some("success"),
        "failed" | "rejected" => Some("failure"),
        _ => Some("unknown"),
    }
}

/// Writes a JSON object's members one by one, commas included.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Starts member `key` (a constant that needs no escaping); the caller writes the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, key: &str, value: &str) {
        write_json_str(self.key(key), value);
    }

    fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn strs(&mut self, key: &str, values: &[&str]) {
        let out = self.key(key);
        out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, v);
        }
        out.push(b']');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Appends the ECS document for `event` to `out` (one line, no trailing newline). Written
/// directly rather than through serde: several times faster, and the JSON writer escapes control
/// characters, so no raw newline.
pub fn encode(event: &IdentifiedEvent, options: &FormatOptions, out: &mut Vec<u8>) {
    let ev = &event.event;
    let action = ev.action();
    let (result, actor_email, actor_role) = (ev.result(), ev.actor_email(), ev.actor_role());
    let description = ev.description();
    let class = catalog::classify(action, result.as_deref());
    let email = nonempty(actor_email.as_deref());
    let role = nonempty(actor_role.as_deref());

    let mut doc = Obj::open(out);
    write_date(doc.key("@timestamp"), ev.timestamp_ms);
    let mut ecs = Obj::open(doc.key("ecs"));
    ecs.str("version", ECS_VERSION);
    ecs.close();
    doc.str(
        "message",
        nonempty(description.as_deref())
            .or(class.description)
            .unwrap_or(&class.name),
    );

    let mut e = Obj::open(doc.key("event"));
    e.str("kind", "event");
    e.strs("category", class.categories);
    e.strs("type", class.types);
    e.str("action", action);
    e.opt("outcome", outcome(result.as_deref()));
    e.key("severity")
        .extend_from_slice(itoa::Buffer::new().format(class.severity).as_bytes());
    e.str("module", MODULE);
    e.str("dataset", DATASET);
    e.str("provider", MODULE);
    e.str("id", event.id.as_str());
    write_date(e.key("created"), event.fetched_at_ms);
    if options.include_original {
        // The event exactly as received (fields in the order received), compact.
        let mut raw = Vec::with_capacity(512);
        write_json_map(&ev.raw, &mut raw);
        e.str("original", &String::from_utf8_lossy(&raw));
    }
    e.close();

    // Only an email is available, so it is both the name and the email.
    if email.is_some() || role.is_some() {
        let mut user = Obj::open(doc.key("user"));
        user.opt("email", email);
        user.opt("name", email);
        if let Some(r) = role {
            user.strs("roles", &[r]);
        }
        user.close();
    }
    if let Some(e) = email {
        let mut related = Obj::open(doc.key("related"));
        related.strs("user", &[e]);
        related.close();
    }
    let mut org = Obj::open(doc.key("organization"));
    // `provider/name` (OrgRef::key) without building it for every document.
    let (provider, name) = (event.org.provider.as_str(), &event.org.name);
    write_json_str_parts(org.key("id"), &[provider, "/", name]);
    org.str("name", &event.org.name);
    org.close();
    let mut agent = Obj::open(doc.key("agent"));
    agent.str("name", super::AGENT_NAME);
    agent.str("type", super::AGENT_NAME);
    agent.str("version", super::AGENT_VERSION);
    agent.close();
    let mut ds = Obj::open(doc.key("data_stream"));
    ds.str("type", "logs");
    ds.str("dataset", DATASET);
    ds.str("namespace", &options.ecs_namespace);
    ds.close();
    doc.strs("tags", &["codacy", "audit"]);

    write_codacy(&mut doc, ev, result.as_deref(), actor_role.as_deref());
    doc.close();
}

/// `codacy.audit.*`: Codacy's own fields, as received (empty strings included); nothing when the
/// event has none of them.
fn write_codacy(doc: &mut Obj, ev: &AuditEvent, result: Option<&str>, actor_role: Option<&str>) {
    let (repository, entity_id, source) = (ev.repository(), ev.entity_id(), ev.source());
    let details = ev.details();
    let has_audit = repository.is_some()
        || entity_id.is_some()
        || source.is_some()
        || result.is_some()
        || actor_role.is_some()
        || details.is_some();
    if !has_audit {
        return;
    }
    let mut codacy = Obj::open(doc.key("codacy"));
    let mut audit = Obj::open(codacy.key("audit"));
    audit.opt("repository", repository.as_deref());
    audit.opt("entity_id", entity_id.as_deref());
    audit.opt("source", source.as_deref());
    audit.opt("result", result);
    audit.opt("role", actor_role);
    match details {
        Some(d @ Value::Object(_)) => write_json(d, audit.key("details")),
        Some(Value::String(s)) => audit.str("details_text", s),
        Some(other) => {
            let mut text = Vec::with_capacity(64);
            write_json(other, &mut text);
            audit.str("details_text", &String::from_utf8_lossy(&text));
        }
        None => {}
    }
    audit.close();
    codacy.close();
}

/// The ECS document for `event` as a JSON value.
pub fn document(event: &IdentifiedEvent, options: &FormatOptions) -> Value {
    let mut out = Vec::with_capacity(1024);
    encode(event, options, &mut out);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

/// `data_stream.namespace` rules: lowercase, no `-`, at most 100 characters, none of
/// `\ / * ? " < > | , #` or space.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 100 {
        return Err(format!("{ns:?} must be 1 to 100 characters"));
    }
    if let Some(c) = ns.chars().find(|c| {
        c.is_uppercase()
            || matches!(
                c,
                '-' | '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' '
            )
    }) {
        return Err(format!(
            "{ns:?} contains {c:?}; a data stream namespace is lowercase without - \\ / * ? \" < > | , # or spaces"
        ));
    }
    Ok(())
}

/// One row of the ECS field subset: type and whether ECS normalises it to an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDef {
    pub field_type: &'static str,
    pub array: bool,
}

/// The field definitions from `ecs_fields.csv`, by dotted name.
pub fn field_defs() -> &'static HashMap<&'static str, FieldDef> {
    static DEFS: OnceLock<HashMap<&'static str, FieldDef>> = OnceLock::new();
    DEFS.get_or_init(|| {
        // Columns: ECS_Version,Indexed,Field_Set,Field,Type,Level,Normalization,Example,Description.
        // The first seven never contain a comma; only Example/Description may be quoted.
        ECS_FIELDS_CSV
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.splitn(8, ',').collect();
                (cols.len() == 8).then(|| {
                    (
                        cols[3],
                        FieldDef {
                            field_type: cols[4],
                            array: cols[6].contains("array"),
                        },
                    )
                })
            })
            .collect()
    })
}

/// Checks a document against ECS 8.17: every leaf outside `codacy.*` is a field of the subset
/// with a value of its type (arrays only where ECS normalises to an array), and the
/// categorisation fields hold allowed values (ECS `schemas/event.yml`). Returns every problem found.
pub fn check_document(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match doc {
        Value::Object(map) => walk(map, "", &mut problems),
        _ => problems.push("the document is not a JSON object".into()),
    }
    let get = |path: &str| path.split('.').try_fold(doc, |v, k| v.get(k));
    let as_strs = |path: &str| -> Vec<&str> {
        match get(path) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    };
    const KINDS: &[&str] = &[
        "alert",
        "asset",
        "enrichment",
        "event",
        "metric",
        "state",
        "pipeline_error",
        "signal",
    ];
    match get("event.kind").and_then(Value::as_str) {
        Some(k) if KINDS.contains(&k) => {}
        other => problems.push(format!("event.kind {other:?} is not allowed")),
    }
    if let Some(o) = get("event.outcome") {
        if !matches!(o.as_str(), Some("success" | "failure" | "unknown")) {
            problems.push(format!("event.outcome {o} is not allowed"));
        }
    }
    if let Err(e) = catalog::check_ecs_pairs(&as_strs("event.category"), &as_strs("event.type")) {
        problems.push(e);
    }
    if get("event.dataset") != get("data_stream.dataset") {
        problems.push("event.dataset must equal data_stream.dataset".into());
    }
    for key in ["data_stream.dataset", "data_stream.namespace"] {
        match get(key).and_then(Value::as_str) {
            Some(s) => {
                if let Err(e) = validate_namespace(s) {
                    problems.push(format!("{key}: {e}"));
                }
            }
            None => problems.push(format!("{key} is missing")),
        }
    }
    if get("@timestamp").is_none() {
        problems.push("@timestamp is missing".into());
    }
    problems
}

fn walk(map: &Map<String, Value>, prefix: &str, problems: &mut Vec<String>) {
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if path == "codacy" {
            continue; // custom namespace, not ECS
        }
        match (v, field_defs().get(path.as_str())) {
            (Value::Object(inner), None) => walk(inner, &path, problems),
            (_, None) => problems.push(format!("{path} is not an ECS 8.17 field")),
            (Value::Array(items), Some(def)) => {
                if !def.array {
                    problems.push(format!("{path} is not an array field in ECS 8.17"));
                }
                for item in items {
                    check_type(&path, item, *def, problems);
                }
            }
            (v, Some(def)) => check_type(&path, v, *def, problems),
        }
    }
}

fn check_type(path: &str, v: &Value, def: FieldDef, problems: &mut Vec<String>) {
    let ok = match def.field_type {
        "keyword" | "constant_keyword" | "match_only_text" | "wildcard" | "text" => v.is_string(),
        "long" => v.is_i64(),
        "date" => match v {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            Value::Number(n) => n.is_i64(),
            _ => false,
        },
        _ => false,
    };
    if !ok {
        problems.push(format!(
            "{path} = {v} does not match ECS type {}",
            def.field_type
        ));
    }
}

#[cfg(test)]
#[path = "ecs_tests.rs"]
mod tests;
