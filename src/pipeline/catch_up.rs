//! A lane far behind the others (back from an outage, or detached from a walk for being slow)
//! catches up alone from its own cursor, on its own task, so the lanes that are caught up are not
//! held by a long walk of the past. Its report joins a later pass's.

use super::lane::{track, LaneGuard};
use super::org::OrgPipeline;
use super::walk::{WalkError, Walker};
use super::{PassReport, Shutdown};

impl OrgPipeline {
    /// Starts a catch-up for each lane of `group` far behind its leader (more than two poll
    /// intervals) and returns the others, which walk together.
    pub(super) fn catch_up_lanes_behind(
        &mut self,
        group: Vec<LaneGuard>,
        to: i64,
        floor: i64,
        shutdown: &Shutdown,
    ) -> Vec<LaneGuard> {
        let overlap = self.overlap_ms();
        let org_key = self.org.key();
        let leader = group
            .iter()
            .map(|s| s.cursor.fetch_from(overlap))
            .max()
            .unwrap_or(to);
        let margin = 2 * self.shared.config.agent.poll_interval.as_millis() as i64;
        let (behind, near): (Vec<LaneGuard>, Vec<LaneGuard>) = group
            .into_iter()
            .partition(|s| s.cursor.fetch_from(overlap) < leader - margin);
        for lane in behind {
            tracing::info!(organization = %org_key, sink = %lane.handle.spec.name,
                behind_ms = leader - lane.cursor.fetch_from(overlap), "sink is behind the others; it catches up on its own");
            let walker = self.walker();
            let shutdown = shutdown.clone();
            let task =
                tokio::spawn(async move { walker.catch_up(lane, to, floor, shutdown).await });
            track(&self.tasks, task.abort_handle());
            self.catch_ups.push(task);
        }
        near
    }

    /// Merges the reports of catch-ups that have finished.
    pub(super) async fn collect_catch_ups(&mut self, report: &mut PassReport) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.catch_ups)
            .into_iter()
            .partition(|t| t.is_finished());
        self.catch_ups = running;
        for task in done {
            match task.await {
                Ok(r) => report.merge(r),
                Err(e) => report
                    .sink_errors
                    .push(("(catch-up)".into(), format!("catch-up task failed: {e}"))),
            }
        }
    }
}

impl Walker {
    /// A lane's catch-up, alone from its own cursor to `to`.
    async fn catch_up(
        self,
        lane: LaneGuard,
        to: i64,
        floor: i64,
        shutdown: Shutdown,
    ) -> PassReport {
        let mut report = PassReport::default();
        let from = lane.cursor.fetch_from(self.overlap_ms()).max(floor);
        let name = lane.handle.spec.name.clone();
        let org_key = self.org.key();
        self.shared.metrics.catching_up(&org_key, &name, true);
        let walked = self
            .walk(vec![lane], from, to, &shutdown, &mut report)
            .await;
        self.shared.metrics.catching_up(&org_key, &name, false);
        if let Err(e) = walked {
            let msg = match e {
                WalkError::Fetch(e) => e.to_string(),
                WalkError::DeadLetter(m) => m,
            };
            tracing::warn!(organization = %self.org, sink = %name, error = %msg, "catch-up stopped; it resumes at the next poll");
            report
                .sink_errors
                .push((name, format!("catching up: {msg}")));
        }
        report
    }
}
