//! Documents, passages and the ingestion queue, in portable SQL; claiming, renewing and
//! completing a job and keyword search are each backend's own.

/// Implements [`crate::Documents`] for a backend (see [`crate::portable`]).
macro_rules! documents {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl Documents for $store {
            async fn insert_document(
                &self,
                doc: &NewDocument,
                job: &NewJob,
            ) -> Result<Document, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query(&format!(
                    "INSERT INTO documents (id, space_id, filename, mime, size_bytes, content_hash, \
                     status, storage_path, source_id, source_key, source_stamp, version, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, \
                     (SELECT COALESCE(MAX(version), 0) + 1 FROM documents \
                      WHERE space_id = $2 AND source_key = $9), {NOW}, {NOW})"
                ))
                .bind(id(doc.id))
                .bind(id(doc.space_id))
                .bind(&doc.filename)
                .bind(&doc.mime)
                .bind(doc.size_bytes)
                .bind(&doc.content_hash)
                .bind(&doc.storage_path)
                .bind(opt_id(doc.source_id))
                .bind(&doc.source_key)
                .bind(&doc.source_stamp)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, \
                     max_attempts, run_after, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'ingest', 'queued', 'queued', $4, {NOW}, {NOW}, {NOW})"
                ))
                .bind(id(job.id))
                .bind(id(doc.space_id))
                .bind(id(doc.id))
                .bind(job.max_attempts)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.get_document(doc.space_id, doc.id).await
            }

            async fn get_document(&self, space: Uuid, doc: Uuid) -> Result<Document, StoreError> {
                let row: DocumentRow = sqlx::query_as(&format!(
                    "{DOCUMENT_SELECT} WHERE d.space_id = $1 AND d.id = $2"
                ))
                .bind(id(space))
                .bind(id(doc))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn find_document_by_hash(
                &self,
                space: Uuid,
                content_hash: &str,
            ) -> Result<Option<Document>, StoreError> {
                let row: Option<DocumentRow> = sqlx::query_as(&format!(
                    "{DOCUMENT_SELECT} WHERE d.space_id = $1 AND d.content_hash = $2"
                ))
                .bind(id(space))
                .bind(content_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn list_documents(
                &self,
                space: Uuid,
                page: PageRequest,
            ) -> Result<Page<Document>, StoreError> {
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE space_id = $1")
                        .bind(id(space))
                        .fetch_one(&self.pool)
                        .await?;
                let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
                    "{DOCUMENT_SELECT} WHERE d.space_id = $1 \
                     ORDER BY d.created_at DESC, d.id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(id(space))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn delete_document(&self, space: Uuid, doc: Uuid) -> Result<String, StoreError> {
                let mut tx = self.write_tx().await?;
                // Jobs first: the same lock order as a worker finishing this document (see
                // delete_space).
                sqlx::query(&format!(
                    "SELECT id FROM ingestion_jobs WHERE document_id = $1 AND space_id = $2{FOR_UPDATE}"
                ))
                .bind(id(doc))
                .bind(id(space))
                .execute(&mut *tx)
                .await?;
                let path: String = sqlx::query_scalar(
                    "DELETE FROM documents WHERE space_id = $1 AND id = $2 RETURNING storage_path",
                )
                .bind(id(space))
                .bind(id(doc))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
                    .bind(id(space))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(path)
            }

            async fn list_chunks(
                &self,
                space: Uuid,
                doc: Uuid,
                page: PageRequest,
            ) -> Result<Page<Chunk>, StoreError> {
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM chunks WHERE space_id = $1 AND document_id = $2",
                )
                .bind(id(space))
                .bind(id(doc))
                .fetch_one(&self.pool)
                .await?;
                let rows: Vec<ChunkRow> = sqlx::query_as(&format!(
                    "SELECT {CHUNK_COLUMNS} FROM chunks WHERE space_id = $1 AND document_id = $2 \
                     ORDER BY position LIMIT $3 OFFSET $4"
                ))
                .bind(id(space))
                .bind(id(doc))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn pending_documents(&self, space: Uuid) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM documents WHERE space_id = $1 \
                     AND status IN ('pending', 'processing')",
                )
                .bind(id(space))
                .fetch_one(&self.pool)
                .await?)
            }

            async fn keyword_search(
                &self,
                space: Uuid,
                terms: &[String],
                doc: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<ChunkHit>, StoreError> {
                if terms.is_empty() {
                    return Ok(Vec::new());
                }
                self.match_keywords(space, terms, doc, limit).await
            }

            async fn chunks_by_ids(
                &self,
                space: Uuid,
                ids: &[Uuid],
            ) -> Result<Vec<ChunkHit>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                self.fetch_chunks(space, ids).await
            }
        }
    };
}

/// Implements [`crate::JobQueue`] for a backend (see [`crate::portable`]).
macro_rules! job_queue {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl JobQueue for $store {
            async fn get_job(&self, space: Uuid, job: Uuid) -> Result<Job, StoreError> {
                let row: JobRow = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE space_id = $1 AND id = $2"
                ))
                .bind(id(space))
                .bind(id(job))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn claim_job(
                &self,
                worker: &str,
                lease: Duration,
            ) -> Result<Option<ClaimedJob>, StoreError> {
                self.claim(worker, lease).await
            }

            async fn renew_lease(
                &self,
                job: Uuid,
                worker: &str,
                lease: Duration,
            ) -> Result<bool, StoreError> {
                self.renew(job, worker, lease).await
            }

            async fn set_progress(
                &self,
                job: Uuid,
                worker: &str,
                phase: &str,
                progress: f64,
            ) -> Result<bool, StoreError> {
                let r = sqlx::query(&format!(
                    "UPDATE ingestion_jobs SET phase = $1, progress = $2, updated_at = {NOW} \
                     WHERE id = $3 AND lease_owner = $4 AND status = 'running'"
                ))
                .bind(phase)
                .bind(progress)
                .bind(id(job))
                .bind(worker)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn complete_job(
                &self,
                job: &ClaimedJob,
                worker: &str,
                chunks: &[NewChunk],
            ) -> Result<Option<Vec<Superseded>>, StoreError> {
                self.complete(job, worker, chunks).await
            }

            async fn fail_job(
                &self,
                job: &ClaimedJob,
                worker: &str,
                error: &str,
                retry_at: Option<DateTime<Utc>>,
            ) -> Result<(), StoreError> {
                let mut tx = self.write_tx().await?;
                let (job_status, doc_status, phase) = match retry_at {
                    Some(_) => ("queued", "pending", "retrying"),
                    None => ("failed", "failed", "failed"),
                };
                let r = sqlx::query(&format!(
                    "UPDATE ingestion_jobs SET status = $1, phase = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, last_error = $3, run_after = COALESCE($4, {NOW}), \
                     updated_at = {NOW} WHERE id = $5 AND lease_owner = $6"
                ))
                .bind(job_status)
                .bind(phase)
                .bind(error)
                .bind(retry_at.map(time))
                .bind(id(job.job_id))
                .bind(worker)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() == 1 {
                    sqlx::query(&format!(
                        "UPDATE documents SET status = $1, error = $2, updated_at = {NOW} WHERE id = $3"
                    ))
                    .bind(doc_status)
                    .bind(error)
                    .bind(id(job.document_id))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn count_jobs(&self) -> Result<JobCounts, StoreError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM ingestion_jobs GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(JobCounts::from_rows(rows))
            }
        }
    };
}

pub(crate) use {documents, job_queue};
