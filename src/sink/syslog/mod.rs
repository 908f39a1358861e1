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

pub mod config;
pub mod format;
pub mod transport;

pub use self::config::{Framing, SyslogSinkConfig, TYPE};

use self::format::{Header, Protocol};
use self::transport::{Address, Conn, Scheme, TlsSetup};
use super::{Record, Sink, SinkContext, SinkError};
use crate::clock::Backoff;
use crate::format::framing;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

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
        let address = config
            .parsed_address()
            .map_err(|e| startup(e.to_string()))?;
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

    fn error(&self, message: impl std::fmt::Display) -> SinkError {
        SinkError::transient(format!("syslog sink {:?}: {message}", self.ctx.name))
    }

    /// The open connection unless the receiver closed it, else a new one (honouring the backoff
    /// after failures).
    async fn ensure_connected<'a>(&self, st: &'a mut State) -> Result<&'a mut Conn, SinkError> {
        if let Some(mut conn) = st.conn.take() {
            if !conn.peer_closed().await {
                return Ok(st.conn.insert(conn));
            }
            tracing::info!(sink = %self.ctx.name, address = %self.address,
                "syslog receiver closed the connection; reconnecting");
        }
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
            Ok(conn) => {
                if st.failures > 0 {
                    tracing::info!(sink = %self.ctx.name, address = %self.address,
                        failed_attempts = st.failures, "syslog receiver reachable again");
                }
                st.failures = 0;
                st.not_before = None;
                Ok(st.conn.insert(conn))
            }
            Err(e) => {
                st.not_before = Some(Instant::now() + self.backoff.delay(st.failures));
                st.failures = st.failures.saturating_add(1);
                st.last_error.clone_from(&e.message);
                let err = format!("syslog sink {:?}: {}", self.ctx.name, e.message);
                Err(if e.fatal {
                    SinkError::fatal(err)
                } else {
                    SinkError::transient(err)
                })
            }
        }
    }

    /// Formats and frames `batch` for this transport; records that cannot go are set apart with
    /// the reason.
    fn frame<'r>(&self, batch: &'r [Record]) -> Framed<'r> {
        let mut out = Framed::default();
        if self.address.scheme != Scheme::Udp {
            // The header and framing add under 200 bytes to a payload: one allocation for the
            // batch instead of a growing buffer copied at every doubling.
            out.stream
                .reserve(batch.iter().map(|r| r.payload.len() + 200).sum());
        }
        let mut msg = Vec::with_capacity(1024);
        for record in batch {
            msg.clear();
            format::message(self.protocol, &self.header, record, &mut msg);
            if msg.len() > self.max_message_bytes {
                out.rejected.push((
                    record,
                    format!(
                        "syslog message is {} bytes, over max_message_bytes = {} (receivers truncate \
                         longer messages); raise max_message_bytes together with the receiver's limit \
                         (rsyslog maxMessageSize) to deliver it",
                        msg.len(),
                        self.max_message_bytes
                    ),
                ));
            } else if self.address.scheme == Scheme::Udp {
                out.datagrams.push(msg.clone());
            } else if self.framing == Framing::OctetCounting {
                framing::octet_counted(&msg, &mut out.stream);
            } else if msg.contains(&b'\n') {
                // Encoders never emit one and the header escapes them: a guard, not a path.
                out.rejected.push((
                    record,
                    "record contains a raw line feed, which LF framing cannot carry; use \
                     framing = \"octet-counting\""
                        .to_string(),
                ));
            } else {
                framing::line(&msg, &mut out.stream);
            }
        }
        out
    }
}

/// One batch ready to send.
#[derive(Default)]
struct Framed<'r> {
    /// Framed messages for TCP and TLS.
    stream: Vec<u8>,
    /// One message per datagram for UDP.
    datagrams: Vec<Vec<u8>>,
    /// Records dead-lettered instead, with the reason.
    rejected: Vec<(&'r Record, String)>,
}

#[async_trait]
impl Sink for SyslogSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        let framed = self.frame(batch);
        if !framed.stream.is_empty() || !framed.datagrams.is_empty() {
            let mut st = self.state.lock().await;
            let conn = self.ensure_connected(&mut st).await?;
            if let Err(e) = conn.send(&framed.stream, &framed.datagrams).await {
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
        for (record, reason) in framed.rejected {
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
        // Past the deadline the connection is dropped unclosed: everything acknowledged is
        // already written, so nothing is lost.
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

    #[tokio::test]
    async fn oversized_records_are_dead_lettered_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let keys = serde_json::from_value(serde_json::json!({
            "address": format!("udp://{}", sock.local_addr().unwrap()),
            "max_message_bytes": 600,
            "hostname": "fwd01",
        }))
        .unwrap();
        let c = SyslogSinkConfig::from_keys(keys).unwrap();
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
