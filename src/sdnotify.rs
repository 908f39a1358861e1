//! systemd's notify protocol (`Type=notify`): one datagram per message to `$NOTIFY_SOCKET`.
//!
//! Written by hand because the protocol is a single `sendto` (see `sd_notify(3)`): a filesystem path
//! or, when the variable starts with `@`, a Linux abstract socket. Everything is a no-op when the
//! agent was not started by systemd, and a failed send is logged, never fatal: losing a STATUS line
//! must not stop the forwarding of audit events.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Abstract socket name without the leading `@` (it becomes a NUL byte on the wire).
    Abstract(Vec<u8>),
}

/// Sends readiness, status, watchdog and stopping notifications to systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    /// `WATCHDOG_USEC` when it is meant for this process.
    watchdog_timeout: Option<Duration>,
    /// One warning per process is enough; later failures go to debug.
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// The environment as values, so the parsing rules can be tested without touching the process env.
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        own_pid: u32,
    ) -> Self {
        let target = notify_socket.and_then(|s| {
            let bytes = s.as_bytes();
            match bytes.first() {
                None => None,
                Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
                Some(_) => Some(Target::Path(PathBuf::from(s))),
            }
        });
        // systemd sets WATCHDOG_PID so a child that inherited the environment does not ping for us.
        let for_us = match watchdog_pid {
            None => true,
            Some(p) => p.trim().parse::<u32>().ok() == Some(own_pid),
        };
        let watchdog_timeout = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier {
            target,
            watchdog_timeout,
            warned: AtomicBool::new(false),
        }
    }

    /// How often to call [`Notifier::watchdog`]: half of `WatchdogSec=`, as `sd_watchdog_enabled(3)`
    /// recommends. `None` when the unit has no watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_timeout.map(|t| t / 2)
    }

    /// Config loaded and state readable: systemd considers the unit started.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// A one-line status shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        // The protocol is newline-separated KEY=VALUE: a newline in the text would end the value.
        let line: String = status
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"));
    }

    /// Keep-alive from the poll loop; only sent when the unit has `WatchdogSec=`.
    pub fn watchdog(&self) {
        if self.watchdog_timeout.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// Shutdown began (SIGTERM): systemd shows "deactivating" instead of assuming a crash.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, msg: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = send_to(target, msg.as_bytes()) {
            let where_ = match target {
                Target::Path(p) => p.display().to_string(),
                Target::Abstract(n) => format!("@{}", String::from_utf8_lossy(n)),
            };
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(socket = %where_, error = %e, message = msg, "sd_notify failed");
            } else {
                tracing::warn!(
                    socket = %where_, error = %e, message = msg,
                    "cannot notify systemd (NOTIFY_SOCKET); the service keeps running but \
                     systemctl may show a stale state or the watchdog may restart it"
                );
            }
        }
    }
}

fn send_to(target: &Target, msg: &[u8]) -> std::io::Result<usize> {
    let sock = UnixDatagram::unbound()?;
    // Never block the async runtime on a full notification queue: drop the message and log instead.
    sock.set_nonblocking(true)?;
    match target {
        Target::Path(p) => sock.send_to(msg, p),
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_protocol_lines_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(Some(path.into_os_string()), Some("20000000"), None, 1);
        assert!(n.target.is_some());
        n.ready();
        assert_eq!(recv(&server), "READY=1");
        n.status("polling 2 organizations\nlag 3s");
        assert_eq!(recv(&server), "STATUS=polling 2 organizations lag 3s");
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("cafw-test-{}-{}", std::process::id(), rand::random::<u64>());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_vars(Some(format!("@{name}").into()), None, None, 1);
        n.ready();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn watchdog_is_off_without_usec_or_for_another_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(Some(path.clone().into_os_string()), None, None, 7);
        assert_eq!(n.watchdog_interval(), None);
        n.watchdog(); // must send nothing
        n.ready();
        assert_eq!(recv(&server), "READY=1", "no WATCHDOG=1 before READY=1");

        let other = Notifier::from_vars(Some(path.into_os_string()), Some("1000"), Some("8"), 7);
        assert_eq!(other.watchdog_interval(), None);
        let ours = Notifier::from_vars(None, Some("30000000"), Some("7"), 7);
        assert_eq!(ours.watchdog_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn without_notify_socket_everything_is_a_no_op() {
        let n = Notifier::from_vars(None, None, None, 1);
        assert!(n.target.is_none());
        n.ready();
        n.status("x");
        n.stopping();
        assert!(Notifier::from_vars(Some(OsString::new()), None, None, 1)
            .target
            .is_none());
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::from_vars(
            Some(dir.path().join("gone").into_os_string()),
            None,
            None,
            1,
        );
        n.ready();
        n.ready();
        assert!(n.warned.load(Ordering::Relaxed));
    }
}
