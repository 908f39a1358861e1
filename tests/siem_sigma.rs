//! Detections (detections/): the Sigma rules are complete, the committed Splunk/Elastic/Sentinel
//! queries are what pySigma makes of them today, and every rule, run with pySigma's DuckDB backend
//! over NDJSON the agent itself wrote from fixture events, fires on the events it is about and
//! stays quiet on a benign day.

#[path = "common/siem.rs"]
mod siem;

use siem::*;
use std::collections::BTreeSet;
use std::process::Command;

fn rules() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(root().join("detections/sigma"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Checks that need no Python: enough rules, unique ids, the keys every rule must carry.
#[test]
fn at_least_twelve_complete_rules_with_unique_ids() {
    let rules = rules();
    let generated = rules
        .iter()
        .filter(|(_, t)| !t.contains("\ngenerate: false"))
        .count();
    assert!(generated >= 12, "{generated} rules generate queries");
    let mut ids = BTreeSet::new();
    for (name, text) in &rules {
        for key in [
            "title:",
            "id:",
            "name:",
            "description:",
            "level:",
            "tags:",
            "falsepositives:",
        ] {
            assert!(text.lines().any(|l| l.starts_with(key)), "{name}: no {key}");
        }
        let id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
        assert!(ids.insert(id.to_string()), "{name}: duplicate id {id}");
        assert!(
            text.contains(&format!("name: {name}\n")),
            "{name}: name must equal the file name"
        );
        if !text.contains("\ncorrelation:") {
            assert!(
                text.contains("logsource:\n  product: codacy\n  service: audit\n"),
                "{name}"
            );
        }
    }
}

#[test]
fn the_unknown_action_rule_knows_exactly_the_agents_catalog() {
    // Otherwise a catalogued action would alert as "unknown", or a new one never would.
    let text = read("detections/sigma/codacy_unknown_action.yml");
    let listed: BTreeSet<&str> = text
        .split("  known:\n    action:\n")
        .nth(1)
        .expect("a `known: action:` list")
        .lines()
        .map_while(|l| l.strip_prefix("      - "))
        .collect();
    let catalog: BTreeSet<&str> = codacy_audit_forwarder::format::catalog::ACTIONS
        .iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        listed, catalog,
        "detections/sigma/codacy_unknown_action.yml drifted from the action catalog"
    );
}

fn python_or_skip() -> Option<std::path::PathBuf> {
    let py = sigma_python();
    if py.is_none() {
        peer_missing(
            &format!("the pySigma venv ({})", sigma_venv().display()),
            SIGMA_VENV_INSTALL,
        );
    }
    py
}

#[test]
fn committed_queries_are_what_the_rules_convert_to() {
    let Some(py) = python_or_skip() else { return };
    let out = Command::new(py)
        .arg(root().join("detections/generate.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detections/{{splunk,elastic,sentinel}} are stale or a rule is incomplete:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rule_fires_on_its_events_in_the_agents_output_and_not_on_a_benign_day() {
    let Some(py) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for day in ["attack-day", "benign-day"] {
        // What a SIEM receives from the agent: format = "json", as the file sink writes it.
        let fixture = root().join(format!("detections/tests/{day}.ndjson"));
        let ndjson = agent(&[
            "preview",
            "--format",
            "json",
            "--org",
            "gh/acme",
            fixture.to_str().unwrap(),
        ]);
        assert!(ndjson.lines().count() > 10, "{day}: {ndjson}");
        let path = dir.path().join(format!("{day}.ndjson"));
        std::fs::write(&path, ndjson).unwrap();
        paths.push(path);
    }
    let out = Command::new(py)
        .arg(root().join("detections/run_rules.py"))
        .arg("--attack")
        .arg(&paths[0])
        .arg("--benign")
        .arg(&paths[1])
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    // Every generated rule was run (the script fails a rule without expected events).
    let generated = rules()
        .iter()
        .filter(|(_, t)| !t.contains("\ngenerate: false"))
        .count();
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        generated,
        "{report}"
    );
}
