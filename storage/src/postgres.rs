//! PostgreSQL backend: shared by every server instance; ids are UUIDs, times TIMESTAMPTZ.

use super::portable::portable_store;
use super::sources::{outcome_columns, SOURCE_COLUMNS};
use super::{
    lease_millis, page_of, ChunkHit, ClaimedJob, JobCounts, MetadataStore, NewChunk, NewDocument,
    NewJob, StoreError, Superseded, CHUNK_COLUMNS, CHUNK_HIT_COLUMNS, DOCUMENT_SELECT, JOB_COLUMNS,
    SPACE_COLUMNS,
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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use sqlx::{Postgres, Transaction};
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
type SourceRow = super::sources::SourceRow<Uuid, DateTime<Utc>>;

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
            .after_release(|conn, _| Box::pin(async move { Ok(super::reusable(conn)) }))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

// The dialect the portable SQL is written against (see `crate::portable`).

type Id = Uuid;

fn id(u: Uuid) -> Id {
    u
}

fn opt_id(u: Option<Uuid>) -> Option<Id> {
    u
}

fn time(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

fn uuid_of(u: Id) -> Result<Uuid, StoreError> {
    Ok(u)
}

/// When a lease taken now for `lease` runs out.
fn later(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(lease_millis(lease))
}

fn superseded(rows: Vec<(Id, String)>) -> Result<Vec<Superseded>, StoreError> {
    Ok(rows
        .into_iter()
        .map(|(id, storage_path)| Superseded { id, storage_path })
        .collect())
}

/// Deletes the versions under the document's key older than it, inside the completing
/// transaction.
async fn delete_older_versions(
    tx: &mut Transaction<'_, Postgres>,
    document_id: Uuid,
) -> Result<Vec<Superseded>, StoreError> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM documents o USING documents n \
         WHERE n.id = $1 AND o.space_id = n.space_id AND o.source_key = n.source_key \
         AND o.version < n.version RETURNING o.id, o.storage_path",
    )
    .bind(document_id)
    .fetch_all(&mut **tx)
    .await?;
    superseded(rows)
}

/// What a claimed job's update returns.
type ClaimRow = (Uuid, Uuid, Option<Uuid>, i32, i32, DateTime<Utc>);

/// The database's clock, not each instance's: every instance agrees on lease expiry and order.
const NOW: &str = "now()";
const MINUTE_AGO: &str = "(now() - interval '60 seconds')";
const FOR_UPDATE: &str = " FOR UPDATE";
const JSONB: &str = "::jsonb";
/// Names and e-mail addresses are unique by `lower()`, which their indexes are built on.
const SPACE_NAME_IS: &str = "lower(s.name) = lower($1)";
const EMAIL_IS: &str = "lower(u.email) = lower($1)";

/// What this backend does its own way; everything else is [`crate::portable`]'s SQL.
impl PostgresStore {
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: concurrent workers (in this or other instances) each take a different job.
        let claimed: Option<ClaimRow> = sqlx::query_as(
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

    async fn renew(&self, job_id: Uuid, worker: &str, lease: Duration) -> Result<bool, StoreError> {
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

    async fn complete(
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
        let superseded = delete_older_versions(&mut tx, job.document_id).await?;
        sqlx::query("UPDATE spaces SET version = version + 1, updated_at = now() WHERE id = $1")
            .bind(job.space_id)
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

    async fn fetch_chunks(
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

    async fn insert_user(&self, user: &NewUser, only_if_first: bool) -> Result<User, StoreError> {
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

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

portable_store!(PostgresStore, "postgres");
