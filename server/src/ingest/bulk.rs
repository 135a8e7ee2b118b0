//! `kenning ingest <path> --space <name>`: uploads a file or a folder's files into a space
//! through the same service as the API, runs workers in this process until every accepted
//! document is ready or failed, and shows progress bars and a summary.

use crate::config::IngestCommand;
use crate::retrieve::Retriever;
use crate::service::{Service, ServiceError};
use crate::startup::{spawn_workers, Engine};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a bulk ingestion did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub ready: usize,
    pub duplicates: usize,
    pub passages: i64,
    /// Files refused at upload, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Documents whose ingestion failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} file(s): {} ready ({} passages), {} already present, {} skipped, {} failed in {:.1} s",
            self.files,
            self.ready,
            self.passages,
            self.duplicates,
            self.skipped.len(),
            self.failed.len(),
            self.elapsed.as_secs_f64()
        )?;
        for (path, why) in &self.skipped {
            writeln!(f, "  skipped {}: {why}", path.display())?;
        }
        for (path, why) in &self.failed {
            writeln!(f, "  failed  {}: {why}", path.display())?;
        }
        Ok(())
    }
}

/// Files under `path` (or `path` itself), skipping hidden files and folders, in a stable order.
pub fn collect_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(path)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    Ok(files)
}

/// Runs a bulk ingestion; `show_progress` draws bars on stderr.
pub async fn run(cmd: &IngestCommand, show_progress: bool) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let files = collect_files(&cmd.path)?;
    let engine = Engine::open(&cmd.store, &cmd.ingest).await?;
    tokio::fs::create_dir_all(&cmd.store.data_dir).await?;
    let wake = Arc::new(Notify::new());
    let service = Service::new(
        engine.store.clone(),
        engine.vectors.clone(),
        Arc::new(Retriever::new(
            engine.store.clone(),
            engine.vectors.clone(),
            engine.embedder.clone(),
            Default::default(),
        )),
        cmd.store.data_dir.clone(),
        cmd.max_upload_bytes,
        cmd.ingest.job_max_attempts,
        wake.clone(),
    );
    let space_id = find_or_create_space(&service, &cmd.space).await?;
    let stop = CancellationToken::new();
    let workers = spawn_workers(
        &engine,
        cmd.store.data_dir.clone(),
        &cmd.ingest,
        cmd.ingest.ingest_workers.max(1),
        wake,
        stop.clone(),
    )?;

    let bar = |len: usize, msg: &'static str| {
        let b = ProgressBar::new(len as u64).with_message(msg);
        if !show_progress {
            b.set_draw_target(ProgressDrawTarget::hidden());
        }
        b.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {pos}/{len} {wide_msg:.dim} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    };

    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    let mut accepted: Vec<(PathBuf, String)> = Vec::new();
    let uploading = bar(files.len(), "uploading");
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let result = match tokio::fs::File::open(path).await {
            Ok(file) => service
                .upload_document(
                    &space_id,
                    name.as_deref(),
                    None,
                    tokio_util::io::ReaderStream::new(file),
                )
                .await
                .map_err(|e| match e {
                    ServiceError::Internal(_) => e.to_detail().message,
                    other => other.to_string(),
                }),
            Err(e) => Err(format!("cannot read: {e}")),
        };
        match result {
            Ok(u) if u.created => accepted.push((path.clone(), u.document.id)),
            Ok(_) => summary.duplicates += 1,
            Err(why) => summary.skipped.push((path.clone(), why)),
        }
        uploading.inc(1);
    }
    uploading.finish();

    let indexing = bar(accepted.len(), "indexing");
    let mut waiting = accepted;
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (path, id) in waiting {
            let doc = service
                .get_document(&space_id, &id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match doc.status.as_str() {
                "ready" => {
                    summary.ready += 1;
                    summary.passages += doc.chunk_count;
                    indexing.inc(1);
                }
                "failed" => {
                    summary
                        .failed
                        .push((path, doc.error.unwrap_or_else(|| "unknown error".into())));
                    indexing.inc(1);
                }
                _ => {
                    indexing.set_message(format!(
                        "{} {}",
                        path.display(),
                        doc.phase.unwrap_or_default()
                    ));
                    still.push((path, id));
                }
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    indexing.finish_with_message("");
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn find_or_create_space(service: &Service, name: &str) -> anyhow::Result<String> {
    match service.find_space(name).await {
        Ok(space) => return Ok(space.id),
        Err(crate::service::ServiceError::NotFound(_)) => {}
        Err(e) => anyhow::bail!("{}", e.to_detail().message),
    }
    let space = service
        .create_space(None, name, "")
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.to_detail().message))?;
    Ok(space.id)
}
