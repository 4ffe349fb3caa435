//! The one retry policy of every loop that tries again after a transient failure (a sink's
//! batch, a source's split read again, the change log reconnected, a change written again):
//! exponential backoff with jitter, the same limits everywhere.
//!
//! Hand-written rather than a crate: `backoff` is unmaintained, and `backon` is built around
//! async executors and closures it calls itself, while these loops are blocking threads that
//! also check a stop switch, log each attempt and count retries between tries. A sequence of
//! waits is all they need. The jitter comes from `fastrand` (no system calls, already in the
//! dependency tree).
//!
//! Jitter: each wait is the backoff plus up to half of it again, drawn at random. Writers that
//! failed together (a database restart) then come back at different moments instead of in step,
//! and jitter only ever lengthens a wait: `max_retries` retries still span at least the outage
//! the user sized them for (`retry_backoff` doubled, `max_retries` times), never less.

use std::time::Duration;

/// The longest backoff; a wait adds its jitter to it, so no wait is over one and a half times this.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// How often and how long to wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The backoff before the first retry; it doubles with each retry, up to [`MAX_WAIT`] (a
    /// first backoff above that is kept for the first retry only).
    pub first: Duration,
    /// Retries after the first attempt; `None`: until it works or the caller stops.
    pub retries: Option<u32>,
}

impl Policy {
    /// At most `retries` retries, the first after about `first`.
    pub fn new(first: Duration, retries: u32) -> Self {
        Policy {
            first,
            retries: Some(retries),
        }
    }

    /// Retries with no limit: for loops that stop on their caller's signal instead.
    pub fn forever(first: Duration) -> Self {
        Policy {
            first,
            retries: None,
        }
    }

    /// The waits of one failure, from the first retry on.
    pub fn start(&self) -> Backoff {
        Backoff {
            policy: *self,
            retried: 0,
            backoff: self.first,
        }
    }
}

/// The waits of one run of retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    retried: u32,
    backoff: Duration,
}

impl Backoff {
    /// How long to wait before the next retry (counted as made), or `None` when every retry the
    /// policy allows is used.
    pub fn next_wait(&mut self) -> Option<Duration> {
        if self.policy.retries.is_some_and(|max| self.retried >= max) {
            return None;
        }
        self.retried += 1;
        let backoff = self.backoff;
        self.backoff = backoff.saturating_mul(2).min(MAX_WAIT);
        Some(jitter(backoff))
    }

    /// Retries made so far.
    pub fn retried(&self) -> u32 {
        self.retried
    }

    /// The last try worked: the next failure starts from the first backoff again.
    pub fn reset(&mut self) {
        *self = self.policy.start();
    }
}

/// A wait between `backoff` and one and a half times it.
fn jitter(backoff: Duration) -> Duration {
    let spread = u64::try_from((backoff / 2).as_nanos()).unwrap_or(u64::MAX);
    backoff + Duration::from_nanos(fastrand::u64(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(policy: Policy, n: usize) -> Vec<Option<Duration>> {
        let mut b = policy.start();
        (0..n).map(|_| b.next_wait()).collect()
    }

    #[test]
    fn retries_stop_at_the_limit() {
        let w = waits(Policy::new(Duration::from_millis(10), 3), 5);
        assert!(w[..3].iter().all(Option::is_some));
        assert_eq!(w[3..], [None, None]);
        assert_eq!(waits(Policy::new(Duration::ZERO, 0), 1), [None]);
    }

    #[test]
    fn waits_double_within_their_jitter_up_to_the_limit() {
        for _ in 0..100 {
            let mut b = Policy::forever(Duration::from_millis(200)).start();
            let mut backoff = Duration::from_millis(200);
            for _ in 0..12 {
                let w = b.next_wait().expect("no limit");
                assert!(
                    w >= backoff && w <= backoff * 3 / 2,
                    "{w:?} for {backoff:?}"
                );
                backoff = (backoff * 2).min(MAX_WAIT);
            }
            assert_eq!(b.retried(), 12);
        }
    }

    #[test]
    fn no_backoff_never_waits() {
        let w = waits(Policy::new(Duration::ZERO, 4), 4);
        assert!(w.iter().all(|w| *w == Some(Duration::ZERO)));
    }

    #[test]
    fn a_first_backoff_above_the_limit_is_kept_once() {
        let mut b = Policy::forever(Duration::from_secs(60)).start();
        assert!(b.next_wait().unwrap() >= Duration::from_secs(60));
        let second = b.next_wait().unwrap();
        assert!(
            second >= MAX_WAIT && second <= MAX_WAIT * 3 / 2,
            "{second:?}"
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Policy::new(Duration::from_millis(100), 2).start();
        b.next_wait();
        b.next_wait();
        assert_eq!(b.next_wait(), None);
        b.reset();
        assert_eq!(b.retried(), 0);
        let first = b.next_wait().unwrap();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
    }
}
