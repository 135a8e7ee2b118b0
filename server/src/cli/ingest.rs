//! `kenning ingest <path> --space <name>`: uploads a file or a folder's files into a space
//! through the same service as the API, runs workers in this process until every accepted
//! document is ready or failed, and shows progress bars and a summary. With `--url` the files
//! go through a running Kenning's API instead (whose workers index them), for a data directory
//! that server holds.

use crate::config::IngestCommand;
use crate::domain::SpaceId;
use crate::error::ServiceError;
use crate::retrieve::Retriever;
use crate::service::Service;
use crate::startup::{spawn_workers, Engine};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kenning_api::Document;
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
    /// Documents deleted by `--sync` because their file is gone.
    pub deleted: usize,
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
            "{} file(s): {} ready ({} passages), {} already present, {} deleted, {} skipped, {} failed in {:.1} s",
            self.files,
            self.ready,
            self.passages,
            self.duplicates,
            self.deleted,
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

/// A file's key: its path below the folder being ingested (`/`-separated), or its name when a
/// single file is ingested, so ingesting the folder again replaces each changed file's document.
pub fn key_of(root: &Path, file: &Path) -> String {
    let relative = file
        .strip_prefix(root)
        .ok()
        .filter(|r| !r.as_os_str().is_empty());
    match relative {
        Some(r) => r
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Where a bulk ingestion sends its files: the data directory opened in this process, with
/// workers of its own, or a running Kenning's API.
enum Target {
    Local {
        /// Boxed: the service is large beside the remote client.
        service: Box<Service>,
        space_id: SpaceId,
        stop: CancellationToken,
        workers: Vec<tokio::task::JoinHandle<()>>,
    },
    Remote(Remote),
}

/// What became of one file's upload.
enum Uploaded {
    /// Accepted as a new document, with its id.
    New(String),
    /// The space already holds the same content, in this document.
    Duplicate(String),
}

impl Target {
    async fn open(cmd: &IngestCommand) -> anyhow::Result<Self> {
        if let Some(url) = &cmd.url {
            return Ok(Self::Remote(
                Remote::connect(url, cmd.api_key.as_ref(), &cmd.space).await?,
            ));
        }
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
        Ok(Self::Local {
            service: Box::new(service),
            space_id,
            stop,
            workers,
        })
    }

    /// Uploads one file under its key; `Err` is why it was refused.
    async fn upload(&self, path: &Path, key: &str) -> Result<Uploaded, String> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        match self {
            Self::Local {
                service, space_id, ..
            } => {
                let u = service
                    .upload_document(
                        *space_id,
                        name.as_deref(),
                        None,
                        crate::service::Origin {
                            key: Some(key.to_string()),
                            ..Default::default()
                        },
                        tokio_util::io::ReaderStream::new(file),
                    )
                    .await
                    .map_err(|e| match e {
                        ServiceError::Internal(_) => e.to_detail().message,
                        other => other.to_string(),
                    })?;
                Ok(if u.created {
                    Uploaded::New(u.document.id)
                } else {
                    Uploaded::Duplicate(u.document.id)
                })
            }
            Self::Remote(r) => r.upload(name.unwrap_or_default(), key, file).await,
        }
    }

    /// A document's state on its way into the index.
    async fn document(&self, id: &str) -> anyhow::Result<Document> {
        match self {
            Self::Local {
                service, space_id, ..
            } => service
                .get_document(*space_id, id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Self::Remote(r) => r.document(id).await,
        }
    }

    /// Every document of the space, page by page.
    async fn all_documents(&self) -> anyhow::Result<Vec<Document>> {
        let mut all = Vec::new();
        loop {
            let offset = all.len() as i64;
            let page = match self {
                Self::Local {
                    service, space_id, ..
                } => {
                    let page = crate::domain::PageRequest::parse(Some(200), Some(offset))
                        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                    service
                        .list_documents(*space_id, page)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                }
                Self::Remote(r) => r.documents(offset).await?,
            };
            let done = page.items.is_empty();
            all.extend(page.items);
            if done || all.len() as i64 >= page.total {
                return Ok(all);
            }
        }
    }

    /// Deletes one document.
    async fn delete(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Self::Local {
                service, space_id, ..
            } => service
                .delete_document(*space_id, id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Self::Remote(r) => r.delete(id).await,
        }
    }

    /// Stops this process's workers once every document has settled.
    async fn finish(self) {
        if let Self::Local { stop, workers, .. } = self {
            stop.cancel();
            for w in workers {
                let _ = w.await;
            }
        }
    }
}

/// A running Kenning's API, for `kenning ingest --url`.
struct Remote {
    http: reqwest::Client,
    base: String,
    space_id: String,
}

impl Remote {
    /// Connects with the API key, if any, and finds the space by name or creates it.
    async fn connect(
        url: &str,
        token: Option<&secrecy::SecretString>,
        space: &str,
    ) -> anyhow::Result<Self> {
        let http = crate::api_client::client(token, Duration::from_secs(REMOTE_TIMEOUT_SECS))?;
        let mut remote = Self {
            http,
            base: url.trim_end_matches('/').to_string(),
            space_id: String::new(),
        };
        remote.space_id = remote.find_or_create_space(space).await?;
        Ok(remote)
    }

    async fn ok(r: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        crate::api_client::ok(r).await
    }

    async fn find_or_create_space(&self, name: &str) -> anyhow::Result<String> {
        let mut offset = 0;
        loop {
            let page: kenning_api::Page<kenning_api::Space> = Self::ok(
                self.http
                    .get(format!("{}/api/v1/spaces", self.base))
                    .query(&[("limit", "100"), ("offset", &offset.to_string())])
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("no Kenning answers at {}: {e}", self.base))?,
            )
            .await
            .map_err(|e| anyhow::anyhow!("listing spaces at {}: {e}", self.base))?
            .json()
            .await?;
            if let Some(s) = page.items.iter().find(|s| s.name == name) {
                return Ok(s.id.clone());
            }
            offset += page.items.len() as i64;
            if page.items.is_empty() || offset >= page.total {
                break;
            }
        }
        let space: kenning_api::Space = Self::ok(
            self.http
                .post(format!("{}/api/v1/spaces", self.base))
                .json(&serde_json::json!({ "name": name, "description": "" }))
                .send()
                .await?,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating space {name:?}: {e}"))?
        .json()
        .await?;
        Ok(space.id)
    }

    async fn upload(
        &self,
        name: String,
        key: &str,
        file: tokio::fs::File,
    ) -> Result<Uploaded, String> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::stream(body).file_name(name),
        );
        let sent = self
            .http
            .post(format!(
                "{}/api/v1/spaces/{}/documents",
                self.base, self.space_id
            ))
            .query(&[("key", key)])
            .multipart(form)
            .send()
            .await
            .map_err(|e| format!("upload failed: {e}"))?;
        let status = sent.status();
        let doc: Document = Self::ok(sent)
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("unreadable answer: {e}"))?;
        Ok(if status == reqwest::StatusCode::ACCEPTED {
            Uploaded::New(doc.id)
        } else {
            Uploaded::Duplicate(doc.id)
        })
    }

    async fn documents(&self, offset: i64) -> anyhow::Result<kenning_api::Page<Document>> {
        Ok(Self::ok(
            self.http
                .get(format!(
                    "{}/api/v1/spaces/{}/documents",
                    self.base, self.space_id
                ))
                .query(&[("limit", "200"), ("offset", &offset.to_string())])
                .send()
                .await?,
        )
        .await?
        .json()
        .await?)
    }

    async fn delete(&self, id: &str) -> anyhow::Result<()> {
        Self::ok(
            self.http
                .delete(format!(
                    "{}/api/v1/spaces/{}/documents/{id}",
                    self.base, self.space_id
                ))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    async fn document(&self, id: &str) -> anyhow::Result<Document> {
        Ok(Self::ok(
            self.http
                .get(format!(
                    "{}/api/v1/spaces/{}/documents/{id}",
                    self.base, self.space_id
                ))
                .send()
                .await?,
        )
        .await?
        .json()
        .await?)
    }
}

/// Failed looks in a row at one document's progress before it is reported as failed.
const MAX_MISSED_LOOKS: u32 = 5;

/// Files uploaded at once: enough to overlap network and disk, few enough to stay polite.
const UPLOADS_AT_ONCE: usize = 4;

/// Longest wait for one request to a running Kenning (an upload of the largest file included).
const REMOTE_TIMEOUT_SECS: u64 = 300;

/// Runs a bulk ingestion; `show_progress` draws bars on stderr.
pub async fn run(cmd: &IngestCommand, show_progress: bool) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let files = collect_files(&cmd.path)?;
    let target = Target::open(cmd).await?;

    let bar = |len: usize, msg: &'static str| {
        let b = ProgressBar::new(len as u64).with_message(msg);
        let b = if show_progress {
            crate::telemetry::bars().add(b)
        } else {
            b.set_draw_target(ProgressDrawTarget::hidden());
            b
        };
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
    let keys: Vec<String> = files.iter().map(|p| key_of(&cmd.path, p)).collect();
    // Documents a file here maps to, new or already there with the same bytes.
    let mut kept = std::collections::HashSet::new();
    let mut uploads = futures::stream::iter(files.iter().zip(&keys))
        .map(|(path, key)| {
            let target = &target;
            async move { (path, target.upload(path, key).await) }
        })
        .buffer_unordered(UPLOADS_AT_ONCE);
    while let Some((path, outcome)) = uploads.next().await {
        match outcome {
            Ok(Uploaded::New(id)) => {
                kept.insert(id.clone());
                accepted.push((path.clone(), id));
            }
            Ok(Uploaded::Duplicate(id)) => {
                summary.duplicates += 1;
                kept.insert(id);
            }
            Err(why) => summary.skipped.push((path.clone(), why)),
        }
        uploading.inc(1);
    }
    drop(uploads);
    uploading.finish();

    if cmd.sync {
        // The space mirrors the folder: what no file here is keyed by any more goes, except
        // documents a server-side source brought, which that source keeps.
        let here: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
        for doc in target.all_documents().await? {
            let key = doc.source_key.as_deref().unwrap_or(&doc.filename);
            if doc.source_id.is_none() && !here.contains(key) && !kept.contains(&doc.id) {
                match target.delete(&doc.id).await {
                    Ok(()) => summary.deleted += 1,
                    Err(e) => summary
                        .skipped
                        .push((PathBuf::from(key), format!("could not delete: {e:#}"))),
                }
            }
        }
    }

    let indexing = bar(accepted.len(), "indexing");
    let mut waiting: Vec<(PathBuf, String, u32)> =
        accepted.into_iter().map(|(p, id)| (p, id, 0)).collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (path, id, misses) in waiting {
            // A look that fails (a timeout, a busy server) is tried again; a document that
            // cannot be read several times in a row is reported with the reason, not waited on.
            let doc = match target.document(&id).await {
                Ok(doc) => doc,
                Err(e) if misses + 1 >= MAX_MISSED_LOOKS => {
                    summary
                        .failed
                        .push((path, format!("its progress could not be read: {e:#}")));
                    indexing.inc(1);
                    continue;
                }
                Err(_) => {
                    still.push((path, id, misses + 1));
                    continue;
                }
            };
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
                    still.push((path, id, 0));
                }
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    indexing.finish_with_message("");
    target.finish().await;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn find_or_create_space(service: &Service, name: &str) -> anyhow::Result<SpaceId> {
    let space = match service.find_space(name).await {
        Ok(space) => space,
        Err(crate::error::ServiceError::NotFound(_)) => service
            .create_space(None, name, "")
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.to_detail().message))?,
        Err(e) => anyhow::bail!("{}", e.to_detail().message),
    };
    Service::space_id(&space.id).map_err(|e| anyhow::anyhow!("{}", e.to_detail().message))
}
