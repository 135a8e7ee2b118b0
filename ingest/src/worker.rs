//! Workers take jobs under a lease they keep renewing; a worker that dies simply stops renewing
//! and another takes the job once the lease expires. Failures retry with exponential backoff
//! unless they are permanent (a file that cannot be parsed fails at once, with its reason).

use super::chunk::Chunker;
use super::isolate::{parse_bounded, ParseFailure, ParseLimits};
use super::parse::Format;
use kenning_models::embed::{Embedder, Lane};
use kenning_store::{ClaimedJob, MetadataStore, NewChunk};
use kenning_vectors::vector::{Chunks, VectorPoint, VectorStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How workers behave.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How long a claimed job stays this worker's without a renewal.
    pub lease: Duration,
    /// How often to look for work when nobody has said there is some.
    pub poll_interval: Duration,
    /// Texts per embedding request, so queries can slip in between.
    pub embed_batch: usize,
    /// How each document's parse is bounded.
    pub parse: ParseLimits,
}

/// Where passages' vectors go; without one, documents are indexed for keyword search only.
#[derive(Clone)]
pub struct Indexing {
    pub embedder: Arc<dyn Embedder>,
    pub vectors: Option<Arc<dyn VectorStore>>,
}

/// One ingestion worker; run several for parallelism, in this process or in `kenning worker`.
pub struct Worker {
    id: String,
    store: Arc<dyn MetadataStore>,
    data_dir: PathBuf,
    chunker: Chunker,
    indexing: Indexing,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

enum Failure {
    /// Retrying cannot help (unreadable file).
    Permanent(String),
    /// Might work next time (I/O, database hiccup).
    Transient(String),
    /// Another worker owns the job now; this attempt only cleans up after itself.
    LeaseLost,
}

/// Runs `work` unless the lease is lost first. Only for steps that are safe to abandon midway:
/// a write to the vector store is not, as its effect may land after the clean-up that follows.
async fn unless_lost<T>(
    lost: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::select! {
        r = work => r,
        () = lost.cancelled() => Err(Failure::LeaseLost),
    }
}

/// Delay before retry number `attempt` (1-based): 2 s doubling per attempt, capped at 10 minutes.
pub fn backoff(attempt: i32) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    Duration::from_secs(2u64.saturating_mul(1u64 << exp)).min(Duration::from_secs(600))
}

impl Worker {
    /// A worker with a unique id; `wake` is notified when new work is queued.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        data_dir: PathBuf,
        chunker: Chunker,
        indexing: Indexing,
        settings: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        let id = format!("{}-{}", hostname(), Uuid::now_v7().simple());
        Self {
            id,
            store,
            data_dir,
            chunker,
            indexing,
            settings,
            wake,
        }
    }

    /// Takes and runs jobs until `stop` is cancelled; a job in progress is finished first.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "ingestion worker started");
        loop {
            if stop.is_cancelled() {
                break;
            }
            match self.store.claim_job(&self.id, self.settings.lease).await {
                Ok(Some(job)) => {
                    if job.attempts == 1 {
                        let waited = (chrono::Utc::now() - job.queued_at)
                            .to_std()
                            .unwrap_or_default();
                        kenning_metrics::global().record_queue_wait(waited);
                    }
                    self.run_job(job).await
                }
                Ok(None) => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim a job; backing off");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(self.settings.poll_interval * 4) => {}
                    }
                }
            }
        }
        tracing::info!(worker = %self.id, "ingestion worker stopped");
    }

    #[tracing::instrument(skip_all, fields(job = %job.job_id, document = %job.document_id, attempt = job.attempts))]
    async fn run_job(&self, job: ClaimedJob) {
        if job.attempts > job.max_attempts {
            // Workers died holding this job every time; do not try forever.
            let error = format!(
                "gave up after {} attempts (workers stopped while processing it)",
                job.max_attempts
            );
            if let Err(e) = self.store.fail_job(&job, &self.id, &error, None).await {
                tracing::warn!(error = %e, "could not record a job's failure");
            }
            return;
        }
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            job.job_id,
            self.id.clone(),
            self.settings.lease,
            lost.clone(),
        ));
        let started = std::time::Instant::now();
        // The chunks this attempt may have sent to the vector store: all it ever deletes.
        let mut written = Vec::new();
        let outcome = self.process(&job, &mut written, &lost).await;
        heartbeat.abort();
        let result = match outcome {
            Ok(chunks) => match self.store.complete_job(&job, &self.id, &chunks).await {
                Ok(Some(superseded)) => {
                    tracing::info!(chunks = chunks.len(), elapsed = ?started.elapsed(), "document ingested");
                    // The document's passages are now these: vectors of earlier versions and of
                    // attempts that died go. Leftovers would only cost space, as search keeps
                    // hits whose passage exists.
                    self.drop_vectors(&job, Chunks::AllBut(&written)).await;
                    // Earlier versions under the same key left the index with this commit.
                    super::discard(
                        self.indexing.vectors.as_ref(),
                        &self.data_dir,
                        job.space_id,
                        &superseded,
                    )
                    .await;
                    if self.indexing.vectors.is_some() && !chunks.is_empty() {
                        // Which model made this space's vectors: a later switch must not mix them.
                        let embedder = &self.indexing.embedder;
                        if let Err(e) = self
                            .store
                            .record_embedding_model(
                                job.space_id,
                                embedder.model_id(),
                                embedder.dimensions() as i64,
                            )
                            .await
                        {
                            tracing::warn!(error = %e, "could not record the space's embedding model");
                        }
                    }
                    kenning_metrics::global().record_ingested(chunks.len() as u64);
                    Ok(())
                }
                Ok(None) => {
                    tracing::warn!("job was taken over or deleted before it completed");
                    self.drop_vectors(&job, Chunks::Only(&written)).await;
                    Ok(())
                }
                Err(e) => Err(Failure::Transient(format!(
                    "storing the passages failed: {e}"
                ))),
            },
            Err(f) => Err(f),
        };
        if let Err(failure) = result {
            let (error, retry_at) = match failure {
                Failure::LeaseLost => {
                    tracing::warn!("lease lost; another worker will take the job");
                    self.drop_vectors(&job, Chunks::Only(&written)).await;
                    return;
                }
                Failure::Permanent(m) => (m, None),
                Failure::Transient(m) if job.attempts < job.max_attempts => {
                    let delay = backoff(job.attempts);
                    let at =
                        chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    (m, Some(at))
                }
                Failure::Transient(m) => (m, None),
            };
            tracing::warn!(%error, retry = retry_at.is_some(), "ingestion failed");
            // Nothing partially indexed: vectors this attempt wrote before the failure go too.
            self.drop_vectors(&job, Chunks::Only(&written)).await;
            if let Err(e) = self.store.fail_job(&job, &self.id, &error, retry_at).await {
                tracing::warn!(error = %e, "could not record a job's failure; its lease will expire");
            }
        }
    }

    /// Removes vectors of the job's document; never another attempt's, which may be the
    /// document's live passages by now.
    async fn drop_vectors(&self, job: &ClaimedJob, which: Chunks<'_>) {
        if let Some(vectors) = &self.indexing.vectors {
            if let Err(e) = vectors
                .delete_chunks(job.space_id, job.document_id, which)
                .await
            {
                tracing::warn!(error = %e, "could not remove a document's stale vectors");
            }
        }
    }

    async fn progress(&self, job: &ClaimedJob, phase: &str, progress: f64) {
        if let Err(e) = self
            .store
            .set_progress(job.job_id, &self.id, phase, progress)
            .await
        {
            tracing::debug!(error = %e, "progress not recorded");
        }
    }

    async fn process(
        &self,
        job: &ClaimedJob,
        written: &mut Vec<Uuid>,
        lost: &CancellationToken,
    ) -> Result<Vec<NewChunk>, Failure> {
        let chunks = unless_lost(lost, self.read_and_split(job)).await?;
        if let Some(vectors) = &self.indexing.vectors {
            let points = unless_lost(lost, self.embed(job, &chunks)).await?;
            written.extend(chunks.iter().map(|c| c.id));
            self.progress(job, "indexing", 0.9).await;
            // Never abandoned midway: the clean-up after a lost lease must come after this write.
            vectors
                .upsert(points)
                .await
                .map_err(|e| Failure::Transient(format!("storing vectors failed: {e}")))?;
            if lost.is_cancelled() {
                return Err(Failure::LeaseLost);
            }
        }
        self.progress(job, "indexing", 0.95).await;
        Ok(chunks)
    }

    /// Parses the stored file (bounded, in a child process) and cuts it into passages.
    async fn read_and_split(&self, job: &ClaimedJob) -> Result<Vec<NewChunk>, Failure> {
        self.progress(job, "parsing", 0.05).await;
        let path = self.data_dir.join(&job.storage_path);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Failure::Transient(format!("reading the stored file failed: {e}")))?;
        let format = Format::from_mime(&job.mime)
            .ok_or_else(|| Failure::Permanent(format!("unsupported stored type {}", job.mime)))?;
        let parsed = parse_bounded(&self.settings.parse, format, bytes)
            .await
            .map_err(|e| match e {
                ParseFailure::Permanent(m) => Failure::Permanent(m),
                ParseFailure::Transient(m) => Failure::Transient(m),
            })?;

        self.progress(job, "chunking", 0.4).await;
        let chunker = self.chunker.clone();
        let (size, overlap) = (
            job.chunk_size.max(1) as usize,
            job.chunk_overlap.max(0) as usize,
        );
        let passages = tokio::task::spawn_blocking(move || {
            chunker.split(&parsed.text, parsed.markdown, size, overlap)
        })
        .await
        .map_err(|e| Failure::Transient(format!("chunking task failed: {e}")))?
        .map_err(|e| Failure::Permanent(e.0))?;

        Ok(passages
            .into_iter()
            .map(|p| NewChunk {
                id: Uuid::now_v7(),
                position: i32::try_from(p.position).unwrap_or(i32::MAX),
                text: p.text,
                heading_path: p.heading_path,
                char_start: i64::try_from(p.char_start).unwrap_or(i64::MAX),
                char_end: i64::try_from(p.char_end).unwrap_or(i64::MAX),
                token_count: i32::try_from(p.token_count).unwrap_or(i32::MAX),
            })
            .collect())
    }

    /// Embeds passages in batches on the ingestion lane. Their vectors go in beside the
    /// document's current ones, which go only once these passages are committed, so search
    /// never loses the document in between.
    async fn embed(
        &self,
        job: &ClaimedJob,
        chunks: &[NewChunk],
    ) -> Result<Vec<VectorPoint>, Failure> {
        let total = chunks.len().max(1);
        let mut points = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(self.settings.embed_batch.max(1)) {
            self.progress(
                job,
                "embedding",
                0.4 + 0.5 * points.len() as f64 / total as f64,
            )
            .await;
            let texts = batch.iter().map(|c| c.text.clone()).collect();
            let embedded = self
                .indexing
                .embedder
                .embed(texts, Lane::Ingest)
                .await
                .map_err(|e| Failure::Transient(format!("embedding failed: {e}")))?;
            points.extend(batch.iter().zip(embedded).map(|(c, vector)| VectorPoint {
                chunk_id: c.id,
                space_id: job.space_id,
                document_id: job.document_id,
                vector,
                text: c.text.clone(),
            }));
        }
        Ok(points)
    }
}

/// Renews the lease at a third of its length; cancels `lost` when the job is no longer ours.
async fn heartbeat(
    store: Arc<dyn MetadataStore>,
    job_id: Uuid,
    worker: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let mut misses = 0;
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew_lease(job_id, &worker, lease).await {
            Ok(true) => misses = 0,
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => {
                misses += 1;
                tracing::warn!(error = %e, "lease renewal failed");
                if misses >= 2 {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kenning".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(4), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(600));
        assert_eq!(backoff(0), Duration::from_secs(2));
    }
}
