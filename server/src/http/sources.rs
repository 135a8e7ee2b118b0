//! `/api/v1/spaces/{id}/sources`: folders and web pages a space keeps in sync.

use super::error::Errors;
use super::extract::InSpace;
use super::extract::PageQuery;
use super::extract::{ApiJson, ApiQuery};
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::Caller;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use kenning_api::Role;
use kenning_api::{CreateSource, Page, Source};

pub fn router() -> Routes {
    let viewer = Policy::space(Role::Viewer);
    let editor = Policy::space(Role::Editor);
    Routes::new()
        .get("/spaces/{id}/sources", viewer, list)
        .post("/spaces/{id}/sources", editor, create)
        .get("/spaces/{id}/sources/{source_id}", viewer, read)
        .delete("/spaces/{id}/sources/{source_id}", editor, remove)
        .post("/spaces/{id}/sources/{source_id}/sync", editor, sync)
}

/// A space's sources with their last sync and, while one runs, its progress.
#[utoipa::path(get, operation_id = "sources_list", path = "/api/v1/spaces/{id}/sources", tag = "sources", params(("id" = String, Path, description = "Space id"), PageQuery),
    responses((status = 200, description = "A page of sources", body = Page<Source>), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn list(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Source>>, ApiError> {
    let page = q.parse()?;
    let all = state.service.list_sources(id).await?;
    let total = all.len() as i64;
    let items = all
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(page.limit).unwrap_or(0))
        .collect();
    Ok(Json(Page {
        items,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// Adds a source: `folder` (a path under the server's `--source-roots`; admins only), `url` (one
/// page) or `site` (same-origin pages from a start page or a sitemap, `robots.txt` honoured, at
/// most `max_pages`). With `interval_minutes` it syncs on that schedule, starting now; otherwise
/// on `POST …/sync`.
#[utoipa::path(post, operation_id = "sources_create", path = "/api/v1/spaces/{id}/sources", tag = "sources", params(("id" = String, Path, description = "Space id")),
    request_body = CreateSource,
    responses((status = 201, description = "Added", body = Source), Errors))]
#[tracing::instrument(skip(state, caller, body))]
pub(super) async fn create(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<CreateSource>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    let admin = caller.is_some_and(|Extension(c)| c.is_admin);
    let source = state.service.create_source(id, &body, admin).await?;
    Ok((StatusCode::CREATED, Json(source)))
}

/// One source.
#[utoipa::path(get, operation_id = "sources_read", path = "/api/v1/spaces/{id}/sources/{source_id}", tag = "sources", params(("id" = String, Path, description = "Space id"), ("source_id" = String, Path, description = "Source id")),
    responses((status = 200, description = "The source", body = Source), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn read(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, source_id)): Path<(String, String)>,
) -> Result<Json<Source>, ApiError> {
    Ok(Json(state.service.get_source(id, &source_id).await?))
}

/// Deletes a source and every document it brought.
#[utoipa::path(delete, operation_id = "sources_remove", path = "/api/v1/spaces/{id}/sources/{source_id}", tag = "sources", params(("id" = String, Path, description = "Space id"), ("source_id" = String, Path, description = "Source id")),
    responses((status = 204, description = "Deleted"), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn remove(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, source_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.service.delete_source(id, &source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a sync now: 202 with the source `syncing`; poll it for progress and `last_result`.
/// 409 while a sync of it runs.
#[utoipa::path(post, operation_id = "sources_sync", path = "/api/v1/spaces/{id}/sources/{source_id}/sync", tag = "sources", params(("id" = String, Path, description = "Space id"), ("source_id" = String, Path, description = "Source id")),
    responses((status = 202, description = "Sync started", body = Source), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn sync(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, source_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    let source = state.service.start_sync(id, &source_id).await?;
    Ok((StatusCode::ACCEPTED, Json(source)))
}
