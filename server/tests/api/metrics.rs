//! Metrics: the Prometheus exposition and the dashboard's snapshot reflect real traffic, with
//! routes labelled by template (never raw ids).

use crate::helpers::{spawn_app, Backend};
use serde_json::json;

on_both_backends!(
    requests_answers_and_caches_show_up_in_prometheus_by_route_template,
    the_dashboard_snapshot_has_history_routes_caches_breakers_and_jobs,
);

async fn requests_answers_and_caches_show_up_in_prometheus_by_route_template(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Metered").await;
    let (_, doc) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEveryone gets twenty-five vacation days.\n".to_vec(),
        )
        .await;
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    for _ in 0..2 {
        app.ask(&space, json!({ "question": "How many vacation days?" }))
            .await;
    }
    app.ask(
        &space,
        json!({ "question": "What is the capital of Australia?" }),
    )
    .await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = r.text().await.unwrap();
    for needle in [
        "kenning_http_requests_total{method=\"POST\",route=\"/api/v1/spaces/{id}/documents\",status=\"202\"}",
        "kenning_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/spaces/{id}/documents/{document_id}\"",
        "kenning_llm_calls_total{provider=\"extractive\",outcome=\"ok\"}",
        // The server's check of answers, and questions declined before any generator.
        "kenning_answer_sentences_total{verdict=\"supported\"} ",
        "kenning_answers_declined_total ",
        "kenning_llm_tokens_total{provider=\"extractive\",kind=\"completion\"}",
        "kenning_llm_time_to_first_token_seconds_bucket{provider=\"extractive\"",
        // Fractional dollars, yet a counter.
        "# TYPE kenning_llm_cost_usd_total counter",
        "kenning_cache_operations_total{cache=\"answers\",result=\"hit\"}",
        "kenning_embed_requests_total{lane=\"ingest\"}",
        "kenning_vector_search_duration_seconds_bucket{backend=",
        // One series per state, 1 for the one the breaker is in.
        "kenning_circuit_breaker_state{provider=\"extractive\",state=\"closed\"} 1",
        "kenning_circuit_breaker_state{provider=\"extractive\",state=\"open\"} 0",
        "kenning_circuit_breaker_state{provider=\"extractive\",state=\"half_open\"} 0",
        "kenning_ingest_jobs{state=\"done\"}",
        "kenning_ingest_queue_wait_seconds_bucket",
        "kenning_build_info{version=\"",
        // The standard process families, under their standard names.
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
        // Every metadata store call is counted, by operation.
        "kenning_db_queries_total{operation=\"get_space\"}",
        "kenning_db_queries_total{operation=\"insert_document\"}",
        "kenning_db_queries_total{operation=\"claim_job\"}",
        "kenning_db_query_duration_seconds_bucket{operation=\"claim_job\"",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
    // Keyword search is the metadata store's on PostgreSQL (Qdrant Edge keeps its own index).
    if matches!(backend, Backend::Postgres) {
        let needle = "kenning_db_query_duration_seconds_bucket{operation=\"keyword_search\"";
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
    // Raw ids never become labels.
    assert!(!text.contains(&space), "a space id leaked into a label");
}

async fn the_dashboard_snapshot_has_history_routes_caches_breakers_and_jobs(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..5 {
        app.get("/api/v1/spaces").await;
    }
    // The series ends at the last complete second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, s) = app.get_json("/api/v1/metrics/snapshot").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["window_seconds"], 120);
    assert_eq!(s["points"].as_array().unwrap().len(), 119);
    let recent: u64 = s["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert!(recent >= 5, "{recent}");
    assert!(s["last_minute"]["requests_per_second"].as_f64().unwrap() > 0.0);
    let spaces = s["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/v1/spaces" && r["method"] == "GET")
        .expect("the spaces route is listed");
    assert!(spaces["count"].as_u64().unwrap() >= 5);
    assert_eq!(s["breakers"][0]["name"], "extractive");
    assert_eq!(s["breakers"][0]["state"], "closed");
    assert!(s["jobs"]["queued"].is_i64());
    assert!(s["memory_bytes"].as_u64().unwrap() > 0);
    assert!(
        s["last_minute"]["db_p95_ms"].as_f64().is_some(),
        "database latency is in the window: {}",
        s["last_minute"]
    );

    // The dashboard page renders the same data on the server.
    let html = app.get("/metrics/dashboard").await.text().await.unwrap();
    assert!(html.contains("Latency p50 / p95 / p99"));
    assert!(html.contains("Database p95"));
    assert!(html.contains("/api/v1/spaces"));
    assert!(html.contains("<svg"));
}

/// The exposition (of this whole test process, so of every kind of traffic the suite makes)
/// passes `promtool check metrics`, and every metric family it holds is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_passes_promtool_and_every_metric_is_documented() {
    use std::io::Write;
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        crate::helpers::Options {
            serve: Box::new(|c| c.limits.rate_limit_search = "1/min".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    let space = app.create_space("Linted").await;
    let (_, doc) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nTwenty-five days.\n".to_vec(),
        )
        .await;
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    app.ask(&space, json!({ "question": "How many days?" }))
        .await;
    for _ in 0..2 {
        app.post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": "days" }),
        )
        .await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("kenning_rate_limited_total{class=\"search\"}"));

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (scripts/setup-services.sh installs Debian's prometheus)",
        );
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && problems.trim().is_empty(),
        "promtool: {problems}"
    );

    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/OPERATIONS.md"
    ))
    .unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() >= 15, "{families:?}");
    for family in &families {
        assert!(
            family.starts_with("kenning_") || family.starts_with("process_"),
            "{family} is neither Kenning's own nor a standard process family"
        );
    }
    for family in families {
        assert!(
            docs.contains(&format!("`{family}`")),
            "{family} is not documented in docs/OPERATIONS.md"
        );
    }
}
