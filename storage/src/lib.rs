//! Metadata store: spaces, documents and (soon) chunks, jobs, users. One trait, two backends —
//! SQLite in `DATA_DIR` (the embedded default) and PostgreSQL (`DATABASE_URL`) — each with its
//! own migrations, both held to the same test suite.

mod portable;
mod postgres;
mod repos;
mod rows;
mod sources;
mod sqlite;
mod timed;

use chrono::{DateTime, Utc};
use kenning_api::{Chunk, Page, User};
use kenning_core::config::StoreConfig;
use kenning_core::domain::PageRequest;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use repos::{
    Accounts, AuditLog, Conversations, Documents, JobQueue, Members, MetadataStore, Spaces,
};
pub(crate) use rows::*;
pub use sources::{NewSource, SourceEntry, SourceStore, Superseded, SyncOutcome};
pub use sqlite::SqliteStore;
pub use timed::Timed;

/// A space embedded by another model than the one this process runs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleSpace {
    pub id: Uuid,
    pub name: String,
    /// The model that embedded it.
    pub embedding_model: String,
}

/// Failures a caller can act on; everything else is `Other` and logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// Text the database cannot hold (a NUL character on PostgreSQL): the client's input, a 400.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // A foreign key violation here means the parent (a space) vanished meanwhile.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            // Deadlock or serialization failure: the statement can simply be tried again.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                StoreError::Unavailable(db.message().to_string())
            }
            // PostgreSQL refuses NUL in text (22021) and `\u0000` in JSON (22P05): bad input
            // that got past the edge, not a server failure.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                StoreError::Invalid("Text may not contain NUL characters (U+0000).".to_string())
            }
            // SQLite's busy (5) and locked (6) codes, extended ones included: the write lock
            // stayed taken past `busy_timeout`, a wait worth retrying, not a failure.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .and_then(|c| c.parse::<u32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6))
                    && db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                StoreError::Unavailable(db.message().to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(anyhow::Error::new(e)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(anyhow::Error::new(e).context("applying migrations"))
    }
}

/// A document row about to be written; the file is already durable at `storage_path`.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: Uuid,
    pub space_id: Uuid,
    pub filename: String,
    pub mime: String,
    pub size_bytes: i64,
    pub content_hash: String,
    pub storage_path: String,
    /// The source it was read from, if a sync added it.
    pub source_id: Option<Uuid>,
    /// A file's path or a page's URL: a newer version under the same key replaces the older
    /// ones once it is indexed.
    pub source_key: String,
    /// What a sync compares to skip an unchanged file without reading it (size and mtime).
    pub source_stamp: Option<String>,
}

/// An ingestion job to queue together with its document.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub max_attempts: i32,
}

/// A passage to store when a document's ingestion completes.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub id: Uuid,
    pub position: i32,
    pub text: String,
    pub heading_path: String,
    pub char_start: i64,
    pub char_end: i64,
    pub token_count: i32,
}

/// A job a worker holds under lease, with what it needs to do the work.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job_id: Uuid,
    pub space_id: Uuid,
    pub document_id: Uuid,
    /// Attempts including this one.
    pub attempts: i32,
    pub max_attempts: i32,
    /// When the job was queued, for the queue-wait metric.
    pub queued_at: DateTime<Utc>,
    pub storage_path: String,
    pub filename: String,
    pub mime: String,
    pub chunk_size: i32,
    pub chunk_overlap: i32,
}

/// A conversation turn to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
    /// The cited sources as a JSON array of `Citation`s.
    pub citations_json: String,
    pub generator: Option<String>,
}

/// An account about to be stored; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub is_admin: bool,
}

/// An account with its password hash, as sign-in needs it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: Option<String>,
}

/// An API key about to be stored: only its hash and visible prefix, never the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
}

/// A passage with its document's file name and a backend score (meaningful for keyword hits).
#[derive(Debug, Clone)]
pub struct ChunkHit {
    pub chunk: Chunk,
    pub filename: String,
    pub score: f64,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

impl JobCounts {
    /// Totals `(status, count)` rows of a `GROUP BY status` query.
    pub(crate) fn from_rows(rows: Vec<(String, i64)>) -> Self {
        let mut counts = Self::default();
        for (status, n) in rows {
            match status.as_str() {
                "queued" => counts.queued += n,
                "running" => counts.running += n,
                "done" => counts.done += n,
                "failed" => counts.failed += n,
                _ => {}
            }
        }
        counts
    }
}

/// Opens the configured backend: PostgreSQL when `DATABASE_URL` is set, else SQLite in `DATA_DIR`.
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn MetadataStore>, StoreError> {
    Ok(connect_with_pool(config).await?.0)
}

/// The connection pool of the metadata store, for stores that live beside it.
#[derive(Clone)]
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Like [`connect`], also handing back the pool for stores that live beside the metadata.
pub async fn connect_with_pool(
    config: &StoreConfig,
) -> Result<(Arc<dyn MetadataStore>, Pool), StoreError> {
    let acquire = std::time::Duration::from_millis(config.db_acquire_timeout_ms);
    match &config.database_url {
        Some(url) => {
            let store =
                PostgresStore::connect(url.expose_secret(), config.db_max_connections, acquire)
                    .await?;
            let pool = Pool::Postgres(store.pool());
            Ok((Arc::new(Timed::new(Arc::new(store))), pool))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create data directory {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            let path = config.data_dir.join("kenning.db");
            let store = SqliteStore::open(&path, config.db_max_connections, acquire).await?;
            let pool = Pool::Sqlite(store.pool());
            Ok((Arc::new(Timed::new(Arc::new(store))), pool))
        }
    }
}

/// An audit log entry to write; the store stamps the time.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The account that asked, if any.
    pub actor: Option<String>,
    pub action: String,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

/// Whether a connection handed back to the pool may serve the next caller. One still inside a
/// transaction is closed instead (which rolls it back): a caller cancelled while its `BEGIN`
/// was answered leaves no `Transaction` to end it, and on SQLite a `BEGIN IMMEDIATE` left open
/// would hold the database's one write lock until the connection happened to be used again.
pub(crate) fn reusable<C: sqlx::Connection>(conn: &C) -> bool {
    !conn.is_in_transaction()
}

/// `NotFound` when a statement changed no row: the row it names does not exist (for this caller).
pub(crate) fn found(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Milliseconds of a lease, as the SQL interval arithmetic wants them.
pub(crate) fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Builds a page from decoded rows.
pub(crate) fn page_of<R, T: From<R>>(rows: Vec<R>, total: i64, page: PageRequest) -> Page<T> {
    Page {
        items: rows.into_iter().map(Into::into).collect(),
        total,
        limit: page.limit,
        offset: page.offset,
    }
}
