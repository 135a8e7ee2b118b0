//! What an operator watches: metrics, health and the audit log.

use serde::{Deserialize, Serialize};

/// What the metrics dashboard shows: recent per-second history and current state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSnapshot {
    pub uptime_seconds: u64,
    /// Seconds of history in `points` (one point per second, oldest first).
    pub window_seconds: u64,
    pub points: Vec<MetricsPoint>,
    /// Aggregates over the last minute.
    pub last_minute: WindowStat,
    /// Per route template since start, busiest first.
    pub routes: Vec<RouteStat>,
    pub caches: Vec<CacheStat>,
    pub breakers: Vec<BreakerStat>,
    pub jobs: JobStat,
    pub memory_bytes: u64,
    pub cpu_percent: f64,
}

/// One second of activity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsPoint {
    /// Unix time, seconds.
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub tokens: u64,
    pub search_p95_ms: Option<f64>,
    /// Metadata store calls (every operation), 95th percentile.
    #[serde(default)]
    pub db_p95_ms: Option<f64>,
    pub passages: u64,
}

/// Aggregates over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowStat {
    pub requests_per_second: f64,
    pub error_ratio: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub tokens_per_second: f64,
    pub search_p95_ms: Option<f64>,
    /// Metadata store calls (every operation), 95th percentile.
    #[serde(default)]
    pub db_p95_ms: Option<f64>,
    pub passages_per_second: f64,
}

/// Requests to one route template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStat {
    pub method: String,
    pub route: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Hits and misses of one cache since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStat {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
}

/// A generator's circuit breaker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakerStat {
    pub name: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
}

/// Ingestion jobs by state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStat {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// One entry of the audit log: a change someone asked for, whether it went through, and from where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// The user who asked (none while Kenning runs without accounts).
    pub actor: Option<String>,
    /// The method and route template, e.g. `DELETE /api/v1/spaces/{id}`.
    pub action: String,
    /// `space`, `document`, `conversation` or `point`, when the route names one.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The client's address (behind trusted proxies, the one they name).
    pub ip: Option<String>,
    /// `{status, request_id}` of the request.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// Overall and per-dependency health, as served at `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthReport {
    pub status: HealthStatus,
    pub version: String,
    pub uptime_seconds: u64,
    pub checks: Vec<DependencyHealth>,
}

/// One dependency's health with how long the probe took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DependencyHealth {
    pub name: String,
    pub kind: String,
    pub status: HealthStatus,
    pub latency_ms: f64,
    pub message: Option<String>,
}

/// Ordered from best to worst so the overall status is the maximum of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    /// Lowercase label used in JSON and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_health_is_the_worst_check() {
        let worst = [
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Degraded,
        ]
        .into_iter()
        .max();
        assert_eq!(worst, Some(HealthStatus::Unhealthy));
    }
}
