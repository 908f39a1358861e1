//! Progress of a window walk (a backfill, a catch-up, an `export`): an info line every
//! [`LOG_EVERY`] per walk, and on a terminal a bar on stderr (`once`, `export`).
//!
//! Positions are event times: a walk goes oldest-first from `from` to `to`, so the share of the
//! span behind it is its progress, and the span still ahead at the rate so far is its ETA.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a walk that is still going says where it is.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where a walk stands, derived from what it has done so far (pure, for the log line and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub events_per_s: f64,
    /// Event-time span still to walk.
    pub remaining: Duration,
    /// At the pace so far (event time walked per wall second); `None` before any progress.
    pub eta: Option<Duration>,
}

pub fn estimate(
    from_ms: i64,
    to_ms: i64,
    reached_ms: i64,
    elapsed: Duration,
    events: u64,
) -> Estimate {
    let secs = elapsed.as_secs_f64();
    let done = (reached_ms - from_ms).max(0) as f64;
    let remaining_ms = (to_ms - reached_ms).max(0);
    let eta = (done > 0.0 && secs > 0.0)
        .then(|| Duration::from_secs_f64((remaining_ms as f64 * secs / done).min(1e9)));
    Estimate {
        events_per_s: if secs > 0.0 {
            events as f64 / secs
        } else {
            0.0
        },
        remaining: Duration::from_millis(remaining_ms as u64),
        eta,
    }
}

/// The two largest units, in days at most (`75d`, `3d 4h`, `12m 5s`): humantime's months and
/// years are not calendar ones and read oddly.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let units = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    units[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0 || first == 3)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Bars on stderr, one per walk that wants one; drawn only when stderr is a terminal.
#[derive(Debug, Clone)]
pub struct Bars(MultiProgress);

impl Bars {
    pub fn stderr() -> Bars {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars(MultiProgress::with_draw_target(target))
    }

    pub fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }

    /// A bar labelled `label` (an organization), empty until a walk starts on it.
    pub fn bar(&self, label: &str) -> ProgressBar {
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bar = self.0.add(ProgressBar::new(1).with_style(style));
        bar.set_prefix(label.to_string());
        bar
    }
}

/// One walk's progress: the log line every [`LOG_EVERY`] and the bar, if any.
#[derive(Debug)]
pub struct WalkProgress {
    label: String,
    from_ms: i64,
    to_ms: i64,
    started: Instant,
    last_log: Instant,
    events: u64,
    bar: Option<ProgressBar>,
}

impl WalkProgress {
    pub fn new(label: String, from_ms: i64, to_ms: i64, bar: Option<ProgressBar>) -> Self {
        if let Some(b) = &bar {
            // The bar counts seconds of event time walked.
            b.set_length(((to_ms - from_ms).max(0) / 1000).max(1) as u64);
            b.set_position(0);
            b.reset_eta();
        }
        let now = Instant::now();
        WalkProgress {
            label,
            from_ms,
            to_ms,
            started: now,
            last_log: now,
            events: 0,
            bar,
        }
    }

    /// The walk reached `reached_ms` (event time), having read `events` more events.
    pub fn advance(&mut self, reached_ms: i64, events: u64) {
        self.events += events;
        if let Some(b) = &self.bar {
            b.set_position(((reached_ms - self.from_ms).max(0) / 1000) as u64);
            b.set_message(format!(
                "{} events, at {}",
                self.events,
                rfc3339(reached_ms)
            ));
        }
        if self.last_log.elapsed() >= LOG_EVERY && reached_ms < self.to_ms {
            self.last_log = Instant::now();
            let e = estimate(
                self.from_ms,
                self.to_ms,
                reached_ms,
                self.started.elapsed(),
                self.events,
            );
            tracing::info!(organization = %self.label, reached = %rfc3339(reached_ms),
                events = self.events, events_per_s = e.events_per_s.round() as u64,
                remaining = %human(e.remaining),
                eta = %e.eta.map(human).unwrap_or_else(|| "unknown".into()),
                "backfill in progress");
        }
    }
}

impl Drop for WalkProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.set_position(b.length().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_the_pace_of_event_time_walked() {
        let day = 86_400_000;
        // A quarter of 100 days walked in 10 s, 40,000 events read: 30 s to go.
        let e = estimate(0, 100 * day, 25 * day, Duration::from_secs(10), 40_000);
        assert_eq!(e.events_per_s, 4000.0);
        assert_eq!(e.remaining, Duration::from_millis(75 * day as u64));
        assert_eq!(e.eta, Some(Duration::from_secs(30)));
        assert_eq!(human(e.remaining), "75d");
        assert_eq!(
            human(Duration::from_secs(3 * 86_400 + 4 * 3600 + 59)),
            "3d 4h"
        );
        assert_eq!(human(Duration::from_secs(725)), "12m 5s");
        assert_eq!(human(Duration::ZERO), "0s");
        // Nothing walked yet: no ETA rather than a made-up one.
        assert_eq!(estimate(0, day, 0, Duration::from_secs(3), 0).eta, None);
    }
}
