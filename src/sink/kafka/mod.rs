//! `type = "kafka"`: records to a Kafka topic through librdkafka's idempotent producer.
//!
//! A batch is acknowledged only when every record's delivery report is `Ok` (acks=all). All
//! records are enqueued first (a full local queue is back-pressure: we wait), then every delivery
//! report is awaited. Any failure fails the whole batch, which the pipeline offers again later;
//! idempotence keeps librdkafka's internal retries free of duplicates, and the `event_id` header
//! lets consumers drop the duplicates a batch retry can cause.
//!
//! - [`config`]: the keys as written, and the sink's entry in the registry;
//! - [`settings`]: the keys checked and resolved, and the librdkafka properties they become;
//! - [`options`]: `librdkafka_options`, and the properties the sink owns;
//! - [`topic`]: the topic template, rendered per record;
//! - [`context`]: librdkafka's callbacks (logs, client errors, delivery reports);
//! - [`poll`]: the thread that serves those callbacks, only while someone waits for them;
//! - [`verdict`]: what a failed delivery means, and the message a user acts on;
//! - [`diagnose`]: why a broker's certificate fails verification;
//! - [`sink`]: the sink itself.

mod config;
mod context;
mod diagnose;
mod options;
mod poll;
mod settings;
mod sink;
mod topic;
mod verdict;

pub use config::{KafkaSinkConfig, TYPE};
pub use sink::{record_headers, KafkaSink};

#[cfg(test)]
mod tests;
