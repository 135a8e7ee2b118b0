//! Fault tests with real processes: the `kenning` binary is started, loaded, killed with SIGKILL
//! and started again on the same data, once on the embedded SQLite store and once on PostgreSQL
//! (`KENNING_TEST_POSTGRES_URL`, set by `scripts/test`). What was acknowledged must survive.

use serde_json::{json, Value};
use sqlx::Connection;

#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/process.rs"]
mod process;
#[path = "common/redis.rs"]
mod redis;
use postgres::fresh_postgres_database;
use process::spawn_until;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where one test's Kenning keeps its data; survives the processes started on it.
struct Site {
    dir: tempfile::TempDir,
    database_url: Option<String>,
    redis_url: Option<String>,
    /// `KENNING_VECTOR_STORE` for every process, when not the default.
    vector_store: Option<&'static str>,
}

impl Site {
    async fn new(backend: Backend) -> Self {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await),
        };
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url,
            redis_url: None,
            vector_store: None,
        }
    }

    /// Every process of this site keeps its vectors in `store` (`--vector-store`).
    fn with_vector_store(mut self, store: &'static str) -> Self {
        self.vector_store = Some(store);
        self
    }

    /// Every process of this site shares rate limits and caches through this Redis.
    fn with_redis(mut self, url: String) -> Self {
        self.redis_url = Some(url);
        self
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `kenning serve` on a free port and waits until it says where it listens.
    fn start(&self) -> Server {
        self.start_serving(1)
    }

    /// `kenning serve` with this many in-process ingestion workers (0: leave jobs to `kenning worker`).
    fn start_serving(&self, workers: usize) -> Server {
        self.start_serving_with(workers, &[])
    }

    /// `start_serving` with extra settings in the environment.
    fn start_serving_with(&self, workers: usize, env: &[(&str, &str)]) -> Server {
        let mut cmd = self.command("serve");
        cmd.envs(env.iter().copied());
        cmd.env("KENNING_ADDR", "127.0.0.1:0")
            .env("KENNING_SITE_ROOT", self.dir.path().join("site"))
            .env("KENNING_GENERATORS", "extractive")
            .env("KENNING_INGEST_WORKERS", workers.to_string());
        let (child, url) = spawn_until(cmd, "Kenning is running at ");
        Server {
            child,
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// A separate `kenning worker` process on this site's data, once it says it runs.
    fn start_worker(&self) -> WorkerProcess {
        let mut cmd = self.command("worker");
        cmd.env("KENNING_INGEST_WORKERS", "1");
        WorkerProcess(spawn_until(cmd, "Kenning worker running").0)
    }

    /// The binary with this site's data directory, database and test-friendly job timings.
    fn command(&self, subcommand: &str) -> Command {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kenning"));
        cmd.arg(subcommand)
            .env("DATA_DIR", self.data_dir())
            .env("KENNING_MODELS_DIR", models)
            .env("KENNING_JOB_LEASE_SECS", "3")
            .env("KENNING_JOB_POLL_MS", "100")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("DATABASE_URL", url);
        }
        if let Some(url) = &self.redis_url {
            cmd.env("REDIS_URL", url);
        }
        if let Some(store) = self.vector_store {
            cmd.env("KENNING_VECTOR_STORE", store);
        }
        cmd
    }
}

/// A `kenning worker` process, killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    /// SIGKILL, as for the server.
    fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Server {
    /// SIGKILL: no shutdown hook, no flush, no goodbye.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Creates a space and returns its id.
    async fn create_space(&self, name: &str) -> String {
        let (status, space) = self
            .json(
                reqwest::Method::POST,
                "/api/v1/spaces",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 201, "{space}");
        space["id"].as_str().expect("space id").to_string()
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The three counts [`index_counts`] takes on PostgreSQL, in its order.
const PG_COUNTS: [&str; 3] = [
    "SELECT COUNT(*) FROM chunks",
    "SELECT COUNT(*) FROM chunk_vectors",
    "SELECT COUNT(*) FROM chunk_vectors v WHERE NOT EXISTS \
     (SELECT 1 FROM chunks c WHERE c.id = v.chunk_id)",
];

/// The same counts on SQLite, where passage vectors are rows of the embedded points engine
/// (keyed by chunk id; these tests store no points of their own).
const SQLITE_COUNTS: [&str; 3] = [
    "SELECT COUNT(*) FROM chunks",
    "SELECT COUNT(*) FROM points",
    "SELECT COUNT(*) FROM points v WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = v.id)",
];

/// Runs the given counts on one open connection of either database.
macro_rules! count_on {
    ($conn:expr, $counts:expr) => {{
        let mut out = [0i64; 3];
        for (n, sql) in out.iter_mut().zip($counts) {
            *n = sqlx::query_scalar(sql)
                .fetch_one(&mut $conn)
                .await
                .expect(sql);
        }
        (out[0], out[1], out[2])
    }};
}

/// Counts rows straight from the store: chunks, vectors, and vectors without a chunk.
async fn index_counts(site: &Site) -> (i64, i64, i64) {
    match &site.database_url {
        None if site.vector_store == Some("embedded") => {
            let path = site.data_dir().join("kenning.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open sqlite");
            count_on!(c, SQLITE_COUNTS)
        }
        None => {
            let path = site.data_dir().join("kenning.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open sqlite");
            let chunks: Vec<String> = sqlx::query_scalar("SELECT id FROM chunks")
                .fetch_all(&mut c)
                .await
                .expect("chunk ids");
            let chunks: BTreeSet<String> = chunks.into_iter().collect();
            let vectors = edge_passage_ids(&site.data_dir().join("edge"));
            let orphans = vectors.iter().filter(|v| !chunks.contains(*v)).count();
            (chunks.len() as i64, vectors.len() as i64, orphans as i64)
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url)
                .await
                .expect("open postgres");
            count_on!(c, PG_COUNTS)
        }
    }
}

/// The ids of every passage vector in the Qdrant Edge shards under `root` (the points API's
/// shards aside), read straight from the shard files; every process on them must be stopped.
fn edge_passage_ids(root: &Path) -> Vec<String> {
    use qdrant_edge::{EdgeShard, PointId, ScrollRequestBuilder};
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(root).expect("edge directory") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "points") || !path.is_dir() {
            continue;
        }
        let shard = EdgeShard::load(&path, None).expect("open the shard");
        let mut offset = None;
        loop {
            let mut request = ScrollRequestBuilder::new().limit(1000);
            if let Some(o) = offset {
                request = request.offset(o);
            }
            let (records, next) = shard.scroll(request.build()).expect("scroll");
            ids.extend(records.into_iter().map(|r| match r.id {
                PointId::Uuid(u) => u.to_string(),
                other => panic!("a passage vector whose id is not a chunk id: {other}"),
            }));
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
    }
    ids
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$name(super::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$name(super::Backend::Postgres).await
                }
            }
        )*
    };
}

on_both_backends!(
    a_server_killed_mid_ingestion_loses_no_document,
    a_separate_worker_killed_mid_ingestion_loses_no_document,
    a_server_killed_mid_upsert_keeps_every_acknowledged_point,
);

const DOCUMENTS: usize = 200;

async fn a_server_killed_mid_ingestion_loses_no_document(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start();
    let space = server.create_space("Crash").await;
    let accepted = upload_notes(&server, &space).await;
    // Ingestion is under way (200 documents take several seconds to embed): kill it mid-flight.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ready_before = ready_count(&server, &space).await;
    server.kill_9();
    assert!(
        ready_before < DOCUMENTS,
        "the kill must land while documents are still being ingested"
    );

    let server = site.start();
    let docs = settled_documents(&server, &space).await;
    drop(server);
    assert_every_note_indexed_once(&site, &docs, &accepted).await;
}

/// Ingestion moved out to a `kenning worker` process: killing that process mid-job loses
/// nothing either; the next worker takes the abandoned jobs over when their leases expire.
async fn a_separate_worker_killed_mid_ingestion_loses_no_document(backend: Backend) {
    // Qdrant Edge, the default on SQLite, serves one process: a separate worker on SQLite
    // shares vectors through the embedded engine instead.
    let site = match backend {
        Backend::Sqlite => Site::new(backend).await.with_vector_store("embedded"),
        Backend::Postgres => Site::new(backend).await,
    };
    let server = site.start_serving(0);
    let space = server.create_space("Worker crash").await;
    let mut worker = site.start_worker();
    let accepted = upload_notes(&server, &space).await;
    // Wait until the worker has indexed some but not all, then kill it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = ready_count(&server, &space).await;
        if ready > 0 {
            worker.kill_9();
            assert!(
                ready < DOCUMENTS,
                "the kill must land while documents are still being ingested"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the worker indexed nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing moves while no worker runs: the server itself ingests nothing.
    let stalled = ready_count(&server, &space).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready_count(&server, &space).await, stalled);

    let worker = site.start_worker();
    let docs = settled_documents(&server, &space).await;
    drop(worker);
    drop(server);
    assert_every_note_indexed_once(&site, &docs, &accepted).await;
}

/// Documents of a space that are `ready`.
async fn ready_count(server: &Server, space: &str) -> usize {
    let (_, page) = server
        .json(
            reqwest::Method::GET,
            &format!("/api/v1/spaces/{space}/documents?limit=200"),
            None,
        )
        .await;
    page["items"]
        .as_array()
        .map(|items| items.iter().filter(|d| d["status"] == "ready").count())
        .unwrap_or(0)
}

/// Uploads [`DOCUMENTS`] small notes; returns the ids of those accepted (all, or the test fails).
async fn upload_notes(server: &Server, space: &str) -> BTreeSet<String> {
    let mut accepted = BTreeSet::new();
    for i in 0..DOCUMENTS {
        let text = format!(
            "# Note {i}\n\nDocument number {i} is about topic {} and nothing else.\n",
            i * 7919
        );
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::text(text).file_name(format!("note-{i}.md")),
        );
        let r = server
            .http
            .post(format!("{}/api/v1/spaces/{space}/documents", server.url))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 202, "upload {i}");
        let body: Value = r.json().await.expect("JSON");
        accepted.insert(body["id"].as_str().expect("document id").to_string());
    }
    accepted
}

/// Waits until every document of the space is `ready` or `failed`; returns them by id.
async fn settled_documents(server: &Server, space: &str) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut docs: BTreeMap<String, Value> = BTreeMap::new();
        let mut offset = 0;
        loop {
            let (status, page) = server
                .json(
                    reqwest::Method::GET,
                    &format!("/api/v1/spaces/{space}/documents?limit=200&offset={offset}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().expect("items").clone();
            offset += items.len();
            for d in items {
                let id = d["id"].as_str().expect("id").to_string();
                assert!(docs.insert(id, d).is_none(), "a document is listed twice");
            }
            if offset as i64 >= page["total"].as_i64().unwrap_or(0) {
                break;
            }
        }
        let settled = docs
            .values()
            .all(|d| matches!(d["status"].as_str(), Some("ready" | "failed")));
        if settled {
            return docs;
        }
        assert!(
            Instant::now() < deadline,
            "documents still not settled after restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Exactly the accepted documents, each ready, with its passages and their vectors stored once.
async fn assert_every_note_indexed_once(
    site: &Site,
    docs: &BTreeMap<String, Value>,
    accepted: &BTreeSet<String>,
) {
    let ids: BTreeSet<String> = docs.keys().cloned().collect();
    assert_eq!(
        &ids, accepted,
        "exactly the accepted documents, none lost, none duplicated"
    );
    let mut passages = 0;
    for d in docs.values() {
        assert_eq!(d["status"], "ready", "a plain note must not fail: {d}");
        let n = d["chunk_count"].as_i64().expect("chunk_count");
        assert!(n >= 1, "a ready document has passages: {d}");
        passages += n;
    }
    let (chunks, vectors, orphans) = index_counts(site).await;
    assert_eq!(
        chunks, passages,
        "the chunk table holds each ready document's passages once"
    );
    assert_eq!(vectors, chunks, "one vector per passage");
    assert_eq!(orphans, 0, "no vector without its passage");
}

/// `v` scaled to unit length.
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// The vector a point id is always written with, so a point read back can be checked whole.
fn vector_for(id: u64) -> Vec<f32> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1999) as f32 / 1000.0 - 1.0
        })
        .collect()
}

async fn a_server_killed_mid_upsert_keeps_every_acknowledged_point(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start();
    let space = server.create_space("Points").await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (client, acked) = (client.clone(), acked.clone());
            let url = format!("{}/api/v1/spaces/{space}/points", server.url);
            tokio::spawn(async move {
                for i in 0.. {
                    let first = (w * 1_000_000) + i * 5;
                    let points: Vec<Value> = (first..first + 5)
                        .map(|id| json!({ "id": id, "vector": vector_for(id), "payload": { "n": id } }))
                        .collect();
                    match client.put(&url).json(&json!({ "points": points })).send().await {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().expect("lock").extend(first..first + 5)
                        }
                        // The server is gone: the kill happened.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 100,
        "the load ran before the kill ({} acked)",
        acked.len()
    );

    let server = site.start();
    for id in &acked {
        let (status, point) = server
            .json(
                reqwest::Method::GET,
                &format!("/api/v1/spaces/{space}/points/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "acknowledged point {id} survives the kill");
        let got: Vec<f32> = serde_json::from_value(point["vector"].clone()).expect("vector");
        // Qdrant Edge keeps cosine vectors at unit length; compare directions, element by element.
        let (got, want) = (unit(&got), unit(&vector_for(*id)));
        assert_eq!(got.len(), want.len(), "point {id} is whole");
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5),
            "point {id} is whole: {got:?} vs {want:?}"
        );
        assert_eq!(point["payload"]["n"], json!(id));
    }
    // The batch each writer had in flight at the kill is all there or not there at all.
    for w in 0..4u64 {
        let next = acked
            .iter()
            .filter(|id| **id / 1_000_000 == w)
            .max()
            .map_or(w * 1_000_000, |last| last + 1);
        let mut present = 0;
        for id in next..next + 5 {
            let (status, _) = server
                .json(
                    reqwest::Method::GET,
                    &format!("/api/v1/spaces/{space}/points/{id}"),
                    None,
                )
                .await;
            present += usize::from(status == 200);
        }
        assert!(
            present == 0 || present == 5,
            "writer {w}'s last batch is half-applied ({present} of 5)"
        );
    }
    // The store still takes writes and finds what it holds.
    let probe = acked[acked.len() / 2];
    let (status, found) = server
        .json(
            reqwest::Method::POST,
            &format!("/api/v1/spaces/{space}/points/search"),
            Some(json!({ "vector": vector_for(probe), "limit": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let top = found["points"][0]["score"].as_f64().expect("score");
    assert!(top > 0.9999, "the point's own vector scores 1: {top}");
}

/// Scaled out: two `kenning serve` instances (running no workers) and one `kenning worker`, all
/// on one PostgreSQL and one Redis. A document uploaded through one instance is ingested by the
/// worker and answered through the other, and a client's rate limit is one allowance across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_a_worker_share_postgres_and_redis() {
    let redis = redis::TestRedis::start();
    let site = Site::new(Backend::Postgres).await.with_redis(redis.url());
    let limit = [("KENNING_RATE_LIMIT_SEARCH", "3/min")];
    let a = site.start_serving_with(0, &limit);
    let b = site.start_serving_with(0, &limit);
    let _worker = site.start_worker();
    assert_ne!(a.url, b.url);

    let space = a.create_space("Scaled").await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text(
            "# Leave\n\nEvery employee receives twenty-five days of paid vacation.\n",
        )
        .file_name("leave.md"),
    );
    let r = a
        .http
        .post(format!("{}/api/v1/spaces/{space}/documents", a.url))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 202);
    let doc: Value = r.json().await.expect("JSON");
    let path = format!(
        "/api/v1/spaces/{space}/documents/{}",
        doc["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, d) = b.json(reqwest::Method::GET, &path, None).await;
        if d["status"] == "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never ingested it: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let answer = b
        .http
        .post(format!("{}/api/v1/spaces/{space}/chat", b.url))
        .json(&json!({ "question": "How many vacation days?" }))
        .send()
        .await
        .expect("ask")
        .text()
        .await
        .expect("answer");
    assert!(answer.contains("event: done"), "{answer}");
    assert!(answer.contains("twenty-five"), "{answer}");

    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, report) = server.json(reqwest::Method::GET, "/health", None).await;
            let redis_ok = report["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "redis" && c["status"] == "healthy");
            if redis_ok {
                break;
            }
            assert!(Instant::now() < deadline, "never reached Redis: {report}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let search = |s: &Server| {
        let url = format!("{}/api/v1/spaces/{space}/search", s.url);
        let http = s.http.clone();
        async move {
            http.post(url)
                .json(&json!({ "query": "vacation" }))
                .send()
                .await
                .expect("search")
                .status()
                .as_u16()
        }
    };
    assert_eq!(search(&a).await, 200);
    assert_eq!(search(&b).await, 200);
    assert_eq!(search(&a).await, 200);
    assert_eq!(search(&b).await, 429, "one allowance across both instances");
    assert_eq!(search(&a).await, 429);
}

/// Embedding batches the server has run for ingestion, read from its own `/metrics` (this
/// process embeds for nobody else).
async fn ingest_embeddings(server: &Server) -> f64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("kenning_embed_requests_total") && l.contains("lane=\"ingest\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts a sync of a source and waits until the sync and the ingestion it queued are over.
async fn synced(server: &Server, space: &str, source: &str) -> Value {
    let (status, started) = server
        .json(
            reqwest::Method::POST,
            &format!("/api/v1/spaces/{space}/sources/{source}/sync"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, s) = server
            .json(
                reqwest::Method::GET,
                &format!("/api/v1/spaces/{space}/sources/{source}"),
                None,
            )
            .await;
        if s["status"] == "idle" {
            settled_documents(server, space).await;
            return s;
        }
        assert!(Instant::now() < deadline, "the sync did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_of_a_thousand_unchanged_files_embeds_nothing() {
    let site = Site::new(Backend::Sqlite).await;
    let folder = site.dir.path().join("notes");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..1000 {
        std::fs::write(
            folder.join(format!("note-{i:04}.md")),
            format!("# Note {i}\n\nNote {i} records decision number {i}.\n"),
        )
        .unwrap();
    }
    let root = folder.to_string_lossy().into_owned();
    let server = site.start_serving_with(1, &[("KENNING_SOURCE_ROOTS", root.as_str())]);
    let space = server.create_space("Thousand").await;
    let (status, source) = server
        .json(
            reqwest::Method::POST,
            &format!("/api/v1/spaces/{space}/sources"),
            Some(json!({ "kind": "folder", "location": root })),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source = source["id"].as_str().unwrap().to_string();
    let first = synced(&server, &space, &source).await;
    assert_eq!(first["last_result"]["added"], 1000, "{first}");
    let embedded = ingest_embeddings(&server).await;
    assert!(embedded >= 1.0, "the first sync embeds the notes");

    let again = synced(&server, &space, &source).await;
    assert_eq!(again["last_result"]["unchanged"], 1000, "{again}");
    assert_eq!(again["last_result"]["added"], 0, "{again}");
    assert_eq!(
        ingest_embeddings(&server).await,
        embedded,
        "an unchanged folder costs no embedding call"
    );
    let docs = settled_documents(&server, &space).await;
    assert_eq!(docs.len(), 1000);
    assert!(docs
        .values()
        .all(|d| d["status"] == "ready" && d["version"] == 1));
}
