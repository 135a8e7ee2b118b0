//! SQLite backend: one file in `DATA_DIR`, WAL journal, foreign keys on.

use super::portable::portable_store;
use super::sources::{outcome_columns, SOURCE_COLUMNS};
use super::{
    format_time, lease_millis, page_of, ChunkHit, ClaimedJob, JobCounts, MetadataStore, NewChunk,
    NewDocument, NewJob, StoreError, Superseded, CHUNK_COLUMNS, CHUNK_HIT_COLUMNS, DOCUMENT_SELECT,
    JOB_COLUMNS, SPACE_COLUMNS,
};
use super::{Accounts, AuditLog, Conversations, Documents, JobQueue, Members, Spaces};
use super::{
    NewApiKey, NewAudit, NewMessage, NewUser, StaleSpace, UserRecord, CONVERSATION_COLUMNS,
};
use super::{NewSource, SourceEntry, SourceStore, SyncOutcome};
use super::{API_KEY_COLUMNS, MEMBERS_SELECT, USER_COLUMNS};
use chrono::{DateTime, Utc};
use kenning_api::Source;
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
type SourceRow = super::sources::SourceRow<String, String>;

/// When a lease taken now for `d` runs out, as SQLite stores times.
fn later(d: Duration) -> String {
    format_time(Utc::now() + chrono::Duration::milliseconds(lease_millis(d)))
}

/// Now, as SQLite stores times.
fn now() -> String {
    format_time(Utc::now())
}

fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Other(e.into()))
}

// The dialect the portable SQL is written against (see `crate::portable`).

/// Ids are stored as their hyphenated text.
type Id = String;

fn id(u: Uuid) -> Id {
    u.to_string()
}

fn opt_id(u: Option<Uuid>) -> Option<Id> {
    u.map(id)
}

fn time(t: DateTime<Utc>) -> String {
    format_time(t)
}

fn uuid_of(s: Id) -> Result<Uuid, StoreError> {
    uuid(&s)
}

/// The current time in the same RFC 3339 form as `format_time`, so text comparisons order it.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const MINUTE_AGO: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 seconds')";
/// A write transaction holds the database's one write lock already; there are no row locks.
const FOR_UPDATE: &str = "";
const JSONB: &str = "";
/// Names and e-mail addresses are `COLLATE NOCASE` columns.
const SPACE_NAME_IS: &str = "s.name = $1";
const EMAIL_IS: &str = "u.email = $1";

fn superseded(rows: Vec<(String, String)>) -> Result<Vec<Superseded>, StoreError> {
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
            .after_release(|conn, _| Box::pin(async move { Ok(super::reusable(conn)) }))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

/// What this backend does its own way; everything else is [`crate::portable`]'s SQL.
impl SqliteStore {
    /// Every write transaction is BEGIN IMMEDIATE: it takes the write lock up front (waiting
    /// under busy_timeout) instead of failing with SQLITE_BUSY when upgrading a read later.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
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

    async fn renew(&self, job_id: Uuid, worker: &str, lease: Duration) -> Result<bool, StoreError> {
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

    async fn complete(
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

    async fn match_keywords(
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

    async fn fetch_chunks(
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

    async fn insert_user(&self, user: &NewUser, only_if_first: bool) -> Result<User, StoreError> {
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

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

portable_store!(SqliteStore, "sqlite");

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A connection handed back to the pool inside a transaction (here: one whose `Transaction`
    /// was never ended; under load, a cancelled request's) is closed, not reused: left open,
    /// `BEGIN IMMEDIATE` holds the one write lock and every later write waits out
    /// `busy_timeout` and fails.
    #[tokio::test]
    async fn a_connection_returned_inside_a_transaction_never_keeps_the_write_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("kenning.db"), 2, Duration::from_secs(5))
            .await
            .expect("open");
        sqlx::query("CREATE TABLE marks (n INTEGER)")
            .execute(&store.pool)
            .await
            .expect("table");
        for n in 0..3 {
            let mut conn = store.pool.acquire().await.expect("connection");
            let tx = conn.begin_with("BEGIN IMMEDIATE").await.expect("begin");
            std::mem::forget(tx);
            drop(conn);
            let write = sqlx::query("INSERT INTO marks (n) VALUES ($1)")
                .bind(n)
                .execute(&store.pool);
            let done = tokio::time::timeout(Duration::from_secs(2), write).await;
            assert!(
                matches!(done, Ok(Ok(_))),
                "write {n} after a connection came back in a transaction: {done:?}"
            );
        }
        let marks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM marks")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(marks, 3);
    }
}
