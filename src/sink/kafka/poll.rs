//! The `kafka-poll` thread of one producer: it serves librdkafka's callbacks (delivery reports,
//! client errors, log lines). It polls only while a batch or a check waits for them, or while
//! librdkafka holds records or events; otherwise it sleeps, looking for stray events every
//! `IDLE_CHECK`. rdkafka's own polling thread wakes every 100 ms forever, which was most of an
//! idle agent's CPU.

use super::context::KafkaProducer;
use rdkafka::producer::{Producer, PurgeConfig};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often an idle poll thread wakes to serve events nobody waits for (log lines, client errors
/// between batches): they are logged up to this late. Rare wake-ups are what makes idle cheap.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// One poll while callbacks are awaited. A report is served the moment it is queued whatever the
/// slice; the slice only bounds how late the thread notices that it may sleep or must stop.
const BUSY_SLICE: Duration = Duration::from_millis(100);
/// How long a stopping poll thread serves the reports of the records it purged.
const PURGE_FLUSH: Duration = Duration::from_millis(200);

/// What the poll thread is told by the tasks that need its callbacks.
#[derive(Debug, Default)]
struct PollState {
    /// Batches and checks waiting for callbacks: poll continuously while any.
    waiters: usize,
    stop: bool,
}

/// Wakes the poll thread when a batch starts or the producer goes away.
#[derive(Debug, Default)]
pub(crate) struct Poller {
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
    pub(crate) fn busy(&self) -> Busy<'_> {
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
        // Serves the purged records' reports, so that their batches fail now (and retry) rather
        // than wait; a flush that times out leaves nothing else to do here.
        let _ = producer.flush(PURGE_FLUSH);
    }
}

/// A batch or check waiting for callbacks, while it lives.
pub(crate) struct Busy<'a>(&'a Poller);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waiters = state.waiters.saturating_sub(1);
    }
}

/// The `kafka-poll` thread of one producer. Dropping the last handle stops it without waiting:
/// the thread then drops the producer itself (purge, flush, destroy), off the async runtime.
pub(crate) struct PollThread {
    pub(crate) poller: Arc<Poller>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl PollThread {
    pub(crate) fn start(producer: Arc<KafkaProducer>) -> std::io::Result<PollThread> {
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
    pub(crate) fn stop_and_join(&self) {
        self.poller.stop();
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle.map(JoinHandle::join) {
            if h.is_err() {
                tracing::error!("the kafka-poll thread panicked; its producer is being stopped");
            }
        }
    }
}

impl Drop for PollThread {
    fn drop(&mut self) {
        self.poller.stop();
    }
}
