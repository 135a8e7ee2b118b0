//! Where documents come from besides uploads: folders on the server's disk and web pages. This
//! module lists and fetches; the service decides what changed and keeps the space current.

pub mod folder;
pub mod watch;
pub mod web;

use std::path::PathBuf;
use std::time::Duration;

/// What an admin allows sources to read.
#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    /// Folders a folder source may name (itself or anything below); none turns folder sources off.
    pub roots: Vec<PathBuf>,
    /// Lets web sources fetch loopback addresses: for tests on this machine only.
    pub allow_loopback: bool,
}

/// How long a sync holds its source without a sign of life before another may take it over.
pub const SYNC_LEASE: Duration = Duration::from_secs(120);

/// How often the scheduler looks for sources whose sync is due.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(15);

/// The wait before a failing source is tried again: its interval, doubled per failure in a row,
/// at most a day.
pub fn retry_after(interval_minutes: Option<i64>, failures: i64) -> Option<Duration> {
    let minutes = interval_minutes?;
    let doubled = minutes.saturating_mul(1i64 << failures.clamp(0, 10));
    Some(Duration::from_secs(
        u64::try_from(doubled.clamp(1, 24 * 60)).unwrap_or(24 * 60) * 60,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_source_waits_longer_each_time_up_to_a_day() {
        assert_eq!(retry_after(None, 3), None);
        assert_eq!(retry_after(Some(5), 0), Some(Duration::from_secs(300)));
        assert_eq!(retry_after(Some(5), 2), Some(Duration::from_secs(1200)));
        assert_eq!(retry_after(Some(60), 9), Some(Duration::from_secs(86_400)));
    }
}
