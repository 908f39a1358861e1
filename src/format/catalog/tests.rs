use super::*;
use std::collections::BTreeSet;

/// Every action named in Codacy's API reference ("Audit actions") and in the table of Codacy's
/// documentation page "Audit logs for organizations", expanded from the `.update`-style shorthand.
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
    // A failed or rejected login is High (CEF 7-8), a successful one Low.
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
