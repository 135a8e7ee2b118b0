//! Metadata store: spaces, documents and (soon) chunks, jobs, users. One trait, two backends —
//! SQLite in `DATA_DIR` (the embedded default) and PostgreSQL (`DATABASE_URL`) — each with its
//! own migrations, both held to the same test suite.

mod postgres;
mod postgres_sources;
mod sources;
mod sqlite;
mod sqlite_sources;
mod timed;

use chrono::{DateTime, Utc};
use kenning_api::{
    ApiKey, AuditEntry, Chunk, Conversation, Document, Job, Member, Message, Page, Role, Space,
    User,
};
use kenning_core::config::StoreConfig;
use kenning_core::domain::{Description, PageRequest, SpaceName};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use postgres::PostgresStore;
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

/// The metadata store behind every backend.
#[async_trait::async_trait]
pub trait MetadataStore: SourceStore + Send + Sync + 'static {
    /// Short backend name for health reports and logs.
    fn backend_name(&self) -> &'static str;
    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending migrations; safe to run on every start.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Creates a space, with `owner` as its first owner in the same transaction; a name already
    /// taken (case-insensitively) is a `Conflict`.
    async fn create_space(
        &self,
        id: Uuid,
        name: &SpaceName,
        description: &Description,
        owner: Option<Uuid>,
    ) -> Result<Space, StoreError>;
    /// One space with its document count.
    async fn get_space(&self, id: Uuid) -> Result<Space, StoreError>;
    /// Looks up a space by name, ignoring case (names are unique that way).
    async fn find_space_by_name(&self, name: &str) -> Result<Option<Space>, StoreError>;
    /// Spaces, newest first.
    async fn list_spaces(&self, page: PageRequest) -> Result<Page<Space>, StoreError>;
    /// Changes name and/or description; `None` leaves a field as it is.
    async fn update_space(
        &self,
        id: Uuid,
        name: Option<&SpaceName>,
        description: Option<&Description>,
    ) -> Result<Space, StoreError>;
    /// Deletes a space and (by cascade) its documents, chunks, jobs and conversations.
    async fn delete_space(&self, id: Uuid) -> Result<(), StoreError>;

    /// Records an uploaded document and queues its ingestion job in one transaction, so a
    /// document is never accepted without the work that will index it. The same content twice in
    /// one space is a `Conflict`.
    async fn insert_document(
        &self,
        doc: &NewDocument,
        job: &NewJob,
    ) -> Result<Document, StoreError>;
    /// One document of a space.
    async fn get_document(&self, space_id: Uuid, id: Uuid) -> Result<Document, StoreError>;
    /// The document of a space with this content hash, if any.
    async fn find_document_by_hash(
        &self,
        space_id: Uuid,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError>;
    /// A space's documents, newest first.
    async fn list_documents(
        &self,
        space_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Document>, StoreError>;
    /// Deletes a document of a space (with its chunks and jobs) and returns where its file was stored.
    async fn delete_document(&self, space_id: Uuid, id: Uuid) -> Result<String, StoreError>;
    /// A document's passages in order.
    async fn list_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Chunk>, StoreError>;

    /// One job of a space.
    async fn get_job(&self, space_id: Uuid, id: Uuid) -> Result<Job, StoreError>;
    /// Takes the oldest runnable job — queued and due, or running with an expired lease (its
    /// worker died) — under a lease for `worker`; concurrent workers never take the same job.
    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError>;
    /// Extends the lease; false when the job is no longer this worker's.
    async fn renew_lease(
        &self,
        job_id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;
    /// Records phase and progress; false when the job is no longer this worker's.
    async fn set_progress(
        &self,
        job_id: Uuid,
        worker: &str,
        phase: &str,
        progress: f64,
    ) -> Result<bool, StoreError>;
    /// Stores the chunks, marks the document ready, the job done, deletes the earlier versions
    /// under the document's source key and bumps the space version, all in one transaction, so
    /// search goes from the old version to the new one without a gap or an overlap. `None` (and
    /// nothing written) when the lease was lost meanwhile; otherwise the versions it replaced,
    /// whose vectors and files are the caller's to remove.
    async fn complete_job(
        &self,
        job: &ClaimedJob,
        worker: &str,
        chunks: &[NewChunk],
    ) -> Result<Option<Vec<Superseded>>, StoreError>;
    /// Records a failure: with `retry_at` the job is queued again for then, otherwise it and its
    /// document end `failed` with `error`.
    async fn fail_job(
        &self,
        job: &ClaimedJob,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Jobs by status, for health and metrics.
    async fn count_jobs(&self) -> Result<JobCounts, StoreError>;

    /// Best full-text matches for any of `terms` among a space's passages, best first.
    async fn keyword_search(
        &self,
        space_id: Uuid,
        terms: &[String],
        document_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ChunkHit>, StoreError>;
    /// Passages of a space by id, in no particular order; ids of other spaces are ignored.
    async fn chunks_by_ids(
        &self,
        space_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<ChunkHit>, StoreError>;
    /// Documents of a space not yet ready or failed (still being ingested).
    async fn pending_documents(&self, space_id: Uuid) -> Result<i64, StoreError>;
    /// The space's version, bumped by every change to its searchable content.
    async fn space_version(&self, space_id: Uuid) -> Result<i64, StoreError>;
    /// Records which model embedded a space's passages, the first time it indexes any.
    async fn record_embedding_model(
        &self,
        space_id: Uuid,
        model: &str,
        dimensions: i64,
    ) -> Result<(), StoreError>;
    /// The spaces whose passages another model than `model` embedded.
    async fn spaces_embedded_by_other_models(
        &self,
        model: &str,
    ) -> Result<Vec<StaleSpace>, StoreError>;
    /// In one transaction, if `previous_model` still embeds the space: forgets that model and
    /// queues each ready document to be indexed again (`reembed` jobs), so a new model's vectors
    /// replace the old instead of mixing with them. Returns the documents queued.
    async fn requeue_space_for_new_model(
        &self,
        space_id: Uuid,
        previous_model: &str,
        max_attempts: i32,
    ) -> Result<usize, StoreError>;
    /// Starts a conversation in a space, owned by `owner`: the account that asked, or `None` in
    /// single-user mode, which has no accounts.
    ///
    /// A conversation is private to whoever started it — its title is their question — so the
    /// conversation calls below all take the owner and treat another owner's conversation as
    /// one that does not exist, whatever the caller's role in the space (admins included).
    /// `None` matches only rows without an owner: conversations of single-user mode, and
    /// those written before conversations recorded their owner, which are thus visible in
    /// single-user mode only (as are the ones of a deleted account, whose id the database
    /// clears).
    async fn create_conversation(
        &self,
        id: Uuid,
        space_id: Uuid,
        owner: Option<Uuid>,
        title: &str,
    ) -> Result<Conversation, StoreError>;
    /// One of `owner`'s conversations in a space; `NotFound` for anybody else's.
    async fn get_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
    ) -> Result<Conversation, StoreError>;
    /// `owner`'s conversations in a space, most recently active first; nobody else's.
    async fn list_conversations(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError>;
    /// Renames one of `owner`'s conversations; `NotFound` for anybody else's.
    async fn rename_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
        title: &str,
    ) -> Result<Conversation, StoreError>;
    /// Deletes one of `owner`'s conversations with its messages; `NotFound` for anybody else's.
    async fn delete_conversation(
        &self,
        space_id: Uuid,
        owner: Option<Uuid>,
        id: Uuid,
    ) -> Result<(), StoreError>;
    /// Appends a turn and marks the conversation active now.
    ///
    /// Keyed by the conversation alone: callers must have found the conversation with
    /// `get_conversation` under the caller as owner first (or just created it).
    async fn add_message(
        &self,
        conversation_id: Uuid,
        message: &NewMessage,
    ) -> Result<(), StoreError>;
    /// A conversation's turns, oldest first.
    ///
    /// Keyed by the conversation alone, like `add_message`: check ownership with
    /// `get_conversation` before.
    async fn list_messages(
        &self,
        conversation_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Message>, StoreError>;
    /// Appends an entry to the audit log.
    async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError>;
    /// The audit log, newest first.
    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;
    /// Deletes audit entries older than `before` (retention); returns how many went.
    async fn delete_audit_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Accounts there are; none means the first one becomes the admin.
    async fn count_users(&self) -> Result<i64, StoreError>;
    /// Creates an account (`Conflict` when the email is taken). With `only_if_first`, it is
    /// created only while no account exists, atomically, so two first sign-ups cannot both win.
    async fn create_user(&self, user: &NewUser, only_if_first: bool) -> Result<User, StoreError>;
    /// An account by email (any case), with its password hash, for sign-in.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// One account.
    async fn get_user(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    /// Accounts, oldest first.
    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError>;
    /// Stores a sign-in session by the hash of its token.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: Uuid,
        expires_ms: i64,
    ) -> Result<(), StoreError>;
    /// The account of a session that has not expired.
    async fn session_user(&self, token_hash: &str, now_ms: i64)
        -> Result<Option<User>, StoreError>;
    /// Ends a session (signing out).
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Drops sessions that expired, so the table stays bounded.
    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Ends every session of an account (sign out everywhere, or after a password change).
    async fn delete_sessions_of(&self, user_id: Uuid) -> Result<u64, StoreError>;
    /// Replaces an account's password hash; `NotFound` when there is no such account.
    /// Disables an account (its sessions and keys stop working, sign-in is refused) or enables
    /// it again; `NotFound` when there is no such account.
    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<(), StoreError>;
    /// Deletes an account with its sessions, keys, memberships and conversations.
    async fn delete_user(&self, user_id: Uuid) -> Result<(), StoreError>;
    async fn set_password_hash(&self, user_id: Uuid, password_hash: &str)
        -> Result<(), StoreError>;
    /// Stores an API key by its hash.
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError>;
    /// The account of a key that is not revoked; records when it was used.
    async fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError>;
    /// A user's keys, newest first (revoked ones included, marked).
    async fn list_api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes one of a user's keys; `NotFound` when the key is not theirs.
    async fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> Result<(), StoreError>;
    /// The role an account has in a space, if it is a member.
    async fn member_role(&self, space_id: Uuid, user_id: Uuid) -> Result<Option<Role>, StoreError>;
    /// Adds a member or changes their role.
    async fn set_member(&self, space_id: Uuid, user_id: Uuid, role: Role)
        -> Result<(), StoreError>;
    /// Removes a member; `NotFound` when they were not one.
    async fn remove_member(&self, space_id: Uuid, user_id: Uuid) -> Result<(), StoreError>;
    /// A space's members, owners first.
    async fn list_members(&self, space_id: Uuid) -> Result<Vec<Member>, StoreError>;
    /// The spaces an account is a member of, newest first.
    async fn list_spaces_of(
        &self,
        user_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Space>, StoreError>;
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

/// A user row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow<I, T> {
    id: I,
    email: String,
    display_name: String,
    is_admin: bool,
    created_at: T,
    disabled: bool,
}

impl<I: Wire, T: Wire> From<UserRow<I, T>> for User {
    fn from(r: UserRow<I, T>) -> Self {
        User {
            id: r.id.wire(),
            email: r.email,
            display_name: r.display_name,
            is_admin: r.is_admin,
            created_at: r.created_at.wire(),
            disabled: r.disabled,
        }
    }
}

/// A user row with the password hash.
#[derive(sqlx::FromRow)]
pub(crate) struct UserSecretRow<I, T> {
    #[sqlx(flatten)]
    user: UserRow<I, T>,
    password_hash: Option<String>,
}

impl<I: Wire, T: Wire> From<UserSecretRow<I, T>> for UserRecord {
    fn from(r: UserSecretRow<I, T>) -> Self {
        UserRecord {
            user: r.user.into(),
            password_hash: r.password_hash,
        }
    }
}

/// Columns selected for a user; the table is aliased `u`.
pub(crate) const USER_COLUMNS: &str =
    "u.id, u.email, u.display_name, u.is_admin, u.created_at, (u.disabled_at IS NOT NULL) AS disabled";

/// An API key row.
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow<I, T> {
    id: I,
    name: String,
    prefix: String,
    created_at: T,
    last_used_at: Option<T>,
    revoked_at: Option<T>,
}

impl<I: Wire, T: Wire> From<ApiKeyRow<I, T>> for ApiKey {
    fn from(r: ApiKeyRow<I, T>) -> Self {
        ApiKey {
            id: r.id.wire(),
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at.wire(),
            last_used_at: r.last_used_at.map(Wire::wire),
            revoked_at: r.revoked_at.map(Wire::wire),
        }
    }
}

/// Columns selected for an API key.
pub(crate) const API_KEY_COLUMNS: &str = "id, name, prefix, created_at, last_used_at, revoked_at";

/// A member row.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow<I> {
    user_id: I,
    email: String,
    role: String,
}

impl<I: Wire> From<MemberRow<I>> for Member {
    fn from(r: MemberRow<I>) -> Self {
        Member {
            user_id: r.user_id.wire(),
            email: r.email,
            // The column's CHECK constraint admits only the three names.
            role: Role::parse(&r.role).unwrap_or(Role::Viewer),
        }
    }
}

/// Members of a space with their emails, owners first.
pub(crate) const MEMBERS_SELECT: &str = "SELECT m.user_id, u.email, m.role FROM space_members m     JOIN users u ON u.id = m.user_id WHERE m.space_id = ";

/// A passage with its document's file name and a backend score (meaningful for keyword hits).
#[derive(Debug, Clone)]
pub struct ChunkHit {
    pub chunk: Chunk,
    pub filename: String,
    pub score: f64,
}

/// A chunk row joined with its document's file name and a score.
#[derive(sqlx::FromRow)]
pub(crate) struct ChunkHitRow<I> {
    #[sqlx(flatten)]
    chunk: ChunkRow<I>,
    filename: String,
    score: f64,
}

impl<I: Wire> From<ChunkHitRow<I>> for ChunkHit {
    fn from(r: ChunkHitRow<I>) -> Self {
        ChunkHit {
            chunk: r.chunk.into(),
            filename: r.filename,
            score: r.score,
        }
    }
}

/// Columns of a chunk hit, with chunks aliased `c` and documents `d`.
pub(crate) const CHUNK_HIT_COLUMNS: &str =
    "c.id, c.document_id, c.position, c.text, c.heading_path, \
    c.char_start, c.char_end, c.token_count, d.filename";

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

/// Timestamps go over the wire as RFC 3339 UTC with milliseconds.
pub(crate) fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A column value as a backend decodes it (SQLite text, PostgreSQL UUID or TIMESTAMPTZ), turned
/// into its wire form in one place so both backends answer with identical JSON.
pub(crate) trait Wire {
    fn wire(self) -> String;
}

impl Wire for String {
    fn wire(self) -> String {
        self
    }
}

impl Wire for Uuid {
    fn wire(self) -> String {
        self.to_string()
    }
}

impl Wire for chrono::DateTime<chrono::Utc> {
    fn wire(self) -> String {
        format_time(self)
    }
}

/// Columns selected for a space, with its document count; the table is aliased `s`.
pub(crate) const SPACE_COLUMNS: &str = "s.id, s.name, s.description, \
    (SELECT COUNT(*) FROM documents d WHERE d.space_id = s.id) AS document_count, \
    s.created_at, s.updated_at";

/// Selects documents (aliased `d`) with the progress of each one's latest ingestion job.
pub(crate) const DOCUMENT_SELECT: &str =
    "SELECT d.id, d.space_id, d.filename, d.mime, d.size_bytes, \
    d.content_hash, d.status, d.error, d.chunk_count, d.created_at, d.updated_at, \
    d.source_id, d.source_key, d.version, \
    j.id AS job_id, j.phase AS phase, COALESCE(j.progress, 0.0) AS progress \
    FROM documents d LEFT JOIN ingestion_jobs j ON j.id = (SELECT j2.id FROM ingestion_jobs j2 \
    WHERE j2.document_id = d.id ORDER BY j2.created_at DESC, j2.id DESC LIMIT 1)";

/// Columns selected for a job.
pub(crate) const JOB_COLUMNS: &str = "id, space_id, document_id, kind, status, phase, progress, \
    attempts, max_attempts, last_error, created_at, updated_at";

/// Columns selected for a chunk.
pub(crate) const CHUNK_COLUMNS: &str =
    "id, document_id, position, text, heading_path, char_start, char_end, token_count";

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

/// An audit row; `T` is the backend's time type, `details` JSON text from both backends.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow<T> {
    id: i64,
    at: T,
    actor: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    details: String,
}

impl<T: Wire> From<AuditRow<T>> for AuditEntry {
    fn from(r: AuditRow<T>) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at.wire(),
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            ip: r.ip,
            details: serde_json::from_str(&r.details).unwrap_or_default(),
        }
    }
}

/// Columns selected for a conversation.
pub(crate) const CONVERSATION_COLUMNS: &str = "id, space_id, title, created_at, updated_at";

/// A conversation row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow<I, T> {
    id: I,
    space_id: I,
    title: String,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<ConversationRow<I, T>> for Conversation {
    fn from(r: ConversationRow<I, T>) -> Self {
        Conversation {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            title: r.title,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A message row; citations arrive as JSON text from both backends.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow<I, T> {
    id: I,
    role: String,
    content: String,
    citations: String,
    generator: Option<String>,
    created_at: T,
}

impl<I: Wire, T: Wire> From<MessageRow<I, T>> for Message {
    fn from(r: MessageRow<I, T>) -> Self {
        Message {
            id: r.id.wire(),
            role: r.role,
            content: r.content,
            // Written by us from `Citation`s; an unreadable value shows as no citations.
            citations: serde_json::from_str(&r.citations).unwrap_or_default(),
            generator: r.generator,
            created_at: r.created_at.wire(),
            html: None,
        }
    }
}

/// A space row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct SpaceRow<I, T> {
    id: I,
    name: String,
    description: String,
    document_count: i64,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<SpaceRow<I, T>> for Space {
    fn from(r: SpaceRow<I, T>) -> Self {
        Space {
            id: r.id.wire(),
            name: r.name,
            description: r.description,
            document_count: r.document_count,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A document row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct DocumentRow<I, T> {
    id: I,
    space_id: I,
    filename: String,
    mime: String,
    size_bytes: i64,
    content_hash: String,
    status: String,
    error: Option<String>,
    chunk_count: i64,
    created_at: T,
    updated_at: T,
    job_id: Option<I>,
    phase: Option<String>,
    progress: f64,
    source_id: Option<I>,
    source_key: Option<String>,
    version: i64,
}

impl<I: Wire, T: Wire> From<DocumentRow<I, T>> for Document {
    fn from(r: DocumentRow<I, T>) -> Self {
        Document {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            filename: r.filename,
            mime: r.mime,
            size_bytes: r.size_bytes,
            content_hash: r.content_hash,
            status: r.status,
            error: r.error,
            chunk_count: r.chunk_count,
            job_id: r.job_id.map(Wire::wire),
            phase: r.phase,
            progress: r.progress,
            source_id: r.source_id.map(Wire::wire),
            source_key: r.source_key,
            version: r.version,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A job row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow<I, T> {
    id: I,
    space_id: I,
    document_id: Option<I>,
    kind: String,
    status: String,
    phase: Option<String>,
    progress: f64,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<JobRow<I, T>> for Job {
    fn from(r: JobRow<I, T>) -> Self {
        Job {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            document_id: r.document_id.map(Wire::wire),
            kind: r.kind,
            status: r.status,
            phase: r.phase,
            progress: r.progress,
            attempts: r.attempts.into(),
            max_attempts: r.max_attempts.into(),
            last_error: r.last_error,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A chunk row; `I` is the backend's id type.
#[derive(sqlx::FromRow)]
pub(crate) struct ChunkRow<I> {
    id: I,
    document_id: I,
    position: i32,
    text: String,
    heading_path: String,
    char_start: i64,
    char_end: i64,
    token_count: i32,
}

impl<I: Wire> From<ChunkRow<I>> for Chunk {
    fn from(r: ChunkRow<I>) -> Self {
        Chunk {
            id: r.id.wire(),
            document_id: r.document_id.wire(),
            position: r.position.into(),
            text: r.text,
            heading_path: r.heading_path,
            char_start: r.char_start,
            char_end: r.char_end,
            token_count: r.token_count.into(),
        }
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
