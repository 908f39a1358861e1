//! `type = "syslog"`: RFC 5424 or RFC 3164 messages over UDP, TCP (RFC 6587 framing) or TLS
//! (RFC 5425, always octet-counting).
//!
//! Formatting is ours ([`format`]), not the `syslog` crate's: see that module for why.
//!
//! # Delivery
//! TCP and TLS use one persistent connection shared by every pipeline (behind a tokio Mutex),
//! opened lazily and reopened after an error; failed connection attempts are spaced by a
//! full-jitter [`Backoff`] so many organizations' pipelines do not hammer a receiver that is down.
//! A batch is acknowledged only after all its bytes are written and flushed (through the TLS
//! layer for TLS). After any write error the connection is dropped and the whole batch is retried,
//! so duplicates are limited to that batch.
//!
//! Before each batch the connection is probed with a non-blocking read: a receiver that restarted
//! has closed our old connection, and writing into it would "succeed" into a dead socket. The
//! probe sees the FIN/RST and we reconnect first.
//!
//! Residual risk (inherent in plain syslog over TCP, which has no application-level ack): bytes
//! handed to the kernel are "written" before the receiver has read them. If the receiver dies
//! after our last probe but before it reads what we wrote (or while it still holds the messages in
//! memory), that batch is lost although it was acknowledged. Use a receiver-side disk queue, or a
//! protocol with acknowledgements (the Kafka or HTTP sinks) where that window matters.
//!
//! # Message size
//! `max_message_bytes` (default 8192, rsyslog's default `maxMessageSize`) bounds one syslog
//! message, header included, framing excluded, on every transport: receivers silently truncate
//! longer messages, and a truncated audit record is worse than none. A longer message is never
//! cut: it is dead-lettered with the reason and counted. For UDP it is also the datagram limit
//! (at most 65507).

pub mod format;
pub mod transport;

use self::format::{Facility, Header, Protocol};
use self::transport::{Address, Conn, Scheme, TlsSetup};
use super::registry::{SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use super::{Record, Sink, SinkContext, SinkError};
use crate::clock::Backoff;
use crate::config::{from_table, FieldError};
use crate::format::Format;
use crate::tls::TlsSettings;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Default APP-NAME (and RFC 3164 TAG).
pub const DEFAULT_APP_NAME: &str = "codacy-audit-forwarder";
/// rsyslog's default `maxMessageSize`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8192;
/// RFC 5424 6.1: every receiver must accept 480 octets.
pub const MIN_MAX_MESSAGE_BYTES: usize = 480;
/// Largest UDP payload over IPv4.
pub const UDP_MAX_MESSAGE_BYTES: usize = 65_507;
/// Upper bound for stream transports (rsyslog's `MaxFrameSize` default is 200000).
pub const STREAM_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// `framing = "octet-counting" | "lf"` (TCP only; TLS is always octet-counting, UDP unframed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// RFC 6587 3.4.1 `LEN SP MSG`: safe whatever the message contains.
    #[default]
    OctetCounting,
    /// RFC 6587 3.4.2 `MSG LF`: for receivers that only split on newlines.
    Lf,
}

/// The syslog sink's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `udp://host:port`, `tcp://host:port` or `tls://host:port`.
    pub address: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub framing: Option<Framing>,
    /// Default `user`.
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME / TAG (default `codacy-audit-forwarder`).
    #[serde(default)]
    pub app_name: Option<String>,
    /// HOSTNAME (default: this machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The `tls_*` keys, taken out of the table before the rest is parsed.
    #[serde(skip)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
}

impl SyslogSinkConfig {
    /// A config with every optional key at its default.
    pub fn new(address: impl Into<String>) -> Self {
        SyslogSinkConfig {
            address: address.into(),
            protocol: Protocol::default(),
            framing: None,
            facility: Facility::default(),
            app_name: None,
            hostname: None,
            tls: TlsSettings::verified(),
            max_message_bytes: None,
        }
    }

    pub fn parsed_address(&self) -> Result<Address, String> {
        self.address
            .parse()
            .map_err(|m: String| format!("key `address`: {m}"))
    }

    /// The framing in effect (TLS is always octet-counting).
    pub fn effective_framing(&self) -> Framing {
        self.framing.unwrap_or_default()
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    pub fn app_name(&self) -> &str {
        self.app_name.as_deref().unwrap_or(DEFAULT_APP_NAME)
    }

    /// Start-up checks; messages name the key and the fix.
    pub fn validate_keys(&self, format: Format) -> Result<(), String> {
        let addr = self.parsed_address()?;
        match (addr.scheme, self.framing) {
            (Scheme::Tls, Some(Framing::Lf)) => {
                return Err(
                    "key `framing`: TLS syslog (RFC 5425) is always octet-counting; remove `framing` \
                     or use a tcp:// address for LF framing"
                        .into(),
                )
            }
            (Scheme::Tcp, Some(Framing::Lf)) if format.may_contain_raw_newline() => {
                return Err(format!(
                    "key `framing`: format {format} can contain raw line feeds, which would split records \
                     with LF framing; use framing = \"octet-counting\""
                ))
            }
            _ => {}
        }
        let tls_keys = &self.tls.keys_given;
        if addr.scheme != Scheme::Tls && !tls_keys.is_empty() {
            return Err(format!(
                "key `{}`: TLS settings need a tls:// address, but `address` is {}; use tls://{}:PORT \
                 or remove the tls_* keys",
                tls_keys[0], self.address, addr.host
            ));
        }
        if addr.scheme == Scheme::Tls {
            self.tls.validate().map_err(|e| e.to_string())?;
        }
        let max = self.max_message_bytes();
        let ceiling = if addr.scheme == Scheme::Udp {
            UDP_MAX_MESSAGE_BYTES
        } else {
            STREAM_MAX_MESSAGE_BYTES
        };
        if !(MIN_MAX_MESSAGE_BYTES..=ceiling).contains(&max) {
            let why = if addr.scheme == Scheme::Udp && max > ceiling {
                "; a UDP datagram carries at most 65507 bytes: use tcp:// or tls:// for larger records"
            } else {
                ""
            };
            return Err(format!(
                "key `max_message_bytes`: {max} is out of range {MIN_MAX_MESSAGE_BYTES} to {ceiling}{why} \
                 (keep it at or below the receiver's limit, rsyslog's maxMessageSize, 8k by default)"
            ));
        }
        let printable = |s: &str, max: usize| {
            !s.is_empty() && s != "-" && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if !printable(self.app_name(), format::APP_NAME_MAX) {
            return Err(format!(
                "key `app_name`: {:?} must be 1 to {} printable ASCII characters without spaces",
                self.app_name(),
                format::APP_NAME_MAX
            ));
        }
        if let Some(h) = &self.hostname {
            if !printable(h, format::HOSTNAME_MAX) {
                return Err(format!(
                    "key `hostname`: {h:?} must be 1 to {} printable ASCII characters without spaces",
                    format::HOSTNAME_MAX
                ));
            }
        }
        Ok(())
    }
}

pub const TYPE: SinkType = SinkType {
    name: "syslog",
    carries_host: true,
    parse: |table, _| Ok(Box::new(SyslogSinkConfig::from_json(table.into())?)),
};

#[async_trait]
impl SinkConfig for SyslogSinkConfig {
    fn default_batch(&self) -> usize {
        STREAM_BATCH
    }

    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.validate_keys(common.format).map_err(FieldError::whole)
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SyslogSink::new(self.clone(), ctx)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SyslogSinkConfig {
    /// Parses the sink's own keys (the `tls_*` keys through the shared TLS settings).
    pub fn from_json(mut table: serde_json::Value) -> Result<Self, FieldError> {
        let tls = match table.as_object_mut() {
            Some(t) => TlsSettings::take_from(t)?,
            None => TlsSettings::verified(),
        };
        Ok(SyslogSinkConfig {
            tls,
            ..from_table(table)?
        })
    }
}

/// Connection state shared by all pipelines.
#[derive(Default)]
struct State {
    conn: Option<Conn>,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// No new connection attempt before this instant (after a failure).
    not_before: Option<Instant>,
    last_error: String,
}

pub struct SyslogSink {
    ctx: SinkContext,
    address: Address,
    protocol: Protocol,
    framing: Framing,
    header: Header,
    max_message_bytes: usize,
    tls: Option<TlsSetup>,
    backoff: Backoff,
    state: Mutex<State>,
}

impl SyslogSink {
    /// Reconnection backoff: first retry within 0.5s, growing to at most 30s.
    pub const RECONNECT_BACKOFF: Backoff =
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

    /// Builds the sink (no connection yet: the first delivery or `check` connects).
    pub fn new(config: SyslogSinkConfig, ctx: SinkContext) -> Result<SyslogSink, SinkError> {
        let startup = |m: String| SinkError::fatal(format!("syslog sink {:?}: {m}", ctx.name));
        let address = config.parsed_address().map_err(startup)?;
        let tls = if address.scheme == Scheme::Tls {
            let opts = &config.tls;
            let client = crate::tls::client_config(opts, &ctx.name).map_err(startup)?;
            let server_name = crate::tls::server_name(opts, &address.host).map_err(startup)?;
            Some(TlsSetup {
                connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
                server_name,
            })
        } else {
            None
        };
        let framing = match address.scheme {
            Scheme::Tls => Framing::OctetCounting,
            _ => config.effective_framing(),
        };
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(crate::format::local_hostname);
        let header = Header::new(
            config.facility,
            &hostname,
            config.app_name(),
            std::process::id(),
        );
        Ok(SyslogSink {
            address,
            protocol: config.protocol,
            framing,
            header,
            max_message_bytes: config.max_message_bytes(),
            tls,
            backoff: Self::RECONNECT_BACKOFF,
            state: Mutex::new(State::default()),
            ctx,
        })
    }

    /// Replaces the reconnection backoff (tests use a short one).
    pub fn with_reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The parsed destination, e.g. `tcp://127.0.0.1:514`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    fn error(&self, message: impl std::fmt::Display) -> SinkError {
        SinkError::transient(format!("syslog sink {:?}: {message}", self.ctx.name))
    }

    /// Connects (honouring the backoff after failures) unless a live connection is open.
    async fn ensure_connected<'a>(&self, st: &'a mut State) -> Result<&'a mut Conn, SinkError> {
        let closed = match st.conn.as_mut() {
            Some(c) => c.peer_closed().await,
            None => false,
        };
        if closed {
            tracing::info!(sink = %self.ctx.name, address = %self.address,
                "syslog receiver closed the connection; reconnecting");
            st.conn = None;
        }
        if st.conn.is_none() {
            if let Some(at) = st.not_before {
                let now = Instant::now();
                if now < at {
                    return Err(self.error(format!(
                        "not connected to {}; next attempt in {}ms (last error: {})",
                        self.address,
                        (at - now).as_millis(),
                        st.last_error
                    )));
                }
            }
            match Conn::connect(&self.address, self.tls.as_ref()).await {
                Ok(c) => {
                    if st.failures > 0 {
                        tracing::info!(sink = %self.ctx.name, address = %self.address,
                            failed_attempts = st.failures, "syslog receiver reachable again");
                    }
                    st.failures = 0;
                    st.not_before = None;
                    st.conn = Some(c);
                }
                Err(e) => {
                    st.not_before = Some(Instant::now() + self.backoff.delay(st.failures));
                    st.failures = st.failures.saturating_add(1);
                    st.last_error.clone_from(&e.message);
                    let err = format!("syslog sink {:?}: {}", self.ctx.name, e.message);
                    return Err(if e.fatal {
                        SinkError::fatal(err)
                    } else {
                        SinkError::transient(err)
                    });
                }
            }
        }
        st.conn
            .as_mut()
            .ok_or_else(|| self.error(format!("not connected to {}", self.address)))
    }
}

#[async_trait]
impl Sink for SyslogSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let udp = self.address.scheme == Scheme::Udp;
        let mut stream_bytes = Vec::new();
        let mut datagrams = Vec::new();
        let mut rejected: Vec<(&Record, String)> = Vec::new();
        let mut msg = Vec::with_capacity(1024);
        for record in batch {
            msg.clear();
            format::message(self.protocol, &self.header, record, &mut msg);
            if msg.len() > self.max_message_bytes {
                rejected.push((
                    record,
                    format!(
                        "syslog message is {} bytes, over max_message_bytes = {} (receivers truncate \
                         longer messages); raise max_message_bytes together with the receiver's limit \
                         (rsyslog maxMessageSize) to deliver it",
                        msg.len(),
                        self.max_message_bytes
                    ),
                ));
                continue;
            }
            if udp {
                datagrams.push(msg.clone());
            } else if self.framing == Framing::Lf {
                if msg.contains(&b'\n') {
                    rejected.push((
                        record,
                        "record contains a raw line feed, which LF framing cannot carry; use \
                         framing = \"octet-counting\""
                            .to_string(),
                    ));
                    continue;
                }
                format::frame_lf(&msg, &mut stream_bytes);
            } else {
                format::frame_octet_counting(&msg, &mut stream_bytes);
            }
        }
        if !stream_bytes.is_empty() || !datagrams.is_empty() {
            let mut st = self.state.lock().await;
            let conn = self.ensure_connected(&mut st).await?;
            if let Err(e) = conn.send(&stream_bytes, &datagrams).await {
                // The receiver may have part of the batch; the whole batch is retried on a new
                // connection (duplicates limited to this batch).
                st.conn = None;
                tracing::warn!(sink = %self.ctx.name, address = %self.address, error = %e,
                    records = batch.len(), "syslog write failed; batch will be retried");
                return Err(self.error(format!(
                    "writing to {} failed: {e}; will reconnect and retry the batch",
                    self.address
                )));
            }
        }
        // Only once everything else is written, so a retried batch does not dead-letter twice.
        for (record, reason) in rejected {
            self.ctx.dead_letter(record, &reason).await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<String, SinkError> {
        let mut st = self.state.lock().await;
        // An explicit probe ignores the backoff and always opens a fresh connection.
        if let Some(old) = st.conn.take() {
            old.close().await;
        }
        st.not_before = None;
        let conn = self.ensure_connected(&mut st).await?;
        Ok(format!("{}: {}", self.address, conn.describe()))
    }

    async fn reopen(&self) {
        let mut st = self.state.lock().await;
        if let Some(old) = st.conn.take() {
            old.close().await;
        }
        st.not_before = None;
    }

    async fn shutdown(&self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, async {
            let mut st = self.state.lock().await;
            if let Some(conn) = st.conn.take() {
                conn.close().await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<SyslogSinkConfig, String> {
        SyslogSinkConfig::from_json(v).map_err(|e| e.to_string())
    }

    fn invalid(v: serde_json::Value) -> String {
        match parse(v) {
            Err(e) => e,
            Ok(c) => c.validate_keys(Format::Cef).unwrap_err(),
        }
    }

    #[test]
    fn the_documented_example_parses_and_validates() {
        let c = parse(json!({
            "address": "tls://siem.example.com:6514",
            "protocol": "rfc5424",
            "framing": "octet-counting",
            "facility": "local4",
            "app_name": "codacy-audit",
            "hostname": "fwd01",
            "tls_verify": true,
            "max_message_bytes": 8192
        }))
        .unwrap();
        c.validate_keys(Format::Cef).unwrap();
        assert_eq!(c.facility, Facility::LOCAL4);
        assert_eq!(c.protocol, Protocol::Rfc5424);
        let minimal = parse(json!({"address": "udp://127.0.0.1:514"})).unwrap();
        minimal.validate_keys(Format::Json).unwrap();
        assert_eq!(minimal.facility, Facility::USER);
        assert_eq!(minimal.effective_framing(), Framing::OctetCounting);
        assert_eq!(minimal.max_message_bytes(), 8192);
        assert_eq!(minimal.app_name(), DEFAULT_APP_NAME);
        let bsd = parse(json!({"address": "tcp://h:514", "protocol": "rfc3164", "framing": "lf"}))
            .unwrap();
        bsd.validate_keys(Format::Cef).unwrap();
        assert_eq!(bsd.protocol, Protocol::Rfc3164);
    }

    /// The example from the documentation, through the real config loader.
    #[test]
    fn the_documented_toml_loads() {
        let text = r#"
[agent]
state_dir = "/tmp/x"

[[organizations]]
provider = "gh"
name = "acme"

[[sinks]]
name = "siem"
type = "syslog"
address = "tls://siem.example.com:6514"   # udp://host:port, tcp://host:port, tls://host:port
protocol = "rfc5424"                       # or "rfc3164"
framing = "octet-counting"                 # or "lf"; TLS always octet-counting; ignored for UDP
format = "cef"
facility = "local4"
app_name = "codacy-audit"
hostname = "fwd01"
tls_verify = true
max_message_bytes = 8192
"#;
        let tokens = crate::config::TokenSources {
            env: Some("tok".into()),
            credentials_directory: None,
        };
        let config = crate::config::Config::from_toml(text, "t.toml", &tokens, false).unwrap();
        let spec = &config.sinks[0];
        assert_eq!(spec.format, Format::Cef);
        assert_eq!(spec.format_options.hostname, "fwd01");
        let c = spec
            .config
            .as_any()
            .downcast_ref::<SyslogSinkConfig>()
            .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("fwd01"));
        assert_eq!(c.facility, Facility::LOCAL4);
        assert_eq!(c.framing, Some(Framing::OctetCounting));
        assert_eq!(c.max_message_bytes(), 8192);

        let bad = text.replace("facility = \"local4\"", "facility = \"local44\"");
        let err = crate::config::Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
        assert!(err.to_string().contains("local44"), "{err}");
        let bad = text.replace("framing = \"octet-counting\"", "framing = \"lf\"");
        let err = crate::config::Config::from_toml(&bad, "t.toml", &tokens, false).unwrap_err();
        assert!(err.to_string().contains("octet-counting"), "{err}");
    }

    #[test]
    fn validation_messages_name_the_key_and_the_fix() {
        let cases = [
            (json!({"address": "siem:514"}), "key `address`"),
            (json!({"address": "http://siem:514"}), "unknown scheme"),
            (json!({"address": "tcp://siem"}), "no port"),
            (
                json!({"address": "tcp://h:1", "facility": "local9"}),
                "unknown facility \"local9\"",
            ),
            (
                json!({"address": "tcp://h:1", "framing": "nul"}),
                "key `framing`",
            ),
            (
                json!({"address": "tcp://h:1", "protocol": "rfc9999"}),
                "key `protocol`",
            ),
            (json!({"address": "tcp://h:1", "colour": "red"}), "colour"),
            (
                json!({"address": "tls://h:6514", "framing": "lf"}),
                "TLS syslog (RFC 5425) is always octet-counting",
            ),
            (
                json!({"address": "tcp://h:1", "tls_ca_file": "/x.pem"}),
                "key `tls_ca_file`: TLS settings need a tls:// address",
            ),
            (
                json!({"address": "udp://h:1", "tls_verify": false}),
                "key `tls_verify`",
            ),
            (
                json!({"address": "tls://h:1", "tls_ca_file": "/nonexistent/ca.pem"}),
                "/nonexistent/ca.pem",
            ),
            (
                json!({"address": "tls://h:1", "tls_cert_file": "/x.pem"}),
                "go together",
            ),
            (
                json!({"address": "udp://h:1", "max_message_bytes": 70000}),
                "at most 65507 bytes",
            ),
            (
                json!({"address": "tcp://h:1", "max_message_bytes": 100}),
                "key `max_message_bytes`: 100 is out of range 480",
            ),
            (
                json!({"address": "tcp://h:1", "app_name": "my app"}),
                "key `app_name`",
            ),
            (
                json!({"address": "tcp://h:1", "app_name": "a".repeat(49)}),
                "key `app_name`",
            ),
            (
                json!({"address": "tcp://h:1", "hostname": "fw 01"}),
                "key `hostname`",
            ),
        ];
        for (config, needle) in cases {
            let err = invalid(config.clone());
            assert!(err.contains(needle), "{config}: {err}");
        }
        // A large limit is fine over TCP.
        parse(json!({"address": "tcp://h:1", "max_message_bytes": 70000}))
            .unwrap()
            .validate_keys(Format::Json)
            .unwrap();
    }

    #[tokio::test]
    async fn oversized_records_are_dead_lettered_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = SyslogSinkConfig::new(format!("udp://{}", sock.local_addr().unwrap()));
        c.max_message_bytes = Some(600);
        c.hostname = Some("fwd01".into());
        let ctx = SinkContext::for_test(dir.path(), "siem");
        let sink = SyslogSink::new(c, ctx.clone()).unwrap();
        let org = Arc::new(crate::event::OrgRef::new(
            crate::event::Provider::Gh,
            "acme",
        ));
        let rec = |payload: String| Record {
            event_id: crate::event::EventId::compute(&org, payload.as_bytes(), 0),
            org: org.clone(),
            timestamp_ms: 0,
            action: "a.b".into(),
            severity: 3,
            payload: payload.into_bytes().into(),
        };
        sink.deliver(&[rec("small".into()), rec("x".repeat(1000))])
            .await
            .unwrap();
        let mut buf = vec![0u8; 70_000];
        let n = sock.recv(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(b"\xEF\xBB\xBFsmall"));
        let dead = std::fs::read_to_string(ctx.dead_letter.path()).unwrap();
        assert_eq!(dead.lines().count(), 1);
        assert!(dead.contains("over max_message_bytes = 600"), "{dead}");
        assert_eq!(
            ctx.metrics.counter(
                "codacy_forwarder_events_dead_lettered_total",
                &[("organization", "gh/acme"), ("sink", "siem")]
            ),
            1
        );
    }
}
