//! One `[[sinks]]` table: the keys every sink takes are parsed here; the rest of the table goes
//! to the sink type's own configuration through the registry ([`crate::sink::registry`]).

use super::{from_table, FieldError};
use crate::format::{Format, FormatOptions};
use crate::sink::registry::{type_names, SinkCommon, SinkType};
use crate::sink::SinkSpec;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The keys every sink takes. `hostname` is read apart: only some sinks take it.
#[derive(Deserialize)]
struct CommonKeys {
    name: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    format: Option<String>,
    ecs_namespace: Option<String>,
    include_original: Option<bool>,
    batch_max_events: Option<Value>,
}

const COMMON_KEYS: [&str; 6] = [
    "name",
    "type",
    "format",
    "ecs_namespace",
    "include_original",
    "batch_max_events",
];

/// Parses `sinks[i]`; errors name the key from the file's top (`sinks[2].url`).
pub(super) fn parse_sink(i: usize, table: Map<String, Value>) -> Result<SinkSpec, FieldError> {
    let table_key = format!("sinks[{i}]");
    parse(table).map_err(|e| e.within(&table_key))
}

fn parse(mut table: Map<String, Value>) -> Result<SinkSpec, FieldError> {
    let mut common_table = Map::new();
    for key in COMMON_KEYS {
        if let Some(v) = table.remove(key) {
            common_table.insert(key.to_string(), v);
        }
    }
    let keys: CommonKeys = from_table(Value::Object(common_table))?;
    let name = checked_name(keys.name)?;
    let sink_type = match keys.type_name {
        None => Err(format!("missing; one of {}", type_names().join(", "))),
        Some(t) => SinkType::named(&t),
    }
    .map_err(|m| FieldError::new("type", m))?;
    let format: Format = match keys.format {
        None => Format::Json,
        Some(f) => f.parse().map_err(|m| FieldError::new("format", m))?,
    };
    let mut format_options = FormatOptions::default();
    let explicit_namespace = keys.ecs_namespace.is_some();
    if let Some(ns) = keys.ecs_namespace {
        crate::format::ecs::validate_namespace(&ns)
            .map_err(|m| FieldError::new("ecs_namespace", m))?;
        format_options.ecs_namespace = ns;
    }
    format_options.include_original = keys.include_original.unwrap_or(false);
    let hostname = take_hostname(&mut table, sink_type, format)?;
    if let Some(h) = &hostname {
        format_options.hostname = h.clone();
    }
    let mut common = SinkCommon {
        name,
        type_name: sink_type.name,
        format,
        format_options,
        hostname,
        explicit_namespace,
    };
    // The type's own errors are relative to its table; a whole-table one names the sink.
    let label = format!("({} sink {:?})", sink_type.name, common.name);
    let whole = |e: FieldError| match e.key.is_empty() {
        true => FieldError::whole(format!("{label} {}", e.message)),
        false => e,
    };
    let config = (sink_type.parse)(table, &common).map_err(whole)?;
    config.validate(&mut common).map_err(whole)?;
    if !config.formats().contains(&format) {
        return Err(FieldError::new(
            "format",
            format_refused(sink_type.name, format, config.formats()),
        ));
    }
    let batch_max_events = match keys.batch_max_events {
        None => config.default_batch(),
        Some(v) => batch_size(&v).ok_or_else(|| {
            FieldError::new(
                "batch_max_events",
                format!("must be a number from 1 to 100000, found {v}"),
            )
        })?,
    };
    Ok(SinkSpec {
        name: common.name,
        type_name: sink_type.name,
        format,
        format_options: common.format_options,
        batch_max_events,
        config: Arc::from(config),
    })
}

fn checked_name(name: Option<String>) -> Result<String, FieldError> {
    let name =
        name.ok_or_else(|| FieldError::new("name", "missing; every sink needs a unique name"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(FieldError::new(
            "name",
            format!("{name:?} may use only letters, digits, '-', '_' and '.' (it names files)"),
        ));
    }
    Ok(name)
}

/// `hostname` is CEF's `dvchost` and the host of protocols that carry one (syslog, HEC): a sink
/// of such a type keeps it in its own table too; elsewhere it would be ignored, so it is refused.
fn take_hostname(
    table: &mut Map<String, Value>,
    sink_type: &SinkType,
    format: Format,
) -> Result<Option<String>, FieldError> {
    let value = if sink_type.carries_host {
        table.get("hostname").cloned()
    } else {
        table.remove("hostname")
    };
    match value {
        None => Ok(None),
        Some(_) if !sink_type.carries_host && format != Format::Cef => Err(FieldError::new(
            "hostname",
            format!(
                "is used by CEF records (dvchost) and by syslog and splunk_hec sinks; a {} sink with format {format} ignores it, so remove it",
                sink_type.name
            ),
        )),
        Some(Value::String(h)) => Ok(Some(h)),
        Some(other) => Err(FieldError::new("hostname", format!("must be a string, found {other}"))),
    }
}

fn batch_size(v: &Value) -> Option<usize> {
    v.as_u64()
        .filter(|n| (1..=100_000).contains(n))
        .and_then(|n| usize::try_from(n).ok())
}

fn format_refused(type_name: &str, format: Format, accepted: &[Format]) -> String {
    let list: Vec<&str> = accepted.iter().map(|f| f.as_str()).collect();
    let list = match list.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => list.join(""),
    };
    if format == Format::Csv {
        // CSV is for auditors opening a file in a spreadsheet.
        format!("\"csv\" is for `file` sinks only (a spreadsheet opens a file); a {type_name} sink takes {list}")
    } else {
        format!("a {type_name} sink takes {list}, not {format:?}")
    }
}
