//! Codacy action catalog: human name, ECS category/type, CEF category and base severity.
//! (Skeleton: the formats work completes the table for every documented action.)

use std::borrow::Cow;

/// What the encoders need to know about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Human name (CEF Name, ECS message fallback).
    pub name: Cow<'static, str>,
    /// ECS `event.category` values.
    pub categories: &'static [&'static str],
    /// ECS `event.type` values.
    pub types: &'static [&'static str],
    /// CEF `cat`, e.g. `repositories/tokens`.
    pub cef_category: String,
    /// CEF severity 0-10 after adjusting for the result.
    pub severity: u8,
}

/// Classifies an action (known or not) given its result (`succeed`, `failed`, `rejected`).
pub fn classify(action: &str, result: Option<&str>) -> Classification {
    let base: u8 = 3;
    let failed = matches!(result, Some("failed") | Some("rejected"));
    Classification {
        name: Cow::Owned(action.to_string()),
        categories: &["configuration"],
        types: &["info"],
        cef_category: cef_category(action),
        severity: if failed { (base + 2).min(10) } else { base },
    }
}

/// The action without its verb, slash-separated: `repositories.tokens.create` -> `repositories/tokens`.
pub fn cef_category(action: &str) -> String {
    match action.rsplit_once('.') {
        Some((group, _verb)) => group.replace('.', "/"),
        None => action.to_string(),
    }
}
