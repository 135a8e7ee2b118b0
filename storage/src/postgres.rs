//! PostgreSQL backend: shared by every server instance; ids are UUIDs, times TIMESTAMPTZ.

use super::{
    lease_millis, page_of, ChunkHit, ClaimedJob, JobCounts, MetadataStore, NewChunk, NewDocument,
    NewJob, StoreError, Superseded, CHUNK_COLUMNS, CHUNK_HIT_COLUMNS, DOCUMENT_SELECT, JOB_COLUMNS,
    SPACE_COLUMNS,
};
use super::{
    NewApiKey, NewAudit, NewMessage, NewUser, StaleSpace, UserRecord, CONVERSATION_COLUMNS,
};
use super::{API_KEY_COLUMNS, MEMBERS_SELECT, USER_COLUMNS};
use chrono::{DateTime, Utc};
use kenning_api::{
    ApiKey, AuditEntry, Chunk, Conversation, Document, Job, Member, Message, Page, Role, Space,
    User,
};
use kenning_core::domain::{Description, PageRequest, SpaceName};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// Metadata in PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

type SpaceRow = super::SpaceRow<Uuid, DateTime<Utc>>;
type DocumentRow = super::DocumentRow<Uuid, DateTime<Utc>>;
type JobRow = super::JobRow<Uuid, DateTime<Utc>>;
type ChunkRow = super::ChunkRow<Uuid>;
type ChunkHitRow = super::ChunkHitRow<Uuid>;
type ConversationRow = super::ConversationRow<Uuid, DateTime<Utc>>;
type AuditRow = super::AuditRow<DateTime<Utc>>;
type MessageRow = super::MessageRow<Uuid, DateTime<Utc>>;
type UserRow = super::UserRow<Uuid, DateTime<Utc>>;
type UserSecretRow = super::UserSecretRow<Uuid, DateTime<Utc>>;
type ApiKeyRow = super::ApiKeyRow<Uuid, DateTime<Utc>>;
type MemberRow = super::MemberRow<Uuid>;

impl PostgresStore {
    /// The pool, shared with the pgvector store so both use one set of connections.
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Connects a bounded pool; each statement is cut off after 30 s so no query hangs a request.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire: Duration,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid DATABASE_URL: {e}")))?
            .options([("statement_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait::async_trait]
impl MetadataStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_space(
        &self,
        id: Uuid,
        name: &SpaceName,
        description: &Description,
        owner: Option<Uuid>,
    ) -> Result<Space, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO spaces (id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, now(), now())",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(description.as_str())
        .execute(&mut *tx)
        .await?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES ($1, $2, 'owner', now())",
            )
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_space(id).await
    }

    async fn get_space(&self, id: Uuid) -> Result<Space, StoreError> {
        let row: SpaceRow = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn find_space_by_name(&self, name: &str) -> Result<Option<Space>, StoreError> {
        let row: Option<SpaceRow> = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE lower(s.name) = lower($1)"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn list_spaces(&self, page: PageRequest) -> Result<Page<Space>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM spaces")
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<SpaceRow> = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s ORDER BY s.created_at DESC, s.id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn update_space(
        &self,
        id: Uuid,
        name: Option<&SpaceName>,
        description: Option<&Description>,
    ) -> Result<Space, StoreError> {
        let result = sqlx::query(
            "UPDATE spaces SET name = COALESCE($1, name), description = COALESCE($2, description), \
             updated_at = now() WHERE id = $3",
        )
        .bind(name.map(SpaceName::as_str))
        .bind(description.map(Description::as_str))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_space(id).await
    }

    async fn delete_space(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock order job → space → document, the same as a finishing worker's, so a delete
        // during ingestion waits for it instead of deadlocking with it.
        sqlx::query("SELECT id FROM ingestion_jobs WHERE space_id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query("DELETE FROM spaces WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_document(
        &self,
        doc: &NewDocument,
        job: &NewJob,
    ) -> Result<Document, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO documents (id, space_id, filename, mime, size_bytes, content_hash, status, \
             storage_path, source_id, source_key, source_stamp, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, \
             (SELECT COALESCE(MAX(version), 0) + 1 FROM documents WHERE space_id = $2 AND source_key = $9), now(), now())",
        )
        .bind(doc.id)
        .bind(doc.space_id)
        .bind(&doc.filename)
        .bind(&doc.mime)
        .bind(doc.size_bytes)
        .bind(&doc.content_hash)
        .bind(&doc.storage_path)
        .bind(doc.source_id)
        .bind(&doc.source_key)
        .bind(&doc.source_stamp)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, max_attempts, \
             run_after, created_at, updated_at) VALUES ($1, $2, $3, 'ingest', 'queued', 'queued', $4, now(), now(), now())",
        )
        .bind(job.id)
        .bind(doc.space_id)
        .bind(doc.id)
        .bind(job.max_attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_document(doc.space_id, doc.id).await
    }

    async fn get_document(&self, space_id: Uuid, id: Uuid) -> Result<Document, StoreError> {
        let row: DocumentRow = sqlx::query_as(&format!(
            "{DOCUMENT_SELECT} WHERE d.space_id = $1 AND d.id = $2"
        ))
        .bind(space_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn find_document_by_hash(
        &self,
        space_id: Uuid,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        let row: Option<DocumentRow> = sqlx::query_as(&format!(
            "{DOCUMENT_SELECT} WHERE d.space_id = $1 AND d.content_hash = $2"
        ))
        .bind(space_id)
        .bind(content_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn list_documents(
        &self,
        space_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Document>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE space_id = $1")
            .bind(space_id)
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
            "{DOCUMENT_SELECT} WHERE d.space_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(space_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn delete_document(&self, space_id: Uuid, id: Uuid) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Jobs first: the same lock order as a worker finishing this document (see delete_space).
        sqlx::query(
            "SELECT id FROM ingestion_jobs WHERE document_id = $1 AND space_id = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(space_id)
        .execute(&mut *tx)
        .await?;
        let path: String = sqlx::query_scalar(
            "DELETE FROM documents WHERE space_id = $1 AND id = $2 RETURNING storage_path",
        )
        .bind(space_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
            .bind(space_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(path)
    }

    async fn list_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Chunk>, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM chunks WHERE space_id = $1 AND document_id = $2",
        )
        .bind(space_id)
        .bind(document_id)
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<ChunkRow> = sqlx::query_as(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE space_id = $1 AND document_id = $2 \
             ORDER BY position LIMIT $3 OFFSET $4"
        ))
        .bind(space_id)
        .bind(document_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn get_job(&self, space_id: Uuid, id: Uuid) -> Result<Job, StoreError> {
        let row: JobRow = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE space_id = $1 AND id = $2"
        ))
        .bind(space_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: concurrent workers (in this or other instances) each take a different job.
        let claimed: Option<(Uuid, Uuid, Option<Uuid>, i32, i32, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE ingestion_jobs SET status = 'running', lease_owner = $1, \
             lease_expires_at = now() + $2 * interval '1 millisecond', attempts = attempts + 1, \
             phase = 'starting', progress = 0, updated_at = now() \
             WHERE id = (SELECT id FROM ingestion_jobs \
                 WHERE (status = 'queued' AND run_after <= now()) \
                    OR (status = 'running' AND lease_expires_at < now()) \
                 ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, space_id, document_id, attempts, max_attempts, created_at",
        )
        .bind(worker)
        .bind(lease_millis(lease) as f64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((job_id, space_id, document_id, attempts, max_attempts, queued_at)) = claimed
        else {
            return Ok(None);
        };
        let document_id = document_id
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("job {job_id} has no document")))?;
        let info: (String, String, String, i32, i32) = sqlx::query_as(
            "SELECT d.storage_path, d.filename, d.mime, s.chunk_size, s.chunk_overlap \
             FROM documents d JOIN spaces s ON s.id = d.space_id WHERE d.id = $1",
        )
        .bind(document_id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE documents SET status = 'processing', updated_at = now() WHERE id = $1")
            .bind(document_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(ClaimedJob {
            job_id,
            space_id,
            document_id,
            attempts,
            max_attempts,
            queued_at,
            storage_path: info.0,
            filename: info.1,
            mime: info.2,
            chunk_size: info.3,
            chunk_overlap: info.4,
        }))
    }

    async fn renew_lease(
        &self,
        job_id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET lease_expires_at = now() + $1 * interval '1 millisecond' \
             WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(lease_millis(lease) as f64)
        .bind(job_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_progress(
        &self,
        job_id: Uuid,
        worker: &str,
        phase: &str,
        progress: f64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET phase = $1, progress = $2, updated_at = now() \
             WHERE id = $3 AND lease_owner = $4 AND status = 'running'",
        )
        .bind(phase)
        .bind(progress)
        .bind(job_id)
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
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET status = 'done', phase = 'done', progress = 1, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = NULL, updated_at = now() \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job.job_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(job.document_id)
            .execute(&mut *tx)
            .await?;
        for batch in chunks.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO chunks (id, document_id, space_id, position, text, heading_path, char_start, \
                 char_end, token_count, created_at) ",
            );
            q.push_values(batch, |mut b, c| {
                b.push_bind(c.id)
                    .push_bind(job.document_id)
                    .push_bind(job.space_id)
                    .push_bind(c.position)
                    .push_bind(&c.text)
                    .push_bind(&c.heading_path)
                    .push_bind(c.char_start)
                    .push_bind(c.char_end)
                    .push_bind(c.token_count)
                    .push("now()");
            });
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'ready', error = NULL, chunk_count = $1, updated_at = now() WHERE id = $2",
        )
        .bind(i64::try_from(chunks.len()).unwrap_or(i64::MAX))
        .bind(job.document_id)
        .execute(&mut *tx)
        .await?;
        let superseded =
            super::postgres_sources::delete_older_versions(&mut tx, job.document_id).await?;
        sqlx::query("UPDATE spaces SET version = version + 1, updated_at = now() WHERE id = $1")
            .bind(job.space_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(superseded))
    }

    async fn fail_job(
        &self,
        job: &ClaimedJob,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let (job_status, doc_status, phase) = match retry_at {
            Some(_) => ("queued", "pending", "retrying"),
            None => ("failed", "failed", "failed"),
        };
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET status = $1, phase = $2, lease_owner = NULL, lease_expires_at = NULL, \
             last_error = $3, run_after = COALESCE($4, now()), updated_at = now() \
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(job_status)
        .bind(phase)
        .bind(error)
        .bind(retry_at)
        .bind(job.job_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            sqlx::query(
                "UPDATE documents SET status = $1, error = $2, updated_at = now() WHERE id = $3",
            )
            .bind(doc_status)
            .bind(error)
            .bind(job.document_id)
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

    async fn keyword_search(
        &self,
        space_id: Uuid,
        terms: &[String],
        document_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ChunkHit>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Terms are letters and digits only, joined with OR; plainto_tsquery applies stemming
        // and stop words to each.
        let rows: Vec<ChunkHitRow> = sqlx::query_as(&format!(
            "WITH q AS (SELECT to_tsquery('english', string_agg(quote_literal(t) || ':*', ' | ')) AS query \
                        FROM unnest($1::text[]) AS t WHERE numnode(plainto_tsquery('english', t)) > 0) \
             SELECT {CHUNK_HIT_COLUMNS}, ts_rank_cd(c.tsv, q.query)::float8 AS score \
             FROM q, chunks c JOIN documents d ON d.id = c.document_id \
             WHERE q.query IS NOT NULL AND c.tsv @@ q.query AND c.space_id = $2 AND d.status = 'ready' \
             AND ($3::uuid IS NULL OR c.document_id = $3) ORDER BY score DESC, c.id LIMIT $4"
        ))
        .bind(terms)
        .bind(space_id)
        .bind(document_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn chunks_by_ids(
        &self,
        space_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<ChunkHit>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ChunkHitRow> = sqlx::query_as(&format!(
            "SELECT {CHUNK_HIT_COLUMNS}, 0.0::float8 AS score FROM chunks c JOIN documents d ON d.id = c.document_id \
             WHERE d.status = 'ready' AND c.space_id = $1 AND c.id = ANY($2)"
        ))
        .bind(space_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn pending_documents(&self, space_id: Uuid) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM documents WHERE space_id = $1 AND status IN ('pending', 'processing')",
        )
        .bind(space_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn space_version(&self, space_id: Uuid) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM spaces WHERE id = $1")
                .bind(space_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn record_embedding_model(
        &self,
        space_id: Uuid,
        model: &str,
        dimensions: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE spaces SET embedding_model = $1, embedding_dim = $2 WHERE id = $3 AND embedding_model IS NULL")
            .bind(model)
            .bind(dimensions as i32)
            .bind(space_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn spaces_embedded_by_other_models(
        &self,
        model: &str,
    ) -> Result<Vec<StaleSpace>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, embedding_model FROM spaces \
             WHERE embedding_model IS NOT NULL AND embedding_model <> $1 ORDER BY name",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn requeue_space_for_new_model(
        &self,
        space_id: Uuid,
        previous_model: &str,
        max_attempts: i32,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE spaces SET embedding_model = NULL, embedding_dim = NULL, version = version + 1, \
             updated_at = now() WHERE id = $1 AND embedding_model = $2",
        )
        .bind(space_id)
        .bind(previous_model)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(0);
        }
        let documents: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM documents WHERE space_id = $1 AND status = 'ready' FOR UPDATE",
        )
        .bind(space_id)
        .fetch_all(&mut *tx)
        .await?;
        for (document_id,) in &documents {
            sqlx::query(
                "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, max_attempts, \
                 run_after, created_at, updated_at) VALUES ($1, $2, $3, 'reembed', 'queued', 'queued', $4, now(), now(), now())",
            )
            .bind(Uuid::now_v7())
            .bind(space_id)
            .bind(document_id)
            .bind(max_attempts)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'pending', updated_at = now() WHERE space_id = $1 AND status = 'ready'",
        )
        .bind(space_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(documents.len())
    }

    async fn create_conversation(
        &self,
        id: Uuid,
        space_id: Uuid,
        owner: Option<Uuid>,
        title: &str,
    ) -> Result<Conversation, StoreError> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO conversations (id, space_id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(space_id)
        .bind(owner)
        .bind(title)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.get_conversation(space_id, owner, id).await
    }

    // `IS NOT DISTINCT FROM` rather than `=`: it matches a NULL owner (single-user mode) to NULL.
    async fn get_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
    ) -> Result<Conversation, StoreError> {
        let row: ConversationRow = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 AND space_id = $2 AND user_id IS NOT DISTINCT FROM $3"
        ))
        .bind(id)
        .bind(space_id)
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn list_conversations(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE space_id = $1 AND user_id IS NOT DISTINCT FROM $2",
        )
        .bind(space_id)
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE space_id = $1 AND user_id IS NOT DISTINCT FROM $2 ORDER BY updated_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(space_id)
        .bind(owner)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn rename_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
        title: &str,
    ) -> Result<Conversation, StoreError> {
        let result = sqlx::query(
            "UPDATE conversations SET title = $1 WHERE id = $2 AND space_id = $3 AND user_id IS NOT DISTINCT FROM $4",
        )
        .bind(title)
        .bind(id)
        .bind(space_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_conversation(space_id, owner, id).await
    }

    async fn delete_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "DELETE FROM conversations WHERE id = $1 AND space_id = $2 AND user_id IS NOT DISTINCT FROM $3",
        )
        .bind(id)
        .bind(space_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn add_message(
        &self,
        conversation_id: Uuid,
        message: &NewMessage,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, role, content, citations, generator, created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
        )
        .bind(message.id)
        .bind(conversation_id)
        .bind(message.role)
        .bind(&message.content)
        .bind(&message.citations_json)
        .bind(message.generator.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor_user_id, action, target_type, target_id, ip, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        )
        .bind(Utc::now())
        .bind(entry.actor.as_deref().and_then(|a| Uuid::parse_str(a).ok()))
        .bind(&entry.action)
        .bind(entry.target_type)
        .bind(&entry.target_id)
        .bind(&entry.ip)
        .bind(entry.details.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_audit_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, actor_user_id::text AS actor, action, target_type, target_id, ip, \
             details::text AS details FROM audit_log ORDER BY id DESC LIMIT $1 OFFSET $2",
        )
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }
    async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_user(&self, user: &NewUser, only_if_first: bool) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        if only_if_first {
            // Concurrent first sign-ups on any instance queue here; only the first finds none.
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut *tx)
                .await?;
            if existing > 0 {
                return Err(StoreError::Conflict("an account exists already".into()));
            }
        }
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users AS u (id, email, display_name, password_hash, is_admin, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now(), now()) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(user.id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserSecretRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
             WHERE lower(u.email) = lower($1) AND u.disabled_at IS NULL"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u ORDER BY u.created_at, u.id LIMIT $1 OFFSET $2"
        ))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: Uuid,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_ms) VALUES ($1, $2, now(), $3)")
            .bind(token_hash)
            .bind(user_id)
            .bind(expires_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_user(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_ms > $2 AND u.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<(), StoreError> {
        let at = disabled.then(Utc::now);
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(at)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Conversations would outlive their owner, unreadable by anyone: they go with it.
        sqlx::query("DELETE FROM conversations WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_password_hash(
        &self,
        user_id: Uuid,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, now())",
        )
        .bind(key.id)
        .bind(key.user_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .execute(&self.pool)
        .await?;
        let row: ApiKeyRow = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
        ))
        .bind(key.id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_some() {
            // At most one write a minute per key, and a failed write (a busy or read-only
            // database) never refuses the request it only records.
            if let Err(e) = sqlx::query(
                "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 \
                 AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')",
            )
            .bind(key_hash)
            .execute(&self.pool)
            .await
            {
                tracing::warn!(error = %e, "recording an API key's last use failed");
            }
        }
        Ok(row.map(Into::into))
    }

    async fn list_api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1000"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn member_role(&self, space_id: Uuid, user_id: Uuid) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2",
        )
        .bind(space_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    async fn set_member(
        &self,
        space_id: Uuid,
        user_id: Uuid,
        role: Role,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (space_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(space_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_member(&self, space_id: Uuid, user_id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM space_members WHERE space_id = $1 AND user_id = $2")
            .bind(space_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_members(&self, space_id: Uuid) -> Result<Vec<Member>, StoreError> {
        let rows: Vec<MemberRow> = sqlx::query_as(&format!(
            "{MEMBERS_SELECT}$1 ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END, u.email LIMIT 1000"
        ))
        .bind(space_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn list_spaces_of(
        &self,
        user_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Space>, StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM space_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
        let rows: Vec<SpaceRow> = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s JOIN space_members m ON m.space_id = s.id \
             WHERE m.user_id = $1 ORDER BY s.created_at DESC, s.id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn list_messages(
        &self,
        conversation_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = $1")
                .bind(conversation_id)
                .fetch_one(&self.pool)
                .await?;
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT id, role, content, citations::text AS citations, generator, created_at FROM messages \
             WHERE conversation_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        )
        .bind(conversation_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }
}
