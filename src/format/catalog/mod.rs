//! Codacy action catalog: human name, ECS category/type, CEF category and severity.
//!
//! Sources:
//! - actions, human names ("Event" column) and descriptions: Codacy's documentation page "Audit
//!   logs for organizations" (the table of actions is in `actions`);
//! - ECS `event.category` / `event.type`: this project's mapping of each action, restricted to the
//!   expected category/type pairs of ECS 8.17 (`schemas/event.yml`); actions not in the table
//!   take the verb-suffix rule of [`classify`];
//! - severity: CEF integer 0-10 (the CEF specification: 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High). The values
//!   are this project's judgement: credentials, privilege changes, data export and quality-gate
//!   bypass rank highest; a failed or rejected attempt ranks higher than a successful one.

mod actions;

pub use actions::ACTIONS;
use actions::CONFIG;
use rustc_hash::FxHasher;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

/// What the encoders need to know about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Human name (CEF Name, ECS message fallback).
    pub name: Cow<'static, str>,
    /// Codacy's description of the action, when the action is documented (ECS `message` fallback).
    pub description: Option<&'static str>,
    /// ECS `event.category` values.
    pub categories: &'static [&'static str],
    /// ECS `event.type` values.
    pub types: &'static [&'static str],
    /// CEF `cat`, e.g. `repositories/tokens`.
    pub cef_category: Cow<'static, str>,
    /// CEF severity 0-10 after adjusting for the result.
    pub severity: u8,
    /// Whether the action is in the catalog (false: classified by the verb-suffix fallback).
    pub known: bool,
}

/// One documented Codacy action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionInfo {
    pub action: &'static str,
    /// Codacy's "Event" column.
    pub name: &'static str,
    /// Codacy's "Description" column.
    pub description: &'static str,
    pub categories: &'static [&'static str],
    pub types: &'static [&'static str],
    /// Severity when the result is `succeed` (or absent).
    pub severity: u8,
    /// Severity when the result is `failed` or `rejected`.
    pub failure_severity: u8,
}

/// Looks an action up in the catalog.
pub fn lookup(action: &str) -> Option<&'static ActionInfo> {
    index().get(action).map(|&i| &ACTIONS[i])
}

/// Where each action is in [`ACTIONS`], and its CEF category: built once, since every record
/// looks its action up. The names are the catalog's own, so a fast non-keyed hash is safe.
struct Index {
    position: HashMap<&'static str, usize, BuildHasherDefault<FxHasher>>,
    cef_categories: Vec<String>,
}

impl Index {
    fn get(&self, action: &str) -> Option<&usize> {
        self.position.get(action)
    }
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| Index {
        // Reversed, so that the first of two rows for one action would win, as a scan finds it.
        position: ACTIONS
            .iter()
            .enumerate()
            .rev()
            .map(|(i, a)| (a.action, i))
            .collect(),
        cef_categories: ACTIONS.iter().map(|a| cef_category(a.action)).collect(),
    })
}

/// Whether a `result` value means the attempt did not succeed (Codacy's audit log API: `succeed`,
/// `failed`, `rejected`).
pub fn is_failure(result: Option<&str>) -> bool {
    matches!(result, Some("failed") | Some("rejected"))
}

/// Classifies an action (known or not) given its result (`succeed`, `failed`, `rejected`).
/// Never fails: an action the catalog does not know is classified by its verb suffix.
pub fn classify(action: &str, result: Option<&str>) -> Classification {
    let failed = is_failure(result);
    let index = index();
    match index.get(action).map(|&i| (&ACTIONS[i], i)) {
        Some((info, i)) => {
            let (categories, types) = if info.action == "user.login" && failed {
                // A failed login is no session start: [authentication] / [info].
                (&["authentication"][..], &["info"][..])
            } else {
                (info.categories, info.types)
            };
            Classification {
                name: Cow::Borrowed(info.name),
                description: Some(info.description),
                categories,
                types,
                cef_category: Cow::Borrowed(index.cef_categories[i].as_str()),
                severity: if failed {
                    info.failure_severity
                } else {
                    info.severity
                },
                known: true,
            }
        }
        None => {
            // The suffix rule: *.create -> creation, *.delete -> deletion, *.read -> access
            // (ECS configuration expects access), anything else -> change.
            let verb = action.rsplit('.').next().unwrap_or(action);
            let (types, severity): (&'static [&'static str], u8) = match verb {
                "create" => (&["creation"], 3),
                "delete" => (&["deletion"], 4),
                "read" => (&["access"], 3),
                _ => (&["change"], 3),
            };
            Classification {
                name: Cow::Owned(action.to_string()),
                description: None,
                categories: CONFIG,
                types,
                cef_category: Cow::Owned(cef_category(action)),
                severity: if failed { severity + 3 } else { severity },
                known: false,
            }
        }
    }
}

/// CEF `cat`: the action's group, i.e. the action without its verb and at most two levels deep,
/// slash-separated (the CEF `cat` key, "action group, e.g. `repositories/tokens`"; the CEF guide gives
/// `repositories/integrations` for `repositories.integrations.providersettings.update`).
/// `repositories.tokens.create` -> `repositories/tokens`, `user.login` -> `user`.
pub fn cef_category(action: &str) -> String {
    let group = match action.rsplit_once('.') {
        Some((group, _verb)) => group,
        None => return action.to_string(),
    };
    let mut parts = group.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}/{b}"),
        (Some(a), None) => a.to_string(),
        _ => String::new(),
    }
}

/// Splunk CIM `action` for a successful event of a catalogued action (the Splunk add-on's
/// lookup): the Change data model's vocabulary derived from the ECS types (creation -> created,
/// deletion -> deleted, access/info -> read, anything else -> modified), except for
/// authentication, where CIM's Authentication model wants `success` (`failure` when failed).
pub fn cim_action(info: &ActionInfo) -> &'static str {
    let has = |t: &str| info.types.contains(&t);
    if info.categories.contains(&"authentication") {
        "success"
    } else if has("creation") {
        "created"
    } else if has("deletion") {
        "deleted"
    } else if has("access") || (has("info") && !has("change")) {
        "read"
    } else {
        "modified"
    }
}

/// CIM `change_type`: `AAA` for identity and access actions, `configuration` for the rest.
pub fn cim_change_type(info: &ActionInfo) -> &'static str {
    if info.categories.contains(&"iam") || info.categories.contains(&"authentication") {
        "AAA"
    } else {
        "configuration"
    }
}

/// CIM `object_category`: what kind of thing the action touches, from the action's name.
pub fn cim_object_category(action: &str) -> &'static str {
    // Order matters: the first fragment found wins (`repositories.tokens.*` is a token, not a
    // repository setting).
    const RULES: &[(&str, &str)] = &[
        (".tokens.", "api_token"),
        ("user.login", "user"),
        ("security.managers", "user"),
        (".people.", "user"),
        (".join", "user"),
        ("minimumpermission", "permission"),
        ("hooks", "webhook"),
        ("postcommithook", "webhook"),
        ("providersettings", "integration"),
        ("refreshprovider", "integration"),
        ("provider.sync", "integration"),
        ("gatepolicies", "gate_policy"),
        ("standards", "coding_standard"),
        ("security.items", "security_item"),
        ("pullrequests", "pull_request"),
        (".issues.", "issue"),
        (".tools.", "tool"),
        (".file.", "file"),
        (".branches.", "branch"),
        ("reanalyzecommit", "commit"),
        ("repositories.", "repository"),
        ("organizations.", "organization"),
    ];
    RULES
        .iter()
        .find(|(fragment, _)| action.contains(fragment))
        .map_or("unknown", |(_, category)| category)
}

/// Column names of [`csv`], in order.
pub const CSV_HEADER: &[&str] = &[
    "action",
    "name",
    "description",
    "ecs_category",
    "ecs_type",
    "severity",
    "failure_severity",
    "cef_category",
    "cim_action",
    "change_type",
    "object_category",
];

/// The catalog as CSV (RFC 4180, `\n` line ends), one row per documented action: what
/// `catalog --format csv` prints and the Splunk add-on's `lookups/codacy_actions.csv` holds.
/// Multi-valued ECS columns are `|`-separated.
pub fn csv() -> String {
    fn field(out: &mut String, value: &str) {
        if value.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&value.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(value);
        }
    }
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for info in ACTIONS {
        let row = [
            info.action.to_string(),
            info.name.to_string(),
            info.description.to_string(),
            info.categories.join("|"),
            info.types.join("|"),
            info.severity.to_string(),
            info.failure_severity.to_string(),
            cef_category(info.action),
            cim_action(info).to_string(),
            cim_change_type(info).to_string(),
            cim_object_category(info.action).to_string(),
        ];
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, value);
        }
        out.push('\n');
    }
    out
}

/// ECS 8.17 `event.category` values and the `event.type` values each one expects
/// (from ECS `schemas/event.yml` v8.17.0). Categories without expected
/// types are listed with an empty slice.
pub const ECS_EXPECTED_TYPES: &[(&str, &[&str])] = &[
    (
        "api",
        &[
            "access", "admin", "allowed", "change", "creation", "deletion", "denied", "end",
            "info", "start",
        ],
    ),
    ("authentication", &["start", "end", "info"]),
    (
        "configuration",
        &["access", "change", "creation", "deletion", "info"],
    ),
    ("database", &[]),
    ("driver", &[]),
    ("email", &[]),
    (
        "file",
        &["access", "change", "creation", "deletion", "info"],
    ),
    ("host", &[]),
    (
        "iam",
        &[
            "admin", "change", "creation", "deletion", "group", "info", "user",
        ],
    ),
    ("intrusion_detection", &[]),
    ("library", &[]),
    ("malware", &[]),
    ("network", &[]),
    ("package", &[]),
    ("process", &[]),
    ("registry", &[]),
    ("session", &["start", "end", "info"]),
    ("threat", &[]),
    ("vulnerability", &[]),
    ("web", &["access", "error", "info"]),
];

/// ECS 8.17 `event.type` allowed values (`schemas/event.yml`).
pub const ECS_TYPES: &[&str] = &[
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
];

/// Checks that every (category, type) pair is one ECS 8.17 expects. Returns the first offending
/// pair as a message.
pub fn check_ecs_pairs(categories: &[&str], types: &[&str]) -> Result<(), String> {
    if categories.is_empty() || types.is_empty() {
        return Err("event.category and event.type must not be empty".to_string());
    }
    for c in categories {
        let expected = ECS_EXPECTED_TYPES
            .iter()
            .find(|(name, _)| name == c)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("{c:?} is not an ECS 8.17 event.category"))?;
        for t in types {
            if !ECS_TYPES.contains(t) {
                return Err(format!("{t:?} is not an ECS 8.17 event.type"));
            }
            if !expected.contains(t) {
                return Err(format!(
                    "event.type {t:?} is not expected for event.category {c:?} in ECS 8.17"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
