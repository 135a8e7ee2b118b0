//! Metrics: Prometheus exposition at `/metrics` for scrapers, and a per-second history of the
//! last two minutes that the built-in dashboard draws (sliding-window percentiles from HDR
//! histograms). One instance per process, like the Prometheus recorder it feeds. Labels are
//! bounded: routes by template (never raw paths), providers, caches and lanes by name.

/// A metric family's exposed name: every family of Kenning's own carries the `kenning_` prefix.
macro_rules! family {
    ($name:literal) => {
        concat!("kenning_", $name)
    };
}

mod exposition;

use hdrhistogram::Histogram;
use kenning_api::{
    BreakerStat, CacheStat, JobStat, MetricsPoint, MetricsSnapshot, RouteStat, WindowStat,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds of per-second history kept for the dashboard.
pub const WINDOW_SECS: u64 = 120;

/// Latency buckets (seconds) for Prometheus histograms: 1 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Process-wide metrics.
pub struct Metrics {
    prometheus: Option<PrometheusHandle>,
    /// The standard `process_*` families, refreshed at each scrape.
    process: metrics_process::Collector,
    inner: Mutex<Inner>,
    started: Instant,
}

#[derive(Default)]
struct Inner {
    buckets: VecDeque<Bucket>,
    routes: HashMap<(String, String), RouteAcc>,
    caches: BTreeMap<&'static str, (u64, u64)>,
    cpu: Option<(Instant, f64)>,
    costs: exposition::Costs,
}

impl Inner {
    /// This second's bucket, started (and the oldest dropped) when the second is new.
    fn current_bucket(&mut self) -> &mut Bucket {
        let now = unix_now();
        if self.buckets.back().is_none_or(|b| b.second != now) {
            self.buckets.push_back(Bucket {
                second: now,
                requests: 0,
                errors: 0,
                latency: None,
                ttft: None,
                search: None,
                db: None,
                tokens: 0,
                passages: 0,
            });
            while self
                .buckets
                .front()
                .is_some_and(|b| b.second + WINDOW_SECS <= now)
            {
                self.buckets.pop_front();
            }
        }
        self.buckets
            .back_mut()
            .expect("a bucket was just ensured for this second")
    }
}

struct Bucket {
    second: u64,
    requests: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
    ttft: Option<Histogram<u64>>,
    search: Option<Histogram<u64>>,
    db: Option<Histogram<u64>>,
    tokens: u64,
    passages: u64,
}

struct RouteAcc {
    count: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// A histogram of microseconds from 1 µs to 10 minutes, two significant digits.
fn histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 2).ok()
}

fn record(h: &mut Option<Histogram<u64>>, d: Duration) {
    if h.is_none() {
        *h = histogram();
    }
    if let Some(h) = h {
        h.saturating_record(d.as_micros().clamp(1, 600_000_000) as u64);
    }
}

fn quantile_ms(h: &Option<Histogram<u64>>, q: f64) -> Option<f64> {
    h.as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
}

fn merge(into: &mut Option<Histogram<u64>>, from: &Option<Histogram<u64>>) {
    if let Some(from) = from {
        if into.is_none() {
            *into = histogram();
        }
        if let Some(into) = into {
            let _ = into.add(from);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The process's metrics, created (and the Prometheus recorder installed) on first use.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::install)
}

impl Metrics {
    fn install() -> Self {
        let prometheus = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(family!("embed_batch_size").into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                )
            })
            .map(|b| b.build_recorder())
            .ok()
            .and_then(|recorder| {
                let handle = recorder.handle();
                // Another recorder (a host embedding us) wins; the dashboard still works.
                metrics::set_global_recorder(recorder).ok().map(|_| handle)
            });
        exposition::describe();
        let process = metrics_process::Collector::default();
        process.describe();
        metrics::gauge!(family!("build_info"), "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Self {
            prometheus,
            process,
            inner: Mutex::new(Inner::default()),
            started: Instant::now(),
        }
    }

    fn with_bucket(&self, f: impl FnOnce(&mut Bucket)) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(inner.current_bucket());
    }

    /// One HTTP request, by route template.
    pub fn record_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        metrics::counter!(family!("http_requests_total"), &labels).increment(1);
        metrics::histogram!(family!("http_request_duration_seconds"), &labels)
            .record(took.as_secs_f64());
        let error = status >= 500;
        // One lock for the window and the route table: this runs on every request.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let b = inner.current_bucket();
        b.requests += 1;
        b.errors += u64::from(error);
        record(&mut b.latency, took);
        // Bounded: route templates are fixed by the router, methods by HTTP.
        if inner.routes.len() < 500 {
            let acc = inner
                .routes
                .entry((method.to_string(), route.to_string()))
                .or_insert_with(|| RouteAcc {
                    count: 0,
                    errors: 0,
                    latency: histogram().unwrap_or_else(|| Histogram::new(2).expect("histogram")),
                });
            acc.count += 1;
            acc.errors += u64::from(error);
            acc.latency
                .saturating_record(took.as_micros().clamp(1, 600_000_000) as u64);
        }
    }

    /// The server's check of a generated answer: how many of its sentences are shown with a
    /// supporting source and how many claims none supports, so operators see answers overreach.
    pub fn record_answer_check(&self, supported: usize, unsupported: usize) {
        metrics::counter!(family!("answer_sentences_total"), "verdict" => "supported")
            .increment(supported as u64);
        metrics::counter!(family!("answer_sentences_total"), "verdict" => "unsupported")
            .increment(unsupported as u64);
    }

    /// An answer declined before any generator ran: nothing in the space was close enough.
    pub fn record_declined(&self) {
        metrics::counter!(family!("answers_declined_total")).increment(1);
    }

    /// One answer attempt by a generator: its outcome, first-token time and token counts.
    pub fn record_llm(
        &self,
        provider: &'static str,
        outcome: &'static str,
        first_token: Option<Duration>,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost_usd: f64,
    ) {
        metrics::counter!(family!("llm_calls_total"), "provider" => provider, "outcome" => outcome)
            .increment(1);
        metrics::counter!(family!("llm_tokens_total"), "provider" => provider, "kind" => "prompt")
            .increment(prompt_tokens);
        metrics::counter!(family!("llm_tokens_total"), "provider" => provider, "kind" => "completion")
            .increment(completion_tokens);
        if let Some(t) = first_token {
            metrics::histogram!(family!("llm_time_to_first_token_seconds"), "provider" => provider)
                .record(t.as_secs_f64());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.costs.add(provider, cost_usd);
        let b = inner.current_bucket();
        b.tokens += completion_tokens;
        if let Some(t) = first_token {
            record(&mut b.ttft, t);
        }
    }

    /// A cache lookup.
    pub fn record_cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        metrics::counter!(family!("cache_operations_total"), "cache" => cache, "result" => result)
            .increment(1);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = inner.caches.entry(cache).or_default();
        if hit {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// An entry a bounded cache dropped to stay within its size.
    pub fn record_eviction(&self, cache: &'static str) {
        metrics::counter!(family!("cache_operations_total"), "cache" => cache, "result" => "evict")
            .increment(1);
    }

    /// A nearest-neighbour search in a vector store.
    pub fn record_vector_search(&self, backend: &'static str, took: Duration) {
        metrics::histogram!(family!("vector_search_duration_seconds"), "backend" => backend)
            .record(took.as_secs_f64());
        self.with_bucket(|b| record(&mut b.search, took));
    }

    /// A batch the embedder ran.
    pub fn record_embed(&self, lane: &'static str, batch: usize) {
        metrics::counter!(family!("embed_requests_total"), "lane" => lane).increment(1);
        metrics::histogram!(family!("embed_batch_size"), "lane" => lane).record(batch as f64);
    }

    /// A metadata store call.
    pub fn record_db(&self, operation: &'static str, took: Duration) {
        metrics::counter!(family!("db_queries_total"), "operation" => operation).increment(1);
        metrics::histogram!(family!("db_query_duration_seconds"), "operation" => operation)
            .record(took.as_secs_f64());
        self.with_bucket(|b| record(&mut b.db, took));
    }

    /// A request refused before it ran: `rate_limited` (429) or `overloaded` (503, shed).
    pub fn record_refused(&self, class: &'static str, reason: &'static str) {
        match reason {
            "rate_limited" => {
                metrics::counter!(family!("rate_limited_total"), "class" => class).increment(1)
            }
            _ => metrics::counter!(family!("requests_shed_total"), "class" => class).increment(1),
        }
    }

    /// An audit entry that could not be written.
    pub fn record_audit_dropped(&self) {
        metrics::counter!(family!("audit_dropped_total")).increment(1);
    }

    /// How long a job waited in the queue before its first attempt started.
    pub fn record_queue_wait(&self, waited: Duration) {
        metrics::histogram!(family!("ingest_queue_wait_seconds")).record(waited.as_secs_f64());
    }

    /// Passages a finished ingestion job indexed.
    pub fn record_ingested(&self, passages: u64) {
        metrics::counter!(family!("ingest_passages_total")).increment(passages);
        self.with_bucket(|b| b.passages += passages);
    }

    /// Sets the gauges that are read at scrape time (breakers, jobs, process).
    fn set_gauges(&self, breakers: &[BreakerStat], jobs: &JobStat) {
        for b in breakers {
            for state in exposition::BREAKER_STATES {
                let value = if b.state == state { 1.0 } else { 0.0 };
                metrics::gauge!(family!("circuit_breaker_state"), "provider" => b.name.clone(), "state" => state)
                    .set(value);
            }
        }
        for (state, n) in [
            ("queued", jobs.queued),
            ("running", jobs.running),
            ("done", jobs.done),
            ("failed", jobs.failed),
        ] {
            metrics::gauge!(family!("ingest_jobs"), "state" => state).set(n as f64);
        }
        self.process.collect();
    }

    /// The Prometheus text exposition.
    pub fn render(&self, breakers: &[BreakerStat], jobs: &JobStat) -> String {
        self.set_gauges(breakers, jobs);
        let mut out = match &self.prometheus {
            Some(p) => {
                p.run_upkeep();
                p.render()
            }
            None => String::new(),
        };
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.costs.render(&mut out);
        out
    }

    /// What the dashboard shows, with the gauges the caller read (breakers, jobs).
    pub fn snapshot(&self, breakers: Vec<BreakerStat>, jobs: JobStat) -> MetricsSnapshot {
        let now = unix_now();
        let (memory, cpu) = process_now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let cpu_percent = cpu_percent(&mut inner.cpu, cpu);
        let by_second: HashMap<u64, &Bucket> =
            inner.buckets.iter().map(|b| (b.second, b)).collect();
        let start = now.saturating_sub(WINDOW_SECS - 1);
        // The current second is still filling: the series ends at the last complete one.
        let points: Vec<MetricsPoint> = (start..now)
            .map(|t| match by_second.get(&t) {
                None => MetricsPoint {
                    t,
                    ..MetricsPoint::default()
                },
                Some(b) => MetricsPoint {
                    t,
                    requests: b.requests,
                    errors: b.errors,
                    p50_ms: quantile_ms(&b.latency, 0.5),
                    p95_ms: quantile_ms(&b.latency, 0.95),
                    p99_ms: quantile_ms(&b.latency, 0.99),
                    ttft_ms: quantile_ms(&b.ttft, 0.5),
                    tokens: b.tokens,
                    search_p95_ms: quantile_ms(&b.search, 0.95),
                    db_p95_ms: quantile_ms(&b.db, 0.95),
                    passages: b.passages,
                },
            })
            .collect();

        let minute: Vec<&Bucket> = inner
            .buckets
            .iter()
            .filter(|b| b.second + 60 > now && b.second < now)
            .collect();
        let (mut latency, mut ttft, mut search, mut db) = (None, None, None, None);
        let (mut requests, mut errors, mut tokens, mut passages) = (0u64, 0u64, 0u64, 0u64);
        for b in &minute {
            merge(&mut latency, &b.latency);
            merge(&mut ttft, &b.ttft);
            merge(&mut search, &b.search);
            merge(&mut db, &b.db);
            requests += b.requests;
            errors += b.errors;
            tokens += b.tokens;
            passages += b.passages;
        }
        let seconds = self.started.elapsed().as_secs().clamp(1, 60) as f64;
        let last_minute = WindowStat {
            requests_per_second: requests as f64 / seconds,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: quantile_ms(&latency, 0.5),
            p95_ms: quantile_ms(&latency, 0.95),
            p99_ms: quantile_ms(&latency, 0.99),
            ttft_p50_ms: quantile_ms(&ttft, 0.5),
            tokens_per_second: tokens as f64 / seconds,
            search_p95_ms: quantile_ms(&search, 0.95),
            db_p95_ms: quantile_ms(&db, 0.95),
            passages_per_second: passages as f64 / seconds,
        };

        let mut routes: Vec<RouteStat> = inner
            .routes
            .iter()
            .map(|((method, route), acc)| RouteStat {
                method: method.clone(),
                route: route.clone(),
                count: acc.count,
                errors: acc.errors,
                p50_ms: acc.latency.value_at_quantile(0.5) as f64 / 1000.0,
                p95_ms: acc.latency.value_at_quantile(0.95) as f64 / 1000.0,
                p99_ms: acc.latency.value_at_quantile(0.99) as f64 / 1000.0,
            })
            .collect();
        routes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.route.cmp(&b.route)));
        routes.truncate(50);
        let caches = inner
            .caches
            .iter()
            .map(|(name, (hits, misses))| CacheStat {
                name: name.to_string(),
                hits: *hits,
                misses: *misses,
            })
            .collect();
        MetricsSnapshot {
            uptime_seconds: self.started.elapsed().as_secs(),
            window_seconds: WINDOW_SECS,
            points,
            last_minute,
            routes,
            caches,
            breakers,
            jobs,
            memory_bytes: memory,
            cpu_percent,
        }
    }
}

/// This process's resident memory and CPU seconds so far, as the `process_*` families report
/// them (0 where the platform does not say).
fn process_now() -> (u64, f64) {
    let m = metrics_process::collector::collect();
    (
        m.resident_memory_bytes.unwrap_or(0),
        m.cpu_seconds_total.unwrap_or(0.0),
    )
}

/// CPU used by this process since the previous call (`cpu` seconds in all now), as a
/// percentage of one core.
fn cpu_percent(last: &mut Option<(Instant, f64)>, cpu: f64) -> f64 {
    let now = Instant::now();
    let result = match *last {
        Some((at, before)) if now > at => {
            (cpu - before) / now.duration_since(at).as_secs_f64() * 100.0
        }
        _ => 0.0,
    };
    *last = Some((now, cpu));
    result.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_aggregates_percentiles_and_errors_and_routes() {
        let m = Metrics {
            prometheus: None,
            process: metrics_process::Collector::default(),
            inner: Mutex::new(Inner::default()),
            started: Instant::now() - Duration::from_secs(30),
        };
        for ms in 1..=100u64 {
            m.record_http("GET", "/api/v1/spaces", 200, Duration::from_millis(ms));
        }
        m.record_http("POST", "/api/v1/spaces", 500, Duration::from_millis(5));
        m.record_cache("search", true);
        m.record_cache("search", false);
        // The current second is not in the series yet; move the bucket one second back.
        {
            let mut inner = m.inner.lock().unwrap();
            for b in inner.buckets.iter_mut() {
                b.second -= 1;
            }
        }
        let s = m.snapshot(vec![], JobStat::default());
        assert_eq!(s.points.len() as u64, WINDOW_SECS - 1);
        let last = s.points.last().unwrap();
        assert_eq!(last.requests, 101);
        assert_eq!(last.errors, 1);
        let p50 = last.p50_ms.unwrap();
        assert!((45.0..=56.0).contains(&p50), "{p50}");
        assert!(last.p99_ms.unwrap() >= 98.0);
        assert!((s.last_minute.error_ratio - 1.0 / 101.0).abs() < 1e-9);
        assert_eq!(s.routes[0].route, "/api/v1/spaces");
        assert_eq!(s.routes[0].count, 100);
        assert_eq!(s.caches[0].hits, 1);
        assert_eq!(s.caches[0].misses, 1);
    }

    #[test]
    fn the_process_figures_are_this_processes() {
        // CPU time is counted in clock ticks: spend a few, so a fresh test binary shows some.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (memory, cpu) = process_now();
        assert!(memory > 1024 * 1024, "{memory}");
        assert!(cpu > 0.0);
    }
}
