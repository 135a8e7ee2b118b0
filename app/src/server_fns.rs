//! Server functions the UI calls; each is a thin call into the shared backend.

use crate::api::{
    Chunk, Conversation, Document, HealthReport, Message, Page, SearchMode, SearchResponse, Space,
};
use leptos::prelude::*;

pub use crate::format::PAGE_SIZE;

#[cfg(feature = "ssr")]
fn to_fn_error(e: crate::api::ErrorDetail) -> ServerFnError {
    ServerFnError::ServerError(e.message)
}

/// The signed-in caller; server functions answer nobody else (single-user mode has one caller).
#[cfg(feature = "ssr")]
fn signed_in() -> Result<crate::backend::Caller, ServerFnError> {
    crate::backend::caller()
        .ok_or_else(|| ServerFnError::ServerError("Sign in to continue.".to_string()))
}

/// The backend, once the caller is known to hold at least `role` in the space: every server
/// function that names a space goes through here, as every REST route does through the
/// server's authorization layer.
#[cfg(feature = "ssr")]
async fn in_space(
    space_id: &str,
    role: crate::api::Role,
) -> Result<crate::backend::SharedBackend, ServerFnError> {
    let backend = crate::backend::backend()?;
    let caller = signed_in()?;
    backend
        .authorize(&caller, space_id, role)
        .await
        .map_err(to_fn_error)?;
    Ok(backend)
}

/// Who is signed in (or that no sign-in is needed), for the sidebar and the login page.
#[server]
pub async fn session_info() -> Result<crate::api::SessionInfo, ServerFnError> {
    let caller = crate::backend::caller();
    Ok(crate::backend::backend()?
        .session_info(caller.as_ref())
        .await)
}

/// Lists spaces for the spaces page and the home overview.
#[server]
pub async fn list_spaces(offset: i64) -> Result<Page<Space>, ServerFnError> {
    let caller = signed_in()?;
    crate::backend::backend()?
        .list_spaces(&caller, PAGE_SIZE, offset)
        .await
        .map_err(to_fn_error)
}

/// Loads one space for its documents page.
#[server]
pub async fn get_space(id: String) -> Result<Space, ServerFnError> {
    in_space(&id, crate::api::Role::Viewer)
        .await?
        .get_space(&id)
        .await
        .map_err(to_fn_error)
}

/// Creates a space from the form on the spaces page.
#[server]
pub async fn create_space(name: String, description: String) -> Result<Space, ServerFnError> {
    let caller = signed_in()?;
    crate::backend::backend()?
        .create_space(&caller, &name, &description)
        .await
        .map_err(to_fn_error)
}

/// Renames a space from its documents page.
#[server]
pub async fn rename_space(id: String, name: String) -> Result<Space, ServerFnError> {
    in_space(&id, crate::api::Role::Owner)
        .await?
        .update_space(&id, Some(&name), None)
        .await
        .map_err(to_fn_error)
}

/// Deletes a space and everything in it.
#[server]
pub async fn delete_space(id: String) -> Result<(), ServerFnError> {
    in_space(&id, crate::api::Role::Owner)
        .await?
        .delete_space(&id)
        .await
        .map_err(to_fn_error)
}

/// Lists a space's documents, one page at a time.
#[server]
pub async fn list_documents(
    space_id: String,
    offset: i64,
) -> Result<Page<Document>, ServerFnError> {
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_documents(&space_id, PAGE_SIZE, offset)
        .await
        .map_err(to_fn_error)
}

/// A space's sources, with their last sync and any running one's progress.
#[server]
pub async fn list_sources(space_id: String) -> Result<Vec<crate::api::Source>, ServerFnError> {
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_sources(&space_id)
        .await
        .map_err(to_fn_error)
}

/// Deletes one document.
#[server]
pub async fn delete_document(space_id: String, document_id: String) -> Result<(), ServerFnError> {
    in_space(&space_id, crate::api::Role::Editor)
        .await?
        .delete_document(&space_id, &document_id)
        .await
        .map_err(to_fn_error)
}

/// Health of every dependency, for the status page.
#[server]
pub async fn get_health() -> Result<HealthReport, ServerFnError> {
    signed_in()?;
    Ok(crate::backend::backend()?.health().await)
}

/// The configured upload limit, shown beside the upload form.
#[server]
pub async fn max_upload_bytes() -> Result<u64, ServerFnError> {
    Ok(crate::backend::backend()?.max_upload_bytes())
}

/// Searches a space for the search page.
#[server]
pub async fn search_space(
    space_id: String,
    query: String,
    mode: SearchMode,
    limit: Option<i64>,
    min_score: Option<f64>,
) -> Result<SearchResponse, ServerFnError> {
    let req = crate::api::SearchRequest {
        query,
        mode,
        limit,
        min_score,
        document_id: None,
    };
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .search(&space_id, req)
        .await
        .map_err(to_fn_error)
}

/// One document, for its passages page.
#[server]
pub async fn get_document(
    space_id: String,
    document_id: String,
) -> Result<Document, ServerFnError> {
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .get_document(&space_id, &document_id)
        .await
        .map_err(to_fn_error)
}

/// A document's passages, one page at a time.
#[server]
pub async fn list_chunks(
    space_id: String,
    document_id: String,
    offset: i64,
) -> Result<Page<Chunk>, ServerFnError> {
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_chunks(&space_id, &document_id, PAGE_SIZE, offset)
        .await
        .map_err(to_fn_error)
}

/// The caller's conversations in a space, for the chat page's sidebar (nobody else's: a
/// conversation is private to whoever started it).
#[server]
pub async fn list_conversations(space_id: String) -> Result<Page<Conversation>, ServerFnError> {
    let caller = signed_in()?;
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_conversations(&caller, &space_id, 50, 0)
        .await
        .map_err(to_fn_error)
}

/// The turns of one of the caller's conversations, oldest first (the latest 200).
#[server]
pub async fn list_messages(
    space_id: String,
    conversation_id: String,
) -> Result<Page<Message>, ServerFnError> {
    let caller = signed_in()?;
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_messages(&caller, &space_id, &conversation_id, 200, 0)
        .await
        .map_err(to_fn_error)
}

/// The metrics dashboard's data, polled every two seconds.
#[server]
pub async fn metrics_snapshot() -> Result<crate::api::MetricsSnapshot, ServerFnError> {
    signed_in()?;
    Ok(crate::backend::backend()?.metrics_snapshot().await)
}

/// The signed-in caller, who must be an admin.
#[cfg(feature = "ssr")]
fn admin() -> Result<crate::backend::Caller, ServerFnError> {
    let caller = signed_in()?;
    if caller.is_admin {
        Ok(caller)
    } else {
        Err(ServerFnError::ServerError(
            "Only admins may do this.".to_string(),
        ))
    }
}

/// The caller's API keys, for the account page.
#[server]
pub async fn list_api_keys() -> Result<Vec<crate::api::ApiKey>, ServerFnError> {
    let caller = signed_in()?;
    crate::backend::backend()?
        .list_api_keys(&caller)
        .await
        .map_err(to_fn_error)
}

/// Creates an API key; the answer carries the key, shown once.
#[server]
pub async fn create_api_key(name: String) -> Result<crate::api::CreatedApiKey, ServerFnError> {
    let caller = signed_in()?;
    crate::backend::backend()?
        .create_api_key(&caller, &name)
        .await
        .map_err(to_fn_error)
}

/// Revokes one of the caller's API keys.
#[server]
pub async fn revoke_api_key(id: String) -> Result<(), ServerFnError> {
    let caller = signed_in()?;
    crate::backend::backend()?
        .revoke_api_key(&caller, &id)
        .await
        .map_err(to_fn_error)
}

/// A space's members, for its page.
#[server]
pub async fn list_members(space_id: String) -> Result<Vec<crate::api::Member>, ServerFnError> {
    in_space(&space_id, crate::api::Role::Viewer)
        .await?
        .list_members(&space_id)
        .await
        .map_err(to_fn_error)
}

/// Shares a space with an account, or changes its role (owners only).
#[server]
pub async fn set_member(
    space_id: String,
    email: String,
    role: crate::api::Role,
) -> Result<crate::api::Member, ServerFnError> {
    in_space(&space_id, crate::api::Role::Owner)
        .await?
        .set_member(&space_id, &email, role)
        .await
        .map_err(to_fn_error)
}

/// Removes an account from a space (owners only).
#[server]
pub async fn remove_member(space_id: String, user_id: String) -> Result<(), ServerFnError> {
    in_space(&space_id, crate::api::Role::Owner)
        .await?
        .remove_member(&space_id, &user_id)
        .await
        .map_err(to_fn_error)
}

/// Accounts, for admins.
#[server]
pub async fn list_users(offset: i64) -> Result<Page<crate::api::User>, ServerFnError> {
    admin()?;
    crate::backend::backend()?
        .list_users(PAGE_SIZE, offset)
        .await
        .map_err(to_fn_error)
}

/// Creates an account, for admins.
#[server]
pub async fn create_user(
    email: String,
    password: String,
    #[server(default)] is_admin: bool,
) -> Result<crate::api::User, ServerFnError> {
    admin()?;
    crate::backend::backend()?
        .create_user(&email, &password, is_admin)
        .await
        .map_err(to_fn_error)
}

/// Disables an account or enables it again, for admins.
#[server]
pub async fn set_user_disabled(
    id: String,
    disabled: bool,
) -> Result<crate::api::User, ServerFnError> {
    let caller = admin()?;
    crate::backend::backend()?
        .set_user_disabled(&caller, &id, disabled)
        .await
        .map_err(to_fn_error)
}

/// Deletes an account, for admins.
#[server]
pub async fn delete_user(id: String) -> Result<(), ServerFnError> {
    let caller = admin()?;
    crate::backend::backend()?
        .delete_user(&caller, &id)
        .await
        .map_err(to_fn_error)
}

/// The audit log, newest first, for admins.
#[server]
pub async fn list_audit(offset: i64) -> Result<Page<crate::api::AuditEntry>, ServerFnError> {
    admin()?;
    crate::backend::backend()?
        .list_audit(PAGE_SIZE, offset)
        .await
        .map_err(to_fn_error)
}
