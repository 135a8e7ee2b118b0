use crate::helpers::{spawn_app, spawn_app_with, Backend, Options};

on_both_backends!(
    health_reports_each_dependency_healthy,
    liveness_and_readiness_answer,
);

async fn health_reports_each_dependency_healthy(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, report) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "healthy");
    let checks = report["checks"].as_array().expect("checks");
    let store = checks
        .iter()
        .find(|c| c["name"] == "metadata_store")
        .expect("store check");
    let expected = match backend {
        Backend::Sqlite | Backend::Qdrant | Backend::Embedded => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(store["kind"], expected);
    assert_eq!(store["status"], "healthy");
    assert!(store["latency_ms"].as_f64().is_some());
    assert!(checks
        .iter()
        .any(|c| c["name"] == "data_dir" && c["status"] == "healthy"));
}

async fn liveness_and_readiness_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = app.get_json("/health/liveness").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("alive")));
    let (status, body) = app.get_json("/health/readiness").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let r = app.get("/health/liveness").await;
    assert!(
        r.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
}

/// From the moment shutdown begins, readiness says 503 while requests are still answered for
/// the drain period; then the listener closes.
#[tokio::test]
async fn readiness_turns_503_as_soon_as_shutdown_begins_while_requests_drain() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(|c| c.drain_secs = 2),
            ..Options::default()
        },
    )
    .await;
    let (status, _) = app.get_json("/health/readiness").await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let server = app.begin_shutdown();
    let deadline = started + std::time::Duration::from_secs(1);
    let body = loop {
        let (status, body) = app.get_json("/health/readiness").await;
        if status == 503 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "draining");
    // Still serving meanwhile.
    let (status, _) = app.get_json("/api/v1/spaces").await;
    assert_eq!(status, 200);
    server.await.unwrap().expect("server stopped cleanly");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "the listener stayed open for the drain period"
    );
}
