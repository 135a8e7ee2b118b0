//! SQLite backend: one file in `DATA_DIR`, WAL journal, foreign keys on.

use super::{
    format_time, lease_millis, page_of, ChunkHit, ClaimedJob, JobCounts, MetadataStore, NewChunk,
    NewDocument, NewJob, StoreError, Superseded, CHUNK_COLUMNS, CHUNK_HIT_COLUMNS, DOCUMENT_SELECT,
    JOB_COLUMNS, SPACE_COLUMNS,
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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

/// Metadata in an embedded SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

type SpaceRow = super::SpaceRow<String, String>;
type DocumentRow = super::DocumentRow<String, String>;
type JobRow = super::JobRow<String, String>;
type ChunkRow = super::ChunkRow<String>;
type ChunkHitRow = super::ChunkHitRow<String>;
type ConversationRow = super::ConversationRow<String, String>;
type MessageRow = super::MessageRow<String, String>;
type AuditRow = super::AuditRow<String>;
type UserRow = super::UserRow<String, String>;
type UserSecretRow = super::UserSecretRow<String, String>;
type ApiKeyRow = super::ApiKeyRow<String, String>;
type MemberRow = super::MemberRow<String>;

/// When a lease taken now for `d` runs out, as SQLite stores times.
pub(super) fn later(d: Duration) -> String {
    format_time(Utc::now() + chrono::Duration::milliseconds(lease_millis(d)))
}

/// Now, as SQLite stores times.
pub(super) fn now() -> String {
    format_time(Utc::now())
}

pub(super) fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Other(e.into()))
}

pub(super) fn superseded(rows: Vec<(String, String)>) -> Result<Vec<Superseded>, StoreError> {
    rows.into_iter()
        .map(|(id, storage_path)| {
            Ok(Superseded {
                id: uuid(&id)?,
                storage_path,
            })
        })
        .collect()
}

/// Deletes the versions under the document's key older than it, inside the completing
/// transaction.
async fn delete_older_versions(
    tx: &mut Transaction<'_, Sqlite>,
    document_id: &str,
) -> Result<Vec<Superseded>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "DELETE FROM documents WHERE id IN (SELECT o.id FROM documents o JOIN documents n \
         ON n.space_id = o.space_id AND n.source_key = o.source_key \
         WHERE n.id = ? AND o.version < n.version) RETURNING id, storage_path",
    )
    .bind(document_id)
    .fetch_all(&mut **tx)
    .await?;
    superseded(rows)
}

impl SqliteStore {
    /// The pool, shared with the embedded vector store.
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// Opens (creating if needed) the database file.
    pub async fn open(
        path: &Path,
        max_connections: u32,
        acquire: Duration,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across process crashes; only an OS crash can lose the last commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait::async_trait]
impl MetadataStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
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
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO spaces (id, name, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(name.as_str())
        .bind(description.as_str())
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES (?, ?, 'owner', ?)",
            )
            .bind(id.to_string())
            .bind(owner.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_space(id).await
    }

    async fn get_space(&self, id: Uuid) -> Result<Space, StoreError> {
        let row: SpaceRow = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.id = ?"
        ))
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn find_space_by_name(&self, name: &str) -> Result<Option<Space>, StoreError> {
        let row: Option<SpaceRow> = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.name = ?"
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
            "SELECT {SPACE_COLUMNS} FROM spaces s ORDER BY s.created_at DESC, s.id DESC LIMIT ? OFFSET ?"
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
            "UPDATE spaces SET name = COALESCE(?, name), description = COALESCE(?, description), \
             updated_at = ? WHERE id = ?",
        )
        .bind(name.map(SpaceName::as_str))
        .bind(description.map(Description::as_str))
        .bind(now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_space(id).await
    }

    async fn delete_space(&self, id: Uuid) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM spaces WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn insert_document(
        &self,
        doc: &NewDocument,
        job: &NewJob,
    ) -> Result<Document, StoreError> {
        let now = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO documents (id, space_id, filename, mime, size_bytes, content_hash, status, \
             storage_path, source_id, source_key, source_stamp, version, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, \
             (SELECT COALESCE(MAX(version), 0) + 1 FROM documents WHERE space_id = ? AND source_key = ?), ?, ?)",
        )
        .bind(doc.id.to_string())
        .bind(doc.space_id.to_string())
        .bind(&doc.filename)
        .bind(&doc.mime)
        .bind(doc.size_bytes)
        .bind(&doc.content_hash)
        .bind(&doc.storage_path)
        .bind(doc.source_id.map(|s| s.to_string()))
        .bind(&doc.source_key)
        .bind(&doc.source_stamp)
        .bind(doc.space_id.to_string())
        .bind(&doc.source_key)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, max_attempts, \
             run_after, created_at, updated_at) VALUES (?, ?, ?, 'ingest', 'queued', 'queued', ?, ?, ?, ?)",
        )
        .bind(job.id.to_string())
        .bind(doc.space_id.to_string())
        .bind(doc.id.to_string())
        .bind(job.max_attempts)
        .bind(&now)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_document(doc.space_id, doc.id).await
    }

    async fn get_document(&self, space_id: Uuid, id: Uuid) -> Result<Document, StoreError> {
        let row: DocumentRow = sqlx::query_as(&format!(
            "{DOCUMENT_SELECT} WHERE d.space_id = ? AND d.id = ?"
        ))
        .bind(space_id.to_string())
        .bind(id.to_string())
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
            "{DOCUMENT_SELECT} WHERE d.space_id = ? AND d.content_hash = ?"
        ))
        .bind(space_id.to_string())
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
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE space_id = ?")
            .bind(space_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
            "{DOCUMENT_SELECT} WHERE d.space_id = ? ORDER BY d.created_at DESC, d.id DESC LIMIT ? OFFSET ?"
        ))
        .bind(space_id.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn delete_document(&self, space_id: Uuid, id: Uuid) -> Result<String, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let path: String = sqlx::query_scalar(
            "DELETE FROM documents WHERE space_id = ? AND id = ? RETURNING storage_path",
        )
        .bind(space_id.to_string())
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = ?")
            .bind(space_id.to_string())
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
            "SELECT COUNT(*) FROM chunks WHERE space_id = ? AND document_id = ?",
        )
        .bind(space_id.to_string())
        .bind(document_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<ChunkRow> = sqlx::query_as(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE space_id = ? AND document_id = ? \
             ORDER BY position LIMIT ? OFFSET ?"
        ))
        .bind(space_id.to_string())
        .bind(document_id.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }

    async fn get_job(&self, space_id: Uuid, id: Uuid) -> Result<Job, StoreError> {
        let row: JobRow = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE space_id = ? AND id = ?"
        ))
        .bind(space_id.to_string())
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let now = now();
        // Every write transaction here is BEGIN IMMEDIATE: it takes the write lock up front (waiting
        // under busy_timeout) instead of failing with SQLITE_BUSY when upgrading a read later.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed: Option<(String, String, Option<String>, i32, i32, String)> = sqlx::query_as(
            "UPDATE ingestion_jobs SET status = 'running', lease_owner = ?1, lease_expires_at = ?2, \
             attempts = attempts + 1, phase = 'starting', progress = 0, updated_at = ?3 \
             WHERE id = (SELECT id FROM ingestion_jobs \
                 WHERE (status = 'queued' AND run_after <= ?3) \
                    OR (status = 'running' AND lease_expires_at < ?3) \
                 ORDER BY run_after, created_at LIMIT 1) \
             RETURNING id, space_id, document_id, attempts, max_attempts, created_at",
        )
        .bind(worker)
        .bind(later(lease))
        .bind(&now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((job_id, space_id, document_id, attempts, max_attempts, queued_at)) = claimed
        else {
            return Ok(None);
        };
        let document_id = document_id.unwrap_or_default();
        let info: (String, String, String, i32, i32) = sqlx::query_as(
            "SELECT d.storage_path, d.filename, d.mime, s.chunk_size, s.chunk_overlap \
             FROM documents d JOIN spaces s ON s.id = d.space_id WHERE d.id = ?",
        )
        .bind(&document_id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE documents SET status = 'processing', updated_at = ? WHERE id = ?")
            .bind(&now)
            .bind(&document_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let parse = |s: &str| Uuid::parse_str(s).map_err(|e| StoreError::Other(e.into()));
        Ok(Some(ClaimedJob {
            job_id: parse(&job_id)?,
            space_id: parse(&space_id)?,
            document_id: parse(&document_id)?,
            attempts,
            max_attempts,
            // Written by us in RFC 3339; an unreadable value only affects the wait metric.
            queued_at: DateTime::parse_from_rfc3339(&queued_at)
                .map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc)),
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
            "UPDATE ingestion_jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
        )
        .bind(later(lease))
        .bind(job_id.to_string())
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
            "UPDATE ingestion_jobs SET phase = ?, progress = ?, updated_at = ? \
             WHERE id = ? AND lease_owner = ? AND status = 'running'",
        )
        .bind(phase)
        .bind(progress)
        .bind(now())
        .bind(job_id.to_string())
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
        let now = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET status = 'done', phase = 'done', progress = 1, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = NULL, updated_at = ? \
             WHERE id = ? AND lease_owner = ? AND status = 'running'",
        )
        .bind(&now)
        .bind(job.job_id.to_string())
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        let document_id = job.document_id.to_string();
        let space_id = job.space_id.to_string();
        sqlx::query("DELETE FROM chunks WHERE document_id = ?")
            .bind(&document_id)
            .execute(&mut *tx)
            .await?;
        for batch in chunks.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO chunks (id, document_id, space_id, position, text, heading_path, char_start, \
                 char_end, token_count, created_at) ",
            );
            q.push_values(batch, |mut b, c| {
                b.push_bind(c.id.to_string())
                    .push_bind(&document_id)
                    .push_bind(&space_id)
                    .push_bind(c.position)
                    .push_bind(&c.text)
                    .push_bind(&c.heading_path)
                    .push_bind(c.char_start)
                    .push_bind(c.char_end)
                    .push_bind(c.token_count)
                    .push_bind(&now);
            });
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'ready', error = NULL, chunk_count = ?, updated_at = ? WHERE id = ?",
        )
        .bind(i64::try_from(chunks.len()).unwrap_or(i64::MAX))
        .bind(&now)
        .bind(&document_id)
        .execute(&mut *tx)
        .await?;
        let superseded = delete_older_versions(&mut tx, &document_id).await?;
        sqlx::query("UPDATE spaces SET version = version + 1, updated_at = ? WHERE id = ?")
            .bind(&now)
            .bind(&space_id)
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
        let now = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (job_status, doc_status, run_after) = match retry_at {
            Some(at) => ("queued", "pending", format_time(at)),
            None => ("failed", "failed", now.clone()),
        };
        let r = sqlx::query(
            "UPDATE ingestion_jobs SET status = ?, phase = ?, lease_owner = NULL, lease_expires_at = NULL, \
             last_error = ?, run_after = ?, updated_at = ? WHERE id = ? AND lease_owner = ?",
        )
        .bind(job_status)
        .bind(if retry_at.is_some() { "retrying" } else { "failed" })
        .bind(error)
        .bind(&run_after)
        .bind(&now)
        .bind(job.job_id.to_string())
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            sqlx::query("UPDATE documents SET status = ?, error = ?, updated_at = ? WHERE id = ?")
                .bind(doc_status)
                .bind(error)
                .bind(&now)
                .bind(job.document_id.to_string())
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
        // Each term quoted: user text is matched as words, never parsed as FTS5 syntax.
        let query = terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let rows: Vec<ChunkHitRow> = sqlx::query_as(&format!(
            "SELECT {CHUNK_HIT_COLUMNS}, -bm25(chunks_fts) AS score FROM chunks_fts \
             JOIN chunks c ON c.rowid = chunks_fts.rowid JOIN documents d ON d.id = c.document_id \
             WHERE chunks_fts MATCH ? AND c.space_id = ? AND d.status = 'ready' \
             AND (? IS NULL OR c.document_id = ?) ORDER BY bm25(chunks_fts) LIMIT ?"
        ))
        .bind(query)
        .bind(space_id.to_string())
        .bind(document_id.map(|d| d.to_string()))
        .bind(document_id.map(|d| d.to_string()))
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
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "SELECT {CHUNK_HIT_COLUMNS}, 0.0 AS score FROM chunks c JOIN documents d ON d.id = c.document_id \
             WHERE d.status = 'ready' AND c.space_id = "
        ));
        q.push_bind(space_id.to_string()).push(" AND c.id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.to_string());
        }
        q.push(")");
        let rows: Vec<ChunkHitRow> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn pending_documents(&self, space_id: Uuid) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM documents WHERE space_id = ? AND status IN ('pending', 'processing')",
        )
        .bind(space_id.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn space_version(&self, space_id: Uuid) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM spaces WHERE id = ?")
                .bind(space_id.to_string())
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
        sqlx::query("UPDATE spaces SET embedding_model = ?, embedding_dim = ? WHERE id = ? AND embedding_model IS NULL")
            .bind(model)
            .bind(dimensions)
            .bind(space_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn spaces_embedded_by_other_models(
        &self,
        model: &str,
    ) -> Result<Vec<StaleSpace>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, name, embedding_model FROM spaces \
             WHERE embedding_model IS NOT NULL AND embedding_model <> ? ORDER BY name",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, embedding_model)| {
                Ok(StaleSpace {
                    id: Uuid::parse_str(&id).map_err(|e| StoreError::Other(e.into()))?,
                    name,
                    embedding_model,
                })
            })
            .collect()
    }

    async fn requeue_space_for_new_model(
        &self,
        space_id: Uuid,
        previous_model: &str,
        max_attempts: i32,
    ) -> Result<usize, StoreError> {
        let now = now();
        let space_id = space_id.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "UPDATE spaces SET embedding_model = NULL, embedding_dim = NULL, version = version + 1, \
             updated_at = ? WHERE id = ? AND embedding_model = ?",
        )
        .bind(&now)
        .bind(&space_id)
        .bind(previous_model)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(0);
        }
        let documents: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM documents WHERE space_id = ? AND status = 'ready'")
                .bind(&space_id)
                .fetch_all(&mut *tx)
                .await?;
        for (document_id,) in &documents {
            sqlx::query(
                "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, max_attempts, \
                 run_after, created_at, updated_at) VALUES (?, ?, ?, 'reembed', 'queued', 'queued', ?, ?, ?, ?)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(&space_id)
            .bind(document_id)
            .bind(max_attempts)
            .bind(&now)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'pending', updated_at = ? WHERE space_id = ? AND status = 'ready'",
        )
        .bind(&now)
        .bind(&space_id)
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
        let now = now();
        sqlx::query(
            "INSERT INTO conversations (id, space_id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(space_id.to_string())
        .bind(owner.map(|o| o.to_string()))
        .bind(title)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        self.get_conversation(space_id, owner, id).await
    }

    // `user_id IS ?` rather than `=`: it matches a NULL owner (single-user mode) to NULL.
    async fn get_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
    ) -> Result<Conversation, StoreError> {
        let row: ConversationRow = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND space_id = ? AND user_id IS ?"
        ))
        .bind(id.to_string())
        .bind(space_id.to_string())
        .bind(owner.map(|o| o.to_string()))
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
        let owner = owner.map(|o| o.to_string());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE space_id = ? AND user_id IS ?",
        )
        .bind(space_id.to_string())
        .bind(owner.clone())
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE space_id = ? AND user_id IS ? ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
        ))
        .bind(space_id.to_string())
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
            "UPDATE conversations SET title = ? WHERE id = ? AND space_id = ? AND user_id IS ?",
        )
        .bind(title)
        .bind(id.to_string())
        .bind(space_id.to_string())
        .bind(owner.map(|o| o.to_string()))
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
        let result =
            sqlx::query("DELETE FROM conversations WHERE id = ? AND space_id = ? AND user_id IS ?")
                .bind(id.to_string())
                .bind(space_id.to_string())
                .bind(owner.map(|o| o.to_string()))
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
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, role, content, citations, generator, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(message.id.to_string())
        .bind(conversation_id.to_string())
        .bind(message.role)
        .bind(&message.content)
        .bind(&message.citations_json)
        .bind(message.generator.as_deref())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
            .bind(&now)
            .bind(conversation_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor_user_id, action, target_type, target_id, ip, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now())
        .bind(&entry.actor)
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
        let done = sqlx::query("DELETE FROM audit_log WHERE at < ?")
            .bind(format_time(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, actor_user_id AS actor, action, target_type, target_id, ip, details \
             FROM audit_log ORDER BY id DESC LIMIT ? OFFSET ?",
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
        let now = now();
        // One statement, so "only while none exists" holds under concurrent sign-ups.
        let guard = if only_if_first {
            " WHERE NOT EXISTS (SELECT 1 FROM users)"
        } else {
            ""
        };
        let done = sqlx::query(&format!(
            "INSERT INTO users (id, email, display_name, password_hash, is_admin, created_at, updated_at) \
             SELECT ?, ?, ?, ?, ?, ?, ?{guard}"
        ))
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("an account exists already".into()));
        }
        let row: UserRow = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(user.id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserSecretRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
             WHERE u.email = ? AND u.disabled_at IS NULL"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u ORDER BY u.created_at, u.id LIMIT ? OFFSET ?"
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
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_ms) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(user_id.to_string())
            .bind(now())
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
             WHERE s.token_hash = ? AND s.expires_ms > ? AND u.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<(), StoreError> {
        let at = disabled.then(now);
        let done = sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
            .bind(at)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Conversations would outlive their owner, unreadable by anyone: they go with it.
        sqlx::query("DELETE FROM conversations WHERE user_id = ?")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(user_id.to_string())
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
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id.to_string())
        .bind(key.user_id.to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let row: ApiKeyRow = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?"
        ))
        .bind(key.id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.disabled_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_some() {
            // At most one write a minute per key, and a failed write (a busy or read-only
            // database) never refuses the request it only records.
            let stale = format_time(Utc::now() - chrono::Duration::seconds(60));
            if let Err(e) = sqlx::query(
                "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ? \
                 AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(now())
            .bind(key_hash)
            .bind(stale)
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
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT 1000"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?",
        )
        .bind(now())
        .bind(id.to_string())
        .bind(user_id.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn member_role(&self, space_id: Uuid, user_id: Uuid) -> Result<Option<Role>, StoreError> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM space_members WHERE space_id = ? AND user_id = ?")
                .bind(space_id.to_string())
                .bind(user_id.to_string())
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
            "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (space_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(space_id.to_string())
        .bind(user_id.to_string())
        .bind(role.as_str())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_member(&self, space_id: Uuid, user_id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM space_members WHERE space_id = ? AND user_id = ?")
            .bind(space_id.to_string())
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_members(&self, space_id: Uuid) -> Result<Vec<Member>, StoreError> {
        let rows: Vec<MemberRow> = sqlx::query_as(&format!(
            "{MEMBERS_SELECT}? ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END, u.email LIMIT 1000"
        ))
        .bind(space_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn list_spaces_of(
        &self,
        user_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Space>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM space_members WHERE user_id = ?")
            .bind(user_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<SpaceRow> = sqlx::query_as(&format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s JOIN space_members m ON m.space_id = s.id \
             WHERE m.user_id = ? ORDER BY s.created_at DESC, s.id DESC LIMIT ? OFFSET ?"
        ))
        .bind(user_id.to_string())
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
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = ?")
                .bind(conversation_id.to_string())
                .fetch_one(&self.pool)
                .await?;
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT id, role, content, citations AS citations, generator, created_at FROM messages \
             WHERE conversation_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?",
        )
        .bind(conversation_id.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(page_of(rows, total, page))
    }
}
