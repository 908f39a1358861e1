//! Realistic, deterministic audit events drawn from Codacy's documented action catalog, with the
//! awkward content a SIEM forwarder must survive.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::vocabulary::{ACTIONS, AWKWARD, FUTURE_ACTIONS, LANGUAGES, PEOPLE, REPOSITORIES, ROLES};

/// What [`generate_events`] mixes in. `Default` is a realistic mix without the forced extras;
/// [`GenOptions::tricky`] forces every hard case.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Every Nth event carries awkward text (cycling through all of it); `None`: never.
    pub awkward_every: Option<usize>,
    /// Every Nth event carries a value of a few KB; `None`: never.
    pub long_every: Option<usize>,
    /// Share of events whose `actor` is a plain email string (older docs).
    pub string_actor_ratio: f64,
    /// Share of events whose `timestamp` is an epoch-ms number instead of RFC 3339.
    pub epoch_ms_ratio: f64,
    /// Share of events with unknown extra fields.
    pub unknown_field_ratio: f64,
    /// Groups of `same_ms_group_size` consecutive events forced to share one millisecond.
    pub same_ms_groups: usize,
    pub same_ms_group_size: usize,
    /// For page size `p`: events at both sides of every multiple of `p` (counted from the oldest
    /// and from the newest) share a millisecond, so ties straddle page boundaries in both orders.
    pub page_boundaries: Option<usize>,
    /// Events that are byte-identical copies of their predecessor.
    pub duplicates: usize,
    /// Events with an action that is not in the catalog.
    pub unknown_actions: usize,
    /// Events the client cannot parse (no timestamp, bad timestamp, no action, not an object).
    pub invalid: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            awkward_every: Some(25),
            long_every: Some(1000),
            string_actor_ratio: 0.07,
            epoch_ms_ratio: 0.03,
            unknown_field_ratio: 0.04,
            same_ms_groups: 0,
            same_ms_group_size: 3,
            page_boundaries: None,
            duplicates: 0,
            unknown_actions: 0,
            invalid: 0,
        }
    }
}

impl GenOptions {
    /// Every hard case at least a few times (for tests and the demo's backlog).
    pub fn tricky() -> Self {
        GenOptions {
            awkward_every: Some(5),
            long_every: Some(50),
            string_actor_ratio: 0.15,
            epoch_ms_ratio: 0.1,
            unknown_field_ratio: 0.1,
            same_ms_groups: 5,
            same_ms_group_size: 4,
            page_boundaries: None,
            duplicates: 5,
            unknown_actions: 3,
            invalid: 0,
        }
    }
}

/// `2024-07-01T09:45:30.656Z`.
pub(super) fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `n` events with timestamps in `[from_ms, to_ms)` (all at `from_ms` if the range is empty),
/// sorted oldest first, deterministic for `seed`. The forced extras of `opts` are included as
/// far as `n` allows.
pub fn generate_events(
    seed: u64,
    n: usize,
    from_ms: i64,
    to_ms: i64,
    opts: &GenOptions,
) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let span = (to_ms - from_ms).max(1);
    let mut ts: Vec<i64> = (0..n).map(|_| from_ms + rng.gen_range(0..span)).collect();
    ts.sort_unstable();

    // Equal timestamps: copy a predecessor's millisecond forward (keeps the order sorted).
    if let Some(p) = opts.page_boundaries.filter(|&p| p > 0) {
        for b in (p..n).step_by(p) {
            ts[b] = ts[b - 1];
            let from_end = n - b;
            if from_end > 0 {
                ts[from_end] = ts[from_end - 1];
            }
        }
    }
    let size = opts.same_ms_group_size.max(2);
    if n > size {
        for _ in 0..opts.same_ms_groups {
            let start = rng.gen_range(0..n - size + 1);
            for i in start + 1..start + size {
                ts[i] = ts[start];
            }
        }
    }

    // Distinct slots for the special events, chosen without disturbing the rest of the stream.
    let mut role = vec![Special::None; n];
    let mut pick = |rng: &mut StdRng, count: usize, kind: Special, need_predecessor: bool| {
        let mut placed = 0;
        let mut attempts = 0;
        while placed < count && attempts < count * 50 + 100 {
            attempts += 1;
            if n < 2 {
                break;
            }
            let i = rng.gen_range(usize::from(need_predecessor)..n);
            let free =
                role[i] == Special::None && (!need_predecessor || role[i - 1] == Special::None);
            if free {
                role[i] = kind;
                placed += 1;
            }
        }
    };
    pick(&mut rng, opts.invalid, Special::Invalid, false);
    pick(
        &mut rng,
        opts.unknown_actions,
        Special::UnknownAction,
        false,
    );
    pick(&mut rng, opts.duplicates, Special::Duplicate, true);

    let mut out: Vec<Value> = Vec::with_capacity(n);
    let mut awkward_seen = 0usize;
    let mut invalid_seen = 0usize;
    for i in 0..n {
        let event = match role[i] {
            Special::Duplicate => out[i - 1].clone(),
            Special::Invalid => {
                invalid_seen += 1;
                invalid_event(&mut rng, invalid_seen, ts[i])
            }
            special => {
                let awkward = opts
                    .awkward_every
                    .filter(|&k| k > 0 && (i + 1) % k == 0)
                    .map(|_| {
                        awkward_seen += 1;
                        AWKWARD[(awkward_seen - 1) % AWKWARD.len()]
                    });
                let long = opts.long_every.is_some_and(|k| k > 0 && (i + 1) % k == 0);
                let action = if special == Special::UnknownAction {
                    FUTURE_ACTIONS[rng.gen_range(0..FUTURE_ACTIONS.len())]
                } else {
                    ACTIONS[rng.gen_range(0..ACTIONS.len())].0
                };
                realistic_event(&mut rng, opts, action, ts[i], awkward, long)
            }
        };
        out.push(event);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Invalid,
    UnknownAction,
    Duplicate,
}

fn invalid_event(rng: &mut StdRng, k: usize, ts: i64) -> Value {
    match k % 5 {
        1 => json!({"actor": {"email": "alice@example.com", "role": "organizationAdmin"},
                    "action": "user.login", "result": "succeed", "source": "UI"}),
        2 => json!({"action": "user.login", "result": "succeed", "timestamp": "yesterday at noon"}),
        3 => {
            json!({"actor": "bob.smith@example.com", "result": "failed", "timestamp": rfc3339_ms(ts)})
        }
        4 => json!(format!("not an event {}", rng.gen::<u32>())),
        _ => json!({"action": "user.login", "timestamp": null}),
    }
}

/// A documented-looking event of `action` at `ts`: who, what and when, where it happened, its
/// details, and now and then a long value or fields Codacy may add one day.
fn realistic_event(
    rng: &mut StdRng,
    opts: &GenOptions,
    action: &str,
    ts: i64,
    awkward: Option<&str>,
    long: bool,
) -> Value {
    let entry = ACTIONS.iter().find(|(a, _, _)| *a == action);
    let repo_scoped = entry.map_or(action.starts_with("repositories."), |e| e.1);
    let description = entry.map_or("Unrecognised operation", |e| e.2);
    let mut m = Map::new();
    insert_who_what_when(rng, opts, &mut m, action, ts);
    insert_where(rng, &mut m, repo_scoped, description, awkward);
    insert_details(rng, &mut m, action, awkward);
    insert_extras(rng, opts, &mut m, long);
    Value::Object(m)
}

/// `actor` (an object, or a bare email as older docs show), `action`, `result`, `timestamp`.
fn insert_who_what_when(
    rng: &mut StdRng,
    opts: &GenOptions,
    m: &mut Map<String, Value>,
    action: &str,
    ts: i64,
) {
    let email = PEOPLE[rng.gen_range(0..PEOPLE.len())];
    let actor = if rng.gen_bool(opts.string_actor_ratio.clamp(0.0, 1.0)) {
        json!(email)
    } else if rng.gen_bool(0.03) {
        json!({ "email": email })
    } else {
        json!({ "email": email, "role": ROLES[rng.gen_range(0..ROLES.len())] })
    };
    m.insert("actor".into(), actor);
    m.insert("action".into(), json!(action));
    let result = match rng.gen_range(0..100) {
        0..=89 => "succeed",
        90..=96 => "failed",
        _ => "rejected",
    };
    m.insert("result".into(), json!(result));
    let timestamp = if rng.gen_bool(opts.epoch_ms_ratio.clamp(0.0, 1.0)) {
        json!(ts)
    } else {
        json!(rfc3339_ms(ts))
    };
    m.insert("timestamp".into(), timestamp);
}

/// `source` (UI, API or none), `repositoryName` for a repository's action, `description`.
fn insert_where(
    rng: &mut StdRng,
    m: &mut Map<String, Value>,
    repo_scoped: bool,
    description: &str,
    awkward: Option<&str>,
) {
    match rng.gen_range(0..100) {
        0..=59 => {
            m.insert("source".into(), json!("UI"));
        }
        60..=94 => {
            m.insert("source".into(), json!("API"));
        }
        _ => {}
    }
    if repo_scoped {
        let repo = REPOSITORIES[rng.gen_range(0..REPOSITORIES.len())];
        m.insert("repositoryName".into(), json!(repo));
    }
    if rng.gen_range(0..100) < 95 {
        let text = match awkward {
            Some(a) => format!("{description}: {a}"),
            None => description.to_string(),
        };
        m.insert("description".into(), json!(text));
    }
}

/// `details` (now and then `requestDetails`): an object, a string, null or nothing.
fn insert_details(
    rng: &mut StdRng,
    m: &mut Map<String, Value>,
    action: &str,
    awkward: Option<&str>,
) {
    let details_key = if rng.gen_bool(0.01) {
        "requestDetails"
    } else {
        "details"
    };
    match rng.gen_range(0..100) {
        0..=69 => {
            let mut d = details_for(rng, action);
            if let (Some(a), Value::Object(obj)) = (awkward, &mut d) {
                obj.insert("comment".into(), json!(a));
            }
            m.insert(details_key.into(), d);
        }
        70..=79 => {
            let text = format!("{}={}", "reason", awkward.unwrap_or("requested by admin"));
            m.insert(details_key.into(), json!(text));
        }
        80..=89 => {
            m.insert(details_key.into(), Value::Null);
        }
        _ => {}
    }
}

/// `entityId`, a long `note` when asked, and fields Codacy does not document (yet).
fn insert_extras(rng: &mut StdRng, opts: &GenOptions, m: &mut Map<String, Value>, long: bool) {
    if rng.gen_range(0..100) < 80 {
        m.insert(
            "entityId".into(),
            json!(rng.gen_range(1..10_000_000u32).to_string()),
        );
    }
    if long {
        // A few KB of text with some structure: long pasted notes do happen.
        let unit = "Long note with | pipes = equals \\ backslashes and unicode ✓. ";
        let repeat = rng.gen_range(30..90);
        m.insert("note".into(), json!(unit.repeat(repeat)));
    }
    if rng.gen_bool(opts.unknown_field_ratio.clamp(0.0, 1.0)) {
        m.insert(
            "ipAddress".into(),
            json!(format!("198.51.100.{}", rng.gen_range(1..255))),
        );
        m.insert(
            "clientContext".into(),
            json!({"userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "sessionAgeSeconds": rng.gen_range(0..86_400)}),
        );
    }
}

fn details_for(rng: &mut StdRng, action: &str) -> Value {
    let id = rng.gen_range(1..100_000u32);
    let repos = |rng: &mut StdRng| -> Vec<&'static str> {
        (0..rng.gen_range(1..4))
            .map(|_| REPOSITORIES[rng.gen_range(0..REPOSITORIES.len())])
            .collect()
    };
    if action.contains(".tokens.") {
        json!({ "tokenId": id, "tokenName": format!("ci-token-{id}") })
    } else if action.contains("gatepolicies") {
        let mut d = json!({ "gatePolicyId": id, "gatePolicyName": format!("policy {id}") });
        if action.ends_with("repositories.apply") {
            d["repositories"] = json!(repos(rng));
        }
        d
    } else if action.contains("codingstandards") || action.contains("presetsstandards") {
        let mut d =
            json!({ "codingStandardId": id, "codingStandardName": format!("standard {id}") });
        if action.ends_with("repositories.apply") {
            d["repositories"] = json!(repos(rng));
        }
        d
    } else if action == "organizations.people.create" {
        json!({ "emails": [PEOPLE[rng.gen_range(0..PEOPLE.len())], PEOPLE[rng.gen_range(0..PEOPLE.len())]] })
    } else if action.contains("hooks") || action.contains("postcommithook") {
        json!({ "url": format!("https://hooks.example.com/codacy/{id}?secret=redacted") })
    } else if action == "repositories.issues.update" {
        json!({ "issueId": format!("{id:x}"), "ignored": rng.gen_bool(0.7), "reason": "false positive" })
    } else if action == "repositories.tools.update" {
        json!({ "toolUuid": format!("{:08x}-0000-4000-8000-{:012x}", id, rng.gen::<u32>()), "enabled": rng.gen_bool(0.5) })
    } else if action == "repositories.branches.update" {
        let branch = ["main", "develop", "release/2.x"][rng.gen_range(0..3)];
        json!({ "branch": branch, "enabled": rng.gen_bool(0.5) })
    } else if action == "repositories.reanalyzecommit" {
        json!({ "commitSha": format!("{:016x}{:016x}{:08x}", rng.gen::<u64>(), rng.gen::<u64>(), rng.gen::<u32>()) })
    } else if action == "repositories.pullrequests.bypass" {
        json!({ "pullRequestNumber": rng.gen_range(1..5000) })
    } else if action == "repositories.file.update" {
        json!({ "path": format!("src/module_{id}/file.rs"), "ignored": rng.gen_bool(0.5) })
    } else if action == "repositories.settings.language.update" {
        json!({ "languages": [LANGUAGES[rng.gen_range(0..LANGUAGES.len())], LANGUAGES[rng.gen_range(0..LANGUAGES.len())]] })
    } else if action == "user.login" {
        let provider = ["GitHub", "GitLab", "Bitbucket"][rng.gen_range(0..3)];
        json!({ "provider": provider })
    } else {
        json!({ "id": id })
    }
}
