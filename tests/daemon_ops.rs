//! The real daemon as systemd runs it: sd-notify messages in order, /metrics counts, /health that
//! flips to 503 while a sink is down and back to 200 after recovery, SIGHUP adding and removing a
//! sink without losing or duplicating events for the untouched one, the state-directory lock, and
//! SIGTERM exiting 0; SIGHUP applying new [codacy] and [agent] sections, and rejecting a new sink
//! that cannot start while the running configuration keeps delivering.

#[path = "common/e2e.rs"]
mod e2e;

use codacy_audit_forwarder::clock::{self};
use codacy_audit_forwarder::event::{OrgRef, Provider};
use codacy_audit_forwarder::simulator::{generate_events, GenOptions, Simulator};
use e2e::*;
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_codacy-audit-forwarder");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn ids(path: &Path, org: &OrgRef) -> BTreeMap<String, usize> {
    delivered_ids(&read_ndjson(path), org)
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

fn config_with(
    base_url: &str,
    dir: &Path,
    org: &OrgRef,
    sinks: &[(&str, &str)],
    port: u16,
) -> String {
    format!(
        "{}\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\nhealth_stale_intervals = 2\n",
        config_text(base_url, dir, &[org], sinks, "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_like_a_systemd_service() {
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(
            11,
            200,
            now - 86_400_000,
            now - 1_000,
            &GenOptions::tricky(),
        ),
    );
    let server = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(
        &cfg_path,
        config_with(
            &server.base_url,
            dir.path(),
            &org,
            &[("a", "json"), ("b", "json")],
            port,
        ),
    )
    .unwrap();

    // A notify socket like systemd's.
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let collected = messages.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => collected
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    let has =
        |m: &Arc<Mutex<Vec<String>>>, s: &str| m.lock().unwrap().iter().any(|x| x.contains(s));

    let spawn = || {
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("CODACY_API_TOKEN", TOKEN)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut daemon = Daemon(spawn());
    wait_until("READY=1", Duration::from_secs(30), || {
        has(&messages, "READY=1")
    })
    .await;
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let want = || expected_ids(&org, &sim.events(&org), i64::MIN);
    let w = want();
    wait_until("backlog in both sinks", Duration::from_secs(60), || {
        ids(&a, &org) == w && ids(&b, &org) == w
    })
    .await;
    wait_until("a STATUS= line", Duration::from_secs(10), || {
        has(&messages, "STATUS=")
    })
    .await;

    // /metrics counts what was delivered; /health is 200.
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let health_url = format!("http://127.0.0.1:{port}/health");
    let (status, text) = get(&metrics_url).await;
    assert_eq!(status, 200);
    for sink in ["a", "b"] {
        let line = format!("codacy_forwarder_events_delivered_total{{organization=\"gh/acme\",sink=\"{sink}\"}} {}", w.len());
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        text.contains(
            "codacy_forwarder_api_requests_total{organization=\"gh/acme\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "codacy_forwarder_checkpoint_lag_seconds{organization=\"gh/acme\",sink=\"a\"}"
        ),
        "{text}"
    );
    assert_eq!(get(&health_url).await.0, 200);

    // A second agent on the same state directory is refused.
    let second = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("CODACY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another codacy-audit-forwarder"), "{err}");

    // Sink b goes down: health turns 503 once it is stale, the other sink keeps receiving.
    let b_before = dir.path().join("b.before");
    std::fs::rename(&b, &b_before).unwrap();
    std::fs::create_dir(&b).unwrap();
    let t = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(12, 20, t - 20_000, t, &GenOptions::tricky()),
    );
    let w = want();
    wait_until("a keeps receiving", Duration::from_secs(30), || {
        ids(&a, &org) == w
    })
    .await;
    let mut last = (0, String::new());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        last = get(&health_url).await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 503, "health never turned 503: {}", last.1);
    assert!(
        last.1.contains("\"b\"") || last.1.contains("sink b") || last.1.contains("b.ndjson"),
        "{}",
        last.1
    );

    // b recovers: health back to 200, b caught up (old + new file hold every event once).
    std::fs::remove_dir(&b).unwrap();
    wait_until("b catches up", Duration::from_secs(90), || {
        let mut all = ids(&b_before, &org);
        for (k, n) in ids(&b, &org) {
            *all.entry(k).or_default() += n;
        }
        all == w
    })
    .await;
    let start = Instant::now();
    loop {
        last = get(&health_url).await;
        if last.0 == 200 || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 200, "health did not recover: {}", last.1);

    // SIGHUP: remove b, add c. a is untouched: no event lost or duplicated; c backfills.
    std::fs::write(
        &cfg_path,
        config_with(
            &server.base_url,
            dir.path(),
            &org,
            &[("a", "json"), ("c", "cef")],
            port,
        ),
    )
    .unwrap();
    signal(&daemon.0, "-HUP");
    let c = dir.path().join("c.ndjson");
    wait_until(
        "c is created by the reload",
        Duration::from_secs(30),
        || c.exists(),
    )
    .await;
    let t = clock::system().now_ms();
    sim.push_events(
        &org,
        generate_events(13, 20, t - 10_000, t, &GenOptions::tricky()),
    );
    let w = want();
    wait_until("a has the new events", Duration::from_secs(30), || {
        ids(&a, &org) == w
    })
    .await;
    wait_until("c backfilled everything", Duration::from_secs(30), || {
        std::fs::read_to_string(&c)
            .map(|t| t.lines().count())
            .unwrap_or(0)
            == w.values().sum::<usize>()
    })
    .await;
    // An invalid configuration is rejected and the running one stays.
    std::fs::write(&cfg_path, "this is not toml = = =").unwrap();
    signal(&daemon.0, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&health_url).await.0, 200);
    let (_, text) = get(&metrics_url).await;
    assert!(
        !text.contains("sink=\"b\""),
        "removed sink still reported:\n{text}"
    );

    // SIGTERM: clean exit 0, STOPPING=1 after READY=1.
    signal(&daemon.0, "-TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    use std::io::Read;
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(stderr.contains("configuration reload rejected"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs = messages.lock().unwrap().clone();
    let ready = msgs.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping = msgs
        .iter()
        .position(|m| m.contains("STOPPING=1"))
        .expect("STOPPING=1 sent");
    assert!(ready < stopping, "{msgs:?}");
    assert_eq!(
        ids(&a, &org),
        w,
        "sink a lost or duplicated events across reloads"
    );
    server.shutdown().await;
}

/// A daemon for `cfg_path` whose log (RUST_LOG=info) goes to `log`, read while it runs.
fn spawn_logging(cfg_path: &Path, log: &Path) -> Daemon {
    Daemon(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(cfg_path)
            .env("CODACY_API_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn log_count(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(what)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_new_codacy_and_agent_sections_and_a_sink_that_cannot_start_changes_nothing()
{
    let sim = Simulator::new(TOKEN);
    let org = OrgRef::new(Provider::Gh, "acme");
    sim.add_org(&org);
    let now = clock::system().now_ms();
    const HOUR: i64 = 3_600_000;
    // Events a day to 3 hours old, and in the last hour: a 2h lookback takes only the latter.
    let opts = GenOptions::tricky();
    sim.push_events(
        &org,
        generate_events(21, 120, now - 24 * HOUR, now - 3 * HOUR, &opts),
    );
    sim.push_events(
        &org,
        generate_events(22, 40, now - HOUR, now - 1_000, &opts),
    );
    // Two API endpoints over the same data: the reload moves the daemon from one to the other.
    let first = sim.serve().await.unwrap();
    let second = sim.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg_path = dir.path().join("config.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(
        &cfg_path,
        config_with(&first.base_url, dir.path(), &org, &[("a", "json")], port),
    )
    .unwrap();
    let daemon = spawn_logging(&cfg_path, &log);
    let a = dir.path().join("a.ndjson");
    let want = || expected_ids(&org, &sim.events(&org), i64::MIN);
    let w = want();
    wait_until("a has the backlog", Duration::from_secs(60), || {
        ids(&a, &org) == w
    })
    .await;

    // [codacy] moves to the second endpoint, [agent] shortens initial_lookback, sink c is added.
    let reloaded = config_with(
        &second.base_url,
        dir.path(),
        &org,
        &[("a", "json"), ("c", "json")],
        port,
    )
    .replace("initial_lookback = \"7d\"", "initial_lookback = \"2h\"")
    .replace("page_limit = 50", "page_limit = 7");
    assert!(reloaded.contains("\"2h\"") && reloaded.contains("page_limit = 7"));
    std::fs::write(&cfg_path, &reloaded).unwrap();
    signal(&daemon.0, "-HUP");
    wait_until("the reload is applied", Duration::from_secs(30), || {
        log_count(&log, "configuration reloaded") == 1
    })
    .await;
    // c starts from the new lookback: only the events of the last two hours.
    let c = dir.path().join("c.ndjson");
    let recent = expected_ids(&org, &sim.events(&org), now - 2 * HOUR);
    assert!(!recent.is_empty() && recent.len() < w.len());
    wait_until(
        "c backfilled the last two hours",
        Duration::from_secs(60),
        || ids(&c, &org) == recent,
    )
    .await;
    // The first endpoint goes away: new events arrive only if the daemon uses the second.
    first.shutdown().await;
    let t = clock::system().now_ms();
    sim.push_events(&org, generate_events(23, 20, t - 10_000, t, &opts));
    let w = want();
    wait_until(
        "a gets new events from the new endpoint",
        Duration::from_secs(60),
        || ids(&a, &org) == w,
    )
    .await;

    // A sink that cannot start (its CA file is no certificate): the reload is rejected, logged
    // with the sink's name and the reason, and the running configuration keeps delivering.
    let ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    std::fs::write(
        &cfg_path,
        format!(
            "{reloaded}\n[[sinks]]\nname = \"bus\"\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9\"\n\
             topic = \"audit\"\nformat = \"json\"\nsecurity_protocol = \"ssl\"\ntls_ca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    signal(&daemon.0, "-HUP");
    wait_until("the reload is rejected", Duration::from_secs(30), || {
        log_count(&log, "configuration reload rejected") == 1
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let rejected = text
        .lines()
        .find(|l| l.contains("configuration reload rejected"))
        .unwrap();
    assert!(
        rejected.contains("bus") && rejected.contains("cannot create the producer"),
        "{rejected}"
    );
    let t = clock::system().now_ms();
    sim.push_events(&org, generate_events(24, 20, t - 10_000, t, &opts));
    let w = want();
    let recent = expected_ids(&org, &sim.events(&org), now - 2 * HOUR);
    wait_until("a and c keep receiving", Duration::from_secs(60), || {
        ids(&a, &org) == w && ids(&c, &org) == recent
    })
    .await;
    let (_, metrics) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(!metrics.contains("sink=\"bus\""), "{metrics}");
    assert_eq!(log_count(&log, "configuration reloaded"), 1);
    drop(daemon);
    second.shutdown().await;
}
