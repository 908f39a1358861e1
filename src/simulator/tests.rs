use super::generate::rfc3339_ms;
use super::vocabulary::AWKWARD;
use super::*;
use crate::clock::Clock;
use crate::event::AuditEvent;
use serde_json::json;
use std::collections::BTreeMap;

const TOKEN: &str = "sim-token-123";

fn acme() -> OrgRef {
    OrgRef::new(Provider::Gh, "acme")
}

/// `count` simple events one millisecond apart from `start`, numbered by `n`.
fn numbered(start: i64, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"action": "user.login", "timestamp": rfc3339_ms(start + i as i64), "n": i}))
        .collect()
}

struct Peer {
    sim: Simulator,
    server: ServerHandle,
    client: reqwest::Client,
}

async fn peer(events: Vec<Value>) -> Peer {
    let sim = Simulator::new(TOKEN);
    sim.add_org(&acme());
    sim.push_events(&acme(), events);
    let server = sim.serve().await.unwrap();
    Peer {
        sim,
        server,
        client: reqwest::Client::new(),
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// Events of either shape.
    fn events(&self) -> Vec<Value> {
        match self.json() {
            Value::Array(items) => items,
            Value::Object(mut m) => match m.remove("data") {
                Some(Value::Array(items)) => items,
                other => panic!("no data array: {other:?}"),
            },
            other => panic!("unexpected body {other}"),
        }
    }
    fn ns(&self) -> Vec<u64> {
        self.events()
            .iter()
            .map(|e| e["n"].as_u64().unwrap())
            .collect()
    }
    fn cursor(&self) -> Option<String> {
        self.json()["pagination"]["cursor"]
            .as_str()
            .map(str::to_string)
    }
}

impl Peer {
    async fn get_org(&self, provider: &str, org: &str, query: &str, token: Option<&str>) -> Reply {
        let mut url = reqwest::Url::parse(&self.server.base_url).unwrap();
        url.path_segments_mut().unwrap().extend([
            "api",
            "v3",
            "organizations",
            provider,
            org,
            "audit",
        ]);
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        let mut request = self.client.get(url);
        if let Some(token) = token {
            request = request.header("api-token", token);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, query: &str) -> Reply {
        self.get_org("gh", "acme", query, Some(TOKEN)).await
    }

    /// Follows cursors from a first page until the last, returning every event seen.
    async fn walk(&self, query: &str) -> (Vec<Value>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("{query}&cursor={c}"),
                None => query.to_string(),
            };
            let reply = self.get(&q).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            pages += 1;
            all.extend(reply.events());
            cursor = reply.cursor();
            if cursor.is_none() {
                return (all, pages);
            }
        }
    }
}

fn multiset(events: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e.to_string()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn envelope_window_is_from_inclusive_to_exclusive() {
    let p = peer(numbered(1_000, 10)).await;
    let reply = p.get("from=1002&to=1007").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(reply.ns(), vec![2, 3, 4, 5, 6]);
    let body = reply.json();
    assert_eq!(body["pagination"]["total"], 5);
    assert_eq!(body["pagination"]["limit"], 100);
    assert!(body["pagination"].get("cursor").is_none());
    // No bounds: everything; an empty window: nothing.
    assert_eq!(p.get("").await.ns().len(), 10);
    assert!(p.get("from=2000&to=3000").await.ns().is_empty());
    assert!(p.get("from=1005&to=1005").await.ns().is_empty());
}

#[tokio::test]
async fn newest_first_order_reverses_pages_and_cursor_offsets() {
    let p = peer(numbered(1_000, 10)).await;
    p.sim.update_quirks(|q| q.order = Order::NewestFirst);
    let first = p.get("from=1000&to=1010&limit=4").await;
    assert_eq!(first.ns(), vec![9, 8, 7, 6]);
    assert_eq!(first.cursor().as_deref(), Some(encode_cursor(4).as_str()));
    let (all, pages) = p.walk("from=1000&to=1010&limit=4").await;
    assert_eq!(pages, 3);
    let ns: Vec<u64> = all.iter().map(|e| e["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    let last = p.sim.requests().pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.limit, last.cursor.as_deref()),
        (
            Some(1000),
            Some(1010),
            Some(4),
            Some(encode_cursor(8).as_str())
        )
    );
    assert_eq!((last.status, last.events), (200, 2));
}

#[tokio::test]
async fn limit_defaults_to_100_and_is_clamped_to_1000() {
    let p = peer(numbered(0, 1_200)).await;
    let default = p.get("").await;
    assert_eq!(default.ns().len(), 100);
    assert_eq!(default.cursor().as_deref(), Some("MTAw"));
    let big = p.get("limit=5000").await;
    assert_eq!(big.ns().len(), 1000);
    assert_eq!(big.json()["pagination"]["limit"], 1000);
    assert_eq!(big.json()["pagination"]["total"], 1200);
    assert_eq!(p.get("limit=0").await.ns().len(), 1);
}

#[tokio::test]
async fn cursor_walk_returns_every_event_exactly_once_in_both_orders() {
    let opts = GenOptions {
        page_boundaries: Some(100),
        ..GenOptions::tricky()
    };
    let events = generate_events(7, 1_050, 1_700_000_000_000, 1_700_000_600_000, &opts);
    let p = peer(events.clone()).await;
    let expected = multiset(&events);
    for order in [Order::Ascending, Order::NewestFirst] {
        p.sim.update_quirks(|q| q.order = order);
        let (all, pages) = p.walk("from=0&to=9999999999999&limit=100").await;
        assert_eq!(pages, 11, "{order:?}");
        assert_eq!(multiset(&all), expected, "{order:?}");
    }
    assert_eq!(multiset(&p.sim.events(&acme())), expected);
}

#[tokio::test]
async fn full_bare_array_keeps_the_oldest_or_the_newest_part() {
    let p = peer(numbered(1_000, 10)).await;
    let set = |keeps, order| {
        p.sim.set_quirks(Quirks {
            shape: Shape::Array,
            array_keeps: keeps,
            order,
            ..Quirks::default()
        })
    };
    set(Keep::Oldest, Order::Ascending);
    let reply = p.get("from=1000&to=1010&limit=3").await;
    assert!(reply.json().is_array());
    assert_eq!(reply.ns(), vec![0, 1, 2]);
    // The array shape has no cursor: asking for one changes nothing.
    let again = p.get("from=1000&to=1010&limit=3&cursor=Mw").await;
    assert_eq!(again.ns(), vec![0, 1, 2]);
    set(Keep::Newest, Order::Ascending);
    assert_eq!(p.get("from=1000&to=1010&limit=3").await.ns(), vec![7, 8, 9]);
    set(Keep::Newest, Order::NewestFirst);
    assert_eq!(p.get("from=1000&to=1010&limit=3").await.ns(), vec![9, 8, 7]);
    set(Keep::Oldest, Order::NewestFirst);
    assert_eq!(p.get("from=1000&to=1010&limit=3").await.ns(), vec![2, 1, 0]);
    // A window that fits is returned whole.
    assert_eq!(p.get("from=1004&to=1006&limit=3").await.ns(), vec![5, 4]);
}

#[tokio::test]
async fn page_cap_returns_fewer_than_asked_and_the_cursor_still_covers_all() {
    let p = peer(numbered(0, 20)).await;
    p.sim.update_quirks(|q| q.page_cap = Some(7));
    let first = p.get("limit=100").await;
    assert_eq!(first.ns(), (0..7).collect::<Vec<_>>());
    let (all, pages) = p.walk("limit=100").await;
    assert_eq!((all.len(), pages), (20, 3));
    p.sim.update_quirks(|q| q.shape = Shape::Array);
    assert_eq!(p.get("limit=100").await.ns().len(), 7);
    // A limit below the cap is honoured.
    assert_eq!(p.get("limit=5").await.ns().len(), 5);
}

#[tokio::test]
async fn alternate_shape_switches_per_first_page_and_keeps_envelope_for_cursors() {
    let p = peer(numbered(0, 5)).await;
    p.sim.update_quirks(|q| q.shape = Shape::Alternate);
    assert!(p.get("limit=2").await.json().is_array());
    let envelope = p.get("limit=2").await;
    assert!(envelope.json().is_object());
    let cursor = envelope.cursor().unwrap();
    let follow = p.get(&format!("limit=2&cursor={cursor}")).await;
    assert_eq!(follow.ns(), vec![2, 3]);
    assert!(p.get("limit=2").await.json().is_array());
}

#[tokio::test]
async fn wrong_or_missing_token_and_auth_quirks_are_refused() {
    let p = peer(numbered(0, 3)).await;
    for token in [Some("wrong"), None] {
        let reply = p.get_org("gh", "acme", "", token).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.json()["error"], "Unauthorized");
        assert!(!reply.body.contains(TOKEN));
    }
    p.sim.update_quirks(|q| q.auth_failure = true);
    assert_eq!(p.get("").await.status, 401);
    p.sim.update_quirks(|q| {
        q.auth_failure = false;
        q.forbidden = true;
    });
    let reply = p.get("").await;
    assert_eq!(reply.status, 403);
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("Business"));
    p.sim.update_quirks(|q| q.forbidden = false);
    assert_eq!(p.get("").await.status, 200);
}

#[tokio::test]
async fn unknown_organization_provider_or_route_is_404() {
    let p = peer(numbered(0, 3)).await;
    let reply = p.get_org("gh", "nobody", "", Some(TOKEN)).await;
    assert_eq!(reply.status, 404);
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("gh/nobody"));
    assert_eq!(p.get_org("gl", "acme", "", Some(TOKEN)).await.status, 404);
    assert_eq!(p.get_org("svn", "acme", "", Some(TOKEN)).await.status, 404);
    let other = p
        .client
        .get(format!("{}/api/v3/user", p.server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    p.sim.remove_org(&acme());
    assert_eq!(p.get("").await.status, 404);
}

#[tokio::test]
async fn url_encoded_organization_names_are_decoded() {
    let p = peer(Vec::new()).await;
    let odd = OrgRef::new(Provider::Bbe, "Acme Corp/ü & Söhne?#");
    p.sim.push_events(&odd, numbered(5, 2));
    let reply = p.get_org("bbe", &odd.name, "", Some(TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.ns(), vec![0, 1]);
    assert_eq!(
        p.sim.requests().last().unwrap().org,
        "bbe/Acme Corp/ü & Söhne?#"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_the_retry_gets_the_real_page() {
    let p = peer(numbered(0, 3)).await;
    p.sim.update_quirks(|q| q.rate_limit_every = Some(3));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let reply = p.get("limit=2").await;
        if reply.status == 429 {
            assert_eq!(reply.headers["retry-after"].to_str().unwrap(), "1");
        } else {
            assert_eq!(reply.ns(), vec![0, 1]);
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
    p.sim.update_quirks(|q| q.retry_after = RetryAfter::Omitted);
    p.get("").await;
    p.get("").await;
    let reply = p.get("").await;
    assert_eq!(reply.status, 429);
    assert!(reply.headers.get("retry-after").is_none());
}

#[derive(Debug)]
struct FixedClock(i64);
impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

#[tokio::test]
async fn retry_after_can_be_an_http_date() {
    // 2024-07-01T09:45:30Z
    let sim = Simulator::with_clock(TOKEN, Arc::new(FixedClock(1_719_827_130_000)));
    sim.add_org(&acme());
    sim.set_quirks(Quirks {
        rate_limit_every: Some(1),
        retry_after: RetryAfter::HttpDate(90),
        ..Quirks::default()
    });
    let server = sim.serve().await.unwrap();
    let reply = reqwest::Client::new()
        .get(format!(
            "{}/api/v3/organizations/gh/acme/audit",
            server.base_url
        ))
        .header("api-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 429);
    assert_eq!(
        reply.headers()["retry-after"],
        "Mon, 01 Jul 2024 09:47:00 GMT"
    );
}

#[tokio::test]
async fn unavailable_truncated_and_html_faults_hit_the_configured_requests() {
    let p = peer(numbered(0, 5)).await;
    p.sim.set_quirks(Quirks {
        unavailable_every: Some(2),
        truncate_every: Some(3),
        non_json_every: Some(5),
        ..Quirks::default()
    });
    let mut seen = Vec::new();
    for _ in 0..6 {
        let reply = p.get("").await;
        let parses = serde_json::from_str::<Value>(&reply.body).is_ok();
        let kind = match (reply.status, parses) {
            (503, _) => "503",
            (200, true) => "ok",
            (200, false) if reply.body.starts_with("<!DOCTYPE html>") => {
                assert!(reply.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"));
                "html"
            }
            (200, false) => {
                assert!(reply.body.starts_with("{\"data\":["), "{}", reply.body);
                "truncated"
            }
            other => panic!("unexpected {other:?}"),
        };
        seen.push(kind);
    }
    // 2, 4 and 6 are 503 (checked before the body faults), 3 truncated, 5 HTML.
    assert_eq!(seen, vec!["ok", "503", "truncated", "503", "html", "503"]);
    let log = p.sim.requests();
    assert_eq!(log.len(), 6);
    assert_eq!(p.sim.request_count(), 6);
    assert_eq!(log[1].status, 503);
    assert_eq!(log[0].events, 5);
}

#[tokio::test]
async fn truncated_empty_pages_are_still_invalid_json() {
    let p = peer(Vec::new()).await;
    p.sim.set_quirks(Quirks {
        shape: Shape::Array,
        truncate_every: Some(1),
        ..Quirks::default()
    });
    let reply = p.get("").await;
    assert_eq!(reply.status, 200);
    assert!(
        serde_json::from_str::<Value>(&reply.body).is_err(),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn bad_query_values_are_400_and_unknown_parameters_ignored() {
    let p = peer(numbered(0, 3)).await;
    for q in [
        "from=yesterday",
        "to=1.5",
        "limit=ten",
        "cursor=!!!",
        "cursor=YWJj",
    ] {
        let reply = p.get(q).await;
        assert_eq!(reply.status, 400, "{q}");
        assert_eq!(reply.json()["error"], "Bad Request");
    }
    assert_eq!(p.get("foo=bar&sort=desc").await.ns(), vec![0, 1, 2]);
    // A cursor past the end is an empty last page.
    let past = p.get(&format!("cursor={}", encode_cursor(50))).await;
    assert!(past.ns().is_empty());
    assert_eq!(past.cursor(), None);
}

#[tokio::test]
async fn late_arrivals_and_unparseable_events_are_served_in_their_place() {
    let p = peer(numbered(1_000, 3)).await;
    // A late event, older than everything held, and an event with no timestamp next to it.
    p.sim.push_events(
        &acme(),
        vec![
            json!({"action": "user.login", "timestamp": rfc3339_ms(500), "n": 100}),
            json!({"action": "user.login", "n": 101}),
        ],
    );
    p.sim
        .push_events_at(&acme(), vec![(1_001, json!("not an event"))]);
    assert_eq!(p.get("from=0&to=999").await.ns(), vec![100, 101]);
    let events = p.sim.events(&acme());
    assert_eq!(events.len(), 6);
    assert_eq!(events[0]["n"], 100);
    assert_eq!(events[3]["n"], 1);
    assert_eq!(events[4], json!("not an event"));
    let window = p.get("from=1001&to=1002").await;
    assert_eq!(window.events().len(), 2);
}

#[tokio::test]
async fn slow_responses_are_delayed() {
    let p = peer(numbered(0, 1)).await;
    p.sim
        .update_quirks(|q| q.slow = Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    assert_eq!(p.get("").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let p = peer(numbered(0, 1)).await;
    let url = format!("{}/api/v3/organizations/gh/acme/audit", p.server.base_url);
    p.server.shutdown().await;
    let result = reqwest::Client::new()
        .get(url)
        .header("api-token", TOKEN)
        .send()
        .await;
    assert!(result.is_err());
}

#[tokio::test(start_paused = true)]
async fn producer_keeps_adding_fresh_events() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gl, "demo");
    let clock: SharedClock = Arc::new(crate::clock::TokioClock::starting_at(1_700_000_000_000));
    let producer = sim.spawn_producer_with(
        &org,
        ProducerOptions {
            every: Duration::from_secs(5),
            late_every: Some(2),
            late_by: Duration::from_secs(60),
            ..ProducerOptions::default()
        },
        clock,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    while sim.event_count(&org) < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.abort();
    let events = sim.events(&org);
    assert!(events.len() >= 10);
    let times: Vec<i64> = events
        .iter()
        .map(|e| AuditEvent::from_value(e.clone()).unwrap().timestamp_ms)
        .collect();
    assert!(times.iter().all(|&t| t >= 1_700_000_000_000 - 60_000));
    // Fresh events carry their tick's time (5 s after start or later); late ones are stamped a
    // minute before their tick, so before the producer even started.
    let start = 1_700_000_000_000;
    assert!(times.iter().filter(|&&t| t >= start + 5_000).count() >= 8);
    assert!(times.iter().any(|&t| t < start));
}

#[test]
fn cursor_codec_matches_codacy_style() {
    assert_eq!(encode_cursor(250), "MjUw");
    assert_eq!(encode_cursor(1000), "MTAwMA==");
    for n in [0, 1, 99, 100, 1000, 123_456_789] {
        assert_eq!(decode_cursor(&encode_cursor(n)), Some(n));
    }
    assert_eq!(decode_cursor("MTAwMA"), Some(1000));
    assert_eq!(decode_cursor("YWJj"), None); // "abc"
    assert_eq!(decode_cursor(""), None);
    assert_eq!(decode_cursor("M"), None);
    assert_eq!(decode_cursor("MjUw===="), None);
}

#[test]
fn generator_is_deterministic_for_a_seed() {
    let opts = GenOptions::tricky();
    let a = generate_events(42, 500, 0, 86_400_000, &opts);
    let b = generate_events(42, 500, 0, 86_400_000, &opts);
    let c = generate_events(43, 500, 0, 86_400_000, &opts);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 500);
}

/// Every string anywhere in `v`.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            out.push(k);
            strings(v, out)
        }),
        _ => {}
    }
}

#[test]
fn generator_covers_catalog_fields_and_awkward_text() {
    let (from, to) = (1_700_000_000_000, 1_700_086_400_000);
    let events = generate_events(1, 5_000, from, to, &GenOptions::default());
    let parsed: Vec<AuditEvent> = events
        .iter()
        .map(|e| AuditEvent::from_value(e.clone()).unwrap())
        .collect();
    assert!(parsed
        .windows(2)
        .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
    assert!(parsed.iter().all(|e| (from..to).contains(&e.timestamp_ms)));
    for (action, repo_scoped, _) in ACTIONS {
        let of_action: Vec<_> = parsed.iter().filter(|e| e.action() == *action).collect();
        assert!(!of_action.is_empty(), "{action} never generated");
        if *repo_scoped {
            assert!(
                of_action.iter().all(|e| e.repository().is_some()),
                "{action}"
            );
        }
    }
    let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count();
    assert!(count(&|e| e["actor"].is_string()) > 100);
    assert!(count(&|e| e["actor"]["role"].is_string()) > 4_000);
    assert!(count(&|e| e["timestamp"].is_number()) > 50);
    assert!(count(&|e| e["result"] == "failed") > 100);
    assert!(count(&|e| e["result"] == "rejected") > 50);
    assert!(count(&|e| e["source"] == "API") > 1_000);
    assert!(count(&|e| e["details"].is_object()) > 1_000);
    assert!(count(&|e| e["details"].is_string()) > 100);
    assert!(count(&|e| e.get("details") == Some(&Value::Null)) > 100);
    assert!(count(&|e| e.get("details").is_none()) > 100);
    assert!(count(&|e| e.get("entityId").is_some()) > 3_000);
    assert!(count(&|e| e.get("ipAddress").is_some()) > 50);
    let ts_text = events.iter().find_map(|e| e["timestamp"].as_str()).unwrap();
    assert_eq!(ts_text.len(), "2024-07-01T09:45:30.656Z".len());
    assert!(ts_text.ends_with('Z'));

    let mut all = Vec::new();
    events.iter().for_each(|e| strings(e, &mut all));
    for snippet in AWKWARD.iter().filter(|s| !s.is_empty()) {
        assert!(
            all.iter().any(|s| s.contains(snippet)),
            "missing {snippet:?}"
        );
    }
    for needle in ["|", "=", "\\", "\r", "\n", "\t", "\"", "]", "ü", "🚀"] {
        assert!(all.iter().any(|s| s.contains(needle)), "missing {needle:?}");
    }
    assert!(all.iter().any(|s| s.len() > 2_000));
}

#[test]
fn generator_forces_duplicates_shared_milliseconds_unknown_and_invalid_events() {
    let opts = GenOptions {
        duplicates: 4,
        same_ms_groups: 3,
        same_ms_group_size: 5,
        unknown_actions: 2,
        invalid: 5,
        page_boundaries: Some(100),
        ..GenOptions::default()
    };
    // A wide range, so that ties only come from the options.
    let events = generate_events(9, 350, 0, 1_000_000_000_000, &opts);
    assert_eq!(events.len(), 350);
    let identical = events
        .windows(2)
        .filter(|w| w[0] == w[1] && w[0].is_object())
        .count();
    assert!(identical >= 4, "{identical}");
    let parsed: Vec<Option<AuditEvent>> = events
        .iter()
        .map(|e| AuditEvent::from_value(e.clone()).ok())
        .collect();
    assert_eq!(parsed.iter().filter(|e| e.is_none()).count(), 5);
    let unknown = parsed
        .iter()
        .flatten()
        .filter(|e| !ACTIONS.iter().any(|(a, _, _)| *a == e.action()))
        .count();
    assert_eq!(unknown, 2);
    // Groups of five in one millisecond.
    let valid: Vec<i64> = parsed.iter().flatten().map(|e| e.timestamp_ms).collect();
    let mut per_ms = BTreeMap::<i64, usize>::new();
    valid
        .iter()
        .for_each(|t| *per_ms.entry(*t).or_default() += 1);
    assert!(per_ms.values().filter(|&&c| c >= 5).count() >= 1);
    // Page boundaries (counting from both ends) fall inside a millisecond.
    let ts = |i: usize| parsed[i].as_ref().map(|e| e.timestamp_ms);
    for b in [100, 200, 300, 250, 150, 50] {
        if let (Some(x), Some(y)) = (ts(b - 1), ts(b)) {
            assert_eq!(x, y, "boundary {b}");
        }
    }
}

mod prop {
    use super::super::server::{page, AuditQuery};
    use super::*;
    use proptest::prelude::*;

    fn body_events(body: &[u8]) -> (Vec<Value>, Option<String>) {
        match serde_json::from_slice::<Value>(body).unwrap() {
            Value::Array(items) => (items, None),
            v => (
                v["data"].as_array().unwrap().clone(),
                v["pagination"]["cursor"].as_str().map(str::to_string),
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the window, limit, cap and order: following cursors yields exactly the
        /// window's events (duplicates and shared milliseconds included), and a bare array is
        /// the window's oldest or newest `min(limit, cap)` events.
        #[test]
        fn pages_cover_the_window_exactly(
            times in proptest::collection::vec(0i64..40, 0..120),
            from in 0i64..45,
            width in 0i64..45,
            limit in 1usize..30,
            cap in proptest::option::of(1usize..30),
            newest_first in any::<bool>(),
            keep_newest in any::<bool>(),
        ) {
            let sim = Simulator::new(TOKEN);
            // Every third event is a byte-identical copy of the one before it.
            let mut events: Vec<Value> = Vec::new();
            for (i, t) in times.iter().enumerate() {
                let event = match events.last() {
                    Some(previous) if i % 3 == 2 => Value::clone(previous),
                    _ => json!({"action": "a", "timestamp": t, "k": i}),
                };
                events.push(event);
            }
            sim.push_events(&acme(), events.clone());
            let to = from + width;
            let mut expected: Vec<Value> = events.iter()
                .filter(|e| (from..to).contains(&e["timestamp"].as_i64().unwrap()))
                .cloned().collect();
            expected.sort_by_key(|e| e["timestamp"].as_i64().unwrap());
            let order = if newest_first { Order::NewestFirst } else { Order::Ascending };
            let mut quirks = Quirks { order, page_cap: cap, ..Quirks::default() };

            let mut seen = Vec::new();
            let mut cursor = None;
            for _ in 0..200 {
                let q = AuditQuery { from: Some(from), to: Some(to), limit: Some(limit), cursor: cursor.clone() };
                let offset = cursor.as_deref().and_then(decode_cursor).unwrap_or(0);
                let (body, n) = page(&sim, &quirks, &acme(), &q, offset).unwrap();
                let (items, next) = body_events(&body);
                prop_assert_eq!(items.len(), n);
                prop_assert!(n <= limit.min(cap.unwrap_or(limit)));
                let times: Vec<i64> = items.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
                let sorted = times.windows(2).all(|w| if newest_first { w[0] >= w[1] } else { w[0] <= w[1] });
                prop_assert!(sorted);
                seen.extend(items);
                cursor = next;
                if cursor.is_none() { break; }
            }
            prop_assert!(cursor.is_none());
            prop_assert_eq!(multiset(&seen), multiset(&expected));

            quirks.shape = Shape::Array;
            quirks.array_keeps = if keep_newest { Keep::Newest } else { Keep::Oldest };
            let q = AuditQuery { from: Some(from), to: Some(to), limit: Some(limit), cursor: None };
            let (body, _) = page(&sim, &quirks, &acme(), &q, 0).unwrap();
            let (mut items, next) = body_events(&body);
            prop_assert!(next.is_none());
            let kept = expected.len().min(limit.min(cap.unwrap_or(limit)));
            let want = if keep_newest { &expected[expected.len() - kept..] } else { &expected[..kept] };
            if newest_first { items.reverse(); }
            prop_assert_eq!(multiset(&items), multiset(want));
            // Same timestamps in the same (ascending) order; ties may differ only among equals.
            let ts = |v: &[Value]| v.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect::<Vec<_>>();
            prop_assert_eq!(ts(&items), ts(want));
        }
    }
}
