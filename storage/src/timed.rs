//! Every metadata store call counted and timed (`db_queries_total`,
//! `db_query_duration_seconds`, by operation), whatever the backend: a decorator, so the
//! backends stay free of metrics code and no call can be forgotten.

use super::{Accounts, AuditLog, Conversations, Documents, JobQueue, Members, Spaces};
use super::{ChunkHit, ClaimedJob, JobCounts, MetadataStore, NewChunk, NewMessage, StoreError};
use super::{NewApiKey, NewAudit, NewDocument, NewJob, NewUser, StaleSpace, UserRecord};
use super::{NewSource, SourceEntry, SourceStore, Superseded, SyncOutcome};
use chrono::{DateTime, Utc};
use kenning_api::{
    ApiKey, AuditEntry, Chunk, Conversation, Document, Job, Member, Message, Page, Role, Source,
    Space, User,
};
use kenning_core::domain::{Description, PageRequest, SpaceName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A metadata store whose calls are measured.
pub struct Timed {
    inner: Arc<dyn MetadataStore>,
}

impl Timed {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn MetadataStore>) -> Self {
        Self { inner }
    }
}

/// Forwards each listed call to the inner store and records its duration under its own name.
macro_rules! timed {
    ($trait:ident { $($extra:item)* } $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        #[async_trait::async_trait]
        impl $trait for Timed {
            $($extra)*
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    kenning_metrics::global().record_db(stringify!($name), started.elapsed());
                    result
                }
            )*
        }
    };
}

timed! {
    MetadataStore {
        fn backend_name(&self) -> &'static str {
            self.inner.backend_name()
        }
    }
    fn ping(&self) -> Result<(), StoreError>;
    fn migrate(&self) -> Result<(), StoreError>;
}

timed! {
    Spaces {}
    fn create_space(&self, id: Uuid, name: &SpaceName, description: &Description, owner: Option<Uuid>) -> Result<Space, StoreError>;
    fn get_space(&self, id: Uuid) -> Result<Space, StoreError>;
    fn find_space_by_name(&self, name: &str) -> Result<Option<Space>, StoreError>;
    fn list_spaces(&self, page: PageRequest) -> Result<Page<Space>, StoreError>;
    fn update_space(&self, id: Uuid, name: Option<&SpaceName>, description: Option<&Description>) -> Result<Space, StoreError>;
    fn delete_space(&self, id: Uuid) -> Result<(), StoreError>;
    fn space_version(&self, space_id: Uuid) -> Result<i64, StoreError>;
    fn record_embedding_model(&self, space_id: Uuid, model: &str, dimensions: i64) -> Result<(), StoreError>;
    fn spaces_embedded_by_other_models(&self, model: &str) -> Result<Vec<StaleSpace>, StoreError>;
    fn requeue_space_for_new_model(&self, space_id: Uuid, previous_model: &str, max_attempts: i32) -> Result<usize, StoreError>;
}

timed! {
    Documents {}
    fn insert_document(&self, doc: &NewDocument, job: &NewJob) -> Result<Document, StoreError>;
    fn get_document(&self, space_id: Uuid, id: Uuid) -> Result<Document, StoreError>;
    fn find_document_by_hash(&self, space_id: Uuid, content_hash: &str) -> Result<Option<Document>, StoreError>;
    fn list_documents(&self, space_id: Uuid, page: PageRequest) -> Result<Page<Document>, StoreError>;
    fn delete_document(&self, space_id: Uuid, id: Uuid) -> Result<String, StoreError>;
    fn list_chunks(&self, space_id: Uuid, document_id: Uuid, page: PageRequest) -> Result<Page<Chunk>, StoreError>;
    fn pending_documents(&self, space_id: Uuid) -> Result<i64, StoreError>;
    fn keyword_search(&self, space_id: Uuid, terms: &[String], document_id: Option<Uuid>, limit: i64) -> Result<Vec<ChunkHit>, StoreError>;
    fn chunks_by_ids(&self, space_id: Uuid, ids: &[Uuid]) -> Result<Vec<ChunkHit>, StoreError>;
}

timed! {
    JobQueue {}
    fn get_job(&self, space_id: Uuid, id: Uuid) -> Result<Job, StoreError>;
    fn claim_job(&self, worker: &str, lease: Duration) -> Result<Option<ClaimedJob>, StoreError>;
    fn renew_lease(&self, job_id: Uuid, worker: &str, lease: Duration) -> Result<bool, StoreError>;
    fn set_progress(&self, job_id: Uuid, worker: &str, phase: &str, progress: f64) -> Result<bool, StoreError>;
    fn complete_job(&self, job: &ClaimedJob, worker: &str, chunks: &[NewChunk]) -> Result<Option<Vec<Superseded>>, StoreError>;
    fn fail_job(&self, job: &ClaimedJob, worker: &str, error: &str, retry_at: Option<DateTime<Utc>>) -> Result<(), StoreError>;
    fn count_jobs(&self) -> Result<JobCounts, StoreError>;
}

timed! {
    Conversations {}
    fn create_conversation(&self, id: Uuid, space_id: Uuid, owner: Option<Uuid>, title: &str) -> Result<Conversation, StoreError>;
    fn get_conversation(&self, space_id: Uuid, owner: Option<Uuid>, id: Uuid) -> Result<Conversation, StoreError>;
    fn list_conversations(&self, space_id: Uuid, owner: Option<Uuid>, page: PageRequest) -> Result<Page<Conversation>, StoreError>;
    fn rename_conversation(&self, space_id: Uuid, owner: Option<Uuid>, id: Uuid, title: &str) -> Result<Conversation, StoreError>;
    fn delete_conversation(&self, space_id: Uuid, owner: Option<Uuid>, id: Uuid) -> Result<(), StoreError>;
    fn add_message(&self, conversation_id: Uuid, message: &NewMessage) -> Result<(), StoreError>;
    fn list_messages(&self, conversation_id: Uuid, page: PageRequest) -> Result<Page<Message>, StoreError>;
}

timed! {
    AuditLog {}
    fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError>;
    fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;
    fn delete_audit_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

timed! {
    Accounts {}
    fn count_users(&self) -> Result<i64, StoreError>;
    fn create_user(&self, user: &NewUser, only_if_first: bool) -> Result<User, StoreError>;
    fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    fn get_user(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError>;
    fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<(), StoreError>;
    fn delete_user(&self, user_id: Uuid) -> Result<(), StoreError>;
    fn set_password_hash(&self, user_id: Uuid, password_hash: &str) -> Result<(), StoreError>;
    fn create_session(&self, token_hash: &str, user_id: Uuid, expires_ms: i64) -> Result<(), StoreError>;
    fn session_user(&self, token_hash: &str, now_ms: i64) -> Result<Option<User>, StoreError>;
    fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError>;
    fn delete_sessions_of(&self, user_id: Uuid) -> Result<u64, StoreError>;
    fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError>;
    fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError>;
    fn list_api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError>;
    fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> Result<(), StoreError>;
}

timed! {
    Members {}
    fn member_role(&self, space_id: Uuid, user_id: Uuid) -> Result<Option<Role>, StoreError>;
    fn set_member(&self, space_id: Uuid, user_id: Uuid, role: Role) -> Result<(), StoreError>;
    fn remove_member(&self, space_id: Uuid, user_id: Uuid) -> Result<(), StoreError>;
    fn list_members(&self, space_id: Uuid) -> Result<Vec<Member>, StoreError>;
    fn list_spaces_of(&self, user_id: Uuid, page: PageRequest) -> Result<Page<Space>, StoreError>;
}

timed! {
    SourceStore {}
    fn create_source(&self, source: &NewSource) -> Result<Source, StoreError>;
    fn get_source(&self, space_id: Uuid, id: Uuid) -> Result<Source, StoreError>;
    fn list_sources(&self, space_id: Uuid) -> Result<Vec<Source>, StoreError>;
    fn delete_source(&self, space_id: Uuid, id: Uuid) -> Result<Vec<Superseded>, StoreError>;
    fn claim_sync(&self, id: Uuid, lease: Duration) -> Result<bool, StoreError>;
    fn sync_progress(&self, id: Uuid, phase: &str, progress: f64, lease: Duration) -> Result<(), StoreError>;
    fn finish_sync(&self, id: Uuid, outcome: &SyncOutcome, next_sync_at: Option<DateTime<Utc>>) -> Result<(), StoreError>;
    fn due_sources(&self, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError>;
    fn watched_sources(&self) -> Result<Vec<(Uuid, Uuid, String)>, StoreError>;
    fn source_entries(&self, space_id: Uuid, source_id: Uuid) -> Result<Vec<SourceEntry>, StoreError>;
    fn set_source_stamp(&self, document_id: Uuid, stamp: &str) -> Result<(), StoreError>;
    fn delete_key(&self, space_id: Uuid, key: &str) -> Result<Vec<Superseded>, StoreError>;
}
