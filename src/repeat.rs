//! A message that repeats (librdkafka's "all brokers are down" several times a second, a refused
//! connection on every retry) is logged once when it starts, then at most once per interval with
//! how often it repeated meanwhile, and once when it clears. The journal stays readable during an
//! outage, and the outage's start, persistence and end are all still there.

use crate::clock::SharedClock;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What to do with one occurrence of a repeating message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// The first time (or the first since it cleared): log it.
    First,
    /// Log it again, saying it repeated this many times since the last line.
    Again(u64),
    /// Counted, not logged.
    Quiet,
}

#[derive(Debug)]
struct Seen {
    logged_at_ms: i64,
    quiet: u64,
    total: u64,
}

#[derive(Debug)]
pub struct RepeatLimiter {
    every_ms: i64,
    clock: SharedClock,
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl RepeatLimiter {
    pub fn new(every: Duration, clock: SharedClock) -> Self {
        RepeatLimiter {
            every_ms: every.as_millis() as i64,
            clock,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// One occurrence of the message kind `key` (not its text: texts carry counters and times).
    pub fn occurred(&self, key: &str) -> Repeat {
        let now = self.clock.now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(key) {
            None => {
                seen.insert(
                    key.to_string(),
                    Seen {
                        logged_at_ms: now,
                        quiet: 0,
                        total: 1,
                    },
                );
                Repeat::First
            }
            Some(s) => {
                s.total += 1;
                if now - s.logged_at_ms >= self.every_ms {
                    let n = s.quiet;
                    s.quiet = 0;
                    s.logged_at_ms = now;
                    Repeat::Again(n)
                } else {
                    s.quiet += 1;
                    Repeat::Quiet
                }
            }
        }
    }

    /// The condition is over (e.g. a delivery succeeded): the kinds that were active, with how
    /// many times each occurred in all, to log once; they start afresh next time.
    pub fn cleared(&self) -> Vec<(String, u64)> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *seen)
            .into_iter()
            .map(|(k, s)| (k, s.total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn first_then_once_a_minute_with_a_count_then_cleared() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RepeatLimiter::new(Duration::from_secs(60), clock.clone());
        assert_eq!(l.occurred("brokers down"), Repeat::First);
        // Eight a second for a minute: one more line, carrying the count.
        let mut lines = 0;
        for _ in 0..480 {
            clock.advance(125);
            match l.occurred("brokers down") {
                Repeat::Quiet => {}
                Repeat::Again(n) => {
                    lines += 1;
                    assert_eq!(n, 479);
                }
                Repeat::First => panic!("not the first"),
            }
        }
        assert_eq!(lines, 1);
        // Another kind is independent.
        assert_eq!(l.occurred("resolve"), Repeat::First);
        let mut cleared = l.cleared();
        cleared.sort();
        assert_eq!(
            cleared,
            vec![
                ("brokers down".to_string(), 481),
                ("resolve".to_string(), 1)
            ]
        );
        assert!(l.cleared().is_empty());
        assert_eq!(l.occurred("brokers down"), Repeat::First);
    }
}
