//! Sources of a space and their syncs: a sync lists what the source holds now, reads only what
//! changed, queues it as the next version of its document (which replaces the old one once
//! indexed) and deletes the documents of what is gone.

use super::*;
use crate::sources::{folder, retry_after, web, SYNC_LEASE};
use crate::store::{NewSource, SourceEntry, SyncOutcome};
use kenning_api::{CreateSource, Source, SyncResult};
use std::collections::{HashMap, HashSet};

/// Reasons a sync result keeps, so one broken folder does not fill the database.
const MAX_ERRORS: usize = 10;

impl Service {
    /// Adds a source after checking it: folders only under the configured roots and only by an
    /// admin (they read the server's disk); URLs only `http`/`https`.
    pub async fn create_source(
        &self,
        space_id: SpaceId,
        req: &CreateSource,
        caller_is_admin: bool,
    ) -> Result<Source, ServiceError> {
        let space = self.existing_space(space_id).await?;
        let invalid = |code: &'static str, message: String| {
            ServiceError::Invalid(InvalidInput { code, message })
        };
        if let Some(m) = req.interval_minutes {
            if !(1..=10_080).contains(&m) {
                return Err(invalid(
                    "invalid_interval",
                    "interval_minutes must be between 1 and 10080 (a week).".into(),
                ));
            }
        }
        let max_pages = req.max_pages.unwrap_or(100);
        if !(1..=10_000).contains(&max_pages) {
            return Err(invalid(
                "invalid_max_pages",
                "max_pages must be between 1 and 10000.".into(),
            ));
        }
        let watch = req.watch.unwrap_or(false);
        if watch && req.kind != "folder" {
            return Err(invalid(
                "invalid_watch",
                "Only folder sources can be watched; give web sources an interval instead.".into(),
            ));
        }
        let location = match req.kind.as_str() {
            "folder" => {
                if !caller_is_admin {
                    return Err(ServiceError::Forbidden(
                        "Only admins may add folder sources: they read the server's disk.".into(),
                    ));
                }
                folder::resolve(&req.location, &self.sources.roots)
                    .map_err(|m| invalid("invalid_folder", m))?
                    .to_string_lossy()
                    .into_owned()
            }
            "url" | "site" => web::parse_url(&req.location)
                .map_err(|m| invalid("invalid_url", m))?
                .to_string(),
            other => {
                return Err(invalid(
                    "invalid_kind",
                    format!("kind must be folder, url or site, not {other:?}."),
                ))
            }
        };
        let new = NewSource {
            id: Uuid::now_v7(),
            space_id: space,
            kind: req.kind.clone(),
            location,
            interval_minutes: req.interval_minutes,
            watch,
            max_pages,
        };
        let created = self.store.create_source(&new).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                ServiceError::Conflict("The space already has this source.".into())
            }
            e => ServiceError::from_store(e, "space"),
        })?;
        self.sources_changed.notify_one();
        Ok(created)
    }

    /// A space's sources with their sync state.
    pub async fn list_sources(&self, space_id: SpaceId) -> Result<Vec<Source>, ServiceError> {
        let space = self.existing_space(space_id).await?;
        self.store
            .list_sources(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// One source.
    pub async fn get_source(
        &self,
        space_id: SpaceId,
        source_id: &str,
    ) -> Result<Source, ServiceError> {
        let (space, source) = Self::source_ids(space_id, source_id)?;
        self.store
            .get_source(space, source)
            .await
            .map_err(|e| ServiceError::from_store(e, "source"))
    }

    /// Deletes a source and every document it brought.
    pub async fn delete_source(
        &self,
        space_id: SpaceId,
        source_id: &str,
    ) -> Result<(), ServiceError> {
        let (space, source) = Self::source_ids(space_id, source_id)?;
        let gone = self
            .store
            .delete_source(space, source)
            .await
            .map_err(|e| ServiceError::from_store(e, "source"))?;
        crate::ingest::discard(self.vectors.as_ref(), &self.data_dir, space, &gone).await;
        self.sources_changed.notify_one();
        Ok(())
    }

    /// Notified when sources are added or deleted, so the scheduler looks again at once.
    pub fn sources_changed(&self) -> &Arc<Notify> {
        &self.sources_changed
    }

    /// The folders to watch, as (space, source, folder); those no longer under a root are left
    /// out (their syncs fail and say why).
    pub async fn watched_folders(&self) -> Vec<(Uuid, Uuid, PathBuf)> {
        match self.store.watched_sources().await {
            Ok(list) => list
                .into_iter()
                .filter_map(|(space, id, location)| {
                    folder::resolve(&location, &self.sources.roots)
                        .ok()
                        .map(|path| (space, id, path))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list the watched sources");
                Vec::new()
            }
        }
    }

    /// Syncs one source now in this task unless a sync of it is running; false when it was.
    pub async fn sync_if_idle(&self, space: Uuid, id: Uuid) -> bool {
        let Ok(source) = self.store.get_source(space, id).await else {
            return true;
        };
        match self.store.claim_sync(id, SYNC_LEASE).await {
            Ok(true) => {
                self.run_sync(space, source).await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a source's sync");
                false
            }
        }
    }

    /// Starts a sync in the background and answers at once with the source marked `syncing`;
    /// a sync of it already running is a `Conflict`.
    pub async fn start_sync(
        self: &Arc<Self>,
        space_id: SpaceId,
        source_id: &str,
    ) -> Result<Source, ServiceError> {
        let source = self.get_source(space_id, source_id).await?;
        let (space, id) = Self::source_ids(space_id, source_id)?;
        if !self
            .store
            .claim_sync(id, SYNC_LEASE)
            .await
            .map_err(|e| ServiceError::from_store(e, "source"))?
        {
            return Err(ServiceError::Conflict(
                "This source is being synced already; wait for that sync to finish.".into(),
            ));
        }
        let service = self.clone();
        tokio::spawn(async move { service.run_sync(space, source).await });
        self.store
            .get_source(space, id)
            .await
            .map_err(|e| ServiceError::from_store(e, "source"))
    }

    /// Syncs the sources whose schedule says so, one after another; the scheduler calls this.
    pub async fn sync_due_sources(&self) {
        let due = match self.store.due_sources(20).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for sources to sync");
                return;
            }
        };
        for (space, id) in due {
            self.sync_if_idle(space, id).await;
        }
    }

    /// Runs one claimed sync to its end and records the outcome and the next due time.
    async fn run_sync(&self, space: Uuid, source: Source) {
        let Some(id) = parse_id(&source.id) else {
            return;
        };
        let started = Instant::now();
        let outcome = match source.kind.as_str() {
            "folder" => self.sync_folder(space, id, &source).await,
            _ => self.sync_web(space, id, &source).await,
        };
        let next = match &outcome {
            Ok(_) => retry_after(source.interval_minutes, 0),
            Err(_) => retry_after(source.interval_minutes, source.failures + 1),
        }
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| chrono::Utc::now() + d);
        let outcome = match outcome {
            Ok(result) => {
                tracing::info!(source = %id, ?result, elapsed = ?started.elapsed(), "source synced");
                SyncOutcome::Done(result)
            }
            Err(e) => {
                tracing::warn!(source = %id, error = %e, "source sync failed");
                SyncOutcome::Failed(e)
            }
        };
        if let Err(e) = self.store.finish_sync(id, &outcome, next).await {
            tracing::warn!(error = %e, "could not record a sync's outcome");
        }
    }

    async fn progress(&self, id: Uuid, phase: &str, done: usize, total: usize) {
        let fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        if let Err(e) = self
            .store
            .sync_progress(id, phase, fraction, SYNC_LEASE)
            .await
        {
            tracing::warn!(error = %e, "could not record a sync's progress");
        }
    }

    async fn sync_folder(
        &self,
        space: Uuid,
        id: Uuid,
        source: &Source,
    ) -> Result<SyncResult, String> {
        let root = folder::resolve(&source.location, &self.sources.roots)?;
        let files = tokio::task::spawn_blocking(move || folder::list(&root))
            .await
            .map_err(|e| format!("listing failed: {e}"))??;
        let mut known = self.entries(space, id).await?;
        let mut result = SyncResult::default();
        let mut kept = HashSet::new();
        for (n, file) in files.iter().enumerate() {
            if n % 25 == 0 {
                self.progress(id, "reading", n, files.len()).await;
            }
            let entry = known.remove(&file.key);
            if entry.as_ref().and_then(|e| e.stamp.as_deref()) == Some(file.stamp.as_str()) {
                result.unchanged += 1;
                continue;
            }
            let opened = tokio::fs::File::open(&file.path).await;
            let outcome = match opened {
                Ok(f) => {
                    let name = file
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    self.store_version(
                        space,
                        id,
                        &file.key,
                        name.as_deref(),
                        None,
                        Some(file.stamp.clone()),
                        tokio_util::io::ReaderStream::new(f),
                        &mut kept,
                    )
                    .await
                }
                Err(e) => Err(e.to_string()),
            };
            result.count(&file.key, entry.is_some(), outcome);
        }
        self.remove_gone(space, id, known, &kept, &mut result).await;
        Ok(result)
    }

    async fn sync_web(&self, space: Uuid, id: Uuid, source: &Source) -> Result<SyncResult, String> {
        let fetcher = web::Fetcher::new(self.sources.allow_loopback, self.max_upload_bytes)?;
        let start = web::parse_url(&source.location)?;
        let pages = if source.kind == "site" {
            let max = usize::try_from(source.max_pages).unwrap_or(100);
            let pages = fetcher.crawl(&start, max).await?;
            if pages.is_empty() {
                return Err(format!("{start} gave no page to read"));
            }
            pages
        } else {
            vec![start]
        };
        let mut known = self.entries(space, id).await?;
        let mut result = SyncResult::default();
        let mut kept = HashSet::new();
        let total = pages.len();
        let asks: Vec<_> = pages
            .into_iter()
            .map(|url| {
                let stamp = known.get(url.as_str()).and_then(|e| e.stamp.clone());
                (url, stamp)
            })
            .collect();
        let mut fetched = futures::stream::iter(asks.into_iter().map(|(url, stamp)| {
            let fetcher = fetcher.clone();
            async move {
                let got = fetcher.fetch(&url, stamp.as_deref()).await;
                (url, got)
            }
        }))
        .buffered(web::CONCURRENCY);
        let mut n = 0;
        while let Some((url, got)) = fetched.next().await {
            n += 1;
            self.progress(id, "reading", n, total).await;
            let key = url.to_string();
            let entry = known.remove(&key);
            let outcome = match got {
                Ok(web::Fetched::NotModified) => {
                    result.unchanged += 1;
                    continue;
                }
                Ok(web::Fetched::Page {
                    body,
                    content_type,
                    stamp,
                    url: landed,
                }) => {
                    let name = page_name(&landed);
                    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                        Bytes::from(body),
                    )]);
                    self.store_version(
                        space,
                        id,
                        &key,
                        Some(&name),
                        content_type.as_deref(),
                        stamp,
                        body,
                        &mut kept,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            result.count(&key, entry.is_some(), outcome);
        }
        drop(fetched);
        if source.kind == "site" {
            self.remove_gone(space, id, known, &kept, &mut result).await;
        }
        Ok(result)
    }

    /// The newest version under each key the source brought, by key.
    async fn entries(&self, space: Uuid, id: Uuid) -> Result<HashMap<String, SourceEntry>, String> {
        Ok(self
            .store
            .source_entries(space, id)
            .await
            .map_err(|e| format!("reading the source's documents failed: {e}"))?
            .into_iter()
            .map(|e| (e.key.clone(), e))
            .collect())
    }

    /// Queues content read from a source as its key's next version; `Ok(false)` when the bytes
    /// were already there. The document that now holds the content joins `kept`.
    #[allow(clippy::too_many_arguments)]
    async fn store_version<S, E>(
        &self,
        space: Uuid,
        id: Uuid,
        key: &str,
        name: Option<&str>,
        mime: Option<&str>,
        stamp: Option<String>,
        body: S,
        kept: &mut HashSet<Uuid>,
    ) -> Result<bool, String>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let origin = Origin {
            key: Some(key.to_string()),
            source_id: Some(id),
            stamp,
        };
        let uploaded = self
            .upload_document(SpaceId::from(space), name, mime, origin, body)
            .await
            .map_err(|e| match e {
                ServiceError::Internal(_) => e.to_detail().message,
                other => other.to_string(),
            })?;
        if let Some(doc) = parse_id(&uploaded.document.id) {
            kept.insert(doc);
        }
        if !uploaded.created && uploaded.document.source_key.as_deref() != Some(key) {
            // The same bytes live under another key: this key's older version is stale now.
            let gone = self
                .store
                .delete_key(space, key)
                .await
                .map_err(|e| e.to_string())?;
            crate::ingest::discard(self.vectors.as_ref(), &self.data_dir, space, &gone).await;
        }
        Ok(uploaded.created)
    }

    /// Deletes the documents of keys the source no longer has, unless a file or page still
    /// there has the same bytes (it was stored once, under the key that came first).
    async fn remove_gone(
        &self,
        space: Uuid,
        id: Uuid,
        gone: HashMap<String, SourceEntry>,
        kept: &HashSet<Uuid>,
        result: &mut SyncResult,
    ) {
        let gone: Vec<String> = gone
            .into_values()
            .filter(|e| !kept.contains(&e.id))
            .map(|e| e.key)
            .collect();
        let total = gone.len();
        for (n, key) in gone.into_iter().enumerate() {
            self.progress(id, "removing", n, total).await;
            match self.store.delete_key(space, &key).await {
                Ok(docs) => {
                    crate::ingest::discard(self.vectors.as_ref(), &self.data_dir, space, &docs)
                        .await;
                    result.deleted += 1;
                }
                Err(e) => result.failed(&key, e.to_string()),
            }
        }
    }

    fn source_ids(space_id: SpaceId, source_id: &str) -> Result<(Uuid, Uuid), ServiceError> {
        let space = space_id.uuid();
        let source = parse_id(source_id).ok_or(ServiceError::NotFound("source"))?;
        Ok((space, source))
    }
}

/// A file name for a fetched page: the last path segment, or `index.html`.
fn page_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "index.html".into())
}

/// Counting what a sync did.
trait Tally {
    fn count(&mut self, key: &str, existed: bool, outcome: Result<bool, String>);
    fn failed(&mut self, key: &str, why: String);
}

impl Tally for SyncResult {
    fn count(&mut self, key: &str, existed: bool, outcome: Result<bool, String>) {
        match outcome {
            Ok(true) if existed => self.updated += 1,
            Ok(true) => self.added += 1,
            Ok(false) => self.unchanged += 1,
            Err(why) => self.failed(key, why),
        }
    }

    fn failed(&mut self, key: &str, why: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(format!("{key}: {why}"));
        }
    }
}
