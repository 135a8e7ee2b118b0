//! Failed sign-ins per account. Address-based limits cannot stop guesses spread over many
//! addresses (or forged behind a trusted proxy range), so each account also slows down on its
//! own: a few failures are free, then every attempt waits twice as long as the one before.

use moka::future::Cache;
use std::time::{Duration, Instant};

/// Failures an account may have before its attempts start to wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts at one account.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Accounts tracked at once; beyond that the least recently failed are forgotten first.
const CAPACITY: u64 = 100_000;

/// Failure counts by account (the email as typed, in lower case), forgotten after an idle hour.
pub(super) struct Failures {
    counts: Cache<String, (u32, Instant)>,
}

impl Failures {
    pub(super) fn new() -> Self {
        Self {
            counts: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// How long the next attempt at `email` must still wait, if it must.
    pub(super) async fn wait(&self, email: &str) -> Option<Duration> {
        let (count, last) = self.counts.get(&key(email)).await?;
        let wait = backoff(count)?;
        wait.checked_sub(last.elapsed()).filter(|w| !w.is_zero())
    }

    /// Counts one failure at `email`.
    pub(super) async fn record(&self, email: &str) {
        let key = key(email);
        let count = self.counts.get(&key).await.map_or(0, |(n, _)| n);
        self.counts
            .insert(key, (count.saturating_add(1), Instant::now()))
            .await;
    }

    /// A successful sign-in clears the account's failures.
    pub(super) async fn forget(&self, email: &str) {
        self.counts.invalidate(&key(email)).await;
    }
}

fn key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The wait after `failures` failures: none for the first few, then 1 s, 2 s, 4 s… up to
/// `MAX_WAIT`.
fn backoff(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    let secs = 1u64.checked_shl(over).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failures_are_free_and_later_ones_double_the_wait() {
        assert_eq!(backoff(0), None);
        assert_eq!(backoff(4), None);
        assert_eq!(backoff(5), Some(Duration::from_secs(1)));
        assert_eq!(backoff(7), Some(Duration::from_secs(4)));
        assert_eq!(backoff(40), Some(MAX_WAIT));
        assert_eq!(backoff(u32::MAX), Some(MAX_WAIT));
    }

    #[tokio::test]
    async fn an_account_waits_after_repeated_failures_in_any_case_and_success_clears_it() {
        let f = Failures::new();
        for _ in 0..FREE_FAILURES {
            assert_eq!(f.wait("Ann@Example.org").await, None);
            f.record("Ann@Example.org").await;
        }
        assert!(f.wait("ann@example.org").await.is_some());
        assert!(f.wait(" ANN@EXAMPLE.ORG ").await.is_some());
        assert_eq!(f.wait("bob@example.org").await, None);
        f.forget("ann@example.org").await;
        assert_eq!(f.wait("Ann@Example.org").await, None);
    }
}
