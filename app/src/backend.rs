//! The seam between the UI's server functions and the server's service layer: `app` defines it,
//! `server` implements it and provides it through Leptos context, so `app` never depends on `server`.

use crate::api::{
    ApiKey, AuditEntry, Chunk, Conversation, CreatedApiKey, Document, ErrorDetail, HealthReport,
    Member, Message, MetricsSnapshot, Page, Role, SearchRequest, SearchResponse, SessionInfo,
    Space, User,
};
use std::sync::Arc;

/// What the UI needs from the engine; the REST API calls the same implementation.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Lists the spaces the caller may see, newest first.
    async fn list_spaces(
        &self,
        caller: &Caller,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Space>, ErrorDetail>;
    /// Refuses (404 for strangers, 403 for members with too small a role) unless the caller
    /// may act on the space with `needed`.
    async fn authorize(
        &self,
        caller: &Caller,
        space_id: &str,
        needed: Role,
    ) -> Result<(), ErrorDetail>;
    /// Who is signed in, and whether sign-in is on at all, for the sidebar and the login page.
    async fn session_info(&self, caller: Option<&Caller>) -> SessionInfo;
    /// The caller's API keys.
    async fn list_api_keys(&self, caller: &Caller) -> Result<Vec<ApiKey>, ErrorDetail>;
    /// Creates an API key for the caller; the key is in the answer only.
    async fn create_api_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<CreatedApiKey, ErrorDetail>;
    /// Revokes one of the caller's keys.
    async fn revoke_api_key(&self, caller: &Caller, id: &str) -> Result<(), ErrorDetail>;
    /// A space's members (the caller's access is checked before).
    async fn list_members(&self, space_id: &str) -> Result<Vec<Member>, ErrorDetail>;
    /// Adds a member by email or changes their role (the caller must own the space).
    async fn set_member(
        &self,
        space_id: &str,
        email: &str,
        role: Role,
    ) -> Result<Member, ErrorDetail>;
    /// Removes a member (the caller must own the space).
    async fn remove_member(&self, space_id: &str, user_id: &str) -> Result<(), ErrorDetail>;
    /// Accounts, oldest first (admins only; checked by the caller of this).
    async fn list_users(&self, limit: i64, offset: i64) -> Result<Page<User>, ErrorDetail>;
    /// Creates an account (admins only).
    async fn create_user(
        &self,
        email: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<User, ErrorDetail>;
    /// Disables another account or enables it again (admins only).
    async fn set_user_disabled(
        &self,
        caller: &Caller,
        id: &str,
        disabled: bool,
    ) -> Result<User, ErrorDetail>;
    /// Deletes another account (admins only).
    async fn delete_user(&self, caller: &Caller, id: &str) -> Result<(), ErrorDetail>;
    /// The audit log, newest first (admins only).
    async fn list_audit(&self, limit: i64, offset: i64) -> Result<Page<AuditEntry>, ErrorDetail>;
    /// Looks up one space by id.
    async fn get_space(&self, id: &str) -> Result<Space, ErrorDetail>;
    /// Creates a space with a unique name, owned by the caller.
    async fn create_space(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
    ) -> Result<Space, ErrorDetail>;
    /// Renames a space and/or changes its description.
    async fn update_space(
        &self,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Space, ErrorDetail>;
    /// Deletes a space with all of its documents.
    async fn delete_space(&self, id: &str) -> Result<(), ErrorDetail>;
    /// Lists a space's documents, newest first.
    async fn list_documents(
        &self,
        space_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Document>, ErrorDetail>;
    /// Deletes one document of a space.
    async fn delete_document(&self, space_id: &str, document_id: &str) -> Result<(), ErrorDetail>;
    /// A space's sources with their sync state.
    async fn list_sources(&self, space_id: &str) -> Result<Vec<crate::api::Source>, ErrorDetail>;
    /// Probes every dependency.
    async fn health(&self) -> HealthReport;
    /// Upload limit in bytes, shown in the UI so users know before they try.
    fn max_upload_bytes(&self) -> u64;
    /// Searches a space's passages.
    async fn search(
        &self,
        space_id: &str,
        req: SearchRequest,
    ) -> Result<SearchResponse, ErrorDetail>;
    /// What the metrics dashboard draws.
    async fn metrics_snapshot(&self) -> MetricsSnapshot;
    /// One document with its ingestion state.
    async fn get_document(
        &self,
        space_id: &str,
        document_id: &str,
    ) -> Result<Document, ErrorDetail>;
    /// A document's passages in order, one page at a time.
    async fn list_chunks(
        &self,
        space_id: &str,
        document_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Chunk>, ErrorDetail>;
    /// The caller's conversations in a space, most recently active first. A conversation is
    /// private to whoever started it, so other members' (even an admin's) are never listed.
    async fn list_conversations(
        &self,
        caller: &Caller,
        space_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Conversation>, ErrorDetail>;
    /// The turns of one of the caller's conversations, oldest first; another caller's
    /// conversation is not found.
    async fn list_messages(
        &self,
        caller: &Caller,
        space_id: &str,
        conversation_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Message>, ErrorDetail>;
}

/// How server functions find the backend in Leptos context.
pub type SharedBackend = Arc<dyn Backend>;

/// Fetches the backend from context; a missing one is a wiring bug, reported as a server error.
pub fn backend() -> Result<SharedBackend, leptos::prelude::ServerFnError> {
    leptos::prelude::use_context::<SharedBackend>()
        .ok_or_else(|| leptos::prelude::ServerFnError::new("backend missing from context"))
}

/// Who a request acts for, resolved once by the server's authentication layer and carried in
/// the request's extensions, so server functions see the same caller the REST API does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account; `None` in single-user mode, where there are no accounts.
    pub user_id: Option<String>,
    pub email: String,
    /// Admins (and the single user) may reach every space and manage accounts.
    pub is_admin: bool,
    /// Signed in by an API key rather than a session: such a caller may not manage keys, so a
    /// leaked key cannot mint others that outlive its revocation.
    pub via_key: bool,
}

impl Caller {
    /// The one caller of single-user mode: no account, allowed everything.
    pub fn single_user() -> Self {
        Self {
            user_id: None,
            email: String::new(),
            is_admin: true,
            via_key: false,
        }
    }
}

/// The caller of the request being served, if it is signed in (or single-user mode is on).
pub fn caller() -> Option<Caller> {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>().cloned())
}
