//! `/api/v1/spaces`: create, list, read, rename and delete knowledge spaces.

use super::extract::{ApiJson, ApiQuery};
use super::{ApiError, AppState};
use crate::domain::PageRequest;
use app::api::{CreateSpaceRequest, Page, Space, UpdateSpaceRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/spaces", get(list).post(create))
        .route("/spaces/{id}", get(read).patch(update).delete(remove))
}

/// `?limit=&offset=` for any list endpoint.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<PageRequest, ApiError> {
        PageRequest::parse(self.limit, self.offset)
            .map_err(|e| crate::service::ServiceError::from(e).into())
    }
}

#[tracing::instrument(skip(state))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Space>>, ApiError> {
    Ok(Json(state.service.list_spaces(q.parse()?).await?))
}

#[tracing::instrument(skip(state, body))]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateSpaceRequest>,
) -> Result<(StatusCode, Json<Space>), ApiError> {
    let space = state
        .service
        .create_space(&body.name, &body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(space)))
}

#[tracing::instrument(skip(state))]
async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Space>, ApiError> {
    Ok(Json(state.service.get_space(&id).await?))
}

#[tracing::instrument(skip(state, body))]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateSpaceRequest>,
) -> Result<Json<Space>, ApiError> {
    let space = state
        .service
        .update_space(&id, body.name.as_deref(), body.description.as_deref())
        .await?;
    Ok(Json(space))
}

#[tracing::instrument(skip(state))]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.delete_space(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
