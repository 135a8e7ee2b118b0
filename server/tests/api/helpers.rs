//! Starting a server for a test and talking to it.

use crate::postgres::fresh_postgres_database;
use kenning::config::{GenerateConfig, GeneratorKind, ServeConfig};
use kenning::startup::Application;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Which metadata store a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The defaults: SQLite metadata, passages and points in Qdrant Edge shards in the data
    /// directory.
    Sqlite,
    /// PostgreSQL metadata, passages and points in pgvector.
    Postgres,
    /// SQLite metadata, passages and points in the Qdrant at `QDRANT_URL`.
    Qdrant,
    /// SQLite metadata, passages and points in the embedded engine (`--vector-store embedded`).
    Embedded,
}

/// A running server with its own data directory (and database, on PostgreSQL).
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// Where this server's metadata lives, to open the same store directly.
    pub store_config: kenning::config::StoreConfig,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings a test may change before the server starts.
pub struct Options {
    pub max_upload_bytes: u64,
    pub job_lease_secs: u64,
    /// In-process ingestion workers; 0 leaves queued jobs alone for the test to drive.
    pub workers: usize,
    /// Changes to the answer settings; by default answers are extractive (fast, deterministic).
    pub generate: Box<dyn FnOnce(&mut GenerateConfig) + Send>,
    /// Points from which the embedded store builds a space a search graph.
    pub points_graph_min: usize,
    /// Any other change to the server's settings, applied last.
    pub serve: Box<dyn FnOnce(&mut ServeConfig) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_upload_bytes: 1024 * 1024,
            job_lease_secs: 30,
            workers: 1,
            generate: Box::new(|_| {}),
            points_graph_min: 20_000,
            serve: Box::new(|_| {}),
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = kenning::telemetry::init(kenning::config::LogFormat::Human, None);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(&dir);
    config.max_upload_bytes = options.max_upload_bytes;
    config.ingest.job_lease_secs = options.job_lease_secs;
    config.ingest.ingest_workers = options.workers;
    config.ingest.points_graph_min = options.points_graph_min;
    (options.generate)(&mut config.generate);
    (options.serve)(&mut config);
    match backend {
        Backend::Sqlite => {}
        Backend::Postgres => {
            config.store.database_url = Some(fresh_postgres_database().await.into());
        }
        Backend::Embedded => {
            config.ingest.vector_store = kenning::config::VectorBackend::Embedded;
        }
        Backend::Qdrant => {
            config.ingest.vector_store = kenning::config::VectorBackend::Qdrant;
            config.ingest.qdrant_url = Some(std::env::var("QDRANT_URL").expect("QDRANT_URL"));
            // Collections of this server's own: the Qdrant outlives every test server, and
            // single-user memories would otherwise meet across tests.
            config.ingest.qdrant_collection_prefix = format!(
                "kenning_api_test_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
        }
    }
    start(config, dir).await
}

/// The settings every test server starts from, with its files under `dir`.
fn base_config(dir: &tempfile::TempDir) -> ServeConfig {
    let mut config = ServeConfig::for_data_dir(dir.path().join("data"));
    config.site_root = dir.path().join("site");
    config.shutdown_grace_secs = 10;
    config.drain_secs = 0;
    config.ingest.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    config.ingest.job_poll_ms = 50;
    // Documents are read in a child process, as by the `kenning` binary.
    config.ingest.parse_program = Some(PathBuf::from(env!("CARGO_BIN_EXE_kenning")));
    config.generate.generators = vec![GeneratorKind::Extractive];
    config
}

async fn start(config: ServeConfig, dir: tempfile::TempDir) -> TestApp {
    let data_dir = config.store.data_dir.clone();
    let store_config = config.store.clone();
    let app = Application::build(config).await.expect("server builds");
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client"),
        data_dir,
        store_config,
        _dir: dir,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// One dependency's entry in `/health` (Null when it is not listed).
    pub async fn health_check(&self, name: &str) -> Value {
        let (_, report) = self.get_json("/health").await;
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        Self::status_and_json(self.get(path).await).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::status_and_json(
            self.client
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::status_and_json(
            self.client
                .put(self.url(path))
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::status_and_json(
            self.client
                .patch(self.url(path))
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Creates a space and returns its id.
    pub async fn create_space(&self, name: &str) -> String {
        let (status, body) = self
            .post_json("/api/v1/spaces", &json!({ "name": name }))
            .await;
        assert_eq!(status, 201, "creating space {name}: {body}");
        body["id"].as_str().expect("space id").to_string()
    }

    /// Uploads bytes as a multipart file and returns status and body.
    pub async fn upload(&self, space_id: &str, filename: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = Form::new().part("file", Part::bytes(bytes).file_name(filename.to_string()));
        let r = self
            .client
            .post(self.url(&format!("/api/v1/spaces/{space_id}/documents")))
            .multipart(form)
            .send()
            .await
            .expect("request");
        Self::status_and_json(r).await
    }

    /// Polls a document until its ingestion ends (`ready` or `failed`) and returns it.
    pub async fn wait_for_ingestion(&self, space_id: &str, document_id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, doc) = self
                .get_json(&format!(
                    "/api/v1/spaces/{space_id}/documents/{document_id}"
                ))
                .await;
            assert_eq!(status, 200, "{doc}");
            if doc["status"] == "ready" || doc["status"] == "failed" {
                return doc;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ingestion did not finish: {doc}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Files under the data directory's `documents/` and `tmp/`, to prove nothing was left behind.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.join("documents"), &mut out);
        walk(&self.data_dir.join("tmp"), &mut out);
        out
    }

    /// Stops this server and starts another on the same data directory and database, with
    /// `change` applied to the default test settings: a restart, e.g. with another model.
    pub async fn restart_with(mut self, change: impl FnOnce(&mut ServeConfig)) -> TestApp {
        self.begin_shutdown()
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        let mut config = base_config(&dir);
        config.store = self.store_config.clone();
        change(&mut config);
        start(config, dir).await
    }

    /// Asks the server to stop and returns its task, to await after the test's last request.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.take().expect("server still running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts an error response has the documented shape and the expected code.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "unexpected error body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

/// One Server-Sent Event: its name and JSON data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Splits an SSE body into events (comments and keep-alives skipped).
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            continue;
        }
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        out.push(SseEvent { event, data });
    }
    out
}

impl TestApp {
    /// Asks a space a question and returns the answer's events, checking the SSE framing.
    pub async fn ask(&self, space_id: &str, body: Value) -> Vec<SseEvent> {
        let r = self
            .client
            .post(self.url(&format!("/api/v1/spaces/{space_id}/chat")))
            .json(&body)
            .send()
            .await
            .expect("request");
        if r.status() != 200 {
            let status = r.status();
            panic!(
                "chat status {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        parse_sse(&r.text().await.expect("body"))
    }
}

/// The text of an answer: its token events joined.
pub fn answer_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap_or_default())
        .collect()
}

/// The one event named `name`, which must be there.
pub fn event<'a>(events: &'a [SseEvent], name: &str) -> &'a SseEvent {
    events
        .iter()
        .find(|e| e.event == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

/// Asserts a status and an error body with `code` and a message.
pub fn expect_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "unexpected status for {body}");
    assert_error(body, code);
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The `name=value` part of a response's session cookie.
pub fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kenning_session=") && !v.starts_with("kenning_session=;"))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// The password every test account is made with.
pub const PASSWORD: &str = "correct horse battery";

/// Creates the admin (`admin@example.org`) from this machine on a password-mode server and
/// returns its session cookie.
pub async fn admin_cookie(app: &TestApp) -> String {
    let r = no_redirects()
        .post(app.url("/api/v1/auth/setup"))
        .json(&json!({ "email": "admin@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    session_cookie(&r).expect("setup signs the admin in")
}

/// A new API key of the account signed in with `cookie`: the created key's JSON, and the key
/// as an `Authorization` value.
pub async fn new_key(app: &TestApp, cookie: &str) -> (Value, String) {
    let r = app
        .client
        .post(app.url("/api/v1/auth/keys"))
        .header(reqwest::header::COOKIE, cookie)
        .json(&json!({ "name": "tests" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let bearer = format!("Bearer {}", created["key"].as_str().unwrap());
    (created, bearer)
}
