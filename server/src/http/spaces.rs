//! `/api/v1/spaces`: create, list, read, rename and delete knowledge spaces.

use super::error::Errors;
use super::extract::InSpace;
use super::extract::{ApiJson, ApiQuery, PageQuery};
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::Caller;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use kenning_api::Role;
use kenning_api::{CreateSpaceRequest, Page, Space, UpdateSpaceRequest};

pub fn router() -> Routes {
    let owner = Policy::space(Role::Owner);
    Routes::new()
        .get("/spaces", Policy::signed(), list)
        .post("/spaces", Policy::signed(), create)
        .get("/spaces/{id}", Policy::space(Role::Viewer), read)
        .patch("/spaces/{id}", owner, update)
        .delete("/spaces/{id}", owner, remove)
}

/// Lists spaces, newest first, a page at a time.
#[utoipa::path(get, operation_id = "spaces_list", path = "/api/v1/spaces", tag = "spaces", params(PageQuery),
    responses((status = 200, description = "A page of spaces", body = Page<Space>), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Space>>, ApiError> {
    Ok(Json(
        state.service.list_spaces_for(&caller, q.parse()?).await?,
    ))
}

/// Creates a space, owned by the caller; names are unique.
#[utoipa::path(post, operation_id = "spaces_create", path = "/api/v1/spaces", tag = "spaces", request_body = CreateSpaceRequest,
    responses((status = 201, description = "Created", body = Space), Errors))]
#[tracing::instrument(skip(state, caller, body))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateSpaceRequest>,
) -> Result<(StatusCode, Json<Space>), ApiError> {
    let space = state
        .service
        .create_space(Some(&caller), &body.name, &body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(space)))
}

/// One space with its document count.
#[utoipa::path(get, operation_id = "spaces_read", path = "/api/v1/spaces/{id}", tag = "spaces", params(("id" = String, Path, description = "Space id")),
    responses((status = 200, description = "The space", body = Space), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn read(
    State(state): State<AppState>,
    InSpace(id): InSpace,
) -> Result<Json<Space>, ApiError> {
    Ok(Json(state.service.get_space(id).await?))
}

/// Renames a space or changes its description.
#[utoipa::path(patch, operation_id = "spaces_update", path = "/api/v1/spaces/{id}", tag = "spaces", params(("id" = String, Path, description = "Space id")),
    request_body = UpdateSpaceRequest,
    responses((status = 200, description = "The updated space", body = Space), Errors))]
#[tracing::instrument(skip(state, body))]
pub(super) async fn update(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    ApiJson(body): ApiJson<UpdateSpaceRequest>,
) -> Result<Json<Space>, ApiError> {
    let space = state
        .service
        .update_space(id, body.name.as_deref(), body.description.as_deref())
        .await?;
    Ok(Json(space))
}

/// Deletes a space with its documents, passages, vectors, conversations and points.
#[utoipa::path(delete, operation_id = "spaces_remove", path = "/api/v1/spaces/{id}", tag = "spaces", params(("id" = String, Path, description = "Space id")),
    responses((status = 204, description = "Deleted"), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn remove(
    State(state): State<AppState>,
    InSpace(id): InSpace,
) -> Result<StatusCode, ApiError> {
    state.service.delete_space(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
