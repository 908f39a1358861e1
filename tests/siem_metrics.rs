//! The agent's own dashboard and alerts (packaging/grafana, packaging/prometheus): the alerts pass
//! their promtool unit tests, and every metric and label the dashboard or an alert names is one a
//! running agent serves on /metrics (scraped from `run` against the embedded simulator, driven
//! into retries, 429s, invalid events and dead letters so every series exists).

#[path = "common/e2e.rs"]
mod e2e;
#[path = "common/siem.rs"]
mod siem;

use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{
    generate_events, GenOptions, Quirks, RetryAfter, Simulator,
};
use serde_json::Value;
use siem::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DASHBOARD: &str = "packaging/grafana/codacy-audit-forwarder.json";
const ALERTS: &str = "packaging/prometheus/alerts.yml";
/// Labels Prometheus itself attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

#[test]
fn alerts_are_valid_and_pass_their_unit_tests() {
    let Some(promtool) = require(Peer::Promtool) else {
        return;
    };
    let dir = root().join("packaging/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What one PromQL expression names: metrics, labels in matchers and `by`/`without`, and the
/// labels its result keeps (the `by` list when it aggregates, else all of its metrics' labels).
#[derive(Debug, Default)]
struct Uses {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    aggregated_by: Option<BTreeSet<String>>,
}

fn idents(s: &str) -> Vec<(usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // Skip string literals (label values, regexes).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.push((start, &s[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

fn promql(expr: &str) -> Uses {
    let mut u = Uses::default();
    // Byte ranges of `by (...)` / `without (...)` lists, of `{...}` selectors and `[...]` ranges.
    let mut by_lists: Vec<(usize, usize)> = Vec::new();
    let words = idents(expr);
    for &(pos, word) in &words {
        let after = pos + word.len();
        let rest = &expr[after..];
        if (word == "by" || word == "without") && rest.trim_start().starts_with('(') {
            let open = after + rest.find('(').unwrap();
            let close = open + expr[open..].find(')').expect("closed by list");
            by_lists.push((open, close));
            if word == "by" {
                u.aggregated_by.get_or_insert_with(BTreeSet::new);
            }
        }
    }
    let inside = |pos: usize, open: char, close: char| {
        let before = &expr[..pos];
        before
            .rfind(open)
            .is_some_and(|o| before.rfind(close).is_none_or(|c| c < o))
    };
    for (pos, word) in words {
        let rest = expr[pos + word.len()..].trim_start();
        if by_lists.iter().any(|&(o, c)| o < pos && pos < c) {
            u.labels.insert(word.to_string());
            if let Some(by) = u.aggregated_by.as_mut() {
                by.insert(word.to_string());
            }
        } else if inside(pos, '[', ']') {
            // a range or subquery duration
        } else if inside(pos, '{', '}') {
            // A label name is followed by a matcher operator.
            if ["=~", "!~", "!=", "="]
                .iter()
                .any(|op| rest.starts_with(op))
            {
                u.labels.insert(word.to_string());
            }
        } else if word.starts_with("codacy_") {
            u.metrics.insert(word.to_string());
        }
    }
    u
}

/// `{{label}}` (Grafana legends) and `$labels.label` (alert annotations).
fn template_labels(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("{{").skip(1) {
        let inner = part.split("}}").next().unwrap_or("").trim();
        if inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !inner.is_empty() {
            out.insert(inner.to_string());
        }
    }
    for part in text.split("$labels.").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// Every PromQL expression of the dashboard with its legend, plus template-variable queries.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    let legend = m.get("legendFormat").and_then(Value::as_str).unwrap_or("");
                    out.push((e.clone(), legend.to_string()));
                }
                for x in m.values() {
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash["panels"], &mut out);
    for var in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["definition"].as_str() {
            // label_values(<selector>, <label>) -> the selector, with <label> as its "legend".
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap();
            let (selector, label) = inner.rsplit_once(',').unwrap();
            out.push((
                selector.trim().to_string(),
                format!("{{{{{}}}}}", label.trim()),
            ));
        }
    }
    out
}

/// `expr` and the annotation text of every alert.
fn alert_exprs() -> Vec<(String, String, String)> {
    let text = read(ALERTS);
    let mut out = Vec::new();
    let mut cur: Option<(String, String, String)> = None;
    let mut in_expr = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            out.extend(cur.take());
            cur = Some((name.to_string(), String::new(), String::new()));
            in_expr = false;
            continue;
        }
        let Some((_, expr, notes)) = cur.as_mut() else {
            continue;
        };
        if let Some(rest) = t.strip_prefix("expr:") {
            in_expr = true;
            expr.push_str(rest.trim().trim_start_matches(">-"));
        } else if in_expr
            && !t.contains(": ")
            && !t.is_empty()
            && !t.starts_with('#')
            && !t.ends_with(':')
        {
            expr.push(' ');
            expr.push_str(t);
        } else {
            in_expr = false;
            notes.push_str(t);
            notes.push('\n');
        }
    }
    out.extend(cur);
    out
}

/// metric -> label names, from a /metrics body (series lines only).
fn served(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').unwrap()];
            for (_, w) in idents(body) {
                labels.insert(w.to_string());
            }
        }
    }
    out
}

/// Checks one expression against what is served; returns problems.
fn check(
    what: &str,
    expr: &str,
    templates: &BTreeSet<String>,
    served: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let u = promql(expr);
    let mut problems = Vec::new();
    if u.metrics.is_empty() {
        problems.push(format!("{what}: names no codacy_ metric: {expr}"));
    }
    let mut available: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for m in &u.metrics {
        match served.get(m) {
            Some(labels) => available.extend(labels.iter().cloned()),
            None => problems.push(format!("{what}: metric {m} is not served")),
        }
    }
    for l in &u.labels {
        if !available.contains(l) {
            problems.push(format!("{what}: label {l} is not on {:?}", u.metrics));
        }
    }
    let result_labels = u.aggregated_by.clone().unwrap_or(available);
    for l in templates {
        if !result_labels.contains(l) {
            problems.push(format!(
                "{what}: {l} is used in a legend/annotation but not in the result of {expr}"
            ));
        }
    }
    problems
}

#[test]
fn the_promql_reader_sees_metrics_labels_and_aggregation() {
    let u = promql(
        r#"sum by (organization) (rate(codacy_forwarder_api_requests_total{status="429", organization=~"a|b"}[15m])) / sum by(organization) (rate(codacy_x[1m]))"#,
    );
    assert_eq!(
        u.metrics,
        ["codacy_forwarder_api_requests_total", "codacy_x"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        u.labels,
        ["organization", "status"].map(String::from).into()
    );
    assert_eq!(
        u.aggregated_by,
        Some(["organization"].map(String::from).into())
    );
    let served = served("codacy_x{organization=\"a\"} 1\n");
    assert!(
        !check("t", "codacy_y", &BTreeSet::new(), &served).is_empty(),
        "unknown metric"
    );
    assert!(
        !check("t", "codacy_x{sink=\"a\"}", &BTreeSet::new(), &served).is_empty(),
        "unknown label"
    );
    let sink: BTreeSet<String> = ["sink".to_string()].into();
    assert!(
        !check("t", "sum by (organization) (codacy_x)", &sink, &served).is_empty(),
        "legend label lost by aggregation"
    );
    assert!(check(
        "t",
        "sum by (organization) (codacy_x)",
        &["organization".to_string()].into(),
        &served
    )
    .is_empty());
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_metrics_and_labels_the_agent_serves() {
    let dashboard = dashboard_exprs();
    let alerts = alert_exprs();
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    assert!(alerts.len() >= 5, "{alerts:?}");
    let wanted: BTreeSet<String> = dashboard
        .iter()
        .map(|(e, _)| e)
        .chain(alerts.iter().map(|(_, e, _)| e))
        .flat_map(|e| promql(e).metrics)
        .collect();

    // A day of events, some the agent cannot parse; every 4th request a 429 (retries).
    let sim = Simulator::new(e2e::TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    let gen = GenOptions {
        invalid: 2,
        ..GenOptions::tricky()
    };
    sim.push_events(
        &org,
        generate_events(7, 150, now - 86_400_000, now - 1_000, &gen),
    );
    sim.set_quirks(Quirks {
        rate_limit_every: Some(4),
        retry_after: RetryAfter::Seconds(0),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();

    // Sinks: a file, and UDP syslog with the smallest datagram limit, which dead-letters the
    // events with long values.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"udp://{}\"\nformat = \"json\"\nmax_message_bytes = 480\n\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n",
        e2e::config_text(&server.base_url, dir.path(), &[&org], &[("archive", "json")], ""),
        udp.local_addr().unwrap()
    );
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let _daemon = Daemon(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("CODACY_API_TOKEN", e2e::TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let url = format!("http://127.0.0.1:{port}/metrics");
    let start = Instant::now();
    let served = loop {
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let served = served(&text);
        // Every metric is declared (# TYPE) from the start; series appear as things happen.
        if !text.is_empty() {
            let declared: BTreeSet<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
                .collect();
            let unknown: Vec<&String> = wanted
                .iter()
                .filter(|m| !declared.contains(m.as_str()))
                .collect();
            assert!(
                unknown.is_empty(),
                "the dashboard or alerts name metrics the agent does not have: {unknown:?}\n{text}"
            );
        }
        let missing: Vec<&String> = wanted.iter().filter(|m| !served.contains_key(*m)).collect();
        if missing.is_empty() {
            break served;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent never served a series of {missing:?} (used by the dashboard or alerts); /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut problems = Vec::new();
    for (expr, legend) in &dashboard {
        problems.extend(check("dashboard", expr, &template_labels(legend), &served));
    }
    for (name, expr, notes) in &alerts {
        problems.extend(check(name, expr, &template_labels(notes), &served));
    }
    assert!(
        problems.is_empty(),
        "{}\nserved: {served:#?}",
        problems.join("\n")
    );
    server.shutdown().await;
}
