//! The daemon's poll loop for one organization, and its log line per pass.

use super::{OrgPipeline, PassReport, Shutdown};
use std::time::Duration;

/// Runs an organization's pipeline until shutdown: a pass, then wait for the next poll (or an
/// earlier sink/fetch retry).
pub async fn run_org(
    mut pipeline: OrgPipeline,
    mut shutdown: Shutdown,
    first_poll_after: Duration,
) {
    let agent = &pipeline.shared.config.agent;
    let (min_poll, max_poll) = (agent.poll_interval, agent.max_poll_interval);
    let org_key = pipeline.org.key();
    tokio::select! {
        _ = tokio::time::sleep(first_poll_after) => {}
        _ = shutdown.wait() => return,
    }
    let mut poll = min_poll;
    loop {
        let started = pipeline.shared.clock.now_ms();
        // Boxed: between polls an organization's task then holds only this loop's few words, not
        // the pass's whole state machine (10,000 idle organizations, one task each).
        let report = Box::pin(pipeline.run_pass(&shutdown)).await;
        log_pass(&org_key, &report);
        if shutdown.is_triggered() {
            break;
        }
        // A quiet organization is polled less and less often (up to max_poll_interval); its
        // first new event brings it back to poll_interval.
        let quiet = report.ok() && report.delivered.values().all(|&n| n == 0);
        poll = if quiet {
            (poll * 2).min(max_poll)
        } else {
            min_poll
        };
        let next_poll = started + poll.as_millis() as i64;
        let wake = next_poll.min(pipeline.next_retry_at_ms());
        let wait_ms = (wake - pipeline.shared.clock.now_ms()).max(50);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = shutdown.wait() => break,
        }
    }
    pipeline.write_pending_checkpoints().await;
    tracing::debug!(organization = %org_key, "pipeline stopped");
}

/// One info line per poll per organization: new events, events re-read, and the records each
/// sink acknowledged (`delivered="archive:12 siem:12"`; never a sum over sinks).
pub fn log_pass(org_key: &str, report: &PassReport) {
    let delivered = report
        .delivered
        .iter()
        .map(|(sink, n)| format!("{sink}:{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    if report.waiting_to_retry {
        tracing::debug!(organization = %org_key, "waiting to retry the Codacy API after an error");
    } else if report.ok() {
        tracing::info!(organization = %org_key, new = report.fetched, reread = report.reread,
            delivered = %delivered, invalid = report.invalid, interrupted = report.interrupted, "poll complete");
    } else {
        let failed: Vec<&str> = report.sink_errors.iter().map(|(s, _)| s.as_str()).collect();
        // `fetch_error` only when there is one.
        tracing::warn!(organization = %org_key, new = report.fetched, reread = report.reread,
            delivered = %delivered, invalid = report.invalid,
            fetch_error = report.fetch_error.as_deref(), failed_sinks = ?failed, "poll incomplete");
    }
}
