//! `kenning bench`: a built-in load generator for a running Kenning on this machine. Each
//! scenario seeds what it needs through the public API, then drives requests with a fixed
//! concurrency until a request count or a duration runs out, and reports p50 / p95 / p99 and
//! throughput per operation. Only loopback targets are accepted: this is for measuring your own
//! instance, not anyone else's.

use crate::config::{BenchCommand, BenchScenario};
use crate::vector::{dot, normalised};
use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Words the generated corpus is made of.
mod client;
mod points;

use client::Client;
use points::points;

const WORDS: &[&str] = &[
    "policy",
    "leave",
    "laptop",
    "deploy",
    "release",
    "invoice",
    "customer",
    "contract",
    "office",
    "security",
    "backup",
    "database",
    "network",
    "incident",
    "review",
    "budget",
    "travel",
    "expense",
    "onboarding",
    "training",
    "hardware",
    "password",
    "vacation",
    "manager",
    "quarter",
    "revenue",
    "forecast",
    "support",
    "ticket",
    "escalation",
    "vendor",
    "rollback",
];

/// Latencies of admitted requests, failures and refusals (429) per operation.
#[derive(Default)]
struct Recorder {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

/// Admitted latencies (µs), failures, refusals.
type OpStats = (Histogram<u64>, u64, u64);

/// Whether a failed request was refused by the server's rate limit rather than failing.
fn was_limited(e: &anyhow::Error) -> bool {
    e.to_string().contains("HTTP 429")
}

impl Recorder {
    fn record(&self, op: &'static str, took: Duration, ok: bool) {
        self.record_outcome(op, took, if ok { Ok(()) } else { Err(false) });
    }

    /// `Err(true)` is a request the rate limit refused.
    fn record_outcome(&self, op: &'static str, took: Duration, outcome: Result<(), bool>) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let entry = ops.entry(op).or_insert_with(|| {
            (
                Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
                    Histogram::new(3).expect("a histogram with 3 significant digits")
                }),
                0,
                0,
            )
        });
        match outcome {
            Ok(()) => entry
                .0
                .saturating_record(took.as_micros().clamp(1, 600_000_000) as u64),
            Err(false) => entry.1 += 1,
            Err(true) => entry.2 += 1,
        }
    }

    fn report(&self, elapsed: Duration) -> Value {
        json!({ "elapsed_s": elapsed.as_secs_f64(), "operations": self.rows(elapsed) })
    }

    /// One row per operation; throughput is over `elapsed`, the time the operations ran in.
    fn rows(&self, elapsed: Duration) -> Vec<Value> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.iter()
            .map(|(op, (h, errors, limited))| {
                let q = |p: f64| (h.value_at_quantile(p) as f64 / 1000.0 * 100.0).round() / 100.0;
                json!({
                    "operation": op,
                    "ok": h.len(),
                    "errors": errors,
                    "limited": limited,
                    "per_second": (h.len() as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
                    "p50_ms": q(0.5),
                    "p95_ms": q(0.95),
                    "p99_ms": q(0.99),
                })
            })
            .collect()
    }
}

/// Refuses anything but this machine.
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).context("parsing --url")?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        Ok(())
    } else {
        bail!("kenning bench only targets loopback addresses (127.0.0.1, ::1, localhost)")
    }
}

/// A deterministic pseudo-random Markdown document of about `bytes` bytes.
pub fn document(seed: u64, bytes: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::with_capacity(bytes + 200);
    while out.len() < bytes {
        let title: Vec<&str> = (0..3).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
        out.push_str(&format!("## {}\n\n", title.join(" ")));
        for _ in 0..rng.usize(3..6) {
            let n = rng.usize(8..16);
            let words: Vec<&str> = (0..n).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
            out.push_str(&words.join(" "));
            out.push_str(". ");
        }
        out.push_str("\n\n");
    }
    out
}

/// Runs `op` from `concurrency` tasks until `requests` are done or `duration` is over.
async fn drive<F, Fut>(cfg: &BenchCommand, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(cfg.duration_secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let next = next.clone();
            let op = op.clone();
            let limit = cfg.requests;
            let pace = cfg.rate.filter(|r| *r > 0.0).map(|r| 1.0 / r);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= limit || Instant::now() >= deadline {
                        break;
                    }
                    if let Some(pace) = pace {
                        let due = started + Duration::from_secs_f64(pace * i as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    started.elapsed()
}

/// Runs a scenario on a load generator of one thread of its own: on a small machine it then
/// takes at most one core from the server it measures, and a request's trip through the client
/// never waits for a hand-over between the client's threads.
pub async fn run_on_one_thread(cfg: BenchCommand) -> anyhow::Result<()> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kenning-bench".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the load generator's runtime")
                .and_then(|rt| rt.block_on(run(cfg)));
            let _ = done.send(outcome);
        })
        .context("starting the load generator's thread")?;
    result
        .await
        .context("the load generator's thread ended without a result")?
}

/// Runs a scenario and prints its report (JSON with `--json`, else a table).
pub async fn run(cfg: BenchCommand) -> anyhow::Result<()> {
    check_loopback(&cfg.url)?;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &cfg.api_key {
        // A server with sign-in is measured as the key's account.
        let value = format!("Bearer {}", key.expose_secret());
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .default_headers(headers)
            .build()?,
        base: cfg.url.trim_end_matches('/').to_string(),
    });
    let rec = Arc::new(Recorder::default());
    let mut extra = serde_json::Map::new();
    let elapsed = match cfg.scenario {
        BenchScenario::Ingest => {
            let (_, passages, took) = client.seed(cfg.documents, cfg.document_bytes).await?;
            extra.insert("documents".into(), json!(cfg.documents));
            extra.insert("passages".into(), json!(passages));
            extra.insert(
                "passages_per_second".into(),
                json!((passages as f64 / took.as_secs_f64() * 10.0).round() / 10.0),
            );
            took
        }
        BenchScenario::Search | BenchScenario::Ask | BenchScenario::Mixed => {
            let (space, passages, _) = client.seed(cfg.documents, cfg.document_bytes).await?;
            extra.insert("passages".into(), json!(passages));
            let scenario = cfg.scenario;
            let uploaded = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let (c, r, s, u) = (client.clone(), rec.clone(), space.clone(), uploaded.clone());
            let took = drive(&cfg, move |i| {
                let (c, r, s, u) = (c.clone(), r.clone(), s.clone(), u.clone());
                async move {
                    let mut rng = fastrand::Rng::with_seed(i);
                    let words: Vec<&str> =
                        (0..3).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
                    // A counter in the question keeps answers out of the answer cache.
                    let query = format!("{} {i}", words.join(" "));
                    let kind = match scenario {
                        BenchScenario::Mixed => [
                            "search",
                            "search",
                            "ask",
                            "dashboard",
                            "search",
                            "upload",
                            "search",
                            "ask",
                            "dashboard",
                            "search",
                        ][i as usize % 10],
                        BenchScenario::Ask => "ask",
                        _ => "search",
                    };
                    let started = Instant::now();
                    match kind {
                        "ask" => match c
                            .ask(&s, &format!("What does the handbook say about {query}?"))
                            .await
                        {
                            Ok((first, total)) => {
                                r.record("ask_first_token", first, true);
                                r.record("ask_total", total, true);
                            }
                            Err(e) => r.record_outcome(
                                "ask_total",
                                started.elapsed(),
                                Err(was_limited(&e)),
                            ),
                        },
                        "upload" => {
                            // A new document each time (its seed is unique), so none is a no-op.
                            let text = document(1_000_000 + i, 2_000);
                            let outcome = c.upload(&s, &format!("upload-{i}.md"), text).await;
                            if let Some(id) = outcome.as_ref().ok().and_then(|d| d["id"].as_str()) {
                                if let Ok(mut ids) = u.lock() {
                                    ids.push(id.to_string());
                                }
                            }
                            r.record_outcome(
                                "upload",
                                started.elapsed(),
                                outcome.map(|_| ()).map_err(|e| was_limited(&e)),
                            );
                        }
                        "dashboard" => {
                            let ok = c
                                .json(reqwest::Method::GET, "/api/v1/metrics/snapshot", None)
                                .await
                                .is_ok();
                            r.record("dashboard_snapshot", started.elapsed(), ok);
                        }
                        _ => {
                            let outcome = c
                                .json(
                                    reqwest::Method::POST,
                                    &format!("/api/v1/spaces/{s}/search"),
                                    Some(json!({ "query": query, "mode": "hybrid" })),
                                )
                                .await
                                .map(|_| ())
                                .map_err(|e| was_limited(&e));
                            r.record_outcome("search_hybrid", started.elapsed(), outcome);
                        }
                    }
                }
            })
            .await;
            // Nothing accepted may be lost: every document uploaded during the run must end
            // ready (this fails the run if one failed).
            let ids = uploaded.lock().map(|ids| ids.clone()).unwrap_or_default();
            if !ids.is_empty() {
                client.wait_ready(&space, &ids).await?;
                extra.insert("uploads_ready".into(), json!(ids.len()));
            }
            took
        }
        BenchScenario::Points => return points(&cfg, client).await,
    };
    finish(&cfg, rec.report(elapsed), extra)
}

/// Adds the scenario's settings to a report and prints it.
fn finish(
    cfg: &BenchCommand,
    mut report: Value,
    extra: serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    if let Some(obj) = report.as_object_mut() {
        obj.insert(
            "scenario".into(),
            json!(format!("{:?}", cfg.scenario).to_lowercase()),
        );
        obj.insert("concurrency".into(), json!(cfg.concurrency));
        obj.extend(extra);
    }
    if cfg.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Value) {
    println!(
        "scenario {} · concurrency {} · {:.1} s · {} · {} cores",
        report["scenario"].as_str().unwrap_or_default(),
        report["concurrency"],
        report["elapsed_s"].as_f64().unwrap_or_default(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for key in [
        "documents",
        "passages",
        "passages_per_second",
        "points",
        "dimensions",
        "seed_points_per_second",
        "index_wait_seconds",
        "index_catch_up_seconds",
        "recall_at_10",
        "engine_backend",
        "engine_search_mean_ms",
    ] {
        if !report[key].is_null() {
            println!("{key}: {}", report[key]);
        }
    }
    println!();
    println!("| operation | ok | errors | 429s | req/s | p50 ms | p95 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in report["operations"].as_array().into_iter().flatten() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row["operation"].as_str().unwrap_or_default(),
            row["ok"],
            row["errors"],
            row["limited"],
            row["per_second"],
            row["p50_ms"],
            row["p95_ms"],
            row["p99_ms"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(check_loopback("http://127.0.0.1:3000").is_ok());
        assert!(check_loopback("http://[::1]:3000").is_ok());
        assert!(check_loopback("http://localhost:3000").is_ok());
        assert!(check_loopback("http://10.0.0.5:3000").is_err());
        assert!(check_loopback("https://example.com").is_err());
    }

    #[test]
    fn documents_are_deterministic_and_sized() {
        let a = document(7, 2000);
        assert_eq!(a, document(7, 2000));
        assert_ne!(a, document(8, 2000));
        assert!(a.len() >= 2000 && a.len() < 2600);
        assert!(a.starts_with("## "));
    }

    #[tokio::test]
    async fn timed_requests_send_their_body_and_judge_the_answer() {
        use axum::routing::{get, post};
        let app = axum::Router::new()
            // Refuses a body that is missing or not labelled JSON, as the API does.
            .route(
                "/echo",
                post(|axum::Json(v): axum::Json<Value>| async move { axum::Json(v) }),
            )
            .route(
                "/gone",
                get(|| async { (axum::http::StatusCode::NOT_FOUND, "{}") }),
            )
            .route(
                "/empty",
                get(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route("/text", get(|| async { "not json" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let c = Client {
            http: reqwest::Client::new(),
            base,
        };
        let body = br#"{"vector":[1.0,2.0]}"#.to_vec();
        let (took, echoed) = c.timed(reqwest::Method::POST, "/echo", Some(body)).await;
        assert!(echoed.is_ok(), "{echoed:?}");
        assert!(took > Duration::ZERO);
        let refused = c.timed(reqwest::Method::GET, "/gone", None).await.1;
        assert!(refused.is_err_and(|e| e.to_string().contains("404")));
        assert!(c
            .timed(reqwest::Method::GET, "/empty", None)
            .await
            .1
            .is_ok());
        assert!(c
            .timed(reqwest::Method::GET, "/text", None)
            .await
            .1
            .is_err());
    }
}
