//! `/api/v1/spaces/{id}/points`: the programmatic vector API. Clients upsert their own vectors
//! with a payload, search them by cosine similarity, read and delete them by id.

use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::points::{Point, PointError, PointId, PointQuery, DEFAULT_LIMIT};
use crate::service::ServiceError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Instant;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/spaces/{id}/points", put(upsert).get(info))
        .route("/spaces/{id}/points/search", post(search))
        .route("/spaces/{id}/points/{pid}", get(read).delete(remove))
}

/// One point as clients send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointIn {
    id: Value,
    vector: Vec<f32>,
    #[serde(default)]
    payload: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    points: Vec<PointIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    vector: Vec<f32>,
    limit: Option<usize>,
    min_score: Option<f32>,
    #[serde(default)]
    filter: Map<String, Value>,
}

fn invalid(e: PointError) -> ApiError {
    ServiceError::from_points(e).into()
}

/// The space must exist: points of unknown spaces are a 404, never silently created.
async fn space(state: &AppState, id: &str) -> Result<Uuid, ApiError> {
    let found = state.service.get_space(id).await?;
    Uuid::parse_str(&found.id).map_err(|e| ServiceError::Internal(e.into()).into())
}

#[tracing::instrument(skip(state, body), fields(points = body.points.len()))]
async fn upsert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpsertBody>,
) -> Result<Json<Value>, ApiError> {
    let space = space(&state, &id).await?;
    let points = body
        .points
        .into_iter()
        .map(|p| {
            Ok(Point {
                id: PointId::from_json(&p.id)?,
                vector: p.vector,
                payload: p.payload,
            })
        })
        .collect::<Result<Vec<_>, PointError>>()
        .map_err(invalid)?;
    let dimensions = points.first().map_or(0, |p| p.vector.len());
    let upserted = state.points.upsert(space, points).await.map_err(invalid)?;
    Ok(Json(
        json!({ "upserted": upserted, "dimensions": dimensions }),
    ))
}

#[tracing::instrument(skip(state))]
async fn info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::points::PointsInfo>, ApiError> {
    let space = space(&state, &id).await?;
    Ok(Json(state.points.info(space).await.map_err(invalid)?))
}

#[tracing::instrument(skip(state, body))]
async fn search(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Value>, ApiError> {
    let space = space(&state, &id).await?;
    let query = PointQuery {
        vector: body.vector,
        limit: body.limit.unwrap_or(DEFAULT_LIMIT),
        min_score: body.min_score,
        filter: body.filter,
    };
    let started = Instant::now();
    let hits = state.points.search(space, query).await.map_err(invalid)?;
    crate::metrics::global().record_vector_search(state.points.backend_name(), started.elapsed());
    let points: Vec<Value> = hits
        .into_iter()
        .map(|h| json!({ "id": h.id.to_json(), "score": h.score, "payload": h.payload }))
        .collect();
    Ok(Json(json!({ "points": points })))
}

#[tracing::instrument(skip(state))]
async fn read(
    State(state): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let space = space(&state, &id).await?;
    let pid = PointId::parse(&pid).map_err(invalid)?;
    match state.points.get(space, &pid).await.map_err(invalid)? {
        Some(p) => Ok(Json(
            json!({ "id": p.id.to_json(), "vector": p.vector, "payload": p.payload }),
        )),
        None => Err(ServiceError::NotFound("point").into()),
    }
}

#[tracing::instrument(skip(state))]
async fn remove(
    State(state): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let space = space(&state, &id).await?;
    let pid = PointId::parse(&pid).map_err(invalid)?;
    if state.points.delete(space, &pid).await.map_err(invalid)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServiceError::NotFound("point").into())
    }
}
