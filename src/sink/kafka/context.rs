//! librdkafka's callbacks for one producer: its log lines and client errors go to `tracing` with
//! the sink's name (a repeating outage once a minute), outages to `/health`, and what was seen
//! lately is kept to name the cause in delivery errors. Delivery reports go to the batch that
//! awaits them.

use super::diagnose;
use super::settings::KafkaSettings;
use crate::repeat::{Repeat, RepeatLimiter};
use crate::sink::SinkContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// How often a repeating librdkafka message is logged again, with its count.
const REPEAT_EVERY: Duration = Duration::from_secs(60);
/// How many distinct recent client errors are kept for messages.
const RECENT: usize = 3;

/// A record's delivery report, from the poll thread to the batch awaiting it.
pub(crate) type DeliveryReport = Result<(), KafkaError>;

pub(crate) type KafkaProducer = BaseProducer<KafkaContext>;

/// An error librdkafka reported outside any one record (connection, authentication, TLS).
#[derive(Debug, Clone)]
pub(crate) struct ClientIssue {
    pub(crate) code: Option<RDKafkaErrorCode>,
    pub(crate) reason: String,
    /// What is wrong with a broker's certificate, when librdkafka's reason does not say.
    pub(crate) diagnosis: Option<String>,
}

/// What the client context saw lately, for error messages that name the cause.
#[derive(Debug, Default)]
struct Diagnostics {
    /// The most recent distinct client errors, newest last.
    recent: Vec<ClientIssue>,
    /// An authentication/authorization/TLS failure not yet followed by a successful delivery.
    needs_human: Option<ClientIssue>,
}

fn needs_human(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

/// A broker outage: routine, retried by librdkafka, reported on `/health`.
fn outage(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// The code of a client error as far as the remedy goes: a TLS problem that librdkafka reports
/// as a transport failure is a TLS problem.
fn effective_code(error: &KafkaError, reason: &str) -> Option<RDKafkaErrorCode> {
    // A listener that does not speak TLS cuts the handshake off: librdkafka reports a transport
    // failure, but it is a TLS configuration problem. A broker that refuses the client's
    // certificate (or its absence) sends a TLS alert, which librdkafka sees on its first read
    // after the handshake: a transport failure too.
    const REFUSALS: [&str; 4] = [
        "alert certificate required",
        "alert bad certificate",
        "alert unknown ca",
        "alert handshake failure",
    ];
    let code = error.rdkafka_error_code();
    let tls = reason.contains("state SSL_HANDSHAKE") || REFUSALS.iter().any(|r| reason.contains(r));
    if code == Some(RDKafkaErrorCode::BrokerTransportFailure) && tls {
        return Some(RDKafkaErrorCode::SSL);
    }
    code
}

/// librdkafka's callbacks: its log and its errors go to `tracing` with the sink's name.
#[derive(Clone)]
pub(crate) struct KafkaContext {
    sink: Arc<str>,
    diag: Arc<Mutex<Diagnostics>>,
    /// TLS in use, and the CA file trusted: what a certificate diagnosis needs.
    tls: Option<Option<PathBuf>>,
    /// librdkafka repeats a broker outage several times a second, through both callbacks.
    repeats: Arc<RepeatLimiter>,
    /// Where an outage is reported, so /health names it next to the lanes of this sink.
    metrics: Arc<crate::telemetry::Metrics>,
    clock: crate::clock::SharedClock,
}

impl KafkaContext {
    pub(crate) fn new(ctx: &SinkContext, settings: &KafkaSettings) -> Self {
        KafkaContext {
            sink: ctx.name.as_str().into(),
            metrics: ctx.metrics.clone(),
            clock: ctx.clock.clone(),
            diag: Arc::default(),
            tls: settings
                .security_protocol
                .uses_tls()
                .then(|| settings.tls.ca_file.clone()),
            repeats: Arc::new(RepeatLimiter::new(REPEAT_EVERY, crate::clock::system())),
        }
    }

    /// Why the broker named in `reason` fails certificate verification; once per reason, as
    /// librdkafka repeats the error at every reconnection.
    fn diagnose_certificate(&self, reason: &str) -> Option<String> {
        let ca_file = self.tls.as_ref()?;
        if !reason.contains("certificate verify failed") {
            return None;
        }
        if let Some(known) = self
            .diag()
            .needs_human
            .as_ref()
            .filter(|i| i.reason == reason)
        {
            return known.diagnosis.clone();
        }
        let (host, port) = diagnose::broker_of(reason)?;
        diagnose::certificate_problem(&host, port, ca_file.as_ref())
    }

    fn diag(&self) -> MutexGuard<'_, Diagnostics> {
        self.diag.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recent client errors as a message quotes them, ` (librdkafka: a; b)`, or nothing.
    pub(crate) fn recent_errors(&self) -> String {
        let d = self.diag();
        if d.recent.is_empty() {
            return String::new();
        }
        let reasons: Vec<&str> = d.recent.iter().map(|i| i.reason.as_str()).collect();
        format!(" (librdkafka: {})", reasons.join("; "))
    }

    /// The failure that needs a human, if one was seen since the last delivery.
    pub(crate) fn human_issue(&self) -> Option<ClientIssue> {
        self.diag().needs_human.clone()
    }

    /// A record was delivered: the failures seen before are over.
    pub(crate) fn delivered(&self) {
        let mut d = self.diag();
        d.needs_human = None;
        d.recent.clear();
        drop(d);
        self.metrics
            .destination_condition(&self.sink, None, self.clock.now_ms());
        for (kind, times) in self.repeats.cleared() {
            tracing::info!(target: "librdkafka", sink = &*self.sink, kind, times, "cleared: the brokers take records again");
        }
    }

    /// Names an outage or a failure that needs a human on `/health`.
    fn report_condition(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let condition = match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => "Kafka: all brokers are down".to_string(),
            // "host:9092/bootstrap: Connect to ... failed: Connection refused (after 0ms in
            // state CONNECT)": the cause, without the parts that change every time.
            _ => {
                let cause = reason.rsplit(": ").next().unwrap_or(reason);
                format!("Kafka: {}", cause.split(" (").next().unwrap_or(cause))
            }
        };
        self.metrics
            .destination_condition(&self.sink, Some(&condition), self.clock.now_ms());
    }

    /// Logs a client error: a repeat once a minute with its count, an outage as a warning.
    fn log_error(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let sink = &*self.sink;
        let repeat = self.repeats.occurred(&format!("error {code:?}"));
        let more = match repeat {
            Repeat::Again(times) => format!(" (and {times} more like it in the last minute)"),
            _ => String::new(),
        };
        match (repeat, code) {
            (Repeat::Quiet, _) => {
                tracing::debug!(target: "librdkafka", sink, code = ?code, "{reason}")
            }
            (_, Some(c)) if needs_human(c) => {
                tracing::error!(target: "librdkafka", sink, code = ?c, "{reason}{more}")
            }
            _ if outage(code) => {
                tracing::warn!(target: "librdkafka", sink, code = ?code, "{reason}{more}")
            }
            _ => tracing::error!(target: "librdkafka", sink, code = ?code, "{reason}{more}"),
        }
    }

    /// Keeps `issue` among the recent ones (and as the one needing a human, if it does).
    fn remember(&self, issue: ClientIssue) {
        let mut d = self.diag();
        if issue.code.is_some_and(needs_human) {
            d.needs_human = Some(issue.clone());
        }
        d.recent.retain(|i| i.reason != issue.reason);
        d.recent.push(issue);
        if d.recent.len() > RECENT {
            d.recent.remove(0);
        }
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let sink = &*self.sink;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", sink, facility = fac, "{message}")
            }
            // Connection failures are logged at error level and also reported to `error` below;
            // they are routine during an outage, so they are warnings here, once a minute.
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                match self.repeats.occurred(&format!("log {fac}")) {
                    Repeat::First => {
                        tracing::warn!(target: "librdkafka", sink, facility = fac, "{message}")
                    }
                    Repeat::Again(times) => {
                        tracing::warn!(target: "librdkafka", sink, facility = fac, repeated = times, "{message} (and {times} more like it in the last minute)")
                    }
                    Repeat::Quiet => {
                        tracing::debug!(target: "librdkafka", sink, facility = fac, "{message}")
                    }
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", sink, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", sink, facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = effective_code(&error, reason);
        let diagnosis = if code == Some(RDKafkaErrorCode::SSL) {
            self.diagnose_certificate(reason)
        } else {
            None
        };
        if outage(code) || code.is_some_and(needs_human) {
            self.report_condition(code, reason);
        }
        self.log_error(code, reason);
        self.remember(ClientIssue {
            code,
            reason: reason.to_string(),
            diagnosis,
        });
    }

    fn stats_raw(&self, statistics: &[u8]) {
        tracing::trace!(target: "librdkafka", sink = &*self.sink, bytes = statistics.len(), "statistics");
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = Box<oneshot::Sender<DeliveryReport>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        // A batch that ended early (a fatal error) no longer listens: nothing to tell then.
        let _ = report.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}
