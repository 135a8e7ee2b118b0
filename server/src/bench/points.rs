//! The points scenario: upserts, filtered searches and the recall of the engine's index.

use super::*;

/// Clusters the points scenario's vectors are drawn around.
pub(super) const CLUSTERS: u64 = 1000;

/// A vector for the points scenario: one of [`CLUSTERS`] fixed random centres plus noise.
/// Real embeddings cluster by topic; uniformly random vectors in 1,024 dimensions are all about
/// equally far apart, so no approximate index can find their neighbours and recall says nothing.
pub(super) fn random_vector(rng: &mut fastrand::Rng, dims: usize) -> Vec<f32> {
    let mut centre = fastrand::Rng::with_seed(0xC0FFEE ^ rng.u64(..CLUSTERS));
    (0..dims)
        .map(|_| (centre.f32() * 2.0 - 1.0) + (rng.f32() * 2.0 - 1.0) * 0.6)
        .collect()
}

/// The points scenario: stores `--points` vectors in batches of 500, then measures each
/// operation in its own phase so each has its own throughput.
pub(super) async fn points(cfg: &BenchCommand, client: Arc<Client>) -> anyhow::Result<()> {
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
pub(super) async fn wait_for_index(client: &Client, path: &str) -> anyhow::Result<Duration> {
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
pub(super) async fn engine_search_totals(c: &Client) -> Option<(String, f64, f64)> {
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
pub(super) async fn recall_at_10(
    cfg: &BenchCommand,
    client: &Client,
    path: &str,
) -> anyhow::Result<f64> {
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
pub(super) async fn delete(c: &Client, path: &str) -> anyhow::Result<Value> {
    let r = c.http.delete(format!("{}{path}", c.base)).send().await?;
    if r.status().is_success() {
        Ok(Value::Null)
    } else {
        bail!("{path}: HTTP {}", r.status())
    }
}
