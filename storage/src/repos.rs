//! The store's repositories, one trait per aggregate, so a caller names what it uses and a
//! backend implements each one whole. [`MetadataStore`] is all of them together.

use super::{ChunkHit, ClaimedJob, JobCounts, NewApiKey, NewAudit, NewChunk, NewDocument, NewJob};
use super::{NewMessage, NewUser, SourceStore, StaleSpace, StoreError, Superseded, UserRecord};
use chrono::{DateTime, Utc};
use kenning_api::{
    ApiKey, AuditEntry, Chunk, Conversation, Document, Job, Member, Message, Page, Role, Space,
    User,
};
use kenning_core::domain::{Description, PageRequest, SpaceName};
use std::time::Duration;
use uuid::Uuid;

/// The metadata store behind every backend: each aggregate's repository, and the store itself.
#[async_trait::async_trait]
pub trait MetadataStore:
    Spaces
    + Documents
    + JobQueue
    + Conversations
    + AuditLog
    + Accounts
    + Members
    + SourceStore
    + Send
    + Sync
    + 'static
{
    /// Short backend name for health reports and logs.
    fn backend_name(&self) -> &'static str;
    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending migrations; safe to run on every start.
    async fn migrate(&self) -> Result<(), StoreError>;
}

/// Knowledge spaces: their settings, version and embedding model.
#[async_trait::async_trait]
pub trait Spaces: Send + Sync {
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
}

/// A space's documents and their passages.
#[async_trait::async_trait]
pub trait Documents: Send + Sync {
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
    /// Documents of a space not yet ready or failed (still being ingested).
    async fn pending_documents(&self, space_id: Uuid) -> Result<i64, StoreError>;
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
}

/// The durable ingestion queue: jobs taken under lease, so a crashed worker's job runs again.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
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
}

/// Conversations and their turns, each private to the account that started it.
#[async_trait::async_trait]
pub trait Conversations: Send + Sync {
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
}

/// Who changed what, kept for a retention period.
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry to the audit log.
    async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError>;
    /// The audit log, newest first.
    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;
    /// Deletes audit entries older than `before` (retention); returns how many went.
    async fn delete_audit_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Accounts, their sessions and API keys.
#[async_trait::async_trait]
pub trait Accounts: Send + Sync {
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
    /// Disables an account (its sessions and keys stop working, sign-in is refused) or enables
    /// it again; `NotFound` when there is no such account.
    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<(), StoreError>;
    /// Deletes an account with its sessions, keys, memberships and conversations.
    async fn delete_user(&self, user_id: Uuid) -> Result<(), StoreError>;
    /// Replaces an account's password hash; `NotFound` when there is no such account.
    async fn set_password_hash(&self, user_id: Uuid, password_hash: &str)
        -> Result<(), StoreError>;
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
    /// Stores an API key by its hash.
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError>;
    /// The account of a key that is not revoked; records when it was used.
    async fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError>;
    /// A user's keys, newest first (revoked ones included, marked).
    async fn list_api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes one of a user's keys; `NotFound` when the key is not theirs.
    async fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> Result<(), StoreError>;
}

/// Who may do what in a space.
#[async_trait::async_trait]
pub trait Members: Send + Sync {
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
