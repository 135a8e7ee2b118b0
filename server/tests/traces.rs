//! OpenTelemetry traces: the real `kenning` binary, pointed at a stand-in OTLP/HTTP collector
//! (a real HTTP server receiving the protobuf export requests), sends the spans of a request,
//! tagged with the service name and the request id, and flushes them on SIGTERM.

#[path = "common/process.rs"]
mod process;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::routing::post;
use axum::Router;
use process::spawn_until;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP traces endpoint that keeps every export request's content type and body.
async fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Received>, headers: axum::http::HeaderMap, body: Bytes| async move {
                    let ct = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    r.lock().unwrap().push((ct, body));
                    // An empty ExportTraceServiceResponse: full success.
                    ([(header::CONTENT_TYPE, "application/x-protobuf")], Bytes::new())
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_exported_as_an_otlp_trace_with_its_request_id() {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kenning"));
    cmd.arg("serve")
        .env("DATA_DIR", dir.path().join("data"))
        .env("KENNING_ADDR", "127.0.0.1:0")
        .env("KENNING_MODELS_DIR", models)
        .env("KENNING_SITE_ROOT", dir.path().join("site"))
        .env("KENNING_GENERATORS", "extractive")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "kenning-trace-test")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let (mut child, url) =
        tokio::task::spawn_blocking(move || spawn_until(cmd, "Kenning is running at "))
            .await
            .unwrap();

    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/spaces"))
        .header("x-request-id", "trace-test-4242")
        .json(&serde_json::json!({ "name": "Traced" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // SIGTERM: the server drains and flushes the spans still buffered before exiting.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "kenning exited with {exit}");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = received.lock().unwrap().clone();
        let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        if contains(&all, "trace-test-4242") {
            assert!(got.iter().all(|(ct, _)| ct == "application/x-protobuf"));
            assert!(contains(&all, "kenning-trace-test"), "service.name missing");
            assert!(contains(&all, "request"), "the request span is missing");
            assert!(
                contains(&all, "/api/v1/spaces"),
                "the span's path is missing"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span with the request id reached the collector ({} exports)",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
