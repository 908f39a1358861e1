//! Indexer acknowledgement: the channel every request names, and polling
//! `/services/collector/ack` until Splunk confirms that the batch is indexed.

use super::codes::{classify_code, fatal_for, HecAction, HecReply};
use super::sink::SplunkHecSink;
use crate::sink::http::join;
use crate::sink::SinkError;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

pub(super) const CHANNEL_HEADER: &str = "x-splunk-request-channel";

#[derive(Debug, Deserialize)]
struct AckReply {
    #[serde(default)]
    acks: std::collections::HashMap<String, bool>,
}

/// A random version-4 UUID (HEC channel id).
pub(super) fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl SplunkHecSink {
    /// Polls `/services/collector/ack` until every id is true; a transient error when some are
    /// still pending at the deadline.
    pub(super) async fn wait_for_acks(&self, ids: Vec<u64>) -> Result<(), SinkError> {
        let Some((interval, timeout)) = self.ack else {
            return Ok(());
        };
        let total = ids.len();
        let mut pending: BTreeSet<u64> = ids.into_iter().collect();
        let deadline = tokio::time::Instant::now() + timeout;
        // Indexing usually takes a second or two: start short, back off to the interval.
        let mut wait = interval.min(Duration::from_secs(1));
        let mut last_problem = String::from("not yet indexed");
        while !pending.is_empty() {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(SinkError::transient(format!(
                    "Splunk did not confirm indexing of {} of {total} requests within ack_timeout ({}; last: {last_problem}); the batch will be sent again (HEC cannot de-duplicate: dedupe on fields.event_id)",
                    pending.len(),
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(wait.min(deadline - now)).await;
            wait = (wait * 2).min(interval);
            if let Some(problem) = self.poll_acks(&mut pending).await? {
                last_problem = problem;
            }
        }
        tracing::debug!(sink = %self.ctx.name, requests = total, "Splunk confirmed indexing");
        Ok(())
    }

    /// One poll: confirmed ids leave `pending`; a problem worth reporting at the deadline is
    /// returned; a token or acknowledgement set-up problem is fatal.
    async fn poll_acks(&self, pending: &mut BTreeSet<u64>) -> Result<Option<String>, SinkError> {
        let body = serde_json::json!({ "acks": pending })
            .to_string()
            .into_bytes();
        let url = join(&self.base, "/services/collector/ack");
        let reply = match self.transport.post(&url, "application/json", body).await {
            Ok(r) => r,
            Err(e) => return Ok(Some(e.message)),
        };
        if reply.status.is_success() {
            return Ok(match serde_json::from_slice::<AckReply>(&reply.body) {
                Ok(acks) => {
                    for (id, done) in acks.acks {
                        if let (true, Ok(id)) = (done, id.parse::<u64>()) {
                            pending.remove(&id);
                        }
                    }
                    None
                }
                Err(_) => Some(format!("unreadable ack reply: {}", reply.excerpt())),
            });
        }
        let parsed = HecReply::of(&reply);
        let text = parsed.text_or_excerpt(&reply);
        match parsed.code.map(classify_code) {
            Some(a @ (HecAction::Token | HecAction::AckConfig | HecAction::Other)) => {
                Err(fatal_for(a, parsed.code.unwrap_or(-1), &text, &reply.url))
            }
            _ => Ok(Some(format!("HTTP {}: {text}", reply.status))),
        }
    }
}
