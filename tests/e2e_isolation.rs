//! A destination that hangs (accepts, never answers) must not hold back its siblings: the real
//! binary runs with a file sink and an HTTP sink whose server answers nothing for a long while.
//! New events reach the file within one poll interval (+1 s) every round; once the server
//! answers again, the hanging lane catches up, each event exactly once. The same bound holds
//! beside a Kafka sink whose broker is down: a port with nothing listening, and librdkafka's mock
//! cluster with its brokers taken down (then up again: that lane catches up exactly).

#[path = "common/e2e.rs"]
mod e2e;

use axum::extract::State;
use codacy_audit_forwarder::clock;
use codacy_audit_forwarder::event::OrgRef;
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
use e2e::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone)]
struct Hook {
    /// While true, requests are held open without an answer.
    hang: watch::Receiver<bool>,
    bodies: Arc<Mutex<Vec<String>>>,
}

async fn hook(State(h): State<Hook>, body: String) -> &'static str {
    let mut hang = h.hang.clone();
    let _ = hang.wait_for(|hanging| !*hanging).await;
    h.bodies.lock().unwrap().push(body);
    "ok"
}

/// A webhook on loopback that holds every request open while `release` says so (it starts
/// holding), with the bodies it answered and its address.
async fn start_hook() -> (
    watch::Sender<bool>,
    Arc<Mutex<Vec<String>>>,
    std::net::SocketAddr,
) {
    let (release, hang) = watch::channel(true);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(Hook {
            hang,
            bodies: bodies.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (release, bodies, hook_addr)
}

/// event_id -> count in the webhook's NDJSON bodies.
fn hook_ids(bodies: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in bodies.iter().flat_map(|b| b.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *out.entry(v["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_does_not_delay_its_sibling() {
    let (sim, org) = acme_with_backlog(50, 1);
    let server = sim.serve().await.unwrap();

    let (release, bodies, hook_addr) = start_hook().await;

    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(&server.base_url, dir.path(), &[&org], &[("a", "json")], "");
    text.push_str(&format!(
        "\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://{hook_addr}/hook\"\nformat = \"json\"\ntimeout = \"60s\"\n"
    ));
    let (text, telemetry) = with_telemetry(&text);
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let child = spawn_run(&cfg_path, None);
    let file = dir.path().join("a.ndjson");
    wait_until("the backlog in the file", Duration::from_secs(20), || {
        read_ndjson(&file).len() == 50
    })
    .await;
    each_new_event_reaches_the_file_promptly(&sim, &org, &file, 50).await;
    assert!(
        bodies.lock().unwrap().is_empty(),
        "the hook answered nothing yet"
    );
    // Monitoring tells the truth: the stuck lane's lag grows at scrape time, the healthy one's
    // does not, and /health names the stuck lane and why.
    let metrics = reqwest::get(format!("http://{telemetry}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag = |sink: &str| -> f64 {
        let key = format!(
            "codacy_forwarder_checkpoint_lag_seconds{{organization=\"gh/acme\",sink=\"{sink}\"}} "
        );
        let line = metrics.lines().find(|l| l.starts_with(&key)).unwrap();
        line[key.len()..].parse().unwrap()
    };
    assert!(lag("hook") > 5.0 && lag("a") < 3.0, "{metrics}");
    let health = reqwest::get(format!("http://{telemetry}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body = health.text().await.unwrap();
    assert!(
        body.contains("sink hook") && body.contains("waiting for the destination"),
        "{body}"
    );
    // The destination answers again: the held request completes, and the lane catches up.
    release.send(false).unwrap();
    let want = expected_ids(&org, &sim.events(&org), i64::MIN);
    wait_until("the webhook to catch up", Duration::from_secs(30), || {
        hook_ids(&bodies.lock().unwrap()).len() == want.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(child);
    assert_eq!(hook_ids(&bodies.lock().unwrap()), want);
    assert_eq!(delivered_ids(&read_ndjson(&file), &org), want);
    server.shutdown().await;
}

/// poll_interval is 1s (e2e::config_text): each round's event must show up within 2 s of its
/// arrival, whatever the other sink is going through.
async fn each_new_event_reaches_the_file_promptly(
    sim: &Simulator,
    org: &OrgRef,
    file: &std::path::Path,
    already: usize,
) {
    for round in 0..5u64 {
        let t = clock::system().now_ms();
        sim.push_events(
            org,
            generate_events(100 + round, 1, t - 200, t - 100, &GenOptions::default()),
        );
        let arrived = Instant::now();
        let want = already + 1 + round as usize;
        while read_ndjson(file).len() < want {
            assert!(
                arrived.elapsed() < Duration::from_secs(2),
                "round {round}: the event reached the file sink after more than poll_interval + 1 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `/health` is 503 and names the stuck lane with the destination's own account of why.
async fn health_blames_kafka(telemetry: std::net::SocketAddr) {
    let health = reqwest::get(format!("http://{telemetry}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body = health.text().await.unwrap();
    assert!(body.contains("-> sink bus (Kafka: "), "{body}");
}

/// The real binary with a file sink `a` and a Kafka sink `bus` on `brokers` (its log in
/// `agent.log`), once the file has the 20-event backlog: the state directory, the telemetry
/// address and the agent.
async fn run_beside_kafka(
    base_url: &str,
    org: &OrgRef,
    brokers: &str,
) -> (tempfile::TempDir, std::net::SocketAddr, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(base_url, dir.path(), &[org], &[("a", "json")], "");
    text.push_str(&format!(
        "\n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"codacy-audit\"\n"
    ));
    let (text, telemetry) = with_telemetry(&text);
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let child = spawn_run(&cfg_path, Some(&dir.path().join("agent.log")));
    let file = dir.path().join("a.ndjson");
    wait_until("the backlog in the file", Duration::from_secs(20), || {
        read_ndjson(&file).len() == 20
    })
    .await;
    (dir, telemetry, child)
}

/// A Kafka broker that is down (nothing listening; librdkafka retries for `message_timeout`,
/// 5 minutes by default) beside a file sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_that_is_down_does_not_delay_its_sibling() {
    let (sim, org) = acme_with_backlog(20, 2);
    let server = sim.serve().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (dir, telemetry, child) =
        run_beside_kafka(&server.base_url, &org, &closed.to_string()).await;
    let file = dir.path().join("a.ndjson");
    each_new_event_reaches_the_file_promptly(&sim, &org, &file, 20).await;
    health_blames_kafka(telemetry).await;
    stop(child);
    assert_eq!(
        delivered_ids(&read_ndjson(&file), &org),
        expected_ids(&org, &sim.events(&org), i64::MIN)
    );
    // librdkafka reports the outage several times a second (through two callbacks): it is
    // logged when it starts, then at most once a minute per kind, not hundreds of times.
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    let outage_lines = log.lines().filter(|l| l.contains("librdkafka")).count();
    assert!(outage_lines >= 1, "the outage is not logged at all:\n{log}");
    assert!(
        outage_lines <= 8,
        "{outage_lines} librdkafka lines in ~12 s:\n{log}"
    );
    server.shutdown().await;
}

/// event_id -> count of the messages in `topic` (one partition), read from the beginning until
/// `want` arrived, then one more second for any duplicate.
async fn kafka_ids(brokers: &str, topic: &str, want: usize) -> BTreeMap<String, usize> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "e2e-isolation")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut out = BTreeMap::new();
        let mut got = 0;
        let start = Instant::now();
        let mut done_at: Option<Instant> = None;
        while start.elapsed() < Duration::from_secs(60)
            && done_at.is_none_or(|t| t.elapsed() < Duration::from_secs(1))
        {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let id = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "event_id").and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap();
                *out.entry(id).or_default() += 1;
                got += 1;
            }
            if got >= want && done_at.is_none() {
                done_at = Some(Instant::now());
            }
        }
        out
    })
    .await
    .unwrap()
}

/// A Kafka cluster whose brokers all go down (librdkafka's mock cluster: each broker drops its
/// connections and refuses new ones; the producer retries for `message_timeout`, 5 minutes by
/// default) beside a file sink: the file gets every round within poll_interval + 1 s, and once
/// the brokers are back the Kafka lane catches up, each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_cluster_with_its_brokers_down_does_not_delay_its_sibling() {
    const BROKERS: i32 = 3;
    let mock = MockCluster::new(BROKERS).unwrap();
    mock.create_topic("codacy-audit", 1, BROKERS).unwrap();
    let brokers = mock.bootstrap_servers();
    let (sim, org) = acme_with_backlog(20, 3);
    let server = sim.serve().await.unwrap();
    let (dir, telemetry, child) = run_beside_kafka(&server.base_url, &org, &brokers).await;
    let file = dir.path().join("a.ndjson");
    // Both lanes are connected and caught up before the outage.
    assert_eq!(kafka_ids(&brokers, "codacy-audit", 20).await.len(), 20);
    for id in 1..=BROKERS {
        mock.broker_down(id).unwrap();
    }
    each_new_event_reaches_the_file_promptly(&sim, &org, &file, 20).await;
    health_blames_kafka(telemetry).await;
    // The brokers come back: the held batch is delivered and the lane catches up.
    for id in 1..=BROKERS {
        mock.broker_up(id).unwrap();
    }
    let want = expected_ids(&org, &sim.events(&org), i64::MIN);
    assert_eq!(kafka_ids(&brokers, "codacy-audit", want.len()).await, want);
    stop(child);
    assert_eq!(delivered_ids(&read_ndjson(&file), &org), want);
    server.shutdown().await;
}

/// A reload that removes an organization whose pass waits on a destination that hangs (its only
/// sink, so there is no sibling to detach it from) stops it within the shutdown deadline (8 s,
/// then its pass is aborted): the reload is never held hostage by a stuck destination, and the
/// organization that stays delivers everything exactly once when the destination answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_not_held_up_by_a_pass_stuck_on_a_hanging_destination() {
    let (sim, acme) = acme_with_backlog(20, 7);
    let beta = OrgRef::new(codacy_audit_forwarder::event::Provider::Gh, "beta");
    sim.add_org(&beta);
    let now = clock::system().now_ms();
    sim.push_events(
        &beta,
        generate_events(8, 20, now - 3_600_000, now - 60_000, &GenOptions::default()),
    );
    let server = sim.serve().await.unwrap();
    let (release, bodies, hook_addr) = start_hook().await;

    let dir = tempfile::tempdir().unwrap();
    let hook_sink = format!(
        "\n[[sinks]]\nname = \"hook\"\ntype = \"http\"\nurl = \"http://{hook_addr}/hook\"\nformat = \"json\"\ntimeout = \"60s\"\n"
    );
    let cfg_path = dir.path().join("config.toml");
    let write_config = |orgs: &[&OrgRef]| {
        let text = config_text(&server.base_url, dir.path(), orgs, &[], "") + &hook_sink;
        std::fs::write(&cfg_path, text).unwrap();
    };
    write_config(&[&acme, &beta]);
    let log = dir.path().join("agent.log");
    let child = spawn_run(&cfg_path, Some(&log));
    // Both organizations' first batches are now held by the destination.
    tokio::time::sleep(Duration::from_secs(3)).await;
    write_config(&[&acme]);
    let sighup = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "beta's stuck pass to be aborted",
        Duration::from_secs(20),
        || log_text().contains("did not stop in time"),
    )
    .await;
    let took = sighup.elapsed();
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(14),
        "the stop waited {took:?}, not the 8 s deadline: {}",
        log_text()
    );
    let stuck: Vec<String> = log_text()
        .lines()
        .filter(|l| l.contains("did not stop in time"))
        .map(String::from)
        .collect();
    assert!(
        stuck.len() == 1 && stuck[0].contains("gh/beta"),
        "only beta is stopped: {stuck:?}"
    );
    // The destination answers again: acme, which stayed, delivers every event exactly once.
    release.send(false).unwrap();
    let want = expected_ids(&acme, &sim.events(&acme), i64::MIN);
    let acme_ids = |bodies: &[String]| -> BTreeMap<String, usize> {
        hook_ids(bodies)
            .into_iter()
            .filter(|(id, _)| want.contains_key(id))
            .collect()
    };
    wait_until(
        "acme's events at the webhook",
        Duration::from_secs(30),
        || acme_ids(&bodies.lock().unwrap()).len() == want.len(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(child);
    assert_eq!(acme_ids(&bodies.lock().unwrap()), want);
    server.shutdown().await;
}
