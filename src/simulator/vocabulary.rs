//! What generated events are made of: Codacy's documented actions, actions it may add one day,
//! and sample people, roles, repositories and languages, plus the awkward strings that break
//! naive CEF, syslog, CSV, key=value and JSON handling.

/// Every documented action: (action, repository-scoped, Codacy's description).
pub const ACTIONS: &[(&str, bool, &str)] = &[
    ("user.login", false, "User logged in to Codacy"),
    ("user.tokens.create", false, "New account API token created"),
    (
        "user.tokens.read",
        false,
        "List of account API tokens retrieved",
    ),
    ("user.tokens.delete", false, "Account API token deleted"),
    (
        "organizations.create",
        false,
        "Organization added to Codacy",
    ),
    (
        "organizations.people.create",
        false,
        "New people added to the organization",
    ),
    ("organizations.join", false, "User joined the organization"),
    (
        "organizations.analysisconfigurationminimumpermission.update",
        false,
        "Repository management permissions updated",
    ),
    (
        "organizations.security.managers.create",
        false,
        "Organization manager role assigned to a team member",
    ),
    (
        "organizations.security.managers.delete",
        false,
        "Organization manager role revoked from a team member",
    ),
    (
        "organizations.integrations.providersettings.update",
        false,
        "Default Git provider configuration for the organization updated",
    ),
    (
        "organizations.integrations.providersettings.apply",
        false,
        "Default Git provider configuration applied to all repositories of the organization",
    ),
    (
        "organizations.settings.hooks.create",
        false,
        "New organization webhook created",
    ),
    (
        "organizations.gatepolicies.create",
        false,
        "New gate policy created",
    ),
    (
        "organizations.gatepolicies.update",
        false,
        "Quality gate definition updated",
    ),
    (
        "organizations.gatepolicies.repositories.apply",
        false,
        "Gate policy applied to a list of repositories",
    ),
    (
        "organizations.gatepolicies.setdefault",
        false,
        "Gate policy was made the default for the organization",
    ),
    (
        "organizations.gatepolicies.setcodacydefault",
        false,
        "Built-in Codacy gate policy was made the default for the organization",
    ),
    (
        "organizations.gatepolicies.delete",
        false,
        "Gate policy deleted",
    ),
    (
        "organizations.presetsstandards.create",
        false,
        "New coding standard created",
    ),
    (
        "organizations.codingstandards.create",
        false,
        "New coding standard draft created",
    ),
    (
        "organizations.codingstandards.promote",
        false,
        "New coding standard created",
    ),
    (
        "organizations.codingstandards.repositories.apply",
        false,
        "Coding standard applied to a list of repositories",
    ),
    (
        "organizations.codingstandards.setdefault",
        false,
        "Coding standard was made the default",
    ),
    (
        "organizations.codingstandards.delete",
        false,
        "Coding standard deleted",
    ),
    (
        "organizations.security.items.export",
        false,
        "Export security items",
    ),
    (
        "repositories.integrations.postcommithook",
        true,
        "New repository hook created",
    ),
    (
        "repositories.tokens.create",
        true,
        "New repository API token created",
    ),
    (
        "repositories.tokens.read",
        true,
        "List of repository API tokens retrieved",
    ),
    (
        "repositories.tokens.delete",
        true,
        "Repository API token deleted",
    ),
    (
        "repositories.integrations.providersettings.update",
        true,
        "Git provider integration settings for the repository updated",
    ),
    (
        "repositories.integrations.refreshprovider",
        true,
        "Git provider integration for the repository refreshed",
    ),
    (
        "repositories.issues.update",
        true,
        "For example ignore issue",
    ),
    (
        "repositories.tools.update",
        true,
        "Can be change parameters or disable/enable tool",
    ),
    (
        "repositories.pullrequests.bypass",
        true,
        "Bypass pull request by authorized person",
    ),
    (
        "repositories.settings.language.update",
        true,
        "Change languages analyzed in repository",
    ),
    (
        "repositories.branches.update",
        true,
        "Enable or Disable branch for analyse",
    ),
    (
        "repositories.settings.analysis.update",
        true,
        "Update analysis settings",
    ),
    (
        "repositories.reanalyzecommit",
        true,
        "Reanalyze commit or pull request",
    ),
    (
        "repositories.settings.provider.sync",
        true,
        "Synchronize repository with provider",
    ),
    (
        "repositories.settings.quality.repository.update",
        true,
        "Update quality settings for repository",
    ),
    (
        "repositories.settings.quality.pullrequests.update",
        true,
        "Update quality settings for pull requests",
    ),
    ("repositories.file.update", true, "Ignore or Unignore file"),
];

/// Actions Codacy may add one day: the client must pass them through untouched.
pub(super) const FUTURE_ACTIONS: &[&str] = &[
    "organizations.auditlogs.export",
    "repositories.secrets.rotate",
    "user.sessions.revoke",
];

pub(super) const ROLES: &[&str] = &[
    "repositoryRead",
    "repositoryWrite",
    "repositoryAdmin",
    "organizationMember",
    "organizationManager",
    "organizationAdmin",
];

pub(super) const PEOPLE: &[&str] = &[
    "alice@example.com",
    "bob.smith@example.com",
    "carol+ci@example.org",
    "dmitri.ivanov@example.net",
    "eve@example.com",
    "frank.o'neil@example.com",
    "zoë.müller@example.de",
    "grace.hopper@example.com",
    "heidi@example.io",
    "ivan@example.com",
    "codacy-bot@example.com",
    "judy@sub.example.co.uk",
];

pub(super) const REPOSITORIES: &[&str] = &[
    "backend",
    "web-app",
    "infra.terraform",
    "mobile_ios",
    "payments-service",
    "docs",
    "monorepo",
    "legacy-php",
];

pub(super) const LANGUAGES: &[&str] = &[
    "Rust",
    "Go",
    "TypeScript",
    "Python",
    "Java",
    "Kotlin",
    "PHP",
];

/// Strings that break naive CEF, syslog, CSV, key=value and JSON handling. Awkward events cycle
/// through them in order, so any run with enough awkward events covers them all.
pub(super) const AWKWARD: &[&str] = &[
    "pipe | in the middle | twice",
    "key=value and a=b=c",
    r"C:\Users\build\path\ and a trailing backslash \",
    "line one\r\nline two\nline three\rend",
    "tab\tseparated\tvalues",
    "she said \"hello\" and 'bye'",
    "brackets ] [ ] and {braces} and <tags>",
    "unicode: Zürich – 東京 – Ελληνικά – עברית",
    "emoji: 🚀 👩‍💻 ✅ 🇵🇹",
    "CEF:0|fake|header|with|pipes|10|x=y",
    "<34>1 fake syslog header - - [sd@1 a=\"b\"]",
    "  leading and trailing spaces  ",
    "percent %s %d %n and %2F",
    "",
];
