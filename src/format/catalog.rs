//! Codacy action catalog: human name, ECS category/type, CEF category and severity.
//!
//! Sources:
//! - actions, human names ("Event" column) and descriptions: Codacy's page "Audit logs for
//!   organizations" (`/work/shared/reference/codacy-docs/001_*.txt`, also listed in
//!   `codacy-api.md`, "Audit actions");
//! - ECS `event.category` / `event.type`: the mapping table in `siem-formats.md` §2.4, restricted to
//!   the expected category/type pairs of ECS 8.17 (§2.1); actions §2.4 does not name take the
//!   verb-suffix rule at the end of §2.4;
//! - severity: CEF integer 0-10 (§1.3: 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High). The values
//!   are this project's judgement: credentials, privilege changes, data export and quality-gate
//!   bypass rank highest; a failed or rejected attempt ranks higher than a successful one.

use std::borrow::Cow;

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
    pub cef_category: String,
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

const CONFIG: &[&str] = &["configuration"];
const IAM: &[&str] = &["iam"];

const fn a(
    action: &'static str,
    name: &'static str,
    description: &'static str,
    categories: &'static [&'static str],
    types: &'static [&'static str],
    severity: u8,
    failure_severity: u8,
) -> ActionInfo {
    ActionInfo {
        action,
        name,
        description,
        categories,
        types,
        severity,
        failure_severity,
    }
}

/// Every action in Codacy's documentation, in the order of its tables (User, Organization,
/// Repository). ECS category/type per siem-formats.md §2.4.
pub static ACTIONS: &[ActionInfo] = &[
    // --- User
    // §2.4: user.login (succeed) -> [authentication, session] / [start, info]; the failed/rejected
    // variant is handled in `classify`.
    a(
        "user.login",
        "Log in",
        "User logged in to Codacy",
        &["authentication", "session"],
        &["start", "info"],
        2,
        7,
    ),
    // §2.4: tokens create/delete -> iam / [admin, creation|deletion]; read -> iam / [admin, info].
    a(
        "user.tokens.create",
        "Create account API token",
        "New account API token created",
        IAM,
        &["admin", "creation"],
        6,
        7,
    ),
    a(
        "user.tokens.read",
        "Read account API token",
        "List of account API tokens retrieved",
        IAM,
        &["admin", "info"],
        4,
        6,
    ),
    a(
        "user.tokens.delete",
        "Delete account API token",
        "Account API token deleted",
        IAM,
        &["admin", "deletion"],
        6,
        7,
    ),
    // --- Organization
    a(
        "organizations.create",
        "Add organization",
        "Organization added to Codacy",
        CONFIG,
        &["creation"],
        4,
        6,
    ),
    a(
        "organizations.people.create",
        "Add people to organization",
        "New people added to the organization",
        IAM,
        &["user", "group", "creation"],
        5,
        7,
    ),
    a(
        "organizations.join",
        "Join organization",
        "User joined the organization",
        IAM,
        &["user", "group", "change"],
        4,
        6,
    ),
    // Not named in §2.4; it changes who may configure analysis, so it is a permission change:
    // iam / [admin, change] (iam expects both, §2.1; Bitbucket's permission events, §2.3).
    a(
        "organizations.analysisconfigurationminimumpermission.update",
        "Update repository management permissions",
        "Repository management permissions updated",
        IAM,
        &["admin", "change"],
        6,
        7,
    ),
    // §2.4: manager role changes -> iam / [user, admin, change].
    a(
        "organizations.security.managers.create",
        "Assign organization manager role",
        "Organization manager role assigned to a team member",
        IAM,
        &["user", "admin", "change"],
        8,
        9,
    ),
    a(
        "organizations.security.managers.delete",
        "Revoke organization manager role",
        "Organization manager role revoked from a team member",
        IAM,
        &["user", "admin", "change"],
        8,
        9,
    ),
    a(
        "organizations.integrations.providersettings.update",
        "Update default Git provider configuration",
        "Default Git provider configuration for the organization updated",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.integrations.providersettings.apply",
        "Apply default Git provider configuration to all repositories",
        "Default Git provider configuration applied to all repositories of the organization",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    // A webhook sends data out of Codacy: ranked above ordinary configuration.
    a(
        "organizations.settings.hooks.create",
        "Create new organization hook",
        "New organization webhook created",
        CONFIG,
        &["creation"],
        5,
        7,
    ),
    a(
        "organizations.gatepolicies.create",
        "Create new gate policy",
        "New gate policy created",
        CONFIG,
        &["creation"],
        3,
        5,
    ),
    a(
        "organizations.gatepolicies.update",
        "Update gate policy",
        "Quality gate definition updated",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.gatepolicies.repositories.apply",
        "Apply gate policy to repositories",
        "Gate policy applied to a list of repositories",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.gatepolicies.setdefault",
        "Make gate policy default",
        "Gate policy was made the default for the organization",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.gatepolicies.setcodacydefault",
        "Make Codacy gate policy default",
        "Built-in Codacy gate policy was made the default for the organization",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.gatepolicies.delete",
        "Delete gate policy",
        "Gate policy deleted",
        CONFIG,
        &["deletion"],
        5,
        7,
    ),
    a(
        "organizations.presetsstandards.create",
        "Create new coding standard using preset sensitivity levels",
        "New coding standard created",
        CONFIG,
        &["creation"],
        3,
        5,
    ),
    a(
        "organizations.codingstandards.create",
        "Create new coding standard draft using individual language and code pattern settings",
        "New coding standard draft created",
        CONFIG,
        &["creation"],
        3,
        5,
    ),
    // Codacy documents two events under this action ("Create new coding standard from draft",
    // "Update coding standard from draft"); the name covers both.
    a(
        "organizations.codingstandards.promote",
        "Create or update coding standard from draft",
        "New coding standard created or coding standard updated",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.codingstandards.repositories.apply",
        "Apply coding standard to repositories",
        "Coding standard applied to a list of repositories",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.codingstandards.setdefault",
        "Make coding standard default",
        "Coding standard was made the default",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "organizations.codingstandards.delete",
        "Delete coding standard",
        "Coding standard deleted",
        CONFIG,
        &["deletion"],
        5,
        7,
    ),
    // §2.4: configuration / [access], "worth a higher risk score" (data leaves Codacy).
    a(
        "organizations.security.items.export",
        "Export security items",
        "Export security items",
        CONFIG,
        &["access"],
        8,
        9,
    ),
    // --- Repository
    // Codacy: "New repository hook created", so creation (§2.4 allows creation for
    // repositories.integrations.*).
    a(
        "repositories.integrations.postcommithook",
        "Create new post-commit hook",
        "New repository hook created",
        CONFIG,
        &["creation"],
        5,
        7,
    ),
    a(
        "repositories.tokens.create",
        "Create repository API token",
        "New repository API token created",
        IAM,
        &["admin", "creation"],
        6,
        7,
    ),
    a(
        "repositories.tokens.read",
        "Read repository API token",
        "List of repository API tokens retrieved",
        IAM,
        &["admin", "info"],
        4,
        6,
    ),
    a(
        "repositories.tokens.delete",
        "Delete repository API token",
        "Repository API token deleted",
        IAM,
        &["admin", "deletion"],
        6,
        7,
    ),
    a(
        "repositories.integrations.providersettings.update",
        "Update Git provider integration settings",
        "Git provider integration settings for the repository updated",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "repositories.integrations.refreshprovider",
        "Refresh Git provider integration",
        "Git provider integration for the repository refreshed",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    a(
        "repositories.issues.update",
        "Update issue",
        "For example ignore issue",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    a(
        "repositories.tools.update",
        "Update tool",
        "Can be change parameters or disable/enable tool",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    // §2.4: quality-gate bypass, "High severity".
    a(
        "repositories.pullrequests.bypass",
        "Bypass pull request",
        "Bypass pull request by authorized person",
        CONFIG,
        &["change"],
        8,
        9,
    ),
    a(
        "repositories.settings.language.update",
        "Update repository language",
        "Change languages analyzed in repository",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    a(
        "repositories.branches.update",
        "Update branch",
        "Enable or Disable branch for analyse",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    a(
        "repositories.settings.analysis.update",
        "Update analysis settings",
        "Update analysis settings",
        CONFIG,
        &["change"],
        3,
        5,
    ),
    // §2.4: a request, not a state change -> configuration / [info].
    a(
        "repositories.reanalyzecommit",
        "Reanalyze commit",
        "Reanalyze commit or pull request",
        CONFIG,
        &["info"],
        2,
        4,
    ),
    a(
        "repositories.settings.provider.sync",
        "Synchronize repository with provider",
        "Synchronize repository with provider",
        CONFIG,
        &["change"],
        2,
        4,
    ),
    a(
        "repositories.settings.quality.repository.update",
        "Update quality settings for repository",
        "Update quality settings for repository",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "repositories.settings.quality.pullrequests.update",
        "Update quality settings for pull requests",
        "Update quality settings for pull requests",
        CONFIG,
        &["change"],
        4,
        6,
    ),
    a(
        "repositories.file.update",
        "Update file state",
        "Ignore or Unignore file",
        CONFIG,
        &["change"],
        3,
        5,
    ),
];

/// Looks an action up in the catalog.
pub fn lookup(action: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.action == action)
}

/// Whether a `result` value means the attempt did not succeed (codacy-api.md: `succeed`,
/// `failed`, `rejected`).
pub fn is_failure(result: Option<&str>) -> bool {
    matches!(result, Some("failed") | Some("rejected"))
}

/// Classifies an action (known or not) given its result (`succeed`, `failed`, `rejected`).
/// Never fails: an action the catalog does not know is classified by its verb suffix.
pub fn classify(action: &str, result: Option<&str>) -> Classification {
    let failed = is_failure(result);
    match lookup(action) {
        Some(info) => {
            let (categories, types) = if info.action == "user.login" && failed {
                // §2.4: a failed login is no session start: [authentication] / [info].
                (&["authentication"][..], &["info"][..])
            } else {
                (info.categories, info.types)
            };
            Classification {
                name: Cow::Borrowed(info.name),
                description: Some(info.description),
                categories,
                types,
                cef_category: cef_category(action),
                severity: if failed {
                    info.failure_severity
                } else {
                    info.severity
                },
                known: true,
            }
        }
        None => {
            // §2.4 suffix rule: *.create -> creation, *.delete -> deletion, *.read -> access
            // (configuration expects access, §2.1), anything else -> change.
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
                cef_category: cef_category(action),
                severity: if failed { severity + 3 } else { severity },
                known: false,
            }
        }
    }
}

/// CEF `cat`: the action's group, i.e. the action without its verb and at most two levels deep,
/// slash-separated (siem-formats.md §1.5 "action group, e.g. `repositories/tokens`"; §1.9 gives
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
/// (siem-formats.md §2.1, from ecs `schemas/event.yml` v8.17.0). Categories without expected
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

/// ECS 8.17 `event.type` allowed values (siem-formats.md §2.1).
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
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every action named in codacy-api.md ("Audit actions") and in Codacy's docs table
    /// (codacy-docs/001_*), expanded from the `.update`-style shorthand.
    const DOCUMENTED: &[&str] = &[
        "user.login",
        "user.tokens.create",
        "user.tokens.read",
        "user.tokens.delete",
        "organizations.create",
        "organizations.people.create",
        "organizations.join",
        "organizations.analysisconfigurationminimumpermission.update",
        "organizations.security.managers.create",
        "organizations.security.managers.delete",
        "organizations.integrations.providersettings.update",
        "organizations.integrations.providersettings.apply",
        "organizations.settings.hooks.create",
        "organizations.gatepolicies.create",
        "organizations.gatepolicies.update",
        "organizations.gatepolicies.repositories.apply",
        "organizations.gatepolicies.setdefault",
        "organizations.gatepolicies.setcodacydefault",
        "organizations.gatepolicies.delete",
        "organizations.presetsstandards.create",
        "organizations.codingstandards.create",
        "organizations.codingstandards.promote",
        "organizations.codingstandards.repositories.apply",
        "organizations.codingstandards.setdefault",
        "organizations.codingstandards.delete",
        "organizations.security.items.export",
        "repositories.integrations.postcommithook",
        "repositories.tokens.create",
        "repositories.tokens.read",
        "repositories.tokens.delete",
        "repositories.integrations.providersettings.update",
        "repositories.integrations.refreshprovider",
        "repositories.issues.update",
        "repositories.tools.update",
        "repositories.pullrequests.bypass",
        "repositories.settings.language.update",
        "repositories.branches.update",
        "repositories.settings.analysis.update",
        "repositories.reanalyzecommit",
        "repositories.settings.provider.sync",
        "repositories.settings.quality.repository.update",
        "repositories.settings.quality.pullrequests.update",
        "repositories.file.update",
    ];

    #[test]
    fn every_documented_action_is_in_the_catalog_and_nothing_else() {
        let documented: BTreeSet<&str> = DOCUMENTED.iter().copied().collect();
        let catalog: BTreeSet<&str> = ACTIONS.iter().map(|a| a.action).collect();
        assert_eq!(catalog.len(), ACTIONS.len(), "duplicate action in ACTIONS");
        assert_eq!(documented, catalog);
        for action in DOCUMENTED {
            for result in [None, Some("succeed"), Some("failed"), Some("rejected")] {
                assert!(classify(action, result).known, "{action}");
            }
        }
    }

    #[test]
    fn every_entry_is_valid_ecs_and_sane() {
        for info in ACTIONS {
            check_ecs_pairs(info.categories, info.types)
                .unwrap_or_else(|e| panic!("{}: {e}", info.action));
            assert!(info.severity <= 10 && info.failure_severity <= 10);
            assert!(
                info.failure_severity > info.severity,
                "{}: a failed attempt must rank higher",
                info.action
            );
            assert!(!info.name.is_empty() && !info.description.is_empty());
            for result in [
                None,
                Some("succeed"),
                Some("failed"),
                Some("rejected"),
                Some("x"),
            ] {
                let c = classify(info.action, result);
                check_ecs_pairs(c.categories, c.types)
                    .unwrap_or_else(|e| panic!("{} {result:?}: {e}", info.action));
            }
        }
    }

    #[test]
    fn security_relevant_actions_rank_higher_than_routine_ones() {
        let routine = classify("repositories.tools.update", Some("succeed")).severity;
        for action in [
            "user.tokens.create",
            "user.tokens.delete",
            "repositories.tokens.create",
            "repositories.tokens.delete",
            "organizations.security.managers.create",
            "organizations.security.managers.delete",
            "organizations.security.items.export",
            "repositories.pullrequests.bypass",
        ] {
            assert!(
                classify(action, Some("succeed")).severity > routine,
                "{action}"
            );
        }
        assert!(classify("organizations.security.managers.create", None).severity >= 7);
        assert!(classify("repositories.pullrequests.bypass", None).severity >= 7);
        // A failed or rejected login is High (§1.3: 7-8), a successful one Low.
        assert!(classify("user.login", Some("succeed")).severity <= 3);
        assert!(classify("user.login", Some("failed")).severity >= 7);
        assert!(classify("user.login", Some("rejected")).severity >= 7);
    }

    #[test]
    fn login_categories_follow_the_result() {
        let ok = classify("user.login", Some("succeed"));
        assert_eq!(ok.categories, &["authentication", "session"]);
        assert_eq!(ok.types, &["start", "info"]);
        for r in ["failed", "rejected"] {
            let failed = classify("user.login", Some(r));
            assert_eq!(failed.categories, &["authentication"]);
            assert_eq!(failed.types, &["info"]);
        }
    }

    #[test]
    fn unknown_actions_fall_back_by_verb_and_never_fail() {
        let cases = [
            ("organizations.widgets.create", "creation"),
            ("organizations.widgets.delete", "deletion"),
            ("repositories.secrets.read", "access"),
            ("repositories.widgets.frobnicate", "change"),
            ("nodots", "change"),
            ("", "change"),
            ("trailing.", "change"),
        ];
        for (action, ty) in cases {
            let c = classify(action, None);
            assert!(!c.known);
            assert_eq!(c.categories, &["configuration"], "{action}");
            assert_eq!(c.types, &[ty], "{action}");
            assert_eq!(c.name, action);
            assert_eq!(c.description, None);
            check_ecs_pairs(c.categories, c.types).unwrap();
            assert!(classify(action, Some("failed")).severity > c.severity);
        }
    }

    #[test]
    fn human_names_come_from_codacys_docs() {
        assert_eq!(classify("user.login", None).name, "Log in");
        assert_eq!(
            classify("repositories.integrations.providersettings.update", None).description,
            Some("Git provider integration settings for the repository updated")
        );
    }

    #[test]
    fn cef_category_drops_the_verb() {
        assert_eq!(
            cef_category("repositories.tokens.create"),
            "repositories/tokens"
        );
        assert_eq!(cef_category("user.login"), "user");
        assert_eq!(
            cef_category("repositories.integrations.providersettings.update"),
            "repositories/integrations"
        );
        assert_eq!(
            cef_category("organizations.security.managers.create"),
            "organizations/security"
        );
        assert_eq!(cef_category("nodots"), "nodots");
    }

    #[test]
    fn csv_has_one_row_per_action_and_quotes_what_needs_it() {
        let text = csv();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(lines.count(), ACTIONS.len());
        let login = text.lines().find(|l| l.starts_with("user.login,")).unwrap();
        assert_eq!(
            login,
            "user.login,Log in,User logged in to Codacy,authentication|session,start|info,2,7,user,success,AAA,user"
        );
        assert!(text.lines().any(|l| l
            == "repositories.tokens.create,Create repository API token,New repository API token created,iam,admin|creation,6,7,repositories/tokens,created,AAA,api_token"));
    }

    #[test]
    fn every_action_gets_a_cim_vocabulary_action_and_a_known_object_category() {
        for info in ACTIONS {
            let expected: &[&str] = if info.action == "user.login" {
                &["success"]
            } else {
                &["created", "deleted", "modified", "read"]
            };
            assert!(expected.contains(&cim_action(info)), "{}", info.action);
            assert_ne!(
                cim_object_category(info.action),
                "unknown",
                "{}",
                info.action
            );
        }
        assert_eq!(cim_object_category("made.up"), "unknown");
    }

    #[test]
    fn the_pair_check_rejects_what_ecs_does_not_expect() {
        assert!(check_ecs_pairs(&["configuration"], &["admin"]).is_err());
        assert!(check_ecs_pairs(&["iam"], &["access"]).is_err());
        assert!(check_ecs_pairs(&["made_up"], &["info"]).is_err());
        assert!(check_ecs_pairs(&["iam"], &[]).is_err());
        assert!(check_ecs_pairs(&["iam"], &["admin", "creation"]).is_ok());
    }
}
