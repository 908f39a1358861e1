//! A real rsyslogd for tests: started in the foreground on free 127.0.0.1 ports with a config
//! written at test time, writing every parsed property (`jsonmesg`) as one JSON line per message,
//! stopped by PID when dropped. Include it with `#[path = "common/rsyslog.rs"]`, beside
//! `common/peers.rs` (as `peers`) and `common/tls.rs` (as `tls`).
#![allow(dead_code)]

use crate::tls::TlsFiles;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long rsyslog may take to start, stop, or write what it received.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// APP-NAME of readiness probes (filtered out of [`Rsyslog::records`]).
const PROBE_APP: &str = "rsyslog-probe";

/// Whether `rsyslogd` can be run here: a skip, or a failure under `REQUIRE_PEERS=1`.
pub fn installed() -> bool {
    crate::peers::require(crate::peers::Peer::Rsyslog).is_some()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

pub struct Rsyslog {
    dir: PathBuf,
    out: PathBuf,
    child: Option<Child>,
    pub tcp_port: u16,
    pub udp_port: u16,
    /// Set when started with TLS files.
    pub tls_port: Option<u16>,
    tls: Option<TlsFiles>,
}

impl Rsyslog {
    /// Starts rsyslogd with TCP and UDP inputs (and a TLS input when `tls` is given) and waits
    /// until every input is up.
    pub fn start(dir: &Path, tls: Option<TlsFiles>) -> Rsyslog {
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            out: dir.join("received.ndjson"),
            child: None,
            tcp_port: free_tcp_port(),
            udp_port: free_udp_port(),
            tls_port: tls.as_ref().map(|_| free_tcp_port()),
            tls,
        };
        r.spawn();
        r
    }

    /// Starts rsyslogd with its TCP input on `tcp_port` (e.g. one a client already tries).
    pub fn start_on_port(dir: &Path, tcp_port: u16) -> Rsyslog {
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            out: dir.join("received.ndjson"),
            child: None,
            tcp_port,
            udp_port: free_udp_port(),
            tls_port: None,
            tls: None,
        };
        r.spawn();
        r
    }

    fn config(&self) -> String {
        let q = |p: &Path| p.display().to_string();
        let tls_global = match &self.tls {
            Some(t) => format!(
                " DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                q(&t.ca), q(&t.cert), q(&t.key)
            ),
            None => String::new(),
        };
        let tls_input = match self.tls_port {
            Some(port) => format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"out\" \
                 streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
            ),
            None => String::new(),
        };
        // escapeControlCharactersOnReceive off: by default rsyslog shows a tab (legal in CEF
        // values) as "#011"; the tests compare byte-exact what was sent.
        format!(
            "global(workDirectory=\"{dir}\" net.enableDNS=\"off\" maxMessageSize=\"64k\" parser.escapeControlCharactersOnReceive=\"off\"{tls_global})\n\
             module(load=\"imtcp\")\n\
             module(load=\"imudp\")\n\
             template(name=\"everything\" type=\"list\") {{ property(name=\"jsonmesg\") constant(value=\"\\n\") }}\n\
             ruleset(name=\"out\") {{ action(type=\"omfile\" file=\"{out}\" template=\"everything\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" ruleset=\"out\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\" ruleset=\"out\")\n\
             {tls_input}",
            dir = q(&self.dir),
            out = q(&self.out),
            tcp = self.tcp_port,
            udp = self.udp_port,
        )
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).expect("write rsyslog.conf");
        let log = std::fs::File::create(self.dir.join("rsyslogd.log")).expect("rsyslogd.log");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            // RFC 3164 timestamps carry no zone: make rsyslog read them as UTC, as we send them.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn rsyslogd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready when a probe sent to each plain input shows up in the output, and the TLS port
    /// accepts connections.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        let before = self.all_lines().len();
        let probes_seen = |r: &Rsyslog| {
            r.all_lines()[before.min(r.all_lines().len())..]
                .iter()
                .filter(|v| v["app-name"] == PROBE_APP)
                .map(|v| v["msgid"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "rsyslogd exited at start ({status}): {}",
                        std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
                    );
                }
            }
            let probe = |msgid: &str| format!("<13>1 - - {PROBE_APP} - {msgid} - probe\n");
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.tcp_port)) {
                let _ = s.write_all(probe("tcp").as_bytes());
            }
            if let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
                let _ = s.send_to(probe("udp").as_bytes(), ("127.0.0.1", self.udp_port));
            }
            let tls_up = self
                .tls_port
                .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            let seen = probes_seen(self);
            if tls_up && seen.iter().any(|m| m == "tcp") && seen.iter().any(|m| m == "udp") {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "rsyslogd not ready after {DEADLINE:?}: {}",
                std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd (SIGTERM to its PID, as an operator would) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if started.elapsed() < DEADLINE => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn all_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // rsyslog may be mid-write: only newline-terminated lines are complete.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Every message received so far (probes excluded), in arrival order.
    pub fn records(&self) -> Vec<Value> {
        self.all_lines()
            .into_iter()
            .filter(|v| v["app-name"] != PROBE_APP)
            .collect()
    }

    /// Polls until at least `n` messages were received (panics after [`DEADLINE`]).
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let got = self.records();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "rsyslog received {} of {n} messages within {DEADLINE:?}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
