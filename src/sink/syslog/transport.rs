//! Moving framed syslog bytes: the `address` key, and UDP / TCP / TLS connections on tokio.

use rustls::pki_types::ServerName;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connect plus TLS handshake must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing one batch must finish within this (a receiver that stops reading fills our buffers).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the pre-write probe lets rustls read TLS records that are already pending.
const TLS_PROBE_READ: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Udp,
    Tcp,
    Tls,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        }
    }
}

/// `udp://host:port`, `tcp://host:port`, `tls://host:port` (IPv6 literals in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "use udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (e.g. tls://siem.example.com:6514)";
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} has no scheme; {usage}"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            other => return Err(format!("{s:?}: unknown scheme {other:?}; {usage}")),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in an IPv6 address; {usage}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = port.ok_or_else(|| {
            format!("{s:?} has no port; syslog has no single default (514 for UDP/TCP, 6514 for TLS), so {usage}")
        })?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: port {port:?} is not a number from 1 to 65535"))?;
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            return Err(format!("{s:?}: {host:?} is not a host name; {usage}"));
        }
        Ok(Address {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

/// TLS settings resolved at start-up.
#[derive(Clone)]
pub struct TlsSetup {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

/// One open connection.
pub enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why a connection could not be made; `fatal` when only a human can fix it (certificates).
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    pub fatal: bool,
}

impl Conn {
    /// Resolves `addr` and connects (TCP, then the TLS handshake when `tls` is set).
    pub async fn connect(addr: &Address, tls: Option<&TlsSetup>) -> Result<Conn, ConnectError> {
        let transient = |message: String| ConnectError {
            message,
            fatal: false,
        };
        let target = (addr.host.as_str(), addr.port);
        let work = async {
            match addr.scheme {
                Scheme::Udp => {
                    let peer = tokio::net::lookup_host(target)
                        .await
                        .map_err(|e| transient(format!("cannot resolve {}: {e}", addr.host)))?
                        .next()
                        .ok_or_else(|| {
                            transient(format!("{} resolves to no address", addr.host))
                        })?;
                    let local = if peer.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let sock = UdpSocket::bind(local)
                        .await
                        .map_err(|e| transient(format!("cannot open a UDP socket: {e}")))?;
                    sock.connect(peer)
                        .await
                        .map_err(|e| transient(format!("cannot reach {addr}: {e}")))?;
                    Ok(Conn::Udp(sock))
                }
                Scheme::Tcp | Scheme::Tls => {
                    let tcp = TcpStream::connect(target).await.map_err(|e| {
                        transient(format!(
                            "cannot connect to {addr}: {e}; is the syslog receiver running and listening there?"
                        ))
                    })?;
                    // Small batches should not wait for Nagle.
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        None => Ok(Conn::Tcp(tcp)),
                        Some(t) => t
                            .connector
                            .connect(t.server_name.clone(), tcp)
                            .await
                            .map(|s| Conn::Tls(Box::new(s)))
                            .map_err(|e| handshake_error(addr, &e)),
                    }
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(transient(format!(
                "connecting to {addr} timed out after {}s (firewall, or a TLS port answered by something else?)",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Whether the peer has closed (or reset) the connection. A syslog receiver never sends
    /// application data, so end-of-stream or an error means our writes would go nowhere.
    ///
    /// This asks the kernel directly (a non-blocking `MSG_PEEK`): tokio's cached readiness may not
    /// yet know about a FIN that arrived a moment ago. Bytes a plain TCP receiver sent are
    /// drained; bytes pending on a TLS connection (session tickets, close_notify) are handed to
    /// rustls with a short read.
    pub async fn peer_closed(&mut self) -> bool {
        let pending = {
            let tcp = match self {
                Conn::Udp(_) => return false,
                Conn::Tcp(s) => &*s,
                Conn::Tls(s) => s.get_ref().0,
            };
            let mut one = [MaybeUninit::<u8>::uninit(); 1];
            socket2::SockRef::from(tcp).peek(&mut one)
        };
        match pending {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) | Ok(0) => return true,
            Ok(_) => {}
        }
        match self {
            Conn::Udp(_) => false,
            Conn::Tcp(s) => {
                // Unexpected data: discard it, and see whether end-of-stream follows.
                let sock = socket2::SockRef::from(&*s);
                let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
                for _ in 0..64 {
                    match sock.recv(&mut scratch) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                        Err(_) | Ok(0) => return true,
                        Ok(_) => {}
                    }
                }
                false
            }
            Conn::Tls(s) => {
                let mut buf = [0u8; 512];
                match tokio::time::timeout(TLS_PROBE_READ, s.read(&mut buf)).await {
                    // Nothing but handshake messages: alive.
                    Err(_) => false,
                    Ok(Ok(0)) | Ok(Err(_)) => true,
                    Ok(Ok(_)) => false,
                }
            }
        }
    }

    /// Writes every byte of `stream_bytes` and flushes it (through the TLS layer), or sends each
    /// of `datagrams` (UDP).
    pub async fn send(&mut self, stream_bytes: &[u8], datagrams: &[Vec<u8>]) -> io::Result<()> {
        let work = async {
            match self {
                Conn::Udp(s) => {
                    for d in datagrams {
                        let n = s.send(d).await?;
                        if n != d.len() {
                            return Err(io::Error::new(
                                io::ErrorKind::WriteZero,
                                format!("datagram cut to {n} of {} bytes", d.len()),
                            ));
                        }
                    }
                    Ok(())
                }
                Conn::Tcp(s) => {
                    s.write_all(stream_bytes).await?;
                    s.flush().await
                }
                Conn::Tls(s) => {
                    s.write_all(stream_bytes).await?;
                    s.flush().await
                }
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "write did not complete within {}s (the receiver stopped reading)",
                    WRITE_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// Closes politely: TLS close_notify, TCP FIN.
    pub async fn close(mut self) {
        let _ = match &mut self {
            Conn::Udp(_) => Ok(()),
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }

    /// A short description for `check`.
    pub fn describe(&self) -> String {
        match self {
            Conn::Udp(_) => "UDP socket ready (UDP has no acknowledgement: reachability of the receiver cannot be confirmed)".to_string(),
            Conn::Tcp(_) => "TCP connection established".to_string(),
            Conn::Tls(s) => {
                let version = s
                    .get_ref()
                    .1
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_else(|| "TLS".into());
                format!("TLS connection established ({version}, server certificate accepted)")
            }
        }
    }
}

fn handshake_error(addr: &Address, e: &io::Error) -> ConnectError {
    let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls_err {
        Some(rustls::Error::InvalidCertificate(reason)) => ConnectError {
            message: format!(
                "TLS handshake with {addr} failed: the server certificate is not trusted ({reason:?}); \
                 set tls_ca_file to the CA that signed it, or tls_server_name to a name in its certificate"
            ),
            fatal: true,
        },
        Some(rustls::Error::AlertReceived(alert)) => ConnectError {
            message: format!(
                "TLS handshake with {addr} failed: the server sent alert {alert:?} \
                 (does it require a client certificate? set tls_cert_file and tls_key_file)"
            ),
            fatal: true,
        },
        _ => ConnectError {
            message: format!("TLS handshake with {addr} failed: {e}; is that port really TLS syslog (RFC 5425)?"),
            fatal: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_clear_errors() {
        let a: Address = "tls://siem.example.com:6514".parse().unwrap();
        assert_eq!(
            a,
            Address {
                scheme: Scheme::Tls,
                host: "siem.example.com".into(),
                port: 6514
            }
        );
        assert_eq!(a.to_string(), "tls://siem.example.com:6514");
        let v6: Address = "udp://[::1]:514".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "udp://[::1]:514");
        for (bad, needle) in [
            ("siem:514", "no scheme"),
            ("http://siem:514", "unknown scheme \"http\""),
            ("tcp://siem", "no port"),
            ("tcp://siem:0", "1 to 65535"),
            ("tcp://siem:70000", "1 to 65535"),
            ("tcp://:514", "not a host name"),
            ("tcp://[::1:514", "unclosed"),
        ] {
            let err = bad.parse::<Address>().unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_closed_peer_is_detected_before_writing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: Address = format!("tcp://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let mut conn = Conn::connect(&addr, None).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(!conn.peer_closed().await);
        drop(server);
        // On loopback the FIN is queued by the time close() returns; the probe asks the kernel,
        // so no wait for tokio's reactor is needed.
        assert!(conn.peer_closed().await);
    }

    #[tokio::test]
    async fn refused_connection_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let addr: Address = format!("tcp://127.0.0.1:{port}").parse().unwrap();
        let err = Conn::connect(&addr, None).await.err().unwrap();
        assert!(!err.fatal);
        assert!(
            err.message.contains(&format!("tcp://127.0.0.1:{port}")),
            "{}",
            err.message
        );
    }
}
