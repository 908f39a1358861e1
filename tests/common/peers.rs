//! The real programs some tests talk to, and what a test does when one is missing.
//!
//! Under `REQUIRE_PEERS=1` (set by `.ci/run`) a missing peer fails the test with the command that
//! installs it: a CI run must not turn green by skipping the tests that matter most. Without the
//! variable the test is skipped with one line saying which peer is missing and how to install it.
//! Include it with `#[path = "common/peers.rs"] mod peers;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// rsyslogd with its TLS driver (rsyslog-gnutls): the syslog sink's receiver.
    Rsyslog,
    /// A Kafka-protocol broker.
    Tansu,
    /// A TLS terminator in front of a plain listener.
    Stunnel,
    SystemdAnalyze,
    DpkgDeb,
    Promtool,
}

impl Peer {
    /// The program looked for on PATH (and in the sbin and cargo bin directories).
    pub fn program(self) -> &'static str {
        match self {
            Peer::Rsyslog => "rsyslogd",
            Peer::Tansu => "tansu",
            Peer::Stunnel => "stunnel4",
            Peer::SystemdAnalyze => "systemd-analyze",
            Peer::DpkgDeb => "dpkg-deb",
            Peer::Promtool => "promtool",
        }
    }

    /// The command that installs it (what `scripts/test.sh` runs).
    pub fn install(self) -> &'static str {
        match self {
            Peer::Rsyslog => "apt-get install rsyslog rsyslog-gnutls",
            Peer::Tansu => "cargo install tansu --locked --features dynostore --version 0.6.0",
            Peer::Stunnel => "apt-get install stunnel4",
            Peer::SystemdAnalyze => "apt-get install systemd",
            Peer::DpkgDeb => "apt-get install dpkg",
            Peer::Promtool => "apt-get install prometheus",
        }
    }

    /// The peer's program, or why it cannot be used.
    fn find(self) -> Result<PathBuf, String> {
        let program = find_program(self.program())
            .ok_or_else(|| format!("{} is not installed", self.program()))?;
        if self == Peer::Rsyslog && !rsyslog_tls_driver() {
            return Err("rsyslog's TLS driver (lmnsd_gtls.so) is not installed".into());
        }
        Ok(program)
    }
}

/// Whether CI asked for every peer (`REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var("REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The peer's program when it is here. When it is not: panics with the install command under
/// `REQUIRE_PEERS=1`; otherwise prints one `SKIPPED` line naming the test and returns `None`.
/// Call it on the test's own thread (the harness names it after the test).
pub fn require(peer: Peer) -> Option<PathBuf> {
    match peer.find() {
        Ok(p) => Some(p),
        Err(why) => {
            missing(&why, peer.install());
            None
        }
    }
}

/// A peer is missing (`why`): panics with `install` under `REQUIRE_PEERS=1`; otherwise prints
/// one `SKIPPED` line naming the test, and the caller returns.
pub fn missing(why: &str, install: &str) {
    if required() {
        panic!("REQUIRE_PEERS=1 and {why}: install it with `{install}` (scripts/test.sh does)");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Straight to stderr: the harness captures eprintln! of a passing test, and a skip must be
    // seen.
    use std::io::Write;
    let line = format!(
        "SKIPPED {test}: {why} (install: `{install}`; REQUIRE_PEERS=1 makes this a failure)\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn find_program(name: &str) -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        // Tests may run with a PATH without sbin (rsyslogd) or cargo's bin (tansu).
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .chain(cargo_bin)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn rsyslog_tls_driver() -> bool {
    let Ok(dirs) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    dirs.filter_map(Result::ok)
        .map(|d| d.path().join("rsyslog/lmnsd_gtls.so"))
        .chain([PathBuf::from("/usr/lib/rsyslog/lmnsd_gtls.so")])
        .any(|p| p.is_file())
}
