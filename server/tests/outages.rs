//! Outages against the real `kenning` binary. PostgreSQL under load: a private PostgreSQL server
//! (Debian's PostgreSQL 15 binaries, its own data directory and port), so it can be crashed and
//! restarted without touching the shared test cluster; while the database is gone, requests fail
//! fast with a JSON error and `/health` says so, and when it is back the same process serves and
//! ingests again. A full disk: the data directory on a small tmpfs of its own.

#[path = "common/process.rs"]
mod process;

use process::spawn_until;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server of our own: `initdb` in a temporary directory, started on a free port.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    /// Runs a PostgreSQL tool as the `postgres` user when we are root (it refuses root).
    fn tool(&self, name: &str, args: &[&str]) -> std::process::ExitStatus {
        let exe = format!("{PG_BIN}/{name}");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &exe]);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("{exe}: {e} (scripts/setup-services.sh installs PostgreSQL 15)")
            })
    }

    fn init() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = Self { dir, port };
        let data = pg.data();
        let status = pg.tool(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "kenning",
                "--auth=trust",
                "--no-sync",
            ],
        );
        assert!(status.success(), "initdb failed");
        pg
    }

    fn start(&self) {
        let data = self.data();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let status = self.tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(status.success(), "pg_ctl start failed");
    }

    /// `immediate`: the way a crash or a killed container ends it, no checkpoint, no goodbye.
    fn crash(&self) {
        let data = self.data();
        let status = self.tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(status.success(), "pg_ctl stop failed");
    }

    fn url(&self) -> String {
        format!("postgres://kenning@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.tool(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Kenning {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Kenning {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_kenning(database_url: &str, data_dir: &Path) -> Kenning {
    start_kenning_with(data_dir, &[("DATABASE_URL", database_url)])
}

fn start_kenning_with(data_dir: &Path, env: &[(&str, &str)]) -> Kenning {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kenning"));
    cmd.arg("serve")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .env("DATA_DIR", data_dir)
        .env("KENNING_ADDR", "127.0.0.1:0")
        .env("KENNING_MODELS_DIR", models)
        .env("KENNING_SITE_ROOT", data_dir.join("site"))
        .env("KENNING_GENERATORS", "extractive")
        .env("KENNING_DB_ACQUIRE_TIMEOUT_MS", "1000")
        .env("KENNING_JOB_POLL_MS", "100")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let (child, url) = spawn_until(cmd, "Kenning is running at ");
    Kenning {
        child,
        url,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

impl Kenning {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => panic!("{path}: no response at all: {e}"),
        }
    }

    async fn upload(&self, space: &str, name: &str, text: &str) -> (u16, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::text(text.to_string()).file_name(name.to_string()),
        );
        let r = self
            .http
            .post(format!("{}/api/v1/spaces/{space}/documents", self.url))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_ready(&self, space: &str, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, doc) = self
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/spaces/{space}/documents/{id}"),
                    None,
                )
                .await;
            if status == 200 && doc["status"] == "ready" {
                return;
            }
            assert!(Instant::now() < deadline, "document never ready: {doc}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Each search of the load: when it started, its status, how long it took, its body.
type Seen = Arc<Mutex<Vec<(Instant, u16, Duration, Value)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_load_fails_fast_and_recovers() {
    let pg = PrivatePostgres::init();
    pg.start();
    let data = tempfile::tempdir().unwrap();
    let kenning = Arc::new(start_kenning(&pg.url(), data.path()));
    let (status, space) = kenning
        .send(
            reqwest::Method::POST,
            "/api/v1/spaces",
            Some(json!({ "name": "Outage" })),
        )
        .await;
    assert_eq!(status, 201, "{space}");
    let space = space["id"].as_str().unwrap().to_string();
    let (status, doc) = kenning
        .upload(
            &space,
            "leave.md",
            "# Leave\n\nTwenty-five days of paid vacation.\n",
        )
        .await;
    assert_eq!(status, 202, "{doc}");
    kenning
        .wait_ready(&space, doc["id"].as_str().unwrap())
        .await;

    // Load: searches in a loop, each outcome and duration recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let load = {
        let (k, stop, seen, space) = (kenning.clone(), stop.clone(), seen.clone(), space.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let (status, body) = k
                    .send(
                        reqwest::Method::POST,
                        &format!("/api/v1/spaces/{space}/search"),
                        // A new query each time: an answer from the result cache proves nothing.
                        Some(json!({ "query": format!("vacation {n}"), "mode": "keyword" })),
                    )
                    .await;
                seen.lock()
                    .unwrap()
                    .push((started, status, started.elapsed(), body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    pg.crash();
    let crashed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, health) = kenning.send(reqwest::Method::GET, "/health", None).await;
    assert_eq!(status, 503, "health while the database is down: {health}");
    assert_eq!(health["status"], "unhealthy");
    let (status, _) = kenning
        .send(reqwest::Method::GET, "/health/readiness", None)
        .await;
    assert_eq!(status, 503, "not ready without its database");
    // Accepting a document needs the database: refused with an error, never silently dropped.
    let (status, refused) = kenning
        .upload(&space, "lost.md", "# Lost\n\nNever accepted.\n")
        .await;
    assert!(status >= 500, "upload during the outage answered {status}");
    assert!(refused["error"]["code"].is_string(), "{refused}");

    let restarted_at = Instant::now();
    pg.start();
    let deadline = restarted_at + Duration::from_secs(20);
    loop {
        let (status, _) = kenning
            .send(reqwest::Method::GET, "/health/readiness", None)
            .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let during: Vec<_> = seen
        .iter()
        // Started after the crash and finished before the restart began (one that was still
        // waiting for a connection when the database came back may rightly succeed).
        .filter(|(at, _, took, _)| {
            *at > crashed_at + Duration::from_millis(200) && *at + *took < restarted_at
        })
        .collect();
    assert!(!during.is_empty(), "the load ran during the outage");
    for (at, status, took, body) in &during {
        assert!(
            *status >= 500,
            "a search {:?} into the outage answered {status}: {body}",
            at.duration_since(crashed_at)
        );
        assert!(body["error"]["code"].is_string(), "JSON error body: {body}");
        assert!(
            *took < Duration::from_secs(5),
            "a request waited {took:?} for a dead database"
        );
    }
    // Once ready again, every search succeeds: no stale connection is handed out.
    let after: Vec<_> = seen.iter().filter(|(at, ..)| *at > ready_at).collect();
    assert!(after.len() >= 5, "the load ran after the restart");
    for (_, status, _, body) in &after {
        assert_eq!(*status, 200, "a search after recovery failed: {body}");
    }

    // The same process accepts and ingests again.
    let (status, doc) = kenning
        .upload(&space, "back.md", "# Back\n\nThe database is back.\n")
        .await;
    assert_eq!(status, 202, "{doc}");
    kenning
        .wait_ready(&space, doc["id"].as_str().unwrap())
        .await;
}

/// A small filesystem of our own (tmpfs), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (CI and development machines run as root)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes `dir` read-only for every new open, or writable again. The kernel refuses to
    /// remount a file system read-only while files on it are open for writing (the database
    /// is), so a read-only bind mount is laid over `dir` instead: files opened before keep
    /// working, and everything opened through the path after gets `EROFS`.
    fn set_read_only(&self, dir: &Path, read_only: bool) {
        let run = |args: &[&str]| {
            let ok = Command::new(args[0])
                .args(&args[1..])
                .arg(dir)
                .status()
                .expect("mount")
                .success();
            assert!(ok, "{args:?} {}", dir.display());
        };
        if read_only {
            let dir = dir.to_str().expect("utf-8 path");
            run(&["mount", "--bind", dir]);
            run(&["mount", "-o", "remount,bind,ro"]);
        } else {
            run(&["umount"]);
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Files in the data directory's `tmp/`, where uploads stream before they are kept.
fn leftovers(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_uploads_with_507_and_recovers_when_space_is_freed() {
    let disk = SmallDisk::mount(24);
    let data = disk.path().join("data");
    // No ingestion: this test is about storing uploads, not about passages filling the database.
    let kenning = start_kenning_with(&data, &[("KENNING_INGEST_WORKERS", "0")]);
    let (status, space) = kenning
        .send(
            reqwest::Method::POST,
            "/api/v1/spaces",
            Some(json!({ "name": "Full" })),
        )
        .await;
    assert_eq!(status, 201, "{space}");
    let space = space["id"].as_str().unwrap().to_string();
    let big = |n: usize| format!("# File {n}\n\n{}", "plenty of words here ".repeat(700_000));

    let (status, first) = kenning.upload(&space, "one.md", &big(1)).await;
    assert_eq!(status, 202, "{first}");
    let (status, refused) = kenning.upload(&space, "two.md", &big(2)).await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(refused["error"]["code"], "insufficient_storage");
    assert_eq!(leftovers(&data), 0, "the partial upload was removed");
    let (_, docs) = kenning
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/spaces/{space}/documents"),
            None,
        )
        .await;
    assert_eq!(
        docs["total"], 1,
        "the refused upload left no document: {docs}"
    );
    let (status, _) = kenning
        .send(reqwest::Method::GET, "/health/readiness", None)
        .await;
    assert_eq!(status, 200, "still serving");

    // Deleting the first document frees its file; the same upload then fits.
    let (status, body) = kenning
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/spaces/{space}/documents/{}",
                first["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert!(status == 204 || status == 200, "{status} {body}");
    let (status, again) = kenning.upload(&space, "two.md", &big(2)).await;
    assert_eq!(status, 202, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_refuses_uploads_with_503_and_recovers() {
    let disk = SmallDisk::mount(64);
    let data = disk.path().join("data");
    let kenning = start_kenning_with(&data, &[("KENNING_INGEST_WORKERS", "0")]);
    let (status, space) = kenning
        .send(
            reqwest::Method::POST,
            "/api/v1/spaces",
            Some(json!({ "name": "Read-only" })),
        )
        .await;
    assert_eq!(status, 201, "{space}");
    let space = space["id"].as_str().unwrap().to_string();
    let (status, first) = kenning
        .upload(&space, "one.md", "# One\n\nWritten first.")
        .await;
    assert_eq!(status, 202, "{first}");

    // The data directory turns read-only under the running server (as after an I/O error).
    disk.set_read_only(&data, true);
    let (status, refused) = kenning
        .upload(&space, "two.md", "# Two\n\nRefused while read-only.")
        .await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "storage_read_only", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "the reason is given: {refused}"
    );

    disk.set_read_only(&data, false);
    assert_eq!(leftovers(&data), 0, "nothing half-written was left");
    let (_, docs) = kenning
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/spaces/{space}/documents"),
            None,
        )
        .await;
    assert_eq!(docs["total"], 1, "the refused upload left no row: {docs}");
    let (status, again) = kenning
        .upload(&space, "two.md", "# Two\n\nRefused while read-only.")
        .await;
    assert_eq!(status, 202, "accepted once writable again: {again}");
}
