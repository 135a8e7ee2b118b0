//! Ingestion end to end: formats, passages with offsets and headings, failures with reasons,
//! leases that outlive their workers, retries, and nothing left behind.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend, Options, TestApp};
use kenning::store::{self, NewChunk};
use std::io::Write;
use std::time::Duration;

on_both_backends!(
    a_markdown_document_becomes_ready_with_passages_that_point_at_its_text,
    every_supported_format_is_ingested,
    a_damaged_pdf_fails_at_once_with_a_reason_and_leaves_no_passages,
    a_job_whose_worker_died_is_taken_over_when_its_lease_expires,
    passing_failures_are_retried_until_the_attempts_run_out,
    deleting_a_document_removes_its_passages,
    unknown_jobs_and_documents_are_404,
);

const HANDBOOK: &str = "# Handbook\n\nWelcome! This handbook explains how we work.\n\n## Leave\n\n\
Everyone gets 25 days of paid leave per year, plus public holidays. Ask your lead two weeks ahead.\n\n\
## Equipment\n\nLaptops are ordered on day one. Returns go to the office manager — ünïcödé is fine.\n";

async fn upload_and_wait(
    app: &TestApp,
    space: &str,
    name: &str,
    bytes: Vec<u8>,
) -> serde_json::Value {
    let (status, doc) = app.upload(space, name, bytes).await;
    assert_eq!(status, 202, "{doc}");
    app.wait_for_ingestion(space, doc["id"].as_str().unwrap())
        .await
}

async fn a_markdown_document_becomes_ready_with_passages_that_point_at_its_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Handbook").await;
    let doc = upload_and_wait(&app, &space, "handbook.md", HANDBOOK.as_bytes().to_vec()).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["phase"], "done");
    assert_eq!(doc["progress"], 1.0);
    let count = doc["chunk_count"].as_i64().unwrap();
    assert!(count >= 1);

    let id = doc["id"].as_str().unwrap();
    let (status, page) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/documents/{id}/chunks?limit=200"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], count);
    let chars: Vec<char> = HANDBOOK.chars().collect();
    for (i, chunk) in page["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(chunk["position"], i as i64);
        let (start, end) = (
            chunk["char_start"].as_u64().unwrap() as usize,
            chunk["char_end"].as_u64().unwrap() as usize,
        );
        let slice: String = chars[start..end].iter().collect();
        assert_eq!(
            slice,
            chunk["text"].as_str().unwrap(),
            "offsets of chunk {i}"
        );
        assert!(chunk["token_count"].as_i64().unwrap() <= 256);
        assert!(chunk["heading_path"]
            .as_str()
            .unwrap()
            .starts_with("Handbook"));
    }

    let (_, job) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/jobs/{}",
            doc["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job["status"], "done");
    assert_eq!(job["attempts"], 1);
}

async fn every_supported_format_is_ingested(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Formats").await;
    let docx = docx(&[
        ("Heading1", "Travel policy"),
        ("", "Book trains for trips under four hours."),
    ]);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "notes.txt",
            b"Plain words about invoices.".to_vec(),
            "text/plain",
            "invoices",
        ),
        (
            "page.html",
            b"<!doctype html><html><body><h1>Office</h1><p>Doors open at eight.</p></body></html>"
                .to_vec(),
            "text/html",
            "Doors open at eight",
        ),
        (
            "table.csv",
            b"name,role\nAda,engineer\n".to_vec(),
            "text/csv",
            "Ada,engineer",
        ),
        (
            "data.json",
            br#"{"city":"Lisbon","rooms":[1,2]}"#.to_vec(),
            "application/json",
            "Lisbon",
        ),
        (
            "policy.docx",
            docx,
            kenning::ingest::parse::DOCX_MIME,
            "Book trains",
        ),
        (
            "scan.pdf",
            minimal_pdf("Quarterly revenue grew"),
            "application/pdf",
            "revenue",
        ),
    ];
    for (name, bytes, mime, needle) in cases {
        let doc = upload_and_wait(&app, &space, name, bytes).await;
        assert_eq!(doc["status"], "ready", "{name}: {doc}");
        assert_eq!(doc["mime"], mime, "{name}");
        let id = doc["id"].as_str().unwrap();
        let (_, page) = app
            .get_json(&format!("/api/v1/spaces/{space}/documents/{id}/chunks"))
            .await;
        let text: String = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap())
            .collect();
        assert!(text.contains(needle), "{name}: {text:?}");
        if name == "policy.docx" {
            assert_eq!(page["items"][0]["heading_path"], "Travel policy");
        }
    }
}

async fn a_damaged_pdf_fails_at_once_with_a_reason_and_leaves_no_passages(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Broken").await;
    let doc = upload_and_wait(
        &app,
        &space,
        "broken.pdf",
        b"%PDF-1.7\nthis is not really a PDF".to_vec(),
    )
    .await;
    assert_eq!(doc["status"], "failed");
    assert!(doc["error"].as_str().unwrap().contains("PDF"), "{doc}");
    assert_eq!(doc["chunk_count"], 0);
    let id = doc["id"].as_str().unwrap();
    let (_, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents/{id}/chunks"))
        .await;
    assert_eq!(page["total"], 0);
    let (_, job) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/jobs/{}",
            doc["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job["status"], "failed");
    assert_eq!(
        job["attempts"], 1,
        "a file that cannot be parsed is not retried"
    );
}

async fn a_job_whose_worker_died_is_taken_over_when_its_lease_expires(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            workers: 0,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Leases").await;
    let (status, doc) = app
        .upload(&space, "a.md", b"# A\n\nSome text.".to_vec())
        .await;
    assert_eq!(status, 202);
    let store = store::connect(&app.store_config).await.unwrap();

    let lease = Duration::from_millis(300);
    let first = store
        .claim_job("worker-a", lease)
        .await
        .unwrap()
        .expect("a queued job");
    assert_eq!(first.attempts, 1);
    assert_eq!(first.document_id.to_string(), doc["id"].as_str().unwrap());
    assert!(
        store.claim_job("worker-b", lease).await.unwrap().is_none(),
        "a leased job is not handed out twice"
    );

    // worker-a "dies": it never renews. Once the lease runs out, worker-b gets the job.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = store
        .claim_job("worker-b", lease * 10)
        .await
        .unwrap()
        .expect("expired lease is reclaimed");
    assert_eq!(second.job_id, first.job_id);
    assert_eq!(second.attempts, 2);
    assert!(!store
        .renew_lease(first.job_id, "worker-a", lease)
        .await
        .unwrap());

    let chunk = NewChunk {
        id: uuid::Uuid::now_v7(),
        position: 0,
        text: "Some text.".into(),
        heading_path: "A".into(),
        char_start: 5,
        char_end: 15,
        token_count: 3,
    };
    assert!(
        store
            .complete_job(&first, "worker-a", std::slice::from_ref(&chunk))
            .await
            .unwrap()
            .is_none(),
        "the old owner cannot complete"
    );
    assert!(store
        .complete_job(&second, "worker-b", &[chunk])
        .await
        .unwrap()
        .is_some());
    let doc = app
        .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    assert_eq!(doc["status"], "ready");
    assert_eq!(
        doc["chunk_count"], 1,
        "exactly one set of passages, no duplicates"
    );
}

async fn passing_failures_are_retried_until_the_attempts_run_out(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            workers: 0,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Retries").await;
    let (_, doc) = app.upload(&space, "a.md", b"# A\n\ntext".to_vec()).await;
    let store = store::connect(&app.store_config).await.unwrap();
    let lease = Duration::from_secs(30);

    let job = store.claim_job("w", lease).await.unwrap().unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(3600);
    store
        .fail_job(&job, "w", "disk hiccup", Some(later))
        .await
        .unwrap();
    assert!(
        store.claim_job("w", lease).await.unwrap().is_none(),
        "not due before its backoff"
    );
    let (_, d) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/documents/{}",
            doc["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["error"], "disk hiccup");

    // Due now: taken again, and this time it fails for good.
    let now = chrono::Utc::now() - chrono::Duration::seconds(1);
    let job_id = job.job_id;
    sqlx_force_due(&app, job_id, now).await;
    let again = store.claim_job("w", lease).await.unwrap().expect("due job");
    assert_eq!(again.attempts, 2);
    store
        .fail_job(&again, "w", "disk gone", None)
        .await
        .unwrap();
    let d = app
        .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error"], "disk gone");
    let (_, j) = app
        .get_json(&format!("/api/v1/spaces/{space}/jobs/{job_id}"))
        .await;
    assert_eq!(j["status"], "failed");
    assert_eq!(j["attempts"], 2);
    assert_eq!(j["last_error"], "disk gone");
}

/// Moves a job's retry time into the past, as if its backoff had elapsed.
async fn sqlx_force_due(app: &TestApp, job_id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) {
    use secrecy::ExposeSecret;
    match &app.store_config.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url.expose_secret()).await.unwrap();
            sqlx::query("UPDATE ingestion_jobs SET run_after = $1 WHERE id = $2")
                .bind(at)
                .bind(job_id)
                .execute(&pool)
                .await
                .unwrap();
        }
        None => {
            let path = app.store_config.data_dir.join("kenning.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query("UPDATE ingestion_jobs SET run_after = ? WHERE id = ?")
                .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .bind(job_id.to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

async fn deleting_a_document_removes_its_passages(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Cleanup").await;
    let doc = upload_and_wait(&app, &space, "handbook.md", HANDBOOK.as_bytes().to_vec()).await;
    let id = doc["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/spaces/{space}/documents/{id}"))
            .await
            .status(),
        204
    );
    let store = store::connect(&app.store_config).await.unwrap();
    let page = store
        .list_chunks(
            uuid::Uuid::parse_str(&space).unwrap(),
            uuid::Uuid::parse_str(id).unwrap(),
            kenning::domain::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 0, "no orphan passages");
}

async fn unknown_jobs_and_documents_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Empty").await;
    let missing = "0190f5a2-7c1e-7000-8000-000000000000";
    let (status, body) = app
        .get_json(&format!("/api/v1/spaces/{space}/jobs/{missing}"))
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "job_not_found");
    let (status, body) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents/{missing}"))
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "document_not_found");
    let (status, _) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/documents/{missing}/chunks"
        ))
        .await;
    assert_eq!(status, 404);
}

/// A DOCX holding the given (style, text) paragraphs.
fn docx(paragraphs: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::from(r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>"#);
    for (style, text) in paragraphs {
        body.push_str("<w:p>");
        if !style.is_empty() {
            body.push_str(&format!(r#"<w:pPr><w:pStyle w:val="{style}"/></w:pPr>"#));
        }
        body.push_str(&format!("<w:r><w:t>{text}</w:t></w:r></w:p>"));
    }
    body.push_str("</w:body></w:document>");
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    zip.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(body.as_bytes()).unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

/// A one-page PDF with a text layer, with a correct cross-reference table.
fn minimal_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Embeds by hashing words into eight buckets; its first call blocks the thread it runs on
/// until the test lets go, as a worker whose process stalls mid-job (and so stops renewing
/// its lease) would.
struct StallingEmbedder {
    gate: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl kenning::embed::Embedder for StallingEmbedder {
    fn model_id(&self) -> &str {
        "stall-test"
    }

    fn dimensions(&self) -> usize {
        8
    }

    async fn embed(
        &self,
        texts: Vec<String>,
        _lane: kenning::embed::Lane,
    ) -> Result<Vec<Vec<f32>>, kenning::embed::EmbedError> {
        let gate = self.gate.lock().expect("gate").take();
        if let Some(gate) = gate {
            self.stalled
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // Blocks the worker's whole (single-threaded) runtime, heartbeat included.
            let _ = gate.recv();
        }
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.01_f32; 8];
                for w in t.split_whitespace() {
                    v[w.len() % 8] += 1.0;
                }
                v
            })
            .collect())
    }
}

/// A worker that stalled past its lease and then finishes removes only the vectors it wrote:
/// the passages its successor indexed stay searchable.
#[tokio::test]
async fn a_worker_that_lost_its_lease_leaves_its_successors_vectors_alone() {
    use kenning::ingest::{chunk::Chunker, Indexing, Worker, WorkerSettings};
    use kenning::vector::{EdgeVectorStore, VectorQuery, VectorStore};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            workers: 0,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Stalls").await;
    let (status, doc) = app
        .upload(&space, "h.md", HANDBOOK.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202, "{doc}");
    let document: uuid::Uuid = doc["id"].as_str().unwrap().parse().unwrap();
    let space_id: uuid::Uuid = space.parse().unwrap();

    let store = store::connect(&app.store_config).await.unwrap();
    let vectors_dir = tempfile::tempdir().unwrap();
    let vectors: Arc<dyn VectorStore> = Arc::new(
        EdgeVectorStore::open(vectors_dir.path(), "stall-test", 8)
            .await
            .unwrap(),
    );
    let tokenizer = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/all-MiniLM-L6-v2/tokenizer.json");
    let chunker = Chunker::from_file(&tokenizer).unwrap();
    let settings = WorkerSettings {
        lease: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        embed_batch: 64,
        parse: kenning::ingest::isolate::ParseLimits::in_process(),
    };
    let (release, gate) = std::sync::mpsc::channel();
    let stalled = Arc::new(AtomicBool::new(false));
    let worker = |gate: Option<std::sync::mpsc::Receiver<()>>| {
        Worker::new(
            store.clone(),
            app.data_dir.clone(),
            chunker.clone(),
            Indexing {
                embedder: Arc::new(StallingEmbedder {
                    gate: std::sync::Mutex::new(gate),
                    stalled: stalled.clone(),
                }),
                vectors: Some(vectors.clone()),
            },
            settings.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
    };

    // The first worker, on a runtime of its own, takes the job and stalls while embedding.
    let first = worker(Some(gate));
    let stop_first = tokio_util::sync::CancellationToken::new();
    let first_thread = {
        let stop = stop_first.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(first.run(stop));
        })
    };
    for _ in 0..200 {
        if stalled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        stalled.load(Ordering::SeqCst),
        "the first worker took the job"
    );

    // Its lease runs out; a second worker takes the job over and finishes it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = worker(None);
    let stop_second = tokio_util::sync::CancellationToken::new();
    let second_task = tokio::spawn(second.run(stop_second.clone()));
    let mut ready = false;
    for _ in 0..400 {
        let (_, d) = app
            .get_json(&format!("/api/v1/spaces/{space}/documents/{document}"))
            .await;
        if d["status"] == "ready" {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the second worker finished the job");
    stop_second.cancel();
    second_task.await.unwrap();

    let indexed = || async {
        let mut ids: Vec<uuid::Uuid> = vectors
            .search(VectorQuery {
                space_id,
                vector: vec![1.0; 8],
                document_id: Some(document),
                limit: 1_000,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.chunk_id)
            .collect();
        ids.sort();
        ids
    };
    let successors = indexed().await;
    assert!(
        !successors.is_empty(),
        "the finished job indexed its passages"
    );

    // The first worker wakes up and finishes its stale attempt.
    release.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_first.cancel();
    tokio::task::spawn_blocking(move || first_thread.join())
        .await
        .unwrap()
        .expect("first worker thread");

    assert_eq!(
        indexed().await,
        successors,
        "the stale attempt removed only its own vectors, and left none behind"
    );
    let (_, d) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents/{document}"))
        .await;
    assert_eq!(d["status"], "ready", "{d}");
}
