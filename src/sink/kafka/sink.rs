//! The Kafka sink: one idempotent producer (replaced when librdkafka declares it unusable or on
//! SIGHUP), its records keyed and with headers, and a batch acknowledged only when every
//! record's delivery report is `Ok`.

use super::config::{KafkaSinkConfig, KeyBy, SecurityProtocol};
use super::context::{DeliveryReport, KafkaContext, KafkaProducer};
use super::poll::PollThread;
use super::settings::KafkaSettings;
use super::verdict::{classify, classify_issue, Verdict};
use crate::sink::{Record, Sink, SinkContext, SinkError, SinkErrorKind};
use async_trait::async_trait;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
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
/// What `shutdown` keeps of its deadline to stop the poll thread after flushing.
const STOP_ALLOWANCE: Duration = Duration::from_millis(300);

/// A record handed to librdkafka, with its topic and the receiver of its delivery report.
type Pending<'a> = (&'a Record, String, oneshot::Receiver<DeliveryReport>);
/// A record not delivered, with its topic and why.
type Failure<'a> = (&'a Record, String, KafkaError);
/// A record too large for Kafka, with the reason to dead-letter it with.
type TooLarge<'a> = (&'a Record, String);

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
            .map_err(|e| SinkError::fatal(format!("kafka sink {:?}: {e}", ctx.name)))?;
        let producer = Self::create_producer(&settings, &ctx)?;
        if settings.security_protocol == SecurityProtocol::SaslPlaintext {
            tracing::warn!(sink = %ctx.name, "security_protocol = \"sasl_plaintext\" sends the SASL exchange unencrypted; prefer \"sasl_ssl\"");
        }
        if settings.security_protocol.uses_tls() && !settings.tls.verify {
            tracing::warn!(sink = %ctx.name, "TLS certificate verification is OFF (tls_verify = false): the connection is encrypted but the brokers are not authenticated");
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
                    super::options::describe_config_error(&e).to_string()
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
        let key = match settings.key {
            KeyBy::Organization => org_key.as_str(),
            KeyBy::EventId => r.event_id.as_str(),
        };
        let (report, delivered) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(report))
            .payload(&r.payload[..])
            .key(key)
            .headers(record_headers(r, self.ctx.format_label));
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

    /// Enqueues the batch's records in order. A record librdkafka refuses stops the rest (they
    /// would follow it out of order), unless it is only too large.
    async fn enqueue_all<'a>(
        &self,
        producer: &KafkaProducer,
        settings: &KafkaSettings,
        batch: &[&'a Record],
    ) -> Result<(Vec<Pending<'a>>, Vec<Failure<'a>>), SinkError> {
        let mut pending = Vec::with_capacity(batch.len());
        let mut failures = Vec::new();
        for r in batch {
            let topic = settings.topic.render(&r.org).map_err(SinkError::fatal)?;
            match self.enqueue(producer, settings, r, &topic).await {
                Ok(f) => pending.push((*r, topic, f)),
                Err(e) => {
                    let stop = !matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
                    );
                    failures.push((*r, topic, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        Ok((pending, failures))
    }

    /// Sends the records of one batch and awaits their delivery reports. Returns the records
    /// that are too large (to dead-letter) when everything else was delivered.
    async fn send_batch<'a>(&self, batch: &[&'a Record]) -> Result<Vec<TooLarge<'a>>, SinkError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SinkError::transient(format!(
                "kafka sink {:?} is shut down",
                self.ctx.name
            )));
        }
        self.replace_if_broken()?;
        // Kept whole, not destructured: its fields drop in the order `Active` relies on.
        let active = self.active();
        // Before the first record: its report may come at once.
        let _busy = active.poll.poller.busy();
        let settings = self.settings();
        let (pending, mut failures) = self.enqueue_all(&active.producer, &settings, batch).await?;
        let delivered = await_reports(&active.context, &settings, pending, &mut failures).await?;
        if delivered > 0 {
            active.context.delivered();
        }
        let undelivered = batch.len() - delivered;
        self.judge(&active, &settings, failures, batch.len(), undelivered)
    }

    /// The batch's outcome from its failed records: the records too large when that is all, else
    /// the worst error (a fatal one wins: it needs a human), counting what was not delivered.
    fn judge<'a>(
        &self,
        active: &Active,
        settings: &KafkaSettings,
        failures: Vec<Failure<'a>>,
        total: usize,
        undelivered: usize,
    ) -> Result<Vec<TooLarge<'a>>, SinkError> {
        let mut too_large = Vec::new();
        let mut worst: Option<SinkError> = None;
        // A fatal error fails the records with the broker's code (e.g. OutOfOrderSequenceNumber),
        // not with Fatal: ask the producer itself, as only a new one can deliver again.
        let broken = active.producer.client().fatal_error();
        for (r, topic, e) in failures {
            let verdict = match &broken {
                Some((_, reason)) => Verdict::Broken(format!(
                    "the Kafka producer hit a fatal error and is being recreated (librdkafka: {reason}); the batch will be retried"
                )),
                None => classify(&active.context, settings, &e, &topic),
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
            if worst
                .as_ref()
                .is_none_or(|w| w.kind != SinkErrorKind::Fatal)
            {
                worst = Some(err);
            }
        }
        match worst {
            Some(mut e) => {
                let failed = undelivered - too_large.len();
                e.message = format!("{failed} of {total} records not delivered: {}", e.message);
                Err(e)
            }
            None => Ok(too_large),
        }
    }

    /// Cluster metadata, in short tries so that a failure needing a human ends the wait as soon
    /// as it is known rather than after the whole `CHECK_TIMEOUT`.
    /// The outer error is the task's, the inner one librdkafka's.
    async fn fetch_metadata(active: Active) -> Result<KafkaResult<Metadata>, SinkError> {
        tokio::task::spawn_blocking(move || {
            // Client errors meanwhile (authentication, TLS) are served at once for the diagnosis.
            let _busy = active.poll.poller.busy();
            let started = Instant::now();
            loop {
                let left = CHECK_TIMEOUT.saturating_sub(started.elapsed());
                let outcome = active
                    .producer
                    .client()
                    .fetch_metadata(None, left.min(CHECK_TRY));
                match outcome {
                    // A pause, in case a failure comes back at once: no busy loop.
                    Err(_) if !left.is_zero() && active.context.human_issue().is_none() => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    done => break done,
                }
            }
        })
        .await
        .map_err(|e| SinkError::transient(format!("kafka metadata task failed: {e}")))
    }

    /// Why `check` got no metadata: a failure that needs a human with its remedy, else the
    /// brokers did not answer.
    fn unreachable(
        &self,
        context: &KafkaContext,
        settings: &KafkaSettings,
        e: &KafkaError,
    ) -> SinkError {
        if let Some(issue) = context.human_issue() {
            let topic = settings.topic.fixed().unwrap_or("-");
            if let Verdict::Fatal(m) = classify_issue(settings, &issue, topic) {
                return SinkError::fatal(m);
            }
        }
        SinkError::transient(format!(
            "no Kafka broker answered within {}s (tried {}): {e}{}; check `brokers`, DNS, firewalls and `security_protocol`",
            CHECK_TIMEOUT.as_secs(),
            settings.brokers,
            context.recent_errors()
        ))
    }

    /// What `check` says of the topic, as the metadata knows it.
    fn topic_report(&self, settings: &KafkaSettings, metadata: &Metadata) -> String {
        let Some(topic) = settings.topic.fixed() else {
            return format!(
                "; topics are named per organization ({:?})",
                self.config.topic
            );
        };
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() => format!(
                "; topic {topic:?} exists with {} partition(s)",
                t.partitions().len()
            ),
            Some(t) => format!(
                "; topic {topic:?}: {:?}",
                t.error().map(RDKafkaErrorCode::from)
            ),
            None => format!(
                "; topic {topic:?} does not exist yet: it is created on the first write only if the brokers allow auto.create.topics.enable"
            ),
        }
    }
}

/// A record's headers: its `event_id` (consumers drop the duplicates a batch retry can cause),
/// organization, provider and format label. Public for the benchmark's reference producer.
pub fn record_headers(r: &Record, format_label: &str) -> OwnedHeaders {
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
            value: Some(format_label),
        })
}

/// Awaits the reports of the records enqueued, in order, adding the failed ones to `failures`;
/// returns how many were delivered. An authentication or TLS failure still there after
/// `HUMAN_ERROR_GRACE` ends the batch with its remedy instead of waiting for `message_timeout`.
async fn await_reports<'a>(
    context: &KafkaContext,
    settings: &KafkaSettings,
    pending: Vec<Pending<'a>>,
    failures: &mut Vec<Failure<'a>>,
) -> Result<usize, SinkError> {
    let mut delivered = 0usize;
    let grace = HUMAN_ERROR_GRACE.min(settings.message_timeout);
    let waited = Instant::now();
    for (r, topic, f) in pending {
        let mut f = std::pin::pin!(f);
        let outcome = loop {
            let left = grace.saturating_sub(waited.elapsed());
            if left.is_zero() {
                if let Some(issue) = context.human_issue() {
                    if let Verdict::Fatal(m) = classify_issue(settings, &issue, &topic) {
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
    Ok(delivered)
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
        let metadata = Self::fetch_metadata(active)
            .await?
            .map_err(|e| self.unreachable(&context, &settings, &e))?;
        let brokers: Vec<String> = metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id()))
            .collect();
        Ok(format!(
            "{} broker(s) reachable: {}{}",
            brokers.len(),
            brokers.join(", "),
            self.topic_report(&settings, &metadata)
        ))
    }

    /// SIGHUP: re-reads the password and TLS files (rotated credentials) with a new producer.
    /// Batches in flight finish on the producer they started with.
    async fn reopen(&self) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let settings = match self.config.resolve() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(sink = %self.ctx.name, error = %e, "kafka sink keeps its current settings");
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
                    // Best effort: what the old producer could not deliver fails its batches,
                    // which the pipeline offers again.
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
        let stopped = tokio::task::spawn_blocking(move || {
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
        if let Err(e) = stopped {
            tracing::error!(sink = %self.ctx.name, error = %e, "kafka sink shutdown task failed");
        }
    }
}
