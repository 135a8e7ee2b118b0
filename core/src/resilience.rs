//! Circuit breakers and retry backoff: a provider that keeps failing is skipped for a while
//! instead of making every request wait for it, and retries spread out instead of piling up.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The three states of a breaker, as reported in `/health` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the reset timeout passes.
    Open,
    /// One trial call is allowed; its outcome closes or re-opens the breaker.
    HalfOpen,
}

/// What a breaker says to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Open: the call is skipped.
    Refused,
    /// Closed: the call goes ahead.
    Call,
    /// Half-open: this call is the one trial.
    Probe,
}

/// A half-open breaker's probe in flight: dropped before its outcome was recorded (the call
/// abandoned), it is given back.
pub struct Probe<'a> {
    breaker: &'a CircuitBreaker,
    settled: bool,
}

impl<'a> Probe<'a> {
    /// Watches the probe `breaker` just admitted.
    pub fn new(breaker: &'a CircuitBreaker) -> Self {
        Self {
            breaker,
            settled: false,
        }
    }

    /// The probe's outcome was recorded; nothing to give back.
    pub fn settle(&mut self) {
        self.settled = true;
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.release_probe();
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Opens after `threshold` consecutive failures, stays open for `reset`, then lets one probe
/// through.
#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
    threshold: u32,
    reset: Duration,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, reset: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            threshold: threshold.max(1),
            reset,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the enum half-written; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go ahead now; an open breaker past its reset time turns half-open and
    /// admits exactly one probe.
    pub fn try_acquire(&self) -> bool {
        self.admit() != Admission::Refused
    }

    /// Like [`CircuitBreaker::try_acquire`], telling whether this call is the half-open
    /// breaker's one probe, whose outcome (or release) the breaker then waits for.
    pub fn admit(&self) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Call,
            Inner::Open { until } if Instant::now() >= until => {
                *inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
            Inner::Open { .. } => Admission::Refused,
            Inner::HalfOpen { probing: true } => Admission::Refused,
            Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
        }
    }

    /// Gives back a probe whose call was abandoned before its outcome was known (the user
    /// pressed Stop, the client left, the answer timed out), so the next call may probe;
    /// otherwise the breaker would stay half-open with its probe out for good.
    pub fn release_probe(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing: true } = *inner {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    /// Records a successful call: the breaker closes.
    pub fn record_success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// Records a failed call: a failed probe or the threshold-th failure opens the breaker.
    pub fn record_failure(&self) {
        let mut inner = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.reset,
        };
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 >= self.threshold => open,
            Inner::Closed { failures } => Inner::Closed {
                failures: failures + 1,
            },
            Inner::HalfOpen { .. } | Inner::Open { .. } => open,
        };
    }

    /// The breaker's state now (an open breaker past its reset time reads as half-open).
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Delay before retry `attempt` (0-based): `base · 2^attempt`, capped, with "full jitter" (a
/// random point between half and all of it) so retries from many requests do not align.
pub fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let half = exp / 2;
    half + exp.mul_f64(fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_recovers_through_one_probe() {
        let b = CircuitBreaker::new(2, Duration::from_millis(30));
        assert!(b.try_acquire());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire(), "the probe goes through");
        assert!(!b.try_acquire(), "only one probe at a time");
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
    }

    #[test]
    fn an_abandoned_probe_is_given_back() {
        let b = CircuitBreaker::new(1, Duration::from_millis(0));
        b.record_failure();
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Refused, "one probe at a time");
        {
            let _probe = Probe::new(&b);
            // Dropped without an outcome: the caller went away.
        }
        assert_eq!(b.admit(), Admission::Probe, "the next call may probe");
        let mut settled = Probe::new(&b);
        b.record_success();
        settled.settle();
        drop(settled);
        assert_eq!(b.state(), BreakerState::Closed);
        // Releasing never reopens a closed breaker or frees another call's probe early.
        b.release_probe();
        assert_eq!(b.admit(), Admission::Call);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = CircuitBreaker::new(1, Duration::from_millis(10));
        b.record_failure();
        std::thread::sleep(Duration::from_millis(15));
        assert!(b.try_acquire());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = CircuitBreaker::new(2, Duration::from_secs(60));
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn backoff_grows_stays_jittered_and_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..6 {
            let d = backoff(base, attempt, cap);
            let full = (base * 2u32.pow(attempt)).min(cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
