use crate::helpers::{spawn_app, Backend};

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
