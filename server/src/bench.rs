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

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// One request whose JSON body was encoded beforehand; the time covers sending it and
    /// reading the whole response, not the load generator's own JSON work on either side, so
    /// the figure is the server's and the loopback's alone.
    async fn timed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (Duration, anyhow::Result<()>) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let started = Instant::now();
        let sent = match req.send().await {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let result = match sent {
            Err(e) => Err(e.into()),
            Ok((status, bytes)) if !status.is_success() => Err(anyhow::anyhow!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
            // A success must carry JSON (a delete's 204 carries nothing).
            Ok((_, bytes)) if bytes.is_empty() => Ok(()),
            Ok((_, bytes)) => serde_json::from_slice::<Value>(&bytes)
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{path}: not JSON: {e}")),
        };
        (took, result)
    }

    async fn upload(&self, space: &str, name: &str, text: String) -> anyhow::Result<Value> {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::text(text).file_name(name.to_string()),
        );
        let r = self
            .http
            .post(format!("{}/api/v1/spaces/{space}/documents", self.base))
            .multipart(form)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("upload: HTTP {status}: {v}");
        }
        Ok(v)
    }

    async fn wait_ready(&self, space: &str, ids: &[String]) -> anyhow::Result<u64> {
        let mut passages = 0;
        for id in ids {
            loop {
                let d = self
                    .json(
                        reqwest::Method::GET,
                        &format!("/api/v1/spaces/{space}/documents/{id}"),
                        None,
                    )
                    .await?;
                match d["status"].as_str() {
                    Some("ready") => {
                        passages += d["chunk_count"].as_u64().unwrap_or(0);
                        break;
                    }
                    Some("failed") => bail!("document {id} failed: {}", d["error"]),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(passages)
    }

    /// Creates a space with a unique name starting `prefix` and returns its id.
    async fn create_space(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
        Ok(self
            .json(
                reqwest::Method::POST,
                "/api/v1/spaces",
                Some(json!({ "name": name })),
            )
            .await?["id"]
            .as_str()
            .context("space id")?
            .to_string())
    }

    async fn seed(
        &self,
        documents: usize,
        bytes: usize,
    ) -> anyhow::Result<(String, u64, Duration)> {
        let space = self.create_space("bench").await?;
        let started = Instant::now();
        let mut ids = Vec::new();
        for i in 0..documents {
            let doc = self
                .upload(&space, &format!("doc-{i}.md"), document(i as u64, bytes))
                .await?;
            ids.push(doc["id"].as_str().context("document id")?.to_string());
        }
        let passages = self.wait_ready(&space, &ids).await?;
        Ok((space, passages, started.elapsed()))
    }

    /// Asks and times the stream: `(time to first token, total)`.
    async fn ask(&self, space: &str, question: &str) -> anyhow::Result<(Duration, Duration)> {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}/api/v1/spaces/{space}/chat", self.base))
            .json(&json!({ "question": question }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("chat: HTTP {}", r.status());
        }
        let mut first = None;
        let mut body = r.bytes_stream();
        let mut seen = String::new();
        while let Some(piece) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&piece?));
            if first.is_none() && seen.contains("event: token") {
                first = Some(started.elapsed());
            }
        }
        if seen.contains("event: error") || !seen.contains("event: done") {
            bail!("the answer did not complete");
        }
        Ok((
            first.unwrap_or_else(|| started.elapsed()),
            started.elapsed(),
        ))
    }
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

/// Clusters the points scenario's vectors are drawn around.
const CLUSTERS: u64 = 1000;

/// A vector for the points scenario: one of [`CLUSTERS`] fixed random centres plus noise.
/// Real embeddings cluster by topic; uniformly random vectors in 1,024 dimensions are all about
/// equally far apart, so no approximate index can find their neighbours and recall says nothing.
fn random_vector(rng: &mut fastrand::Rng, dims: usize) -> Vec<f32> {
    let mut centre = fastrand::Rng::with_seed(0xC0FFEE ^ rng.u64(..CLUSTERS));
    (0..dims)
        .map(|_| (centre.f32() * 2.0 - 1.0) + (rng.f32() * 2.0 - 1.0) * 0.6)
        .collect()
}

/// The points scenario: stores `--points` vectors in batches of 500, then measures each
/// operation in its own phase so each has its own throughput.
async fn points(cfg: &BenchCommand, client: Arc<Client>) -> anyhow::Result<()> {
    let dims = cfg.dimensions;
    let space = client.create_space("bench-points").await?;
    let path = format!("/api/v1/spaces/{space}/points");
    let started = Instant::now();
    let batches: Vec<u64> = (0..cfg.points).step_by(500).collect();
    let mut stored = futures::stream::iter(batches.into_iter().map(|first| {
        let (c, path) = (client.clone(), path.clone());
        let last = (first + 500).min(cfg.points);
        async move {
            let mut rng = fastrand::Rng::with_seed(first);
            let points: Vec<Value> = (first..last)
                .map(|id| json!({ "id": id, "vector": random_vector(&mut rng, dims), "payload": { "n": id } }))
                .collect();
            c.json(reqwest::Method::PUT, &path, Some(json!({ "points": points })))
                .await
                .map(|_| last - first)
        }
    }))
    .buffer_unordered(2);
    let mut seeded = 0;
    while let Some(n) = stored.next().await {
        seeded += n?;
    }
    let seed_took = started.elapsed();
    // Measure the index as it will be served: wait (up to 10 minutes) until it is built.
    let index_took = wait_for_index(&client, &path).await?;
    // The first search loads an embedded store's index; keep that out of the figures.
    let mut rng = fastrand::Rng::with_seed(7);
    client
        .json(
            reqwest::Method::POST,
            &format!("{path}/search"),
            Some(json!({ "vector": random_vector(&mut rng, dims) })),
        )
        .await?;

    let mut rows = Vec::new();
    let total = cfg.points;
    let (mut engine_before, mut engine_after) = (None, None);
    let mut engine_extra = serde_json::Map::new();
    for op in ["upsert", "search", "get", "delete"] {
        let rec = Arc::new(Recorder::default());
        let (c, r, op_path) = (client.clone(), rec.clone(), path.clone());
        let took = drive(cfg, move |i| {
            let (c, r, path) = (c.clone(), r.clone(), op_path.clone());
            async move {
                let mut rng = fastrand::Rng::with_seed(1_000_000 + i);
                // Bodies are encoded before the clock starts (see `Client::timed`).
                let encode = |v: Value| serde_json::to_vec(&v).ok();
                let (method, target, body) = match op {
                    // New ids past the seeded ones, which the delete phase then removes.
                    "upsert" => {
                        let point = json!({ "id": total + i, "vector": random_vector(&mut rng, dims), "payload": { "n": total + i } });
                        (reqwest::Method::PUT, path.clone(), encode(json!({ "points": [point] })))
                    }
                    "search" => (
                        reqwest::Method::POST,
                        format!("{path}/search"),
                        encode(json!({ "vector": random_vector(&mut rng, dims), "limit": 10 })),
                    ),
                    "get" => (
                        reqwest::Method::GET,
                        format!("{path}/{}", rng.u64(..total.max(1))),
                        None,
                    ),
                    _ => (reqwest::Method::DELETE, format!("{path}/{}", total + i), None),
                };
                let (took, result) = c.timed(method, &target, body).await;
                r.record(op, took, result.is_ok());
            }
        })
        .await;
        rows.extend(rec.rows(took));
        if op == "search" {
            engine_after = engine_search_totals(&client).await;
        } else if op == "upsert" {
            // Searches are measured on an index that has caught up with the writes ("after
            // optimize"); how long that took is reported.
            let caught_up = wait_for_index(&client, &path).await?;
            engine_extra.insert(
                "index_catch_up_seconds".into(),
                json!((caught_up.as_secs_f64() * 10.0).round() / 10.0),
            );
            engine_before = engine_search_totals(&client).await;
        }
    }
    // The engine's own time per search (the server's timing of the graph or SQL call alone,
    // no HTTP or JSON), from its metrics around the search phase.
    if let (Some((backend, s0, c0)), Some((_, s1, c1))) = (engine_before, engine_after) {
        if c1 > c0 {
            let mean_ms = (s1 - s0) / (c1 - c0) * 1000.0;
            engine_extra.insert("engine_backend".into(), json!(backend));
            engine_extra.insert(
                "engine_search_mean_ms".into(),
                json!((mean_ms * 100.0).round() / 100.0),
            );
        }
    }
    let recall = recall_at_10(cfg, &client, &path).await?;
    let _ = delete(&client, &format!("/api/v1/spaces/{space}")).await;
    let mut extra = engine_extra;
    extra.insert(
        "recall_at_10".into(),
        json!((recall * 1000.0).round() / 1000.0),
    );
    extra.insert("points".into(), json!(seeded));
    extra.insert("dimensions".into(), json!(dims));
    extra.insert(
        "index_wait_seconds".into(),
        json!((index_took.as_secs_f64() * 10.0).round() / 10.0),
    );
    extra.insert(
        "seed_points_per_second".into(),
        json!((seeded as f64 / seed_took.as_secs_f64()).round()),
    );
    finish(
        cfg,
        json!({ "elapsed_s": started.elapsed().as_secs_f64(), "operations": rows }),
        extra,
    )
}

/// Waits (up to 10 minutes) until a points space's graph is built and holds every point.
async fn wait_for_index(client: &Client, path: &str) -> anyhow::Result<Duration> {
    let waited = Instant::now();
    loop {
        let info = client.json(reqwest::Method::GET, path, None).await?;
        if info["index"] != "building" && info["unindexed"] == 0 {
            return Ok(waited.elapsed());
        }
        if waited.elapsed() > Duration::from_secs(600) {
            bail!("the points index was still building after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The server's points-search timings so far: backend, seconds summed, searches counted.
async fn engine_search_totals(c: &Client) -> Option<(String, f64, f64)> {
    let text = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let (mut backend, mut sum, mut count) = (None, 0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("vector_search_duration_seconds_") else {
            continue;
        };
        let Some(label) = rest
            .split("backend=\"")
            .nth(1)
            .and_then(|l| l.split('"').next())
            .filter(|l| l.starts_with("points-"))
        else {
            continue;
        };
        let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
        if rest.starts_with("sum{") {
            sum += value;
        } else if rest.starts_with("count{") {
            count += value;
        } else {
            continue;
        }
        backend = Some(label.to_string());
    }
    Some((backend?, sum, count))
}

/// Recall@10 of 50 searches against an exact ranking computed here from the same seeded vectors
/// (the upserted points are deleted again by then, so the seeded ones are all there is).
async fn recall_at_10(cfg: &BenchCommand, client: &Client, path: &str) -> anyhow::Result<f64> {
    let (points, dims) = (cfg.points, cfg.dimensions);
    let queries: Vec<Vec<f32>> = {
        let mut rng = fastrand::Rng::with_seed(99);
        (0..50).map(|_| random_vector(&mut rng, dims)).collect()
    };
    let q = queries.clone();
    let exact: Vec<Vec<u64>> = tokio::task::spawn_blocking(move || {
        let mut all = Vec::with_capacity(points as usize);
        for first in (0..points).step_by(500) {
            let mut rng = fastrand::Rng::with_seed(first);
            for id in first..(first + 500).min(points) {
                all.push((id, normalised(&random_vector(&mut rng, dims))));
            }
        }
        use rayon::prelude::*;
        q.into_par_iter()
            .map(|query| {
                let query = normalised(&query);
                let mut scored: Vec<(f32, u64)> =
                    all.iter().map(|(id, v)| (dot(v, &query), *id)).collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                scored.iter().take(10).map(|(_, id)| *id).collect()
            })
            .collect()
    })
    .await?;
    let mut found = 0;
    for (query, want) in queries.into_iter().zip(&exact) {
        let got = client
            .json(
                reqwest::Method::POST,
                &format!("{path}/search"),
                Some(json!({ "vector": query, "limit": 10 })),
            )
            .await?;
        found += got["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["id"].as_u64().is_some_and(|id| want.contains(&id)))
            .count();
    }
    Ok(found as f64 / (exact.len() * 10) as f64)
}

/// A DELETE; anything but a 2xx (a 404 included: the point should be there) is an error.
async fn delete(c: &Client, path: &str) -> anyhow::Result<Value> {
    let r = c.http.delete(format!("{}{path}", c.base)).send().await?;
    if r.status().is_success() {
        Ok(Value::Null)
    } else {
        bail!("{path}: HTTP {}", r.status())
    }
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
