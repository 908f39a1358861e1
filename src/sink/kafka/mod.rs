//! `type = "kafka"`: records to a Kafka topic through librdkafka's idempotent producer.
//!
//! A batch is acknowledged only when every record's delivery report is `Ok` (acks=all). All
//! records are enqueued first (a full local queue is back-pressure: we wait), then every delivery
//! report is awaited. Any failure fails the whole batch, which the pipeline offers again later;
//! idempotence keeps librdkafka's internal retries free of duplicates, and the `event_id` header
//! lets consumers drop the duplicates a batch retry can cause.
//!
//! Each producer has one `kafka-poll` thread that serves librdkafka's callbacks (delivery reports,
//! client errors, log lines). It polls only while a batch or a check waits for them, or while
//! librdkafka holds records or events; otherwise it sleeps, looking for stray events every
//! `IDLE_CHECK`. rdkafka's own polling thread wakes every 100 ms forever, which was most of an idle
//! agent's CPU.

pub mod config;
mod diagnose;

pub use config::{KafkaSettings, KafkaSinkConfig, KeyBy, TopicTemplate, TYPE};

use super::{Record, Sink, SinkContext, SinkError};
use crate::repeat::{Repeat, RepeatLimiter};
use async_trait::async_trait;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long `check` waits for cluster metadata.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// One metadata request of `check`; between them it looks for a failure that needs a human.
const CHECK_TRY: Duration = Duration::from_secs(1);
/// How long a batch waits before an authentication or TLS failure seen meanwhile ends it (rather
/// than waiting for `message_timeout`): long enough for librdkafka to reconnect after a fix.
const HUMAN_ERROR_GRACE: Duration = Duration::from_secs(30);
/// Pause before retrying to enqueue into a full local queue.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(20);
/// How often an idle poll thread wakes to serve events nobody waits for (log lines, client errors
/// between batches): they are logged up to this late. Rare wake-ups are what makes idle cheap.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// One poll while callbacks are awaited. A report is served the moment it is queued whatever the
/// slice; the slice only bounds how late the thread notices that it may sleep or must stop.
const BUSY_SLICE: Duration = Duration::from_millis(100);
/// How long a stopping poll thread serves the reports of the records it purged.
const PURGE_FLUSH: Duration = Duration::from_millis(200);
/// What `shutdown` keeps of its deadline to stop the poll thread after flushing.
const STOP_ALLOWANCE: Duration = Duration::from_millis(300);

/// An error librdkafka reported outside any one record (connection, authentication, TLS).
#[derive(Debug, Clone)]
struct ClientIssue {
    code: Option<RDKafkaErrorCode>,
    reason: String,
    /// What is wrong with a broker's certificate, when librdkafka's reason does not say.
    diagnosis: Option<String>,
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

/// librdkafka's callbacks: its log and its errors go to `tracing` with the sink's name.
#[derive(Clone)]
pub struct KafkaContext {
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

/// How often a repeating librdkafka message is logged again, with its count.
const REPEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl KafkaContext {
    fn new(ctx: &SinkContext, settings: &KafkaSettings) -> Self {
        KafkaContext {
            sink: ctx.name.as_str().into(),
            metrics: ctx.metrics.clone(),
            clock: ctx.clock.clone(),
            diag: Arc::default(),
            tls: settings
                .security_protocol
                .uses_tls()
                .then(|| settings.tls_ca_file.clone()),
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

    fn diag(&self) -> std::sync::MutexGuard<'_, Diagnostics> {
        self.diag.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent_errors(&self) -> String {
        let d = self.diag();
        d.recent
            .iter()
            .map(|i| i.reason.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn human_issue(&self) -> Option<ClientIssue> {
        self.diag().needs_human.clone()
    }

    fn delivered(&self) {
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
        let mut code = error.rdkafka_error_code();
        // A listener that does not speak TLS cuts the handshake off: librdkafka reports a
        // transport failure, but it is a TLS configuration problem.
        // A broker that refuses the client's certificate (or its absence) sends a TLS alert,
        // which librdkafka sees on its first read after the handshake: a transport failure too.
        const REFUSALS: [&str; 4] = [
            "alert certificate required",
            "alert bad certificate",
            "alert unknown ca",
            "alert handshake failure",
        ];
        if code == Some(RDKafkaErrorCode::BrokerTransportFailure)
            && (reason.contains("state SSL_HANDSHAKE")
                || REFUSALS.iter().any(|r| reason.contains(r)))
        {
            code = Some(RDKafkaErrorCode::SSL);
        }
        let sink = &*self.sink;
        let diagnosis = if code == Some(RDKafkaErrorCode::SSL) {
            self.diagnose_certificate(reason)
        } else {
            None
        };
        let issue = ClientIssue {
            code,
            reason: reason.to_string(),
            diagnosis,
        };
        let outage = matches!(
            code,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Resolve
            )
        );
        if outage || code.is_some_and(needs_human) {
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
            _ if outage => {
                tracing::warn!(target: "librdkafka", sink, code = ?code, "{reason}{more}")
            }
            _ => tracing::error!(target: "librdkafka", sink, code = ?code, "{reason}{more}"),
        }
        let mut d = self.diag();
        if code.is_some_and(needs_human) {
            d.needs_human = Some(issue.clone());
        }
        d.recent.retain(|i| i.reason != issue.reason);
        d.recent.push(issue);
        if d.recent.len() > 3 {
            d.recent.remove(0);
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        tracing::trace!(target: "librdkafka", sink = &*self.sink, bytes = statistics.len(), "statistics");
    }
}

/// A record's delivery report, from the poll thread to the batch awaiting it.
type DeliveryReport = Result<(), KafkaError>;

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = Box<oneshot::Sender<DeliveryReport>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        // A batch that ended early (a fatal error) no longer listens: nothing to tell then.
        let _ = report.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

type KafkaProducer = BaseProducer<KafkaContext>;

/// What the poll thread is told by the tasks that need its callbacks.
#[derive(Debug, Default)]
struct PollState {
    /// Batches and checks waiting for callbacks: poll continuously while any.
    waiters: usize,
    stop: bool,
}

/// Wakes the poll thread when a batch starts or the producer goes away.
#[derive(Debug, Default)]
struct Poller {
    state: Mutex<PollState>,
    wake: Condvar,
}

impl Poller {
    fn lock(&self) -> MutexGuard<'_, PollState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// Keeps the thread polling until the returned guard is dropped.
    fn busy(&self) -> Busy<'_> {
        self.lock().waiters += 1;
        self.wake.notify_all();
        Busy(self)
    }

    /// Serves `producer`'s callbacks until stopped, then purges what is left so that nothing
    /// awaits a report that will never come.
    fn run(&self, producer: &KafkaProducer) {
        'serve: loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        break 'serve;
                    }
                    // Records in flight or queued events (logs, errors) count too: a batch
                    // that gave up early leaves records whose reports must still be served.
                    if state.waiters > 0 || producer.in_flight_count() > 0 {
                        break;
                    }
                    let (next, wait) = self
                        .wake
                        .wait_timeout(state, IDLE_CHECK)
                        .unwrap_or_else(|p| p.into_inner());
                    state = next;
                    // Tells a test that a batch woke the thread, rather than the idle check.
                    if !wait.timed_out() && state.waiters > 0 {
                        tracing::trace!(target: "kafka_poll", "woken by a batch or check");
                    }
                }
            }
            producer.poll(BUSY_SLICE);
        }
        producer.purge(PurgeConfig::default().queue().inflight());
        let _ = producer.flush(PURGE_FLUSH);
    }
}

struct Busy<'a>(&'a Poller);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waiters = state.waiters.saturating_sub(1);
    }
}

/// The `kafka-poll` thread of one producer. Dropping the last handle stops it without waiting:
/// the thread then drops the producer itself (purge, flush, destroy), off the async runtime.
struct PollThread {
    poller: Arc<Poller>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl PollThread {
    fn start(producer: Arc<KafkaProducer>) -> std::io::Result<PollThread> {
        let poller = Arc::new(Poller::default());
        let handle = std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn({
                let poller = poller.clone();
                move || poller.run(&producer)
            })?;
        Ok(PollThread {
            poller,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Stops the thread and waits for it: blocking, keep it off the runtime.
    fn stop_and_join(&self) {
        self.poller.stop();
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for PollThread {
    fn drop(&mut self) {
        self.poller.stop();
    }
}

/// The producer, a handle on its context's diagnostics (the producer hides its context) and its
/// poll thread, which runs as long as any clone lives.
#[derive(Clone)]
struct Active {
    // Declared (so dropped) before `poll`: the poll thread, still running then, holds the last
    // reference to the producer and destroys it on its own thread.
    producer: Arc<KafkaProducer>,
    context: KafkaContext,
    poll: Arc<PollThread>,
}

/// What a failed delivery means for the batch.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Retry the batch later.
    Transient(String),
    /// Needs a human; the message says what to do.
    Fatal(String),
    /// The record is too large for the topic or the producer: dead-letter it.
    TooLarge(String),
    /// The producer is unusable (librdkafka fatal error): replace it, then retry.
    Broken(String),
}

pub struct KafkaSink {
    ctx: SinkContext,
    config: KafkaSinkConfig,
    settings: RwLock<Arc<KafkaSettings>>,
    active: RwLock<Active>,
    /// Set by `shutdown`, which stops the poll thread: later batches fail instead of waiting.
    closed: AtomicBool,
}

impl KafkaSink {
    /// Creates the producer (it connects in the background). Bad librdkafka properties and
    /// unreadable files are start-up errors naming the property or file.
    pub async fn start(config: KafkaSinkConfig, ctx: SinkContext) -> Result<KafkaSink, SinkError> {
        let settings = config
            .resolve()
            .map_err(|m| SinkError::fatal(format!("kafka sink {:?}: {m}", ctx.name)))?;
        let producer = Self::create_producer(&settings, &ctx)?;
        if settings.security_protocol == config::SecurityProtocol::SaslPlaintext {
            tracing::warn!(sink = %ctx.name, "security_protocol = \"sasl_plaintext\" sends the SASL exchange unencrypted; prefer \"sasl_ssl\"");
        }
        tracing::info!(sink = %ctx.name, brokers = %settings.brokers, topic = %config.topic,
            security_protocol = settings.security_protocol.as_str(),
            message_timeout = %humantime::format_duration(settings.message_timeout), "kafka producer started");
        Ok(KafkaSink {
            ctx,
            config,
            settings: RwLock::new(Arc::new(settings)),
            active: RwLock::new(producer),
            closed: AtomicBool::new(false),
        })
    }

    fn create_producer(settings: &KafkaSettings, ctx: &SinkContext) -> Result<Active, SinkError> {
        let name = &ctx.name;
        let client_id = format!("{}.{name}", crate::format::AGENT_NAME);
        let mut cc = settings.client_config(&client_id);
        cc.set_log_level(
            if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
                RDKafkaLogLevel::Debug
            } else {
                RDKafkaLogLevel::Info
            },
        );
        let context = KafkaContext::new(ctx, settings);
        let producer: KafkaProducer = cc.create_with_context(context.clone()).map_err(|e| {
            let what = match &e {
                KafkaError::ClientConfig(..) => {
                    config::describe_config_error(&e, "librdkafka_options.")
                }
                // e.g. an unreadable or malformed TLS file, named by librdkafka.
                other => other.to_string(),
            };
            SinkError::fatal(format!(
                "kafka sink {name:?}: cannot create the producer: {what}"
            ))
        })?;
        let producer = Arc::new(producer);
        let poll = PollThread::start(producer.clone()).map_err(|e| {
            SinkError::fatal(format!(
                "kafka sink {name:?}: cannot start the producer's poll thread: {e}"
            ))
        })?;
        Ok(Active {
            producer,
            context,
            poll: Arc::new(poll),
        })
    }

    fn settings(&self) -> Arc<KafkaSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn active(&self) -> Active {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces a producer that hit a librdkafka fatal error (it fails everything from then on).
    fn replace_if_broken(&self) -> Result<(), SinkError> {
        let current = self.active();
        let Some((code, reason)) = current.producer.client().fatal_error() else {
            return Ok(());
        };
        tracing::error!(sink = %self.ctx.name, ?code, reason, "kafka producer hit a fatal error; creating a new one");
        let fresh = Self::create_producer(&self.settings(), &self.ctx)?;
        let old = std::mem::replace(
            &mut *self.active.write().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
        // Dropping it only tells its poll thread to stop (batches still holding it keep it alive);
        // that thread destroys the producer, so nothing blocks here.
        drop(old);
        Ok(())
    }

    fn key<'a>(&self, settings: &KafkaSettings, r: &'a Record, org_key: &'a str) -> &'a str {
        match settings.key {
            KeyBy::Organization => org_key,
            KeyBy::EventId => r.event_id.as_str(),
        }
    }

    fn headers(&self, r: &Record) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: "event_id",
                value: Some(r.event_id.as_str()),
            })
            .insert(Header {
                key: "organization",
                value: Some(r.org.name.as_str()),
            })
            .insert(Header {
                key: "provider",
                value: Some(r.org.provider.as_str()),
            })
            .insert(Header {
                key: "format",
                value: Some(self.ctx.format_label),
            })
    }

    /// Enqueues one record, waiting while the local queue is full; the receiver gets its
    /// delivery report.
    async fn enqueue(
        &self,
        producer: &KafkaProducer,
        settings: &KafkaSettings,
        r: &Record,
        topic: &str,
    ) -> Result<oneshot::Receiver<DeliveryReport>, KafkaError> {
        let org_key = r.org.key();
        let (report, delivered) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(report))
            .payload(&r.payload[..])
            .key(self.key(settings, r, &org_key))
            .headers(self.headers(r));
        // Kafka has no timestamps before the epoch; such a record gets the broker's time.
        if r.timestamp_ms >= 0 {
            record = record.timestamp(r.timestamp_ms);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(delivered),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn classify(
        ctx: &KafkaContext,
        settings: &KafkaSettings,
        e: &KafkaError,
        topic: &str,
    ) -> Verdict {
        let brokers = &settings.brokers;
        let recent = ctx.recent_errors();
        let recent = if recent.is_empty() {
            String::new()
        } else {
            format!(" (librdkafka: {recent})")
        };
        let principal = settings
            .sasl
            .as_ref()
            .map_or("the client".to_string(), |s| {
                format!("user {:?}", s.username)
            });
        let Some(code) = e.rdkafka_error_code() else {
            return Verdict::Transient(format!("kafka producer error: {e}"));
        };
        use RDKafkaErrorCode as C;
        match code {
            C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => {
                Verdict::TooLarge(format!(
                    "record too large for Kafka topic {topic:?} ({code}): raise the topic's max.message.bytes, or librdkafka_options message.max.bytes if the producer refused it"
                ))
            }
            C::UnknownTopic | C::UnknownTopicOrPartition => Verdict::Fatal(format!(
                "Kafka topic {topic:?} does not exist on {brokers} and the brokers do not create topics automatically: create it (kafka-topics.sh --create --topic {topic}) or change `topic`"
            )),
            C::InvalidTopic => Verdict::Fatal(format!(
                "the Kafka brokers {brokers} reject the topic name {topic:?}: change `topic`"
            )),
            C::TopicAuthorizationFailed => Verdict::Fatal(format!(
                "{principal} is not authorized to write to Kafka topic {topic:?} on {brokers}: grant it WRITE and DESCRIBE on the topic (kafka-acls.sh --add --allow-principal User:... --operation Write --operation Describe --topic {topic})"
            )),
            C::ClusterAuthorizationFailed => Verdict::Fatal(format!(
                "{principal} is not authorized for the IdempotentWrite cluster operation on {brokers}, which the idempotent producer needs on Kafka before 2.8: grant it (kafka-acls.sh --add --allow-principal User:... --operation IdempotentWrite --cluster)"
            )),
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState => Verdict::Fatal(sasl_message(settings, &recent)),
            C::SSL => {
                let issue = ctx.human_issue();
                let diagnosis = issue.as_ref().and_then(|i| i.diagnosis.as_deref());
                Verdict::Fatal(tls_message(settings, &recent, diagnosis))
            }
            C::InvalidTimestamp => Verdict::Fatal(format!(
                "Kafka topic {topic:?} rejects the records' timestamps (the events' own times, which may be months old during a backfill): raise the topic's message.timestamp.before.max.ms (message.timestamp.difference.max.ms before Kafka 3.6)"
            )),
            C::InvalidRecord | C::PolicyViolation | C::UnsupportedForMessageFormat => {
                Verdict::Fatal(format!(
                    "Kafka topic {topic:?} on {brokers} rejects the records ({code}){recent}: check the topic's configuration"
                ))
            }
            C::Fatal => Verdict::Broken(format!(
                "the Kafka producer hit a fatal error and is being recreated{recent}; the batch will be retried"
            )),
            C::MessageTimedOut => match ctx.human_issue() {
                Some(issue) => classify_issue(settings, &issue, topic),
                None => Verdict::Transient(format!(
                    "Kafka did not confirm delivery to topic {topic:?} within message_timeout ({}): brokers {brokers} unreachable or unhealthy{recent}; check `brokers`, DNS, firewalls and `security_protocol`",
                    humantime::format_duration(settings.message_timeout)
                )),
            },
            C::PurgeQueue | C::PurgeInflight => {
                Verdict::Transient("kafka producer shut down before delivery".to_string())
            }
            other => Verdict::Transient(format!(
                "Kafka delivery to topic {topic:?} on {brokers} failed: {other}{recent}"
            )),
        }
    }

    /// Sends the records of one batch and awaits their delivery reports. Returns the records
    /// that are too large (to dead-letter) when everything else was delivered.
    async fn send_batch<'a>(
        &self,
        batch: &[&'a Record],
    ) -> Result<Vec<(&'a Record, String)>, SinkError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SinkError::transient(format!(
                "kafka sink {:?} is shut down",
                self.ctx.name
            )));
        }
        self.replace_if_broken()?;
        // Kept whole, not destructured: its fields drop in the order `Active` relies on.
        let active = self.active();
        let (producer, context) = (&active.producer, &active.context);
        // Before the first record: its report may come at once.
        let _busy = active.poll.poller.busy();
        let settings = self.settings();
        let mut pending = Vec::with_capacity(batch.len());
        let mut failures: Vec<(&Record, String, KafkaError)> = Vec::new();
        for r in batch {
            let topic = settings.topic.render(&r.org).map_err(SinkError::fatal)?;
            match self.enqueue(producer, &settings, r, &topic).await {
                Ok(f) => pending.push((*r, topic, f)),
                Err(e) => {
                    let stop = !matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
                    );
                    failures.push((r, topic, e));
                    if stop {
                        break;
                    }
                }
            }
        }

        let mut delivered = 0usize;
        let grace = HUMAN_ERROR_GRACE.min(settings.message_timeout);
        let waited = Instant::now();
        for (r, topic, f) in pending {
            let mut f = std::pin::pin!(f);
            let outcome = loop {
                let left = grace.saturating_sub(waited.elapsed());
                if left.is_zero() {
                    if let Some(issue) = context.human_issue() {
                        if let Verdict::Fatal(m) = classify_issue(&settings, &issue, &topic) {
                            return Err(SinkError::fatal(m));
                        }
                    }
                    break f.await;
                }
                if let Ok(outcome) = tokio::time::timeout(left, &mut f).await {
                    break outcome;
                }
            };
            match outcome {
                Ok(Ok(())) => delivered += 1,
                Ok(Err(e)) => failures.push((r, topic, e)),
                // The producer went away without a report (it should purge first).
                Err(_closed) => failures.push((r, topic, KafkaError::Canceled)),
            }
        }
        if delivered > 0 {
            context.delivered();
        }

        let mut too_large = Vec::new();
        let mut worst: Option<SinkError> = None;
        // A fatal error fails the records with the broker's code (e.g. OutOfOrderSequenceNumber),
        // not with Fatal: ask the producer itself, as only a new one can deliver again.
        let broken = producer.client().fatal_error();
        for (r, topic, e) in failures {
            let verdict = match &broken {
                Some((_, reason)) => Verdict::Broken(format!(
                    "the Kafka producer hit a fatal error and is being recreated (librdkafka: {reason}); the batch will be retried"
                )),
                None => Self::classify(context, &settings, &e, &topic),
            };
            tracing::debug!(sink = %self.ctx.name, event_id = %r.event_id, topic, error = %e, ?verdict, "kafka delivery failed");
            let err = match verdict {
                Verdict::TooLarge(reason) => {
                    too_large.push((r, reason));
                    continue;
                }
                Verdict::Fatal(m) => SinkError::fatal(m),
                Verdict::Transient(m) => SinkError::transient(m),
                Verdict::Broken(m) => {
                    self.replace_if_broken()?;
                    SinkError::transient(m)
                }
            };
            // A fatal error wins: it needs a human.
            if worst
                .as_ref()
                .is_none_or(|w| w.kind != super::SinkErrorKind::Fatal)
            {
                worst = Some(err);
            }
        }
        match worst {
            Some(mut e) => {
                e.message = format!(
                    "{} of {} records not delivered: {}",
                    batch.len() - delivered - too_large.len(),
                    batch.len(),
                    e.message
                );
                Err(e)
            }
            None => Ok(too_large),
        }
    }
}

fn sasl_message(settings: &KafkaSettings, recent: &str) -> String {
    match &settings.sasl {
        Some(s) => format!(
            "SASL authentication as {:?} ({}) failed at {}{recent}: check sasl_username, the password in sasl_password_file/sasl_password_env, and that the brokers enable {}",
            s.username,
            s.mechanism.as_str(),
            settings.brokers,
            s.mechanism.as_str()
        ),
        None => format!(
            "the Kafka brokers {} require SASL authentication{recent}: set security_protocol = \"sasl_ssl\" (or \"sasl_plaintext\") with sasl_mechanism, sasl_username and sasl_password_file",
            settings.brokers
        ),
    }
}

fn tls_message(settings: &KafkaSettings, recent: &str, diagnosis: Option<&str>) -> String {
    let brokers = &settings.brokers;
    if !settings.security_protocol.uses_tls() {
        return format!(
            "TLS error with the Kafka brokers {brokers}{recent}: check `security_protocol` against the brokers' listener"
        );
    }
    // OpenSSL's reason, as librdkafka quotes it, tells which of the usual mistakes this is.
    let reason = recent.to_ascii_lowercase();
    let remedy = if let Some(d) = diagnosis {
        d.to_string()
    } else if reason.contains("plaintext broker listener")
        || (reason.contains("state ssl_handshake") && reason.contains("disconnected"))
    {
        // librdkafka words it either way, depending on when the listener hangs up.
        "the listener cut the TLS handshake off, as one that does not speak TLS does: point `brokers` at the brokers' TLS listener, or set security_protocol to what that listener speaks".to_string()
    } else if reason.contains("certificate verify failed") {
        "the brokers' certificate could not be verified: check that tls_ca_file holds the CA that signed it (without tls_ca_file, the system trust store is used) and that it names the hosts in `brokers`".to_string()
    } else if reason.contains("certificate required")
        || (reason.contains("handshake failure") && settings.tls_cert_file.is_none())
    {
        "the brokers require a client certificate: set tls_cert_file and tls_key_file to a certificate their CA signed".to_string()
    } else if reason.contains("unknown ca") || reason.contains("bad certificate") {
        "the brokers refuse the client certificate: use one (tls_cert_file, tls_key_file) signed by a CA the brokers trust".to_string()
    } else {
        "check that tls_ca_file holds the CA that signed the brokers' certificates, that those certificates name the hosts in `brokers`, that the listener speaks TLS, and whether it requires a client certificate (tls_cert_file, tls_key_file)".to_string()
    };
    format!("TLS with the Kafka brokers {brokers} failed{recent}: {remedy}")
}

/// What a client-level error that needs a human means for delivery.
fn classify_issue(settings: &KafkaSettings, issue: &ClientIssue, topic: &str) -> Verdict {
    let recent = format!(" (librdkafka: {})", issue.reason);
    use RDKafkaErrorCode as C;
    match issue.code {
        Some(C::SSL) => Verdict::Fatal(tls_message(
            settings,
            &recent,
            issue.diagnosis.as_deref(),
        )),
        Some(C::TopicAuthorizationFailed) => Verdict::Fatal(format!(
            "not authorized to write to Kafka topic {topic:?} on {}{recent}: grant WRITE and DESCRIBE on the topic",
            settings.brokers
        )),
        Some(C::ClusterAuthorizationFailed) => Verdict::Fatal(format!(
            "not authorized for the IdempotentWrite cluster operation on {}{recent}: grant it, as the idempotent producer needs it on Kafka before 2.8",
            settings.brokers
        )),
        _ => Verdict::Fatal(sasl_message(settings, &recent)),
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let all: Vec<&Record> = batch.iter().collect();
        let too_large = self.send_batch(&all).await?;
        let mut dead = Vec::new();
        // Records librdkafka batched together may be too large only as a batch: each one is
        // tried alone before it is dead-lettered.
        for (r, reason) in too_large {
            let mut left = self.send_batch(&[r]).await?;
            if let Some((r, _)) = left.pop() {
                dead.push((r, reason));
            }
        }
        for (r, reason) in dead {
            self.ctx.dead_letter(r, &reason).await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<String, SinkError> {
        let active = self.active();
        let context = active.context.clone();
        let settings = self.settings();
        let s = settings.clone();
        let diagnosed = context.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            // Client errors meanwhile (authentication, TLS) are served at once for the diagnosis.
            let _busy = active.poll.poller.busy();
            // In short tries, so that a failure needing a human ends the check as soon as it is
            // known rather than after the whole CHECK_TIMEOUT.
            let started = Instant::now();
            loop {
                let left = CHECK_TIMEOUT.saturating_sub(started.elapsed());
                let outcome = active
                    .producer
                    .client()
                    .fetch_metadata(None, left.min(CHECK_TRY));
                match outcome {
                    // A pause, in case a failure comes back at once: no busy loop.
                    Err(_) if !left.is_zero() && diagnosed.human_issue().is_none() => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    done => break done,
                }
            }
        })
        .await
        .map_err(|e| SinkError::transient(format!("kafka metadata task failed: {e}")))?;
        let metadata = match metadata {
            Ok(m) => m,
            Err(e) => {
                if let Some(issue) = context.human_issue() {
                    if let Verdict::Fatal(m) =
                        classify_issue(&s, &issue, s.topic.fixed().unwrap_or("-"))
                    {
                        return Err(SinkError::fatal(m));
                    }
                }
                let recent = context.recent_errors();
                return Err(SinkError::transient(format!(
                    "no Kafka broker answered within {}s (tried {}): {e}{}; check `brokers`, DNS, firewalls and `security_protocol`",
                    CHECK_TIMEOUT.as_secs(),
                    s.brokers,
                    if recent.is_empty() { String::new() } else { format!(" (librdkafka: {recent})") }
                )));
            }
        };
        let brokers: Vec<String> = metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id()))
            .collect();
        let mut report = format!(
            "{} broker(s) reachable: {}",
            brokers.len(),
            brokers.join(", ")
        );
        match settings.topic.fixed() {
            Some(topic) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() => report.push_str(&format!(
                    "; topic {topic:?} exists with {} partition(s)",
                    t.partitions().len()
                )),
                Some(t) => report.push_str(&format!(
                    "; topic {topic:?}: {:?}",
                    t.error().map(RDKafkaErrorCode::from)
                )),
                None => report.push_str(&format!(
                    "; topic {topic:?} does not exist yet: it is created on the first write only if the brokers allow auto.create.topics.enable"
                )),
            },
            None => report.push_str(&format!(
                "; topics are named per organization ({:?})",
                self.config.topic
            )),
        }
        Ok(report)
    }

    /// SIGHUP: re-reads the password and TLS files (rotated credentials) with a new producer.
    /// Batches in flight finish on the producer they started with.
    async fn reopen(&self) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let settings = match self.config.resolve() {
            Ok(s) => s,
            Err(m) => {
                tracing::error!(sink = %self.ctx.name, error = %m, "kafka sink keeps its current settings");
                return;
            }
        };
        match Self::create_producer(&settings, &self.ctx) {
            Ok(fresh) => {
                *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
                let old = std::mem::replace(
                    &mut *self.active.write().unwrap_or_else(|p| p.into_inner()),
                    fresh,
                );
                tokio::task::spawn_blocking(move || {
                    let _ = old.producer.flush(Duration::from_secs(30));
                    drop(old);
                });
                tracing::info!(sink = %self.ctx.name, "kafka producer recreated");
            }
            Err(e) => {
                tracing::error!(sink = %self.ctx.name, error = %e, "kafka sink keeps its current producer")
            }
        }
    }

    /// Flushes within the deadline, then stops the poll thread (purging what is unconfirmed).
    async fn shutdown(&self, deadline: Duration) {
        self.closed.store(true, Ordering::Relaxed);
        let active = self.active();
        let name = self.ctx.name.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // flush serves the delivery reports itself, besides the poll thread.
            if let Err(e) = active
                .producer
                .flush(deadline.saturating_sub(STOP_ALLOWANCE))
            {
                tracing::warn!(sink = %name, error = %e, in_flight = active.producer.in_flight_count(),
                    "kafka records still unconfirmed at shutdown; they are sent again after restart");
            }
            active.poll.stop_and_join();
        })
        .await;
    }
}
