//! Dependency probes for `/health`, `/health/readiness` and the UI's status page.

use crate::generate::BreakerState;
use crate::service::Service;
use kenning_api::{DependencyHealth, HealthReport, HealthStatus};
use std::time::{Duration, Instant};

/// How long one probe may take before it counts as unhealthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a finished report is reused. Concurrent `/health` requests share the probe run in
/// flight (so a burst of them cannot load the dependencies: the endpoint is public); a request
/// after it ends sees a fresh one, so a dependency that just failed shows at once.
const REPORT_TTL: Duration = Duration::from_millis(1);

/// One shared report: concurrent callers wait for the same probe run instead of each starting one.
pub struct HealthCache {
    report: moka::future::Cache<(), HealthReport>,
    /// Set when shutdown begins: readiness answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
}

impl Default for HealthCache {
    fn default() -> Self {
        Self {
            report: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(REPORT_TTL)
                .build(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl HealthCache {
    /// Marks the server as shutting down, so load balancers stop sending it new requests.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current report: the run in flight if there is one, else a fresh one.
    pub async fn report(&self, service: &Service) -> HealthReport {
        self.report.get_with((), report(service)).await
    }
}

/// Probes every dependency concurrently; the overall status is the worst of them.
pub async fn report(service: &Service) -> HealthReport {
    let (store, disk, vectors, redis) = tokio::join!(
        check_store(service),
        check_data_dir(service),
        check_vectors(service),
        check_redis(service)
    );
    let mut checks = vec![store, disk];
    checks.extend(vectors);
    checks.extend(redis);
    checks.extend(check_generators(service));
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    HealthReport {
        status,
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: service.uptime_seconds(),
        checks,
    }
}

/// True when the metadata store answers in time: the readiness criterion.
pub async fn store_ready(service: &Service) -> bool {
    check_store(service).await.status != HealthStatus::Unhealthy
}

async fn check_store(service: &Service) -> DependencyHealth {
    let started = Instant::now();
    let result = tokio::time::timeout(PROBE_TIMEOUT, service.store().ping()).await;
    let (status, message) = match result {
        Ok(Ok(())) => (HealthStatus::Healthy, None),
        Ok(Err(e)) => (HealthStatus::Unhealthy, Some(e.to_string())),
        Err(_) => (
            HealthStatus::Unhealthy,
            Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        ),
    };
    DependencyHealth {
        name: "metadata_store".into(),
        kind: service.store().backend_name().into(),
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        message,
    }
}

async fn check_data_dir(service: &Service) -> DependencyHealth {
    let started = Instant::now();
    // A name of its own per probe: two probes writing and removing one file raced each other.
    let probe = service
        .data_dir()
        .join(format!(".health-probe-{}", uuid::Uuid::new_v4().simple()));
    let result = tokio::time::timeout(PROBE_TIMEOUT, async {
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await
    })
    .await;
    let (status, message) = match result {
        Ok(Ok(())) => (HealthStatus::Healthy, None),
        Ok(Err(e)) => (HealthStatus::Unhealthy, Some(format!("not writable: {e}"))),
        Err(_) => (HealthStatus::Degraded, Some("slow to write".to_string())),
    };
    DependencyHealth {
        name: "data_dir".into(),
        kind: "filesystem".into(),
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        message,
    }
}

async fn check_vectors(service: &Service) -> Option<DependencyHealth> {
    let vectors = service.vectors()?;
    let started = Instant::now();
    let (status, message) = match tokio::time::timeout(PROBE_TIMEOUT, vectors.ping()).await {
        Ok(Ok(())) => (HealthStatus::Healthy, None),
        // Keyword search still answers without vectors: degraded, not down.
        Ok(Err(e)) => (HealthStatus::Degraded, Some(e.to_string())),
        Err(_) => (
            HealthStatus::Degraded,
            Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        ),
    };
    Some(DependencyHealth {
        name: "vector_store".into(),
        kind: vectors.backend_name().into(),
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        message,
    })
}

/// Redis, when limits and caches are shared through it: down means each instance limits and
/// caches on its own, so the service is degraded, not down.
async fn check_redis(service: &Service) -> Option<DependencyHealth> {
    let link = service.redis()?;
    let started = Instant::now();
    let result = link.ping().await;
    let (status, message) = match result {
        Ok(()) => (HealthStatus::Healthy, None),
        Err(e) => (
            HealthStatus::Degraded,
            Some(format!(
                "unreachable ({e}); rate limits and caches are per instance"
            )),
        ),
    };
    Some(DependencyHealth {
        name: "redis".into(),
        kind: "redis".into(),
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        message,
    })
}

/// Each generator's circuit breaker: an open one means answers are being degraded to the next
/// generator in the chain, so the service is degraded, not down.
fn check_generators(service: &Service) -> Vec<DependencyHealth> {
    let Some(chain) = service.chain() else {
        return Vec::new();
    };
    chain
        .breaker_states()
        .into_iter()
        .map(|(name, state)| {
            let (status, message) = match state {
                BreakerState::Closed => (HealthStatus::Healthy, None),
                BreakerState::HalfOpen => (
                    HealthStatus::Degraded,
                    Some("recovering: trying a request after failures".to_string()),
                ),
                BreakerState::Open => (
                    HealthStatus::Degraded,
                    Some(
                        "circuit open after repeated failures; answers use the next generator"
                            .to_string(),
                    ),
                ),
            };
            DependencyHealth {
                name: format!("generator:{name}"),
                kind: "generator".into(),
                status,
                latency_ms: 0.0,
                message,
            }
        })
        .collect()
}
