//! The seam between the UI's server functions and the server's service layer: `app` defines it,
//! `server` implements it and provides it through Leptos context, so `app` never depends on `server`.

use crate::api::{
    Chunk, Conversation, Document, ErrorDetail, HealthReport, Message, MetricsSnapshot, Page,
    SearchRequest, SearchResponse, Space,
};
use std::sync::Arc;

/// What the UI needs from the engine; the REST API calls the same implementation.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Lists spaces, newest first.
    async fn list_spaces(&self, limit: i64, offset: i64) -> Result<Page<Space>, ErrorDetail>;
    /// Looks up one space by id.
    async fn get_space(&self, id: &str) -> Result<Space, ErrorDetail>;
    /// Creates a space with a unique name.
    async fn create_space(&self, name: &str, description: &str) -> Result<Space, ErrorDetail>;
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
    /// A space's conversations, most recently active first.
    async fn list_conversations(
        &self,
        space_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Conversation>, ErrorDetail>;
    /// A conversation's turns, oldest first.
    async fn list_messages(
        &self,
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
