//! The Splunk add-on (packaging/splunk/TA-codacy-audit): its lookup is the agent's own catalog,
//! its CIM `action` rule agrees with that catalog, its pieces reference each other correctly, its
//! CEF extractions recover the fields the agent writes, and it packs into an installable .tgz.

#[path = "common/siem.rs"]
mod siem;

use siem::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const TA: &str = "packaging/splunk/TA-codacy-audit";
const LOOKUP: &str = "packaging/splunk/TA-codacy-audit/lookups/codacy_actions.csv";

fn ta_conf(name: &str) -> Vec<Stanza> {
    conf(&root().join(TA).join(name))
}

fn stanza<'a>(confs: &'a [Stanza], name: &str) -> &'a Stanza {
    confs
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no [{name}] stanza"))
}

/// The lookup's rows as column -> value maps (RFC 4180 quoting; the header has no quotes).
fn lookup_rows() -> Vec<BTreeMap<String, String>> {
    let text = read(LOOKUP);
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            let cols = split_csv(l);
            assert_eq!(cols.len(), header.len(), "{l}");
            header.iter().cloned().zip(cols).collect()
        })
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn the_lookup_is_exactly_what_the_agent_catalog_prints() {
    let generated = agent(&["catalog", "--format", "csv"]);
    assert!(
        read(LOOKUP) == generated,
        "{LOOKUP} drifted from the agent's action catalog; regenerate it with:\n  \
         cargo run -- catalog --format csv > {LOOKUP}"
    );
    // Every documented action has a row (the catalog's own tests tie it to Codacy's docs).
    let actions: BTreeSet<String> = lookup_rows()
        .into_iter()
        .map(|r| r["action"].clone())
        .collect();
    for a in [
        "user.login",
        "repositories.pullrequests.bypass",
        "organizations.security.items.export",
        "repositories.file.update",
    ] {
        assert!(actions.contains(a), "{a} has no row");
    }
    assert!(actions.len() >= 43, "{} rows", actions.len());
}

/// The `match(<field>, "\.(s1|s2)$"), "<cim>"` rules of an `EVAL-action`, in order: action
/// suffixes (dots escaped as `\.`) and the CIM action they give.
fn suffix_rules(eval: &str) -> Vec<(Vec<String>, String)> {
    let mut rules = Vec::new();
    for part in eval.split("match(").skip(1) {
        let pattern = part
            .split("\"\\.(")
            .nth(1)
            .and_then(|r| r.split(")$\"").next())
            .unwrap_or_else(|| {
                panic!("rule not in the form match(x, \"\\.(a|b)$\"), \"v\": {part}")
            });
        let value = part
            .split(")$\"), \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no value after {pattern}"));
        let suffixes = pattern
            .split('|')
            .map(|s| format!(".{}", s.replace("\\.", ".")))
            .collect();
        rules.push((suffixes, value.to_string()));
    }
    rules
}

/// What an `EVAL-action` gives a successful event of `action` (the rules' first match, else the
/// `true()` default; logins are Authentication).
fn eval_action(eval: &str, action: &str) -> String {
    if action == "user.login" {
        assert!(
            eval.contains("==\"user.login\""),
            "logins are not special-cased: {eval}"
        );
        return "success".into();
    }
    for (suffixes, value) in suffix_rules(eval) {
        if suffixes.iter().any(|s| action.ends_with(s.as_str())) {
            return value;
        }
    }
    eval.split("true(), \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a true() default")
        .to_string()
}

#[test]
fn cim_action_in_props_agrees_with_the_catalog_for_every_action_and_format() {
    let props = ta_conf("default/props.conf");
    for st in ["codacy:audit", "codacy:audit:cef"] {
        let eval = stanza(&props, st).get("EVAL-action").expect("EVAL-action");
        assert!(suffix_rules(eval).len() >= 3, "{st}: {eval}");
        for row in lookup_rows() {
            assert_eq!(
                eval_action(eval, &row["action"]),
                row["cim_action"],
                "[{st}] EVAL-action and the catalog disagree on {}",
                row["action"]
            );
        }
        // Unknown future actions still get a CIM action.
        let fallback = eval_action(eval, "organizations.widgets.frobnicate");
        assert_eq!(fallback, "modified");
        let cim = ["created", "deleted", "modified", "read", "success"];
        for row in lookup_rows() {
            assert!(cim.contains(&row["cim_action"].as_str()), "{row:?}");
        }
    }
}

#[test]
fn cim_fields_are_set_for_both_sourcetypes() {
    let props = ta_conf("default/props.conf");
    for st in ["codacy:audit", "codacy:audit:cef"] {
        let s = stanza(&props, st);
        let all: String = s.keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        // Change: action status object object_id user dvc vendor_product change_type object_category;
        // Authentication: app user action.
        for field in ["action", "status", "object", "vendor_product", "app"] {
            assert!(
                s.get(&format!("EVAL-{field}")).is_some(),
                "[{st}] no EVAL-{field}"
            );
        }
        for field in [
            " AS user",
            " AS object_id",
            " AS dvc",
            "change_type",
            "object_category",
        ] {
            assert!(
                all.contains(field)
                    || s.get(&format!("EVAL-{}", field.trim_start_matches(" AS ")))
                        .is_some(),
                "[{st}] nothing sets {field}"
            );
        }
        assert_eq!(s.get("EVAL-vendor_product"), Some("\"Codacy\""));
        assert!(s.get("SHOULD_LINEMERGE") == Some("false"), "[{st}]");
    }
    assert_eq!(stanza(&props, "codacy:audit").get("KV_MODE"), Some("json"));
}

#[test]
fn props_transforms_lookup_eventtypes_and_tags_reference_each_other() {
    let props = ta_conf("default/props.conf");
    let transforms = ta_conf("default/transforms.conf");
    let header: BTreeSet<String> = read(LOOKUP)
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    for s in &props {
        for (k, v) in &s.keys {
            if k.starts_with("REPORT-") {
                for t in v.split(',') {
                    stanza(&transforms, t.trim());
                }
            }
            if k.starts_with("LOOKUP-") {
                let mut words = v.split_whitespace();
                let name = words.next().unwrap();
                let t = stanza(&transforms, name);
                let file = t.get("filename").expect("filename");
                assert!(
                    root().join(TA).join("lookups").join(file).exists(),
                    "{file}"
                );
                // Lookup-side names: the first word of each `x [AS y]` item.
                let words: Vec<&str> = words.collect();
                let mut i = 0;
                while i < words.len() {
                    let w = words[i];
                    if w == "OUTPUT" || w == "OUTPUTNEW" {
                        i += 1;
                        continue;
                    }
                    assert!(
                        header.contains(w),
                        "[{}] {k}: {w} is not a lookup column",
                        s.name
                    );
                    i += if words.get(i + 1) == Some(&"AS") {
                        3
                    } else {
                        1
                    };
                }
            }
        }
    }
    let eventtypes = ta_conf("default/eventtypes.conf");
    for t in ta_conf("default/tags.conf") {
        let et = t
            .name
            .strip_prefix("eventtype=")
            .expect("tags by eventtype");
        stanza(&eventtypes, et);
    }
    let tags = ta_conf("default/tags.conf");
    assert_eq!(
        stanza(&tags, "eventtype=codacy_audit_change").get("change"),
        Some("enabled")
    );
    assert_eq!(
        stanza(&tags, "eventtype=codacy_audit_change").get("audit"),
        Some("enabled")
    );
    assert_eq!(
        stanza(&tags, "eventtype=codacy_audit_authentication").get("authentication"),
        Some("enabled")
    );
    let meta = ta_conf("metadata/default.meta");
    assert_eq!(
        stanza(&meta, "").get("export"),
        Some("system"),
        "knowledge must apply outside the app"
    );
}

#[test]
fn app_version_follows_the_agent() {
    let app = ta_conf("default/app.conf");
    assert_eq!(
        stanza(&app, "launcher").get("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stanza(&app, "package").get("id"), Some("TA-codacy-audit"));
}

/// Splunk's REPORT regexes are PCRE; Python's `re` reads these ones the same way.
#[test]
fn cef_extractions_recover_what_the_agent_wrote() {
    if Command::new("python3").arg("--version").output().is_err() {
        return peer_missing("python3", "apt-get install python3");
    }
    let transforms = ta_conf("default/transforms.conf");
    let header = stanza(&transforms, "codacy_cef_header")
        .get("REGEX")
        .unwrap()
        .to_string();
    let ext = stanza(&transforms, "codacy_cef_extensions")
        .get("REGEX")
        .unwrap()
        .to_string();
    let cef = agent(&[
        "preview",
        "--format",
        "cef",
        "--org",
        "gh/acme",
        root()
            .join("tests/fixtures/formats/events.ndjson")
            .to_str()
            .unwrap(),
    ]);
    let script = r#"
import json, re, sys
header, ext = sys.argv[1], sys.argv[2]
out = []
for line in sys.stdin.read().splitlines():
    h = re.search(header, line)
    fields = {"signature_id": h.group(5), "signature": h.group(6), "cef_severity": h.group(7)} if h else {}
    for k, v in re.findall(ext, line):
        fields.setdefault(k, v)
    out.append(fields)
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &header, &ext])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cef.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let parsed: Vec<BTreeMap<String, String>> = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<&str> = cef.lines().collect();
    assert_eq!(parsed.len(), lines.len());
    for (fields, line) in parsed.iter().zip(&lines) {
        for key in [
            "signature_id",
            "signature",
            "cef_severity",
            "rt",
            "act",
            "cs6",
            "externalId",
        ] {
            assert!(
                fields.contains_key(key),
                "{key} not extracted from {line}\n{fields:?}"
            );
        }
    }
    // The first fixture event, field by field; then the one whose values need escapes.
    let first = &parsed[0];
    assert_eq!(first["act"], first["signature_id"]);
    assert_eq!(
        first["act"],
        "repositories.integrations.providersettings.update"
    );
    assert_eq!(
        first["signature"],
        "Update Git provider integration settings"
    );
    assert_eq!(first["suser"], "a@b.com");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["cs1"], "service-repo");
    assert_eq!(
        first["cs4"],
        r#"{"commitStatus":true,"pullRequestComment":false}"#
    );
    assert_eq!(first["msg"], "Git provider settings updated");
    let eve = parsed
        .iter()
        .find(|f| f.get("suser").is_some_and(|u| u.starts_with("eve")))
        .unwrap();
    assert_eq!(eve["suser"], r"eve|x\=y\\z@b.com");
    assert_eq!(eve["outcome"], "failure");
    assert_eq!(
        eve["msg"],
        r"bad password | set x\=y \\ path C:\\temp\\ end\\"
    );
}

#[test]
fn the_add_on_packs_into_a_tgz_whose_top_folder_is_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("packaging/splunk/package.sh"))
        .env("CARGO_TARGET_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tgz = dir.path().join(format!(
        "splunk/TA-codacy-audit-{}.tgz",
        env!("CARGO_PKG_VERSION")
    ));
    let list = Command::new("tar").arg("tzf").arg(&tgz).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for f in [
        "default/app.conf",
        "default/props.conf",
        "default/transforms.conf",
        "default/eventtypes.conf",
        "default/tags.conf",
        "lookups/codacy_actions.csv",
        "metadata/default.meta",
        "README.md",
    ] {
        assert!(
            list.lines().any(|l| l == format!("TA-codacy-audit/{f}")),
            "{f} missing from {}:\n{list}",
            tgz.display()
        );
    }
    assert!(
        list.lines().all(|l| l.starts_with("TA-codacy-audit/")),
        "{list}"
    );
}
